// The JS SDK in headless Chromium behind a real nginx that refuses the
// WebSocket upgrade on /ws and proxies the bidirectional emulation
// (/emulation/) unbuffered. Pages using the SDK's default transports try
// the WebSocket, fall back to http_stream, chat (publish with ack, the other
// page receives), and when the server restarts (Redis engine: history
// survives) they reconnect through nginx and recover what was published
// while they were away, once each. A second run with transports ['sse']
// shows the native EventSource path.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repo, requirements, redisMissing, startRedis, freePort, listening, startServer, launch, watch, waitFor } from './lib.mjs';

const NGINX = process.env.NGINX_PATH || '/usr/sbin/nginx';
const bundle = join(repo, 'clients/js/dist/switchboard.min.js');

function missingTools() {
  const missing = [requirements()];
  if (!existsSync(NGINX)) missing.push(`nginx at ${NGINX} (apt-get install -y nginx, or set NGINX_PATH)`);
  missing.push(redisMissing());
  if (!existsSync(bundle)) missing.push(`the SDK bundle ${bundle} (cd clients/js && npm ci && npm run build)`);
  return missing.filter(Boolean).join('; ');
}

const missing = missingTools();
test('Chromium, Go, nginx, redis-server and the SDK bundle are available', (t) => {
  if (!missing) return;
  if (process.env.CI) assert.fail(`${missing}: required on CI for the fallback browser test`);
  t.skip(`${missing}: fallback browser test skipped`);
});

/**
 * startNginx runs a private nginx (its own prefix, config, pid and logs in a
 * temporary directory, in the foreground) on a free loopback port in front
 * of the node at upstream ("127.0.0.1:port"). /ws refuses every WebSocket
 * upgrade with 403; /emulation/ is proxied with buffering off, as
 * deploy/nginx/switchboard.conf does; /t/ serves the test page and the SDK
 * bundle from the directory; everything else goes to the node.
 */
