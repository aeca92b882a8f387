/**
 * `rill broker`: declares the broker's flags and hands them, as the strings the user typed
 * (undefined when absent, no defaults here), to brokerCommand, which resolves flags, RILL_*
 * environment, config file and defaults in one place and validates them.
 */
import type { Command } from 'commander';
import { brokerCommand, type BrokerFlags } from './broker-command.js';
import type { Run } from './client-options.js';

export function registerBroker(program: Command, run: Run): void {
  program
    .command('broker')
    .description('run a broker in the foreground until SIGTERM/SIGINT (default ./rill-data, 127.0.0.1:9092, HTTP on 127.0.0.1:9644)')
    .option('--config <file>', 'YAML configuration file (flags > RILL_* environment > file > defaults; env RILL_CONFIG)')
    .option('--data-dir <dir>', 'where topics, offsets and state are stored; one broker per directory (default ./rill-data)')
    .option('--port <n>', 'port of the rill listener (0: any free port; default 9092)')
    .option('--host <host>', 'address of the rill listener (default 127.0.0.1)')
    .option('--listen <host:port>', 'address and port of the rill listener (instead of --host and --port)')
    .option('--advertise <host:port>', 'address Metadata tells clients to connect to (default: the listen address)')
    .option('--http <host:port|off>', 'HTTP listener for /metrics, /healthz, /readyz and the console (default 127.0.0.1:9644)')
    .option('--tls-cert <file>', 'PEM certificate: with --tls-key, the rill listener speaks TLS only (1.2+); re-read on SIGHUP')
    .option('--tls-key <file>', 'PEM private key of --tls-cert')
    .option('--tls-ca <file>', 'PEM CA bundle that verifies client certificates')
    .option('--tls-client-auth <mode>', 'none|requested|required: client certificates (required: mTLS; default none)')
    .option('--node-id <n>', 'this broker\'s id (default 0)')
    .option('--log-level <level>', 'debug|info|warn|error (default info)')
    .option('--auth <mode>', 'off|required: require SASL authentication on every listener (default off; users: rill users add)')
    .option('--super-users <names>', 'comma-separated users the ACLs do not bind (the first admin: rill users add admin --data-dir DIR)')
    .option('--allow-anonymous', 'let a listener off loopback run without authentication (protected mode off; warned at every start)')
    .option('--quota-connections-per-principal <n>', 'connections one principal (or anonymous client address) may have open (default 0: unlimited)')
    .option('--quota-produce-bytes-per-second <n>', 'produce bytes per second per principal; replies over it are held back (default 0: unlimited)')
    .option('--quota-fetch-bytes-per-second <n>', 'fetch reply bytes per second per principal (default 0: unlimited)')
    .option('--etcd <urls>', 'join a cluster: etcd client URLs, comma-separated (http://HOST:PORT); none: a single broker (env RILL_ETCD)')
    .option('--cluster <name>', 'the cluster to join in etcd (default rill)')
    .option('--rack <rack>', 'rack or zone of this broker, shown in Metadata and rill cluster describe')
    .option('--log-format <format>', 'json|pretty|auto (default auto: pretty on a terminal, JSON otherwise)')
    .addHelpText('after', `
Once listening it prints "rill broker ready on HOST:PORT" on stdout (and "rill http ready on
HOST:PORT" when the HTTP listener is on). A configuration mistake (bad file, unknown key, port in
use, data directory locked by another broker or not writable, with --etcd: node id held by another
live broker, etcd not reachable) is one line on stderr, exit 2.

Examples:
  rill broker
  rill broker --data-dir /var/lib/rill --listen 0.0.0.0:9092 --advertise rill-1.internal:9092 --allow-anonymous
  rill broker --data-dir ./b2 --port 9093 --http 127.0.0.1:9645     # a second broker on this machine
  rill broker --config rill.yaml --log-level debug
  rill broker --tls-cert server.pem --tls-key server-key.pem --tls-ca ca.pem --tls-client-auth required
  rill broker --listen 0.0.0.0:9092 --auth required --super-users admin   # see the README, Securing Rill
  rill broker --node-id 1 --etcd http://127.0.0.1:2379 --data-dir ./b1 --port 9092 --http 127.0.0.1:9644   # see the README, Cluster`)
    .action((flags: BrokerFlags) => run(() => brokerCommand(pickBrokerFlags(flags))));
}

/** Exactly the declared flags, as strings. */
function pickBrokerFlags(flags: BrokerFlags): BrokerFlags {
  const { config, dataDir, port, host, listen, advertise, http, nodeId, logLevel, logFormat, auth, superUsers, allowAnonymous, tlsCert, tlsKey, tlsCa, tlsClientAuth, etcd, cluster, rack } = flags;
  const { quotaConnectionsPerPrincipal, quotaProduceBytesPerSecond, quotaFetchBytesPerSecond } = flags;
  return {
    config, dataDir, port, host, listen, advertise, http, nodeId, logLevel, logFormat, auth, superUsers, allowAnonymous, tlsCert, tlsKey, tlsCa, tlsClientAuth, etcd, cluster, rack,
    quotaConnectionsPerPrincipal, quotaProduceBytesPerSecond, quotaFetchBytesPerSecond,
  };
}
