/**
 * What a broker process loads. Every module it holds makes V8 run old-generation collections
 * sooner under produce load (docs/metrics.md, Measured cost: loading a few unused packages cost
 * +50% broker CPU on produce). So a broker that nobody asks for HTTP, started without a config
 * file and logging JSON, must not load node:http, node:tls, the YAML parser, pino-pretty, the client
 * library, the authentication code (no users, auth not required), the quota code (no quota set)
 * or, without --etcd, the etcd client and gRPC; the first HTTP request loads node:http.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Producer } from '../../src/client/producer.js';
import { Admin } from '../../src/client/admin.js';
import { repoRoot, startBroker, tempDir, type BrokerProcess } from '../helpers/broker-process.js';

let broker: BrokerProcess | undefined;
afterEach(async () => {
  await broker?.kill();
  broker = undefined;
});

function loaded(logFile: string): string[] {
  return fs.readFileSync(logFile, 'utf8').split('\n').filter((line) => line.length > 0);
}

describe('broker process footprint', () => {
  it('serves produce without loading node:http, node:tls, yaml, pino-pretty, the client library, the auth or quota code, or etcd3/gRPC, until HTTP is asked for', async () => {
    const logFile = path.join(tempDir('modules'), 'modules.log');
    broker = await startBroker({
      http: '127.0.0.1:0',
      env: { ...process.env, RILL_MODULE_LOG: logFile, NODE_OPTIONS: `--import ${path.join(repoRoot, 'test/helpers/record-modules.mjs')}` },
    });
    const admin = new Admin({ bootstrap: broker.bootstrap });
    await admin.createTopics([{ topic: 'footprint', partitions: 2 }]);
    admin.close();
    const producer = new Producer({ bootstrap: broker.bootstrap });
    await Promise.all(Array.from({ length: 200 }, (_, i) => producer.send({ topic: 'footprint', value: `v${i}` })));
    await producer.close();

    const before = loaded(logFile);
    expect(before.some((m) => m.includes('/dist/src/broker/broker.js')), 'the log records the broker itself').toBe(true);
    const unwanted = before.filter((m) => m === 'node:http' || m === 'cjs:node:http' || m === 'cjs:http' || /node_modules\/(yaml|pino-pretty)\//.test(m) || m === 'cjs:yaml' || m === 'cjs:pino-pretty' || m.includes('/dist/src/client/')
      || m === 'node:tls' || m.includes('/dist/src/security/') || m.endsWith('/dist/src/broker/auth.js') || m.endsWith('/dist/src/broker/tls.js')
      || m.endsWith('/dist/src/broker/quotas.js') || m.endsWith('/dist/src/lib/quota.js')
      || /node_modules\/(etcd3|@grpc|cockatiel)\//.test(m) || /^cjs:(etcd3|@grpc|cockatiel)/.test(m) || m.endsWith('/dist/src/cluster/etcd-client.js') || m.endsWith('/dist/src/cluster/membership.js'));
    expect(unwanted).toEqual([]);

    // The first request loads node:http, and is served.
    const status = await new Promise<number>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: broker!.httpPort!, path: '/healthz' }, (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      }).on('error', reject);
    });
    expect(status).toBe(200);
    expect(loaded(logFile).some((m) => m === 'node:http' || m.endsWith(':http'))).toBe(true);
  });
});
