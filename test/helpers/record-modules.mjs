// Preloaded into a broker process by test/e2e/broker-footprint.test.ts (node --import): appends
// every module the process loads (ESM imports and CommonJS requires) to $RILL_MODULE_LOG.
import fs from 'node:fs';
import Module from 'node:module';

const logFile = process.env.RILL_MODULE_LOG;
if (logFile) {
  Module.register(`data:text/javascript,${encodeURIComponent(`
    import fs from 'node:fs';
    export async function resolve(specifier, context, next) {
      const result = await next(specifier, context);
      fs.appendFileSync(${JSON.stringify(logFile)}, result.url + '\\n');
      return result;
    }
  `)}`);
  const load = Module._load;
  Module._load = function (request, parent, isMain) {
    fs.appendFileSync(logFile, `cjs:${request}\n`);
    return load.call(this, request, parent, isMain);
  };
}
