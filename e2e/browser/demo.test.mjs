// The demo page at / in headless Chromium against the real server: two
// pages chat, presence and join/leave notices follow them, the connection
// state is shown in words through a server restart, and the match centre
// shows what the HTTP API and the publish button publish.
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

// Screenshots go to docs/img with UPDATE_SCREENSHOTS=1 (npm run
// screenshots), to a temporary directory otherwise.
const shots = process.env.UPDATE_SCREENSHOTS ? join(repo, 'docs', 'img') : join(tmpdir(), 'switchboard-e2e-shots');
mkdirSync(shots, { recursive: true });

// Chromium logs a console error for each failed WebSocket attempt while a
// server is down; those are expected in the restart test.
// While the node is down the SDK's attempts fail: the WebSocket, and the
// HTTP transports it falls back to (fetch logs a refused connection).
const benign = (e) => /WebSocket connection to .* failed|Failed to load resource: net::ERR_CONNECTION_REFUSED/.test(e);

describe('demo page', { skip: !!missing }, () => {
  let browser;
  before(async () => {
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
  });

  // open loads the demo in a new browser context and waits until it is
  // connected; name, if set, is put in the tab's sessionStorage first.
  async function open(srv, name) {
    const ctx = await browser.newContext({ viewport: { width: 1200, height: 760 } });
    const page = await ctx.newPage();
    const errors = watch(page);
    if (name) await ctx.addInitScript((n) => sessionStorage.getItem('switchboard.demo.name') || sessionStorage.setItem('switchboard.demo.name', n), name);
    await page.goto(srv.base + '/');
    await page.waitForFunction(() => document.getElementById('state').textContent === 'connected', null, { timeout: 15000 });
    return { page, ctx, errors };
  }
  const text = (page, sel) => page.locator(sel).innerText();
  const say = async (page, words) => {
    await page.fill('#text', words);
    await page.press('#text', 'Enter');
  };
  // settled counts sel's elements once the count has not moved for 1.5 s
  // (at most 15 s): join and leave notices after a reconnect may be held for
  // the server's 1 s announcement window and land a moment later.
  const settled = async (page, sel) => {
    let n = await page.locator(sel).count();
    let since = Date.now();
    for (const until = Date.now() + 15000; Date.now() < until && Date.now() - since < 1500; ) {
      await page.waitForTimeout(100);
      const m = await page.locator(sel).count();
      if (m !== n) [n, since] = [m, Date.now()];
    }
    return n;
  };
  const sees = (page, words) =>
    page.waitForFunction((w) => [...document.querySelectorAll('#messages li')].some((li) => li.textContent.includes(w)), words, { timeout: 15000 });

  test('two pages chat; presence and join/leave follow them; the state is told in words across a restart', async () => {
    let srv = await startServer();
    try {
      const ada = await open(srv, 'Ada');
      const grace = await open(srv, 'Grace');
      assert.match(await text(ada.page, '#me'), /^as anon-/);

      // Presence: both see two people, and Ada saw Grace join.
      for (const p of [ada.page, grace.page]) await p.waitForFunction(() => document.getElementById('count').textContent === '2', null, { timeout: 15000 });
      await sees(ada.page, ' joined');

      await say(ada.page, 'Hello Grace');
      await sees(grace.page, 'Hello Grace');
      await say(grace.page, 'Hi Ada!');
      await sees(ada.page, 'Hi Ada!');
      // Names come with the messages, and the member list learns them.
      assert.match(await text(ada.page, '#messages'), /Ada \(you\): Hello Grace/);
      assert.match(await text(ada.page, '#messages'), /Grace: Hi Ada!/);
      await ada.page.waitForFunction(() => document.getElementById('members').textContent.includes('Grace'));

      // A third page joining late gets the recent messages from history.
      const late = await open(srv, 'Lin');
      await sees(late.page, 'Hello Grace');
      await sees(late.page, 'Hi Ada!');
      await late.ctx.close();
      await sees(ada.page, ' left');
      await ada.page.waitForFunction(() => document.getElementById('count').textContent === '2');

      // Restart the server on the same address: the pages say they are
      // reconnecting, with a countdown, then connected again, and chat on.
      // Failed attempts update the one status line (the attempt count
      // grows) and add nothing to the chat.
      const addr = srv.addr;
      const lines = await ada.page.locator('#messages li').count();
      await srv.stop('SIGTERM');
      await ada.page.waitForFunction(() => /^(reconnecting in \d+ s|connecting)$/.test(document.getElementById('state').textContent), null, { timeout: 15000 });
      const seen = new Set();
      const until = Date.now() + 8000;
      while (Date.now() < until && !seen.has('reconnecting')) {
        const s = await text(ada.page, '#state');
        if (/^reconnecting in \d+ s$/.test(s)) seen.add('reconnecting');
        await ada.page.waitForTimeout(20);
      }
      assert.ok(seen.has('reconnecting'), 'the page never showed "reconnecting in N s"');
      await ada.page.waitForFunction(() => /attempt [3-9]/.test(document.getElementById('state-detail').textContent), null, { timeout: 30000 });
      assert.equal(await ada.page.locator('#messages li').count(), lines, 'reconnect attempts added chat lines');
      assert.equal(await ada.page.locator('#notice').isHidden(), true);
      srv = await startServer({ args: ['--listen', addr] });
      for (const p of [ada.page, grace.page]) await p.waitForFunction(() => document.getElementById('state').textContent === 'connected', null, { timeout: 30000 });
      await say(grace.page, 'Still here after the restart');
      await sees(ada.page, 'Still here after the restart');

      // Kicked by the server API: the page stops and says why, once, in
      // one notice; its presence list is emptied; Rejoin brings it back.
      await grace.page.waitForFunction(() => document.getElementById('count').textContent === '2', null, { timeout: 15000 });
      const before = await settled(grace.page, '#messages li');
      const user = (await text(grace.page, '#me')).replace(/^as /, '');
      await srv.api('POST', `/api/users/${user}/disconnect`);
      await grace.page.waitForFunction(() => document.getElementById('state').textContent === 'disconnected', null, { timeout: 15000 });
      assert.equal(await text(grace.page, '#state-detail'), 'kicked (4006)');
      assert.equal(await grace.page.locator('#notice').isVisible(), true);
      assert.match(await text(grace.page, '#notice-text'), /kicked/);
      assert.equal(await grace.page.locator('#messages li').count(), before, 'the kick added chat lines besides the notice');
      assert.equal(await grace.page.locator('#members li').count(), 0);
      assert.equal(await text(grace.page, '#me'), '');
      await sees(ada.page, ' left');
      await ada.page.waitForFunction(() => document.getElementById('count').textContent === '1', null, { timeout: 15000 });
      await grace.page.click('#rejoin');
      await grace.page.waitForFunction(() => document.getElementById('state').textContent === 'connected', null, { timeout: 15000 });
      assert.equal(await grace.page.locator('#notice').isHidden(), true);
      for (const p of [ada.page, grace.page]) await p.waitForFunction(() => document.getElementById('count').textContent === '2', null, { timeout: 15000 });
      await say(grace.page, 'Back after the kick');
      await sees(ada.page, 'Back after the kick');

      for (const p of [ada, grace]) assert.deepEqual(p.errors.filter((e) => !benign(e)), []);
      await ada.ctx.close();
      await grace.ctx.close();
    } finally {
      await srv.stop();
    }
  });

  test('two tabs of one browser are two people with two names', async () => {
    const srv = await startServer();
    try {
      // One context: the tabs share localStorage, as two tabs of one browser do.
      const ctx = await browser.newContext({ viewport: { width: 1200, height: 760 } });
      const tabs = [];
      for (let i = 0; i < 2; i++) {
        const page = await ctx.newPage();
        const errors = watch(page);
        await page.goto(srv.base + '/');
        await page.waitForFunction(() => document.getElementById('state').textContent === 'connected', null, { timeout: 15000 });
        tabs.push({ page, errors });
      }
      const [a, b] = await Promise.all(tabs.map((t) => t.page.inputValue('#name')));
      assert.match(a, /^guest-\d+$/);
      assert.notEqual(a, b, 'two tabs got the same name');
      await say(tabs[0].page, 'from the first tab');
      await say(tabs[1].page, 'from the second tab');
      await sees(tabs[0].page, 'from the second tab');
      assert.match(await text(tabs[0].page, '#messages'), new RegExp(`${b}: from the second tab`));
      assert.match(await text(tabs[0].page, '#messages'), new RegExp(`${a} \\(you\\): from the first tab`));
      // A reload keeps the tab's name.
      await tabs[1].page.reload();
      await tabs[1].page.waitForFunction(() => document.getElementById('state').textContent === 'connected', null, { timeout: 15000 });
      assert.equal(await tabs[1].page.inputValue('#name'), b);
      for (const t of tabs) assert.deepEqual(t.errors, []);
      await ctx.close();
    } finally {
      await srv.stop();
    }
  });

  test('the match centre shows updates published over the HTTP API and by the button', async () => {
    const srv = await startServer();
    try {
      const fan = await open(srv, 'Fan');
      assert.equal(await text(fan.page, '#clock'), 'waiting for kick-off');

      // A backend publishes through the API (loopback, no key needed).
      await srv.api('POST', '/api/broadcast/demo-match:1', {
        type: 'match_data',
        data: { match_id: '1', home_team: 'Testers', away_team: 'Mockers', score: { home: 0, away: 0 }, minute: 1, status: 'live' },
      });
      await srv.api('POST', '/api/broadcast/demo-match:1', { type: 'score_update', data: { score: { home: 2, away: 1 }, minute: 50 } });
      await srv.api('POST', '/api/broadcast/demo-match:1', { type: 'commentary', data: { minute: 50, text: 'A goal published over the API' } });
      await fan.page.waitForFunction(() => document.getElementById('score').textContent === '2 : 1', null, { timeout: 15000 });
      assert.equal(await text(fan.page, '#home'), 'Testers');
      assert.equal(await text(fan.page, '#away'), 'Mockers');
      assert.equal(await text(fan.page, '#clock'), '50′');
      assert.match(await text(fan.page, '#commentary'), /50′\s*A goal published over the API/);

      // A page opened later rebuilds the same state from the room's history.
      const late = await open(srv, 'Late');
      await late.page.waitForFunction(() => document.getElementById('score').textContent === '2 : 1', null, { timeout: 15000 });
      assert.equal(await text(late.page, '#home'), 'Testers');
      assert.match(await text(late.page, '#commentary'), /A goal published over the API/);

      // The button: the first step of the script kicks off a new match.
      await fan.page.click('#publish');
      await fan.page.waitForFunction(() => document.getElementById('home').textContent === 'Rovers', null, { timeout: 15000 });
      // The note is written when the HTTP answer arrives, which may be after
      // the live event it caused.
      await fan.page.waitForFunction(() => document.getElementById('publish-note').textContent !== '', null, { timeout: 15000 });
      assert.equal(await text(fan.page, '#publish-note'), 'published match_data + commentary');
      assert.equal(await text(fan.page, '#score'), '0 : 0');
      await late.page.waitForFunction(() => document.getElementById('home').textContent === 'Rovers', null, { timeout: 15000 });

      // Another match is another room: nothing of match 1 shows there.
      await fan.page.selectOption('#match-id', '2');
      await fan.page.waitForFunction(() => document.getElementById('clock').textContent === 'waiting for kick-off');
      assert.equal(await text(fan.page, '#match-room'), 'demo-match:2');

      for (const p of [fan, late]) assert.deepEqual(p.errors, []);
      await fan.ctx.close();
      await late.ctx.close();
    } finally {
      await srv.stop();
    }
  });

  test('with an API key the button asks for it', async () => {
    const srv = await startServer({ key: 'e2e-demo-key-0123456789abcdef' });
    try {
      const fan = await open(srv, 'Fan');
      await fan.page.click('#publish');
      await fan.page.waitForSelector('#key-form:not([hidden])');
      assert.match(await text(fan.page, '#publish-note'), /API key/);
      await fan.page.fill('#key', 'wrong-key');
      await fan.page.press('#key', 'Enter');
      await fan.page.waitForFunction(() => /not valid/.test(document.getElementById('publish-note').textContent), null, { timeout: 15000 });
      await fan.page.fill('#key', 'e2e-demo-key-0123456789abcdef');
      await fan.page.press('#key', 'Enter');
      await fan.page.waitForFunction(() => document.getElementById('home').textContent === 'Rovers', null, { timeout: 15000 });
      assert.equal(await fan.page.locator('#key-form').isHidden(), true);
      // 401 and 403 answers are logged by Chromium as failed resources.
      assert.deepEqual(fan.errors.filter((e) => !/status of 40[13]/.test(e)), []);
      await fan.ctx.close();
    } finally {
      await srv.stop();
    }
  });

  test('with authentication configured, the page says why it cannot connect', async () => {
    const srv = await startServer({ args: ['--jwt-secret', 'e2e-jwt-secret-0123456789abcdef0123456789', '--auth-timeout', '1s'] });
    try {
      const ctx = await browser.newContext();
      const page = await ctx.newPage();
      const errors = watch(page);
      await page.goto(srv.base + '/');
      await page.waitForFunction(() => document.getElementById('state').textContent === 'disconnected', null, { timeout: 15000 });
      assert.equal(await text(page, '#state-detail'), 'unauthorized (4001)');
      assert.match(await text(page, '#notice-text'), /--allow-anonymous/);
      assert.deepEqual(errors, []);
      await ctx.close();
    } finally {
      await srv.stop();
    }
  });

  test('screenshot of the demo', async () => {
    const srv = await startServer();
    try {
      const ada = await open(srv, 'Ada');
      const grace = await open(srv, 'Grace');
      await ada.page.waitForFunction(() => document.getElementById('count').textContent === '2', null, { timeout: 15000 });
      await say(ada.page, 'Hi Grace, the match is on!');
      await sees(grace.page, 'the match is on');
      await say(grace.page, 'Watching it here too');
      await sees(ada.page, 'Watching it here');
      for (let i = 0; i < 6; i++) {
        await ada.page.click('#publish');
        await ada.page.waitForFunction((n) => /^published/.test(document.getElementById('publish-note').textContent) && document.querySelectorAll('#commentary li').length >= n, i + 1, { timeout: 15000 });
        await ada.page.evaluate(() => (document.getElementById('publish-note').textContent = ''));
      }
      await ada.page.waitForTimeout(1300); // let the score's flash fade
      await ada.page.screenshot({ path: join(shots, 'demo.png') });
      await ada.ctx.close();
      await grace.ctx.close();
    } finally {
      await srv.stop();
    }
  });
});
