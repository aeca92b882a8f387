#!/usr/bin/env node
/**
 * `rill`: the broker, topic and group administration, and a console producer and consumer.
 * Exit status: 0 done (also --help, --version, and a reader that went away: `| head`),
 * 1 failed (the broker said no, or no broker answered), 2 usage error (one line on stderr).
 */
import { CommanderError } from 'commander';
import { UsageError } from './args.js';
import { describeError } from './output.js';
import { commandPath, createProgram, type ErrorContext } from './program.js';

/** `rill consume ... | head -2`: the reader left; stop quietly, as cat and grep do. */
function quietOnBrokenPipe(stream: NodeJS.WriteStream): void {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(0);
    throw error;
  });
}

/** Commander's message on one line: "unknown option '--partitons' (Did you mean --partitions?)". */
function oneLine(message: string): string {
  return message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ').replace('(Did you mean', '(did you mean').replace(/\.$/, '');
}

async function main(argv: string[]): Promise<void> {
  quietOnBrokenPipe(process.stdout);
  quietOnBrokenPipe(process.stderr);
  const context: ErrorContext = { command: null };
  const program = createProgram(context);
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version "fail" with exit code 0; bare `rill` prints help and exits 1.
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help') {
        process.exitCode = error.exitCode;
        return;
      }
      const where = context.command === null ? 'rill' : commandPath(context.command);
      process.stderr.write(`rill: ${oneLine(error.message)}; see "${where} --help"\n`);
      process.exitCode = 2;
      return;
    }
    if (error instanceof UsageError) {
      process.stderr.write(`rill: ${error.message}\n`);
      process.exitCode = 2;
      return;
    }
    process.stderr.write(`rill: ${describeError(error)}\n`);
    process.exitCode = 1;
  }
}

void main(process.argv.slice(2));
