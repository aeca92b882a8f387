/**
 * The console in a real browser (headless Chromium through playwright-core) against a real broker
 * process: a topic with records, a group member that committed part of them, and the page showing
 * the topic, its end offsets and the group's lag. Waits on page content, never on time.
 *
 * The screenshot goes to a temporary directory; with RILL_CONSOLE_SCREENSHOT=docs/console.png it
 * also refreshes the committed one.
 */
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin, Consumer, Producer, type Message } from '../../src/client/index.js';
import { repoRoot, startBroker, tempDir, type BrokerProcess } from '../helpers/broker-process.js';

const chromiumPath = '/usr/bin/chromium';
const chromiumArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let broker: BrokerProcess;
let browser: Browser | null = null;
let consumer: Consumer | null = null;

beforeAll(async () => {
  broker = await startBroker({ http: '127.0.0.1:0' });
});

afterAll(async () => {
  await browser?.close();
  await consumer?.close().catch(() => undefined);
  await broker?.kill();
});

describe('console', () => {
  it('shows topics, end offsets and a group\'s lag', async () => {
    const topic = 'orders';
    const admin = new Admin({ bootstrap: broker.bootstrap });
    await admin.createTopics([{ topic, partitions: 2 }]);
    admin.close();
    const producer = new Producer({ bootstrap: broker.bootstrap });
    const perPartition = 40;
    await Promise.all(Array.from({ length: perPartition * 2 }, (_, i) => producer.send({ topic, partition: i % 2, value: `order ${i}` })));
    await producer.close();

    // A member that processes 10 records of each partition, commits them, and stays in the group.
    const committedPerPartition = 10;
    const committed = new Set<number>();
    let bothCommitted: () => void;
    const done = new Promise<void>((resolve) => (bothCommitted = resolve));
    // The client id is user-controlled text: the page must show it as text, not markup.
    consumer = new Consumer({ bootstrap: broker.bootstrap, groupId: 'billing', clientId: '<img src=x onerror=alert(1)>', fromBeginning: true, autoCommit: false });
    consumer.subscribe([topic]);
    const member = consumer;
    void member.run({
      eachMessage: async (message: Message) => {
        if (message.offset !== BigInt(committedPerPartition - 1) || committed.has(message.partition)) return;
        await member.commit([{ topic, partition: message.partition, offset: BigInt(committedPerPartition) }]);
        committed.add(message.partition);
        if (committed.size === 2) bothCommitted();
      },
    });
    await done;

    // Live traffic on another topic while the page is open, so the throughput charts move.
    const clicks = 'clickstream';
    const admin2 = new Admin({ bootstrap: broker.bootstrap });
    await admin2.createTopics([{ topic: clicks, partitions: 1 }]);
    admin2.close();
    const background = new Producer({ bootstrap: broker.bootstrap, acks: 1 });
    const ticker = setInterval(() => {
      for (let i = 0; i < 50; i++) void background.send({ topic: clicks, value: `click ${i}` }).catch(() => undefined);
    }, 20);

    browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
    const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
    const dialogs: string[] = [];
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      void dialog.dismiss();
    });
    await page.goto(`http://127.0.0.1:${broker.httpPort}/`);

    const lag = String(perPartition - committedPerPartition);
    await page.locator('#topics tbody tr', { hasText: topic }).first().waitFor();
    await page.waitForFunction(({ topic, end }) => {
      const rows = [...document.querySelectorAll('#topics tbody tr')].map((row) => [...row.querySelectorAll('td')].map((cell) => cell.textContent));
      return rows.filter((cells) => cells[0] === topic && cells[3] === end).length === 2;
    }, { topic, end: String(perPartition) });
    await page.waitForFunction(({ lag, committed }) => {
      const group = [...document.querySelectorAll('#groups .group')].find((g) => g.querySelector('h3')?.textContent?.startsWith('billing'));
      if (group === undefined) return false;
      const rows = [...group.querySelectorAll('table')].flatMap((t) => [...t.querySelectorAll('tbody tr')]).map((row) => [...row.querySelectorAll('td')].map((cell) => cell.textContent));
      return rows.filter((cells) => cells[2] === committed && cells[4] === lag).length === 2;
    }, { lag, committed: String(committedPerPartition) });
    // The hostile client id is shown literally and never became an element.
    await page.locator('#groups td', { hasText: '<img src=x onerror=alert(1)>' }).first().waitFor();
    expect(await page.locator('#groups img').count()).toBe(0);
    // Charts fill as polls come in: wait for a few points of the live traffic.
    await page.waitForFunction(() => (document.querySelector('#chart-records polyline')?.getAttribute('points') ?? '').split(' ').length >= 5);
    clearInterval(ticker);
    await background.close();

    const text = await page.locator('main').innerText();
    expect(text).toContain(topic);
    expect(text).toContain('billing');
    expect(dialogs).toEqual([]);

    const screenshot = path.join(tempDir('console'), 'console.png');
    await page.screenshot({ path: screenshot, fullPage: true });
    expect(fs.statSync(screenshot).size).toBeGreaterThan(10_000);
    const committedCopy = process.env.RILL_CONSOLE_SCREENSHOT;
    if (committedCopy !== undefined && committedCopy !== '') fs.copyFileSync(screenshot, path.resolve(repoRoot, committedCopy));
  });
});
