// Browser tests: the minified bundle in real headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core) against the real Go server.
// A tiny static server on 127.0.0.1 serves the page and the bundle; the Go
// server allows that origin.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFileSync, existsSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { chromium } from 'playwright-core';
import { serverBinary, startServer, tcpProxy } from './server.mjs';

const chromePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const haveChrome = existsSync(chromePath);
const bin = haveChrome ? serverBinary() : null;

test('Chromium and the Go server are available', (t) => {
  if (haveChrome && bin) return;
  const what = haveChrome ? 'Go' : `Chromium (${chromePath}; apt-get install chromium)`;
  if (process.env.CI === 'true') assert.fail(`${what} is required on CI for the browser tests`);
  t.skip(`${what} is not available: browser tests skipped`);
});

const PAGE = `<!doctype html><meta charset="utf-8"><title>switchboard test</title>
<script type="module">import * as SB from '/switchboard.min.js'; window.SB = SB;</script>`;

describe('in headless Chromium', { skip: !(haveChrome && bin) }, () => {
  let srv, web, origin, browser, context;
  const pageErrors = [];

  before(async () => {
    srv = await startServer(bin, { args: ['--allowed-origins', '127.0.0.1:*'] });
    const bundle = readFileSync(new URL('../dist/switchboard.min.js', import.meta.url));
    web = createServer((req, res) => {
      if (req.url === '/') res.writeHead(200, { 'content-type': 'text/html' }).end(PAGE);
      else if (req.url === '/switchboard.min.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(bundle);
      else res.writeHead(404).end();
    });
    await new Promise((r) => web.listen(0, '127.0.0.1', r));
    origin = `http://127.0.0.1:${web.address().port}`;
    browser = await chromium.launch({
      executablePath: chromePath,
      args: ['--headless', '--no-sandbox', '--no-first-run', '--disable-gpu', '--disable-quic', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      timeout: 60000,
    });
    context = await browser.newContext();
  });

  after(async () => {
    await browser?.close();
    await new Promise((r) => (web ? web.close(r) : r()));
    await srv?.stop('SIGKILL');
  });

  // openPage loads the bundle in a new page, connects and subscribes to
  // room. The page counts its WebSocket constructions (connection attempts)
  // in window.dials and keeps what it receives in window.got.
  async function openPage(room, url = srv.url, ctx = context) {
    const page = await ctx.newPage();
    page.on('pageerror', (e) => pageErrors.push(e));
    await page.goto(origin + '/');
    await page.waitForFunction(() => window.SB);
    await page.evaluate(
      async ({ url, room }) => {
        window.dials = 0;
        class Counted extends WebSocket {
          constructor(u, p) {
            super(u, p);
            window.dials++;
          }
        }
        window.got = [];
        window.subs = [];
        window.closes = [];
        window.c = new SB.Client(url, { WebSocket: Counted, initialDelay: 50, maxDelay: 200 });
        c.on('close', (e) => closes.push(e));
        window.sub = c.subscribe(room, (ev) => ev.id && got.push({ id: ev.id, data: ev.data }));
        sub.on('subscribed', (d) => subs.push(d));
        c.connect();
        await sub.ready;
      },
      { url, room },
    );
    return page;
  }

  const publish = (page, text) => page.evaluate((text) => sub.publish({ text }).then((a) => a.event_id), text);
  const receives = (page, id) => page.waitForFunction((id) => got.some((e) => e.id === id), id, { timeout: 15000 });
  const setHidden = (page, hidden) =>
    page.evaluate((hidden) => {
      if (!('hiddenForTest' in window)) {
        Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (window.hiddenForTest ? 'hidden' : 'visible') });
        Object.defineProperty(document, 'hidden', { configurable: true, get: () => window.hiddenForTest });
      }
      window.hiddenForTest = hidden;
      document.dispatchEvent(new Event('visibilitychange'));
    }, hidden);

  test('two pages chat; after a server restart they reconnect and are told recovered:false; a hidden page waits until visible', async () => {
    const p1 = await openPage('chat:web');
    const p2 = await openPage('chat:web');
    const p3 = await openPage('chat:web');

    // Chat both ways.
    const id1 = await publish(p1, 'hello from 1');
    await receives(p2, id1);
    const id2 = await publish(p2, 'hello from 2');
    await receives(p1, id2);
    assert.deepEqual(await p2.evaluate(() => got.map((e) => e.data.text)), ['hello from 1', 'hello from 2']);

    await setHidden(p3, true);
    assert.equal(await p3.evaluate(() => document.visibilityState), 'hidden');
    assert.equal(await p3.evaluate(() => c.state), 'open', 'hiding leaves an open connection alone');

    // Restart the server (graceful drain: close 1012). Its in-memory
    // history is gone, so the pages cannot recover and must be told.
    await srv.stop('SIGTERM');
    srv = await startServer(bin, { listen: srv.addr, args: ['--allowed-origins', '127.0.0.1:*'] });
    for (const p of [p1, p2]) {
      await p.waitForFunction(() => subs.length === 2, null, { timeout: 15000 });
      const [first, again] = await p.evaluate(() => subs);
      assert.equal(first.resubscribed, false);
      assert.deepEqual([again.resubscribed, again.recovered], [true, false]);
      assert.equal(await p.evaluate(() => closes[0].code), 1012);
    }
    const id3 = await publish(p1, 'after restart');
    await receives(p2, id3);

    // The hidden page saw the close but made no attempt while hidden.
    await p3.waitForFunction(() => closes.length >= 1);
    assert.equal(await p3.evaluate(() => closes[0].code), 1012);
    // Long enough for several attempts at maxDelay 200 ms had it not waited.
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(await p3.evaluate(() => [c.state, dials, subs.length]), ['reconnecting', 1, 1]);

    await setHidden(p3, false);
    await p3.waitForFunction(() => subs.length === 2, null, { timeout: 15000 });
    const again = await p3.evaluate(() => subs[1]);
    assert.deepEqual([again.resubscribed, again.recovered], [true, false]);
    assert.equal(await p3.evaluate(() => dials), 2, 'one attempt once visible');
    const id4 = await publish(p2, 'welcome back');
    await receives(p3, id4);
    assert.deepEqual(await p3.evaluate(() => got.map((e) => e.data.text)), ['hello from 1', 'hello from 2', 'welcome back']);

    assert.deepEqual(pageErrors, []);
    for (const p of [p1, p2, p3]) await p.close();
  });

  // reachable reports whether a TCP listener answers at host:port.
  const reachable = (hostport) =>
    new Promise((resolve) => {
      const [host, port] = [hostport.slice(0, hostport.lastIndexOf(':')), +hostport.slice(hostport.lastIndexOf(':') + 1)];
      const sock = tcpConnect({ host, port, timeout: 1000 }, () => {
        sock.destroy();
        resolve(true);
      });
      sock.on('error', () => resolve(false));
      sock.on('timeout', () => {
        sock.destroy();
        resolve(false);
      });
    });

  test('with the Redis engine, a restarted server\'s pages reconnect and recover every missed event', async (t) => {
    const redis = process.env.SWITCHBOARD_TEST_REDIS || '127.0.0.1:6379';
    if (!(await reachable(redis))) {
      if (process.env.CI === 'true') assert.fail(`no Redis at ${redis}`);
      t.skip(`no Redis at ${redis}`);
      return;
    }
    const args = ['--allowed-origins', '127.0.0.1:*', '--engine', 'redis', '--redis-addr', redis, '--redis-key-prefix', `sbjs${process.pid}x${Date.now()}:`];
    let a = await startServer(bin, { args });
    const b = await startServer(bin, { args }); // a second node, for publishing while a is down
    try {
      const p1 = await openPage('chat:restart', a.url);
      const p2 = await openPage('chat:restart', a.url);
      const id0 = await publish(p1, 'before the restart');
      await receives(p2, id0);

      await a.stop('SIGTERM');
      // While the pages' server is down, the other node publishes through
      // its HTTP API (a backend would); the room's stream lives in Redis.
      const missed = [];
      for (let i = 0; i < 5; i++) {
        const r = await fetch(`http://${b.addr}/api/broadcast/chat:restart`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ type: 'message', data: { text: `missed ${i}` } }),
        });
        assert.equal(r.status, 200, await r.clone().text());
        missed.push((await r.json()).event_id);
      }
      a = await startServer(bin, { listen: a.addr, args });
      for (const p of [p1, p2]) {
        await p.waitForFunction(() => subs.length === 2, null, { timeout: 15000 });
        const again = await p.evaluate(() => subs[1]);
        assert.deepEqual([again.resubscribed, again.recovered, again.replayed], [true, true, 5]);
        for (const id of missed) await receives(p, id);
        const ids = await p.evaluate(() => got.map((e) => e.id));
        assert.deepEqual(ids, [id0, ...missed], 'every event once, in order');
      }
      assert.deepEqual(pageErrors, []);
      for (const p of [p1, p2]) await p.close();
    } finally {
      await a.stop('SIGKILL');
      await b.stop('SIGKILL');
    }
  });

  test('offline: the socket dies, no attempt until online, then every missed event is recovered', async () => {
    const proxy = await tcpProxy(srv.addr);
    try {
      const p1 = await openPage('chat:recover', proxy.url);
      // The publisher lives in another context, which stays online.
      const other = await browser.newContext();
      const p2 = await openPage('chat:recover', srv.url, other);
      const ids = [await publish(p2, 'm0')];
      await receives(p1, ids[0]);

      await context.setOffline(true);
      assert.equal(await p1.evaluate(() => navigator.onLine), false);
      proxy.cut(); // the TCP connection dies: the page sees 1006
      await p1.waitForFunction(() => closes.length === 1);
      assert.deepEqual(await p1.evaluate(() => [closes[0].code, closes[0].reconnect]), [1006, true]);
      for (let i = 1; i <= 5; i++) ids.push(await publish(p2, `m${i}`));
      // Long enough for several attempts at maxDelay 200 ms had it not waited.
      await new Promise((r) => setTimeout(r, 1500));
      assert.deepEqual(await p1.evaluate(() => [c.state, dials]), ['reconnecting', 1]);

      await context.setOffline(false);
      await p1.waitForFunction(() => subs.length === 2, null, { timeout: 15000 });
      const again = await p1.evaluate(() => subs[1]);
      assert.deepEqual([again.resubscribed, again.recovered, again.replayed], [true, true, 5]);
      ids.push(await publish(p2, 'm6'));
      await receives(p1, ids.at(-1));
      assert.deepEqual(await p1.evaluate(() => got.map((e) => e.id)), ids, 'every event once, in order');
      assert.equal(await p1.evaluate(() => dials), 2);
      await other.close();
      assert.deepEqual(pageErrors, []);
    } finally {
      await context.setOffline(false);
      await proxy.close();
    }
  });
});
