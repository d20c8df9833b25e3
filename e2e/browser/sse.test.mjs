// A native EventSource in headless Chromium against GET /sse with the Redis
// engine: it receives room events with their EPOCH-OFFSET ids, and when the
// server restarts it reconnects on its own, sends Last-Event-ID, and gets
// exactly the events published meanwhile (through a second node sharing
// the Redis), in order, once each.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { requirements, redisMissing, startRedis, startServer, launch, watch, waitFor } from './lib.mjs';

const missing = [requirements(), redisMissing()].filter(Boolean).join('; ');
test('Chromium, Go and redis-server are available', (t) => {
  if (!missing) return;
  if (process.env.CI) assert.fail(`${missing}: required on CI for the SSE browser test`);
  t.skip(`${missing}: SSE browser test skipped`);
});

describe('EventSource on /sse', { skip: !!missing }, () => {
  let browser;
  let redis;
  before(async () => {
    browser = await launch();
    redis = await startRedis();
  });
  after(async () => {
    await browser?.close();
    await redis?.stop();
  });

  test('resumes by Last-Event-ID after the server restarts (Redis engine)', async () => {
    const engine = ['--engine', 'redis', '--redis-addr', redis.addr, '--redis-key-prefix', `sse-e2e-${process.pid}:`];
    let a = await startServer({ args: engine });
    const port = a.addr.split(':').pop();
    const b = await startServer({ args: engine });
    try {
      const ctx = await browser.newContext();
      const page = await ctx.newPage();
      const errors = watch(page);
      await page.goto(a.base + '/healthz');
      await page.evaluate(() => {
        window.got = [];
        window.subs = [];
        window.opens = 0;
        const es = new EventSource('/sse?room=ticker');
        es.onopen = () => window.opens++;
        es.onmessage = (e) => window.got.push({ id: e.lastEventId, env: JSON.parse(e.data) });
        es.addEventListener('subscribed', (e) => window.subs.push(JSON.parse(e.data).data));
      });
      await waitFor(() => page.evaluate(() => window.subs.length === 1), 'the first subscribed');

      const ids = [];
      for (const n of [1, 2]) ids.push((await a.api('POST', '/api/broadcast/ticker', { data: { n } })).event_id);
      await waitFor(() => page.evaluate(() => window.got.length === 2), 'two live events');

      await a.stop(); // drains: the stream ends with disconnect 1012
      for (const n of [3, 4, 5]) ids.push((await b.api('POST', '/api/broadcast/ticker', { data: { n } })).event_id);
      a = await startServer({ args: [...engine, '--listen', `127.0.0.1:${port}`] });

      await waitFor(() => page.evaluate(() => window.got.length >= 5), 'the missed events after the restart', 20000);
      await new Promise((r) => setTimeout(r, 300)); // room for a duplicate to show up
      const got = await page.evaluate(() => window.got);
      assert.deepEqual(
        got.map((e) => e.id),
        ids,
        'every event once, in order, with its EPOCH-OFFSET as the SSE id',
      );
      assert.deepEqual(
        got.map((e) => e.env.data.n),
        [1, 2, 3, 4, 5],
      );
      const subs = await page.evaluate(() => window.subs);
      assert.equal(subs.length, 2, 'subscribed once per stream');
      assert.equal(subs[1].recovered, true, 'the second stream recovered');
      assert.equal(subs[1].replayed, 3);
      assert.ok((await page.evaluate(() => window.opens)) >= 2, 'EventSource reconnected on its own');
      // While the node was down, Chromium logs failed reconnects; nothing else.
      assert.deepEqual(
        errors.filter((e) => !/EventSource|net::ERR_CONNECTION_REFUSED|Failed to load resource/.test(e)),
        [],
      );
      await ctx.close();
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});
