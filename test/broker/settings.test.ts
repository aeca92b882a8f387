/** The broker's settings: precedence, validation, the config file, and the README table. */
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readConfigFile, resolveSettings, SettingsError, settingsTableMarkdown } from '../../src/broker/settings.js';
import { repoRoot, tempDir } from '../helpers/broker-process.js';

function configFile(text: string): string {
  const file = path.join(tempDir('settings'), 'rill.yaml');
  fs.writeFileSync(file, text);
  return file;
}

function errorOf(action: () => unknown): SettingsError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(SettingsError);
    return error as SettingsError;
  }
  throw new Error('expected a SettingsError');
}

describe('broker settings', () => {
  it('uses the defaults a user of `rill broker` gets', () => {
    const { settings, effective } = resolveSettings({}, {}, '/srv');
    expect(settings).toMatchObject({
      dataDir: '/srv/rill-data',
      nodeId: 0,
      listeners: [{ name: 'rill', host: '127.0.0.1', port: 9092, advertise: null }],
      http: { host: '127.0.0.1', port: 9644 },
      httpExplicit: false,
      logLevel: 'info',
      logFormat: 'auto',
    });
    expect(effective.every((e) => e.source === 'default')).toBe(true);
  });

  it('applies flags over environment over file over defaults, and reports each source', () => {
    const file = configFile([
      'dataDir: /from/file',
      'nodeId: 3',
      'listeners:',
      '  rill:',
      '    listen: 0.0.0.0:9100',
      '    advertise: broker-a.internal:9100',
      'log:',
      '  level: warn',
      'shutdownGraceMs: 2500',
    ].join('\n'));
    const env = { RILL_NODE_ID: '4', RILL_LOG_LEVEL: 'debug', RILL_DATA_DIR: '/from/env' };
    const { settings, effective } = resolveSettings({ config: file, dataDir: '/from/flag', port: '9200', allowAnonymous: true }, env, '/');
    expect(settings.dataDir).toBe('/from/flag');
    expect(settings.nodeId).toBe(4);
    expect(settings.logLevel).toBe('debug');
    expect(settings.shutdownGraceMs).toBe(2500);
    expect(settings.listeners).toEqual([{ name: 'rill', host: '0.0.0.0', port: 9200, advertise: { host: 'broker-a.internal', port: 9100 }, tls: null }]);
    const source = Object.fromEntries(effective.map((e) => [e.name, e.source]));
    expect(source).toMatchObject({ dataDir: 'flag', nodeId: 'env', 'log.level': 'env', shutdownGraceMs: 'file', 'listeners.rill.listen': 'flag', 'listeners.rill.advertise': 'file', 'log.format': 'default' });
  });

  it('takes a listener\'s TLS files from flags, RILL_TLS_* or the file, and checks they go together', () => {
    const fromFlags = resolveSettings({ tlsCert: 'c.pem', tlsKey: 'k.pem', tlsCa: 'ca.pem', tlsClientAuth: 'required' }, {}, '/etc/rill');
    expect(fromFlags.settings.listeners[0]!.tls).toEqual({ certFile: '/etc/rill/c.pem', keyFile: '/etc/rill/k.pem', caFile: '/etc/rill/ca.pem', clientAuth: 'required' });
    expect(fromFlags.effective.find((e) => e.name === 'listeners.rill.tls.clientAuth')).toMatchObject({ value: 'required', source: 'flag' });
    // A CA without a client-auth mode asks for certificates (optional mTLS: a shown one is the principal).
    expect(resolveSettings({ tlsCert: 'c.pem', tlsKey: 'k.pem', tlsCa: 'ca.pem' }, {}).settings.listeners[0]!.tls!.clientAuth).toBe('requested');
    expect(resolveSettings({ tlsCert: 'c.pem', tlsKey: 'k.pem', tlsCa: 'ca.pem', tlsClientAuth: 'none' }, {}).settings.listeners[0]!.tls!.clientAuth).toBe('none');
    const fromEnv = resolveSettings({}, { RILL_TLS_CERT: '/c.pem', RILL_TLS_KEY: '/k.pem' });
    expect(fromEnv.settings.listeners[0]!.tls).toEqual({ certFile: '/c.pem', keyFile: '/k.pem', caFile: null, clientAuth: 'none' });
    const file = configFile('listeners:\n  internal:\n    listen: 10.0.0.5:9093\n    tls:\n      cert: /i.pem\n      key: /ik.pem\n      ca: /ica.pem\n      clientAuth: requested\n');
    const fromFile = resolveSettings({ config: file, auth: 'required' }, {});
    expect(fromFile.settings.listeners.map((l) => [l.name, l.tls?.clientAuth ?? null])).toEqual([['internal', 'requested']]);
    expect(resolveSettings({}, {}).settings.listeners[0]!.tls).toBeNull();
    expect(() => resolveSettings({ tlsCert: 'c.pem' }, {})).toThrow(/flag --tls-cert: listener rill needs both a TLS certificate and its key/);
    expect(() => resolveSettings({ tlsCert: 'c.pem', tlsKey: 'k.pem', tlsClientAuth: 'required' }, {})).toThrow(/flag --tls-client-auth: .*need the CA/);
    expect(() => resolveSettings({ tlsCert: 'c.pem', tlsKey: 'k.pem', tlsClientAuth: 'always' }, {})).toThrow(/expected one of none, requested, required/);
    expect(() => resolveSettings({}, { RILL_TLS_CA: '/ca.pem' })).toThrow(/RILL_TLS_CA: listener rill has no TLS certificate/);
  });

  it('protected mode: a listener off loopback needs authentication, client certificates, or allowAnonymous', () => {
    expect(errorOf(() => resolveSettings({ listen: '0.0.0.0:9092' }, {})).message).toMatch(/listener rill listens on 0\.0\.0\.0:9092, which is not loopback.*--allow-anonymous/);
    expect(errorOf(() => resolveSettings({ config: configFile('listeners:\n  lan:\n    listen: 10.1.2.3:9093\n') }, {})).message).toMatch(/listener lan/);
    for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', '::1']) expect(resolveSettings({ host }, {}).settings.listeners[0]!.host).toBe(host);
    expect(resolveSettings({ listen: '0.0.0.0:9092', auth: 'required' }, {}).settings.authRequired).toBe(true);
    expect(resolveSettings({ listen: '0.0.0.0:9092', tlsCert: 'c', tlsKey: 'k', tlsCa: 'ca', tlsClientAuth: 'required' }, {}).settings.listeners[0]!.host).toBe('0.0.0.0');
    expect(() => resolveSettings({ listen: '0.0.0.0:9092', tlsCert: 'c', tlsKey: 'k', tlsCa: 'ca', tlsClientAuth: 'requested' }, {})).toThrow(/not loopback/);
    expect(resolveSettings({ listen: '0.0.0.0:9092', allowAnonymous: true }, {}).settings.allowAnonymous).toBe(true);
    expect(resolveSettings({ listen: '0.0.0.0:9092' }, { RILL_ALLOW_ANONYMOUS: 'true' }).settings.allowAnonymous).toBe(true);
    expect(errorOf(() => resolveSettings({}, { RILL_ALLOW_ANONYMOUS: 'yes please' })).message).toMatch(/RILL_ALLOW_ANONYMOUS: expected true or false/);
  });

  it('takes super users from a comma list (flag, environment) or a YAML list', () => {
    expect(resolveSettings({ superUsers: 'admin, User:CN=ops' }, {}).settings.superUsers).toEqual(['admin', 'User:CN=ops']);
    expect(resolveSettings({}, { RILL_SUPER_USERS: 'root' }).settings.superUsers).toEqual(['root']);
    expect(resolveSettings({ config: configFile('auth:\n  superUsers:\n    - admin\n    - ops\n') }, {}).settings.superUsers).toEqual(['admin', 'ops']);
    expect(resolveSettings({}, {}).settings.superUsers).toEqual([]);
  });

  it('takes quotas from flags, RILL_QUOTA_* or the file, and per-user overrides from the file only', () => {
    expect(resolveSettings({}, {}).settings.quotas).toEqual({ connectionsPerPrincipal: 0, produceBytesPerSecond: 0, fetchBytesPerSecond: 0, users: new Map() });
    const file = configFile([
      'quotas:',
      '  connectionsPerPrincipal: 20',
      '  produceBytesPerSecond: 1048576',
      '  users:',
      '    alice:',
      '      produceBytesPerSecond: 0',
      '      connections: 50',
      '    "CN=bob.example.com,O=Acme":',
      '      fetchBytesPerSecond: 4096',
    ].join('\n'));
    const { settings, effective } = resolveSettings({ config: file, quotaFetchBytesPerSecond: '2048' }, { RILL_QUOTA_CONNECTIONS_PER_PRINCIPAL: '30' });
    expect(settings.quotas).toEqual({
      connectionsPerPrincipal: 30,
      produceBytesPerSecond: 1048576,
      fetchBytesPerSecond: 2048,
      users: new Map([['alice', { produceBytesPerSecond: 0, connectionsPerPrincipal: 50 }], ['CN=bob.example.com,O=Acme', { fetchBytesPerSecond: 4096 }]]),
    });
    const source = Object.fromEntries(effective.map((e) => [e.name, [e.value, e.source]]));
    expect(source).toMatchObject({
      'quotas.connectionsPerPrincipal': [30, 'env'],
      'quotas.produceBytesPerSecond': [1048576, 'file'],
      'quotas.fetchBytesPerSecond': [2048, 'flag'],
      'quotas.users.alice.connections': [50, 'file'],
      'quotas.users.CN=bob.example.com,O=Acme.fetchBytesPerSecond': [4096, 'file'],
    });
    expect(errorOf(() => resolveSettings({ quotaProduceBytesPerSecond: '-1' }, {})).message).toMatch(/flag --quota-produce-bytes-per-second: expected an integer in 0\.\./);
    expect(errorOf(() => resolveSettings({ config: configFile('quotas:\n  users:\n    alice:\n      connections: many\n') }, {})).message).toMatch(/key quotas\.users\.alice\.connections: expected an integer/);
    expect(errorOf(() => resolveSettings({ config: configFile('quotas:\n  users:\n    alice:\n      produceBytesPerSec: 5\n') }, {})).message).toMatch(/unknown key "quotas\.users\.alice\.produceBytesPerSec"/);
    expect(errorOf(() => resolveSettings({ config: configFile('quotas:\n  users:\n    alice: 5\n') }, {})).message).toMatch(/unknown key "quotas\.users\.alice"/);
  });

  it('joins a cluster only with etcd URLs: --etcd, RILL_ETCD or cluster.etcd, with name, rack and lease TTL', () => {
    expect(resolveSettings({}, {}).settings.cluster).toBeNull();
    const { settings, effective } = resolveSettings({ etcd: 'http://10.0.0.1:2379, 10.0.0.2:2379', cluster: 'prod', rack: 'eu-west-1a' }, { RILL_LEASE_TTL_MS: '4500', RILL_REPLICA_LAG_MAX_MS: '2500' });
    expect(settings.cluster).toEqual({ etcdEndpoints: ['http://10.0.0.1:2379', 'http://10.0.0.2:2379'], name: 'prod', rack: 'eu-west-1a', leaseTtlMs: 4500, replicaLagMaxMs: 2500, autoReplaceDeadBrokersMs: 0, moveBytesPerSec: 52_428_800, interBrokerUser: null });
    expect(Object.fromEntries(effective.filter((e) => e.name.startsWith('cluster.')).map((e) => [e.name, [e.value, e.source]]))).toEqual({
      'cluster.etcd': ['http://10.0.0.1:2379,http://10.0.0.2:2379', 'flag'], 'cluster.name': ['prod', 'flag'], 'cluster.rack': ['eu-west-1a', 'flag'], 'cluster.leaseTtlMs': [4500, 'env'], 'cluster.replicaLagMaxMs': [2500, 'env'], 'cluster.autoReplaceDeadBrokersMs': [0, 'default'], 'cluster.moveBytesPerSec': [52_428_800, 'default'], 'cluster.interBrokerUser': [null, 'default'],
    });
    expect(resolveSettings({}, { RILL_ETCD: 'http://127.0.0.1:2379' }).settings.cluster).toEqual({ etcdEndpoints: ['http://127.0.0.1:2379'], name: 'rill', rack: null, leaseTtlMs: 6000, replicaLagMaxMs: 10_000, autoReplaceDeadBrokersMs: 0, moveBytesPerSec: 52_428_800, interBrokerUser: null });
    const file = configFile('cluster:\n  etcd: http://etcd-1:2379,http://etcd-2:2379\n  name: staging\n  leaseTtlMs: 10000\n');
    expect(resolveSettings({ config: file }, {}).settings.cluster).toMatchObject({ etcdEndpoints: ['http://etcd-1:2379', 'http://etcd-2:2379'], name: 'staging', leaseTtlMs: 10000 });
    expect(resolveSettings({ cluster: 'prod' }, {}).warnings).toEqual([expect.stringMatching(/do nothing without cluster\.etcd/)]);
  });

  it('rejects bad cluster settings naming the flag, variable or key', () => {
    expect(errorOf(() => resolveSettings({ etcd: 'https://etcd:2379' }, {})).message).toMatch(/flag --etcd: https:\/\/etcd:2379: TLS to etcd is not supported yet/);
    expect(errorOf(() => resolveSettings({ etcd: 'etcd' }, {})).message).toMatch(/flag --etcd: expected etcd URLs like http:\/\/127\.0\.0\.1:2379, got "etcd"/);
    expect(errorOf(() => resolveSettings({ etcd: 'http://e:1', cluster: 'a/b' }, {})).message).toMatch(/flag --cluster: "a\/b" may hold only letters, digits/);
    expect(errorOf(() => resolveSettings({ etcd: 'http://e:1', rack: 'x'.repeat(65) }, {})).message).toMatch(/flag --rack: .* must be 1\.\.64 bytes/);
    expect(errorOf(() => resolveSettings({ etcd: 'http://e:1' }, { RILL_LEASE_TTL_MS: '1000' })).message).toMatch(/RILL_LEASE_TTL_MS: expected an integer in 2000\.\.300000/);
  });

  it('reads the config file named by RILL_CONFIG when no --config is given', () => {
    const file = configFile('nodeId: 7\n');
    expect(resolveSettings({}, { RILL_CONFIG: file }).settings.nodeId).toBe(7);
  });

  it('takes several named listeners from the file, the rill one first', () => {
    const file = configFile('listeners:\n  internal:\n    listen: 10.0.0.5:9093\n  rill:\n    listen: 127.0.0.1:9092\nauth:\n  allowAnonymous: true\n');
    const { settings } = resolveSettings({ config: file }, {});
    expect(settings.listeners.map((l) => `${l.name}=${l.host}:${l.port}`)).toEqual(['rill=127.0.0.1:9092', 'internal=10.0.0.5:9093']);
  });

  it('picks a free HTTP port when the Rill port is 0, unless the HTTP address was given', () => {
    expect(resolveSettings({ port: '0' }, {}).settings.http).toEqual({ host: '127.0.0.1', port: 0 });
    expect(resolveSettings({ port: '0', http: '127.0.0.1:9700' }, {}).settings.http).toEqual({ host: '127.0.0.1', port: 9700 });
    expect(resolveSettings({ http: 'off' }, {}).settings.http).toBeNull();
  });

  it('names the closest valid key for an unknown one', () => {
    expect(errorOf(() => resolveSettings({ config: configFile('dataDr: /x\n') }, {})).message).toMatch(/unknown key "dataDr".*did you mean "dataDir"/);
    expect(errorOf(() => resolveSettings({ config: configFile('listeners:\n  rill:\n    adverstise: a:1\n') }, {})).message).toMatch(/did you mean "advertise"/);
    expect(errorOf(() => resolveSettings({ config: configFile('log:\n  levle: info\n') }, {})).message).toMatch(/did you mean "log.level"/);
  });

  it('rejects bad values naming where they came from', () => {
    expect(errorOf(() => resolveSettings({ port: '70000' }, {})).message).toMatch(/--port must be an integer in 0..65535/);
    expect(errorOf(() => resolveSettings({ logLevel: 'verbose' }, {})).message).toMatch(/flag --log-level: expected one of debug, info, warn, error/);
    expect(errorOf(() => resolveSettings({}, { RILL_NODE_ID: 'x' })).message).toMatch(/environment variable RILL_NODE_ID: expected an integer/);
    expect(errorOf(() => resolveSettings({ config: configFile('shutdownGraceMs: -5\n') }, {})).message).toMatch(/rill\.yaml: key shutdownGraceMs: expected an integer/);
    expect(errorOf(() => resolveSettings({ advertise: '0.0.0.0:9092' }, {})).message).toMatch(/not an address a client can connect to/);
    expect(errorOf(() => resolveSettings({ listen: '127.0.0.1:1', port: '2' }, {})).message).toMatch(/not both/);
  });

  it('reports a malformed file with its name and line', () => {
    const file = configFile('dataDir: /x\nlisteners:\n  rill:\n    listen: [unclosed\n');
    expect(errorOf(() => resolveSettings({ config: file }, {})).message).toMatch(/rill\.yaml line \d+ column \d+ is not valid YAML/);
    expect(errorOf(() => resolveSettings({ config: '/nonexistent/rill.yaml' }, {})).message).toMatch(/cannot read config file \/nonexistent\/rill\.yaml/);
  });

  it('warns about RILL_* variables it does not know', () => {
    expect(resolveSettings({}, { RILL_DATA_DIRS: '/x' }).warnings[0]).toMatch(/RILL_DATA_DIRS.*did you mean "RILL_DATA_DIR"/);
  });

  it('throws only SettingsError for any file content (property)', () => {
    const dir = tempDir('settings-fuzz');
    const file = path.join(dir, 'rill.yaml');
    const line = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.tuple(fc.constantFrom('dataDir', 'nodeId', 'listeners', '  rill', '    listen', 'http', '  listen', 'log', '  level', 'shutdownGraceMs', 'x'), fc.string({ maxLength: 20 })).map(([k, v]) => `${k}: ${v}`),
    );
    fc.assert(fc.property(fc.array(line, { maxLength: 8 }), (lines) => {
      fs.writeFileSync(file, lines.join('\n'));
      try {
        readConfigFile(file);
        resolveSettings({ config: file }, {});
      } catch (error) {
        if (!(error instanceof SettingsError)) throw error;
      }
    }), { numRuns: 300 });
  });

  it('is documented by the table in the README, generated from the code', () => {
    const readme = fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
    const table = settingsTableMarkdown();
    expect(readme.includes(table), `README.md must contain this table, generated from src/broker/settings.ts:\n\n${table}\n`).toBe(true);
  });
});

describe('topic settings in the README', () => {
  it('lists every topic config key with its Kafka name and default', async () => {
    const { defaultTopicConfig, topicConfigAliases, topicConfigKeys } = await import('../../src/wire/topic-config.js');
    const readme = fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
    const kafkaName = new Map(Object.entries(topicConfigAliases).map(([kafka, rill]) => [rill as string, kafka]));
    for (const key of topicConfigKeys) {
      const row = new RegExp(`^\\| \`${key}\` \\| \`${kafkaName.get(key)!.replace('.', '\\.')}\` \\| ${defaultTopicConfig[key]}\\b`, 'm');
      expect(readme, `README's topic settings table needs a row for ${key}`).toMatch(row);
    }
  });
});
