// The admin dashboard at /admin in headless Chromium against the real
// server: it asks for the API key, its counters follow connections opening
// and closing and equal GET /api/stats, its room table lists members, and
// its Kick button disconnects a user.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirements, startServer, launch, watch, waitFor, repo } from './lib.mjs';

const missing = requirements();
test('Chromium and Go are available', (t) => {
  if (!missing) return;
  if (process.env.CI) assert.fail(`${missing}: required on CI for the browser tests`);
  t.skip(`${missing}: browser tests skipped`);
});

const shots = process.env.UPDATE_SCREENSHOTS ? join(repo, 'docs', 'img') : join(tmpdir(), 'switchboard-e2e-shots');
mkdirSync(shots, { recursive: true });

const KEY = 'e2e-admin-key-0123456789abcdef';
// The counters the dashboard shows, by the /api/stats field they show.
const COUNTERS = ['connections', 'connections_total', 'rooms', 'messages_in', 'messages_out', 'publications', 'slow_consumer_disconnects', 'queue_drops'];

describe('admin dashboard', { skip: !!missing }, () => {
  let browser, srv;
  before(async () => {
    browser = await launch();
    srv = await startServer({ key: KEY });
  });
  after(async () => {
    await browser?.close();
    await srv?.stop();
  });

  // shown reads the dashboard's counters as numbers.
  const shown = (page) =>
    page.evaluate((keys) => {
      const out = {};
      for (const k of keys) out[k] = Number(document.querySelector(`[data-stat="${k}"]`).textContent.replace(/,/g, ''));
      return out;
    }, COUNTERS);

  // agrees waits until the dashboard shows exactly what /api/stats
  // answers (and what pred wants), and returns it.
  async function agrees(page, what, pred = () => true) {
    let last;
    await waitFor(async () => {
      const api = await srv.stats();
      const ui = await shown(page);
      const want = Object.fromEntries(COUNTERS.map((k) => [k, api[k]]));
      last = { ui, want };
      return pred(api) && JSON.stringify(ui) === JSON.stringify(want);
    }, `${what}: dashboard ${JSON.stringify(last?.ui)} vs /api/stats ${JSON.stringify(last?.want)}`);
    return last.want;
  }

  // clients opens n raw WebSockets from a page of the server's origin, each
  // subscribed to room; window.socks holds them.
  async function clients(n, room) {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(srv.base + '/healthz');
    await page.evaluate(
      ({ n, room, url }) =>
        Promise.all(
          Array.from({ length: n }, () => {
            const ws = new WebSocket(url);
            (window.socks ||= []).push(ws);
            ws.closes = [];
            ws.onclose = (e) => ws.closes.push(e.code);
            return new Promise((resolve) => {
              ws.onmessage = (e) => {
                const m = JSON.parse(e.data);
                if (m.type === 'connection_established') {
                  ws.user = m.data.user_id;
                  ws.send(JSON.stringify({ type: 'subscribe', id: 's', room }));
                }
                if (m.type === 'subscribed') resolve();
              };
            });
          }),
        ),
      { n, room, url: srv.base.replace('http', 'ws') + '/ws' },
    );
    return { page, ctx };
  }

  test('asks for the key, then its counters follow connections and equal /api/stats; Kick disconnects', async () => {
    const ctx = await browser.newContext({ viewport: { width: 1200, height: 900 } });
    const page = await ctx.newPage();
    const errors = watch(page);
    await page.goto(srv.base + '/admin');

    // No key yet: the socket is refused with 4001 and the page asks.
    await page.waitForSelector('#key-form:not([hidden])');
    assert.equal(await page.locator('#status').innerText(), 'key needed');
    // Nothing of the dashboard shows under the key form until the key is accepted.
    assert.equal(await page.locator('#dashboard').isHidden(), true);
    assert.equal(await page.locator('#waiting').isHidden(), true);
    await page.fill('#key', 'not-the-key');
    await page.press('#key', 'Enter');
    await page.waitForFunction(() => /not valid/.test(document.getElementById('key-why').textContent), null, { timeout: 15000 });
    assert.equal(await page.locator('#dashboard').isHidden(), true);
    await page.fill('#key', KEY);
    await page.press('#key', 'Enter');
    await page.waitForFunction(() => document.getElementById('status').textContent === 'live', null, { timeout: 15000 });
    assert.equal(await page.locator('#key-form').isHidden(), true);
    assert.equal(await page.locator('#dashboard').isVisible(), true);

    const base = await agrees(page, 'at start');

    // Three connections open and join a room.
    const c = await clients(3, 'room:e2e');
    await agrees(page, 'three open', (s) => s.connections === base.connections + 3);
    await page.waitForSelector('tr[data-room="room:e2e"]');
    assert.equal(await page.locator('tr[data-room="room:e2e"] td.num').innerText(), '3');

    // Traffic: one publishes, all three receive.
    await c.page.evaluate(() => window.socks[0].send(JSON.stringify({ type: 'message', id: 'm1', room: 'room:e2e', data: { text: 'hi' } })));
    await agrees(page, 'after a publish', (s) => s.publications === base.publications + 1);

    // Two close.
    await c.page.evaluate(() => {
      window.socks[1].close(1000);
      window.socks[2].close(1000);
    });
    await agrees(page, 'two closed', (s) => s.connections === base.connections + 1);
    assert.equal(await page.locator('tr[data-room="room:e2e"] td.num').innerText(), '1');

    // Kick the last one from the room table: it is closed with 4006.
    const user = await c.page.evaluate(() => window.socks[0].user);
    await page.click(`tr[data-room="room:e2e"] button.kick[data-user="${user}"]`);
    await c.page.waitForFunction(() => window.socks[0].closes[0] === 4006, null, { timeout: 15000 });
    await page.waitForFunction((u) => document.getElementById('action').textContent === `disconnected 1 connection(s) of ${u}`, user, { timeout: 15000 });
    const end = await agrees(page, 'after the kick', (s) => s.connections === base.connections);
    const closes = (await srv.stats()).closes;
    assert.equal(closes['4006'], 1);
    assert.equal(closes['1000'], 2);
    assert.equal(await page.locator('tr[data-room="room:e2e"]').count(), 0);
    assert.equal(end.connections_total, base.connections_total + 3);

    assert.deepEqual(errors, []);
    await c.ctx.close();
    await ctx.close();
  });

  test('without an API key the dashboard opens from this machine without asking', async () => {
    const open = await startServer();
    try {
      const ctx = await browser.newContext();
      const page = await ctx.newPage();
      const errors = watch(page);
      await page.goto(open.base + '/admin');
      await page.waitForFunction(() => document.getElementById('status').textContent === 'live', null, { timeout: 15000 });
      assert.equal(await page.locator('#dashboard').isVisible(), true);
      assert.equal(await page.locator('#key-form').isHidden(), true);
      assert.equal(await page.locator('#waiting').isHidden(), true);
      assert.deepEqual(errors, []);
      await ctx.close();
    } finally {
      await open.stop();
    }
  });

  test('screenshot of the dashboard', async () => {
    const ctx = await browser.newContext({ viewport: { width: 1200, height: 1120 } });
    await ctx.addInitScript((k) => sessionStorage.setItem('switchboard.admin.apiKey', k), KEY);
    const page = await ctx.newPage();
    await page.goto(srv.base + '/admin');
    await page.waitForFunction(() => document.getElementById('status').textContent === 'live', null, { timeout: 15000 });
    // Some life for the charts: connections come and go, messages flow.
    const a = await clients(4, 'chat:lobby');
    const b = await clients(2, 'match:42');
    for (let i = 0; i < 40; i++) {
      const burst = 1 + (i % 5);
      await a.page.evaluate(
        ({ i, burst }) => {
          for (let j = 0; j < burst; j++) window.socks[(i + j) % 4].send(JSON.stringify({ type: 'message', room: 'chat:lobby', data: { text: `m${i}.${j}` } }));
        },
        { i, burst },
      );
      if (i === 20) await b.page.evaluate(() => window.socks[1].close(1000));
      await page.waitForTimeout(250);
    }
    await page.screenshot({ path: join(shots, 'admin.png'), fullPage: true });
    await a.ctx.close();
    await b.ctx.close();
    await ctx.close();
  });
});