async function startNginx(upstream) {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-nginx-'));
  const www = join(dir, 'www', 't');
  mkdirSync(www, { recursive: true });
  copyFileSync(bundle, join(www, 'switchboard.min.js'));
  writeFileSync(
    join(www, 'index.html'),
    `<!doctype html><meta charset="utf-8"><title>fallback</title>
<script type="module">import * as SB from '/t/switchboard.min.js'; window.SB = SB;</script>`,
  );
  const port = await freePort();
  const proxied = `
      proxy_pass http://${upstream};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;`;
  const conf = `
daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 256; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  types { text/html html; text/javascript js; }
  server {
    listen 127.0.0.1:${port};
    # The network this test stands for: no WebSockets.
    location = /ws {
      if ($http_upgrade) { return 403; }
      ${proxied}
    }
    location /emulation/ {
      ${proxied}
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_cache off;
      gzip off;
      proxy_read_timeout 3600s;
      proxy_send_timeout 3600s;
    }
    location /t/ {
      root ${join(dir, 'www')};
      add_header Cache-Control no-store;
    }
    location / {
      ${proxied}
    }
  }
}
`;
  writeFileSync(join(dir, 'nginx.conf'), conf);
  const proc = spawn(NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  const exited = new Promise((r) => proc.once('exit', r));
  let gone = false;
  exited.then(() => (gone = true));
  await waitFor(
    async () => {
      if (gone) throw new Error(`nginx exited: ${stderr}\n${existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8') : ''}`);
      return listening(port);
    },
    'nginx to listen',
    10000,
  );
  return {
    base: `http://127.0.0.1:${port}`,
    accessLog: () => readFileSync(join(dir, 'access.log'), 'utf8'),
    stop: async () => {
      if (!gone) proc.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// open loads the test page through nginx in its own browser context (its
// own connection pool) and starts a client on room with transports.
async function open(browser, base, room, transports, { url, token } = {}) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const errors = watch(page);
  const requests = [];
  page.on('request', (r) => requests.push({ url: r.url(), type: r.resourceType(), method: r.method() }));
  await page.goto(base + '/t/index.html');
  await page.waitForFunction(() => window.SB, null, { timeout: 10000 });
  await page.evaluate(
    ({ room, transports, url, token }) => {
      const log = (window.log = { fallback: [], open: [], close: [], subs: [], got: [], native: typeof EventSource == 'function' });
      const opts = { pingInterval: 1000, initialDelay: 100, maxDelay: 1000 };
      if (transports) opts.transports = transports;
      if (token) opts.token = token;
      const c = (window.c = new SB.Client(url || location.origin.replace(/^http/, 'ws') + '/ws', opts));
      c.on('fallback', (f) => log.fallback.push([f.from, f.to]));
      c.on('open', (i) => log.open.push([i.transport, c.transport]));
      c.on('close', (d) => log.close.push([d.code, d.reconnect]));
      const s = (window.s = c.subscribe(room));
      s.on('subscribed', (d) => log.subs.push(d));
      s.on('*', (ev) => ev.id && log.got.push({ id: ev.id, data: ev.data }));
      c.connect();
    },
    { room, transports, url, token },
  );
  return { ctx, page, errors, requests, log: () => page.evaluate(() => window.log) };
}

// until waits for pred(page log), and says what the page and nginx saw when it times out.
async function until(p, pred, what, nginx, ms = 15000) {
  try {
    return await waitFor(async () => pred(await p.log()), what, ms);
  } catch (e) {
    const tail = nginx.accessLog().trim().split('\n').slice(-12).join('\n');
    throw new Error(`${e.message}\npage log: ${JSON.stringify(await p.log())}\npage errors (${p.errors.length}, distinct): ${[...new Set(p.errors)].slice(0, 5).join(' | ')}\nnginx access log (tail):\n${tail}`);
  }
}

const publish = (p, data) => p.page.evaluate((data) => window.s.publish(data), data);

// What Chromium logs while a node is down or a handshake is refused; nothing else may show.
const expected = /WebSocket connection to|Failed to load resource|net::ERR_|status of 40[34]|status of 50[23]/;

describe('SDK behind nginx that refuses WebSockets', { skip: !!missing }, () => {
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

  // A page on another origin (nginx's) than the node's, with a token: the
  // stream's CORS (with credentials, and the Authorization header's
  // preflight for http_stream) and the POSTs' must let it through.
  // http_stream across origins needs the node to answer the preflight of
  // GET /emulation/stream (Authorization is not a simple header).
  for (const [tr, list, opts] of [
    ['http_stream', ['http_stream'], {}],
    ['sse', ['sse'], {}],
    ['http_stream or sse', ['http_stream', 'sse'], {}],
  ]) {
    test(`cross-origin page with a token over ${tr}`, opts, async () => {
      const secret = 'switchboard-e2e-fallback-secret-0123456789';
      const b64 = (x) => Buffer.from(JSON.stringify(x)).toString('base64url');
      const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub: 'carol', exp: Math.floor(Date.now() / 1000) + 600 })}`;
      const token = `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
      const srv = await startServer({ args: ['--jwt-secret', secret, '--allowed-origins', '127.0.0.1:*'] });
      const nginx = await startNginx(srv.addr);
      let p;
      try {
        p = await open(browser, nginx.base, 'chat:cors', list, { url: `ws://${srv.addr}/ws`, token });
        await until(p, (l) => l.subs.length === 1, 'subscribed across origins', nginx);
        const log = await p.log();
        assert.equal(log.open.length, 1);
        assert.ok(list.includes(log.open[0][0]), `connected on ${log.open[0][0]}`);
        assert.equal(await p.page.evaluate(() => window.c.info.user_id), 'carol');
        const ack = await publish(p, 'across');
        await until(p, (l) => l.got.some((e) => e.id === ack.event_id), 'the event back', nginx);
        // The refused preflight is what makes the combined list fall back.
        const preflight = list.length > 1 ? /blocked by CORS policy: Response to preflight/ : /^$/;
        assert.deepEqual(p.errors.filter((e) => !expected.test(e) && !preflight.test(e)), []);
      } finally {
        await p?.ctx.close();
        await nginx.stop();
        await srv.stop();
      }
    });
  }

  for (const [name, transports, want] of [
    ['default transports: websocket refused, http_stream', undefined, 'http_stream'],
    ["transports ['sse']: native EventSource", ['sse'], 'sse'],
  ]) {
    test(`${name}: chat, then the server restarts and the pages recover`, async () => {
      const room = `chat:fallback-${want}`;
      const engine = ['--engine', 'redis', '--redis-addr', redis.addr, '--redis-key-prefix', `fallback-e2e-${process.pid}-${want}:`];
      let a = await startServer({ args: engine });
      const port = a.addr.split(':').pop();
      const b = await startServer({ args: engine }); // a second node sharing the Redis, not behind nginx
      const nginx = await startNginx(a.addr);
      const pages = [];
      try {
        const p1 = await open(browser, nginx.base, room, transports);
        const p2 = await open(browser, nginx.base, room, transports);
        pages.push(p1, p2);
        for (const p of pages) await until(p, (l) => l.subs.length === 1, 'the first subscribed', nginx);
        for (const p of pages) {
          const log = await p.log();
          assert.deepEqual(log.open, [[want, want]], 'connected once, on the expected transport');
          assert.equal(await p.page.evaluate(() => window.c.transport), want);
          assert.deepEqual(log.fallback, transports ? [] : [['websocket', 'http_stream']]);
          assert.equal(log.native, true, 'Chromium has EventSource');
        }
        // nginx saw (and refused) the WebSocket handshakes of the default run.
        const refused = nginx.accessLog().split('\n').filter((l) => /"GET \/ws[ ?]/.test(l) && / 403 /.test(l)).length;
        assert.equal(refused, transports ? 0 : 2, `403s on /ws in nginx's access log:\n${nginx.accessLog()}`);
        // The stream, as Chromium made it: fetch for http_stream, its EventSource for sse.
        for (const p of pages) {
          const streams = p.requests.filter((r) => r.url.includes('/emulation/stream'));
          assert.deepEqual(
            streams.map((r) => [new URL(r.url).searchParams.get('format'), r.type]),
            [[want === 'sse' ? 'sse' : 'ndjson', want === 'sse' ? 'eventsource' : 'fetch']],
          );
          assert.ok(p.requests.some((r) => r.method === 'POST' && r.url.endsWith('/emulation/send')), 'the subscribe went up by POST');
        }

        // Chat: publish with ack, the other page receives.
        const ack1 = await publish(p1, { text: 'hello from 1' });
        assert.match(ack1.event_id, /^[a-z0-9]+-\d+$/);
        await until(p2, (l) => l.got.some((e) => e.id === ack1.event_id), 'page 2 to get the message', nginx);
        const ack2 = await publish(p2, { text: 'hello from 2' });
        await until(p1, (l) => l.got.some((e) => e.id === ack2.event_id), 'page 1 to get the answer', nginx);

        // The node behind nginx restarts; a message is published meanwhile on the other node.
        await a.stop(); // drains: the streams end with disconnect 1012
        const away = await b.api('POST', `/api/broadcast/${room}`, { data: { text: 'while you were away' } });
        a = await startServer({ args: [...engine, '--listen', `127.0.0.1:${port}`] });
        for (const p of pages) await until(p, (l) => l.subs.length === 2, 'subscribed again after the restart', nginx, 30000);
        for (const p of pages) {
          const log = await p.log();
          const re = log.subs[1];
          assert.deepEqual([re.recovered, re.resubscribed], [true, true], JSON.stringify(re));
          assert.ok(re.replayed >= 1, `replayed ${re.replayed}`);
          // The default run's first close is the refused WebSocket; then the drain's 1012.
          assert.deepEqual(log.close.slice(0, transports ? 1 : 2), [...(transports ? [] : [[1006, true]]), [1012, true]], JSON.stringify(log.close));
          assert.ok(log.close.every(([, again]) => again), 'every close was followed by a reconnect');
          assert.equal(log.open.length, 2);
          // Reconnects start with the transport that worked; if the node is
          // not back yet when it is tried, the rest of the list follows, so
          // the default run may come back on sse. Never on the WebSocket.
          const back = transports ? [want] : ['http_stream', 'sse'];
          assert.ok(back.includes(log.open[1][0]) && log.open[1][1] === log.open[1][0], `back on ${JSON.stringify(log.open[1])}`);
          await until(p, (l) => l.got.some((e) => e.id === away.event_id), 'the missed message', nginx);
        }
        // One session per page on the restarted node, and no more after the
        // EventSource's own retry delay (2 s): the SDK closed each stream
        // that failed, so nothing reconnects behind its back.
        await waitFor(async () => (await a.stats()).connections === 2, 'two connections on the restarted node');
        await new Promise((r) => setTimeout(r, 2500));
        assert.equal((await a.stats()).connections, 2);
        // Chat again after the restart.
        const ack3 = await publish(p2, { text: 'back' });
        await until(p1, (l) => l.got.some((e) => e.id === ack3.event_id), 'page 1 to get the message after the restart', nginx);
        await new Promise((r) => setTimeout(r, 300)); // room for a duplicate to show up
        for (const p of pages) {
          const got = (await p.log()).got;
          assert.deepEqual(
            got.map((e) => e.id),
            [ack1.event_id, ack2.event_id, away.event_id, ack3.event_id],
            'every message once, in order',
          );
          assert.deepEqual(
            p.errors.filter((e) => !expected.test(e)),
            [],
          );
        }
      } finally {
        for (const p of pages) await p.ctx.close();
        await nginx.stop();
        await a.stop();
        await b.stop();
      }
    });
  }
});
