// Integration tests of the HTTP transports: the client on Node (fetch; sse
// is read with fetch, Node 20 has no EventSource) against the real Go
// server's bidirectional emulation (GET /emulation/stream, POST
// /emulation/send), and the fallback from a refused WebSocket.
import { test, describe, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { connect as tcpConnect } from 'node:net';
import WebSocket from 'ws';
import { Client } from '../dist/index.js';
import { serverBinary, startServer, deadURL, waitFor, next, tcpProxy } from './server.mjs';

const bin = serverBinary();

test('the Go server is available', (t) => {
  if (bin) return;
  if (process.env.CI === 'true') assert.fail('Go is required on CI to build the server');
  t.skip('Go is not installed: emulation integration tests skipped');
});

const clients = [];
function mk(url, opts = {}) {
  const c = new Client(url, { WebSocket, initialDelay: 50, maxDelay: 300, pingInterval: 1000, ...opts });
  clients.push(c);
  return c;
}

function collect(sub) {
  const evs = [];
  sub.on('*', (ev) => ev.id && evs.push(ev));
  return evs;
}

// Refused is a WebSocket whose handshakes all fail (as behind a proxy that
// refuses the upgrade): it dials a port nothing listens on.
let dead = '';
class Refused extends WebSocket {
  static n = 0;
  constructor(url, protocols) {
    super(dead, protocols);
    Refused.n++;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe('emulation against the Go server', { skip: !bin }, () => {
  let srv;
  before(async () => {
    srv = await startServer(bin);
    dead = await deadURL();
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });
  after(async () => {
    await srv?.stop('SIGKILL');
  });

  for (const tr of ['http_stream', 'sse']) {
    test(`${tr}: connect, subscribe, publish with ack, receive (both ways with a WebSocket client), history, presence, rpc, heartbeat`, async () => {
      const a = mk(srv.url, { transports: [tr], pingInterval: 300 });
      const b = mk(srv.url, { transports: ['websocket'] });
      const sa = a.subscribe(`chat:${tr}`);
      const sb = b.subscribe(`chat:${tr}`);
      const ga = collect(sa);
      const gb = collect(sb);
      const closes = [];
      a.on('close', (x) => closes.push(x));
      let pongs = 0;
      a.on('pong', () => pongs++);
      a.connect();
      b.connect();
      await Promise.all([sa.ready, sb.ready]);
      assert.equal(a.state, 'open');
      assert.equal(a.transport, tr);
      assert.equal(a.info.transport, tr);
      assert.equal(b.transport, 'websocket');
      assert.match(a.info.user_id, /^anon-/);

      const ack = await a.publish(`chat:${tr}`, { text: 'hi' });
      assert.match(ack.event_id, /^[a-z0-9]+-1$/);
      await waitFor(() => gb.length === 1 && ga.length === 1, 'both to get the first message');
      assert.deepEqual([gb[0].id, gb[0].data, gb[0].user_id], [ack.event_id, { text: 'hi' }, a.info.user_id]);
      const ack2 = await sb.publish({ text: 'yo' }, { type: 'chat' });
      await waitFor(() => ga.length === 2, 'a to get the WebSocket client message');
      assert.deepEqual(
        ga.map((e) => [e.type, e.id]),
        [
          ['message', ack.event_id],
          ['chat', ack2.event_id],
        ],
      );
      // Many publishes at once: batched POSTs, order kept, every ack.
      const acks = await Promise.all(Array.from({ length: 30 }, (_, i) => sa.publish({ n: i })));
      await waitFor(() => gb.length === 32, 'b to get the 30 publishes');
      assert.deepEqual(
        gb.slice(2).map((e) => e.data.n),
        [...Array(30).keys()],
        'in the order sent',
      );
      assert.deepEqual(
        gb.slice(2).map((e) => e.id),
        acks.map((x) => x.event_id),
      );

      const page = await a.history(`chat:${tr}`);
      assert.deepEqual(
        page.events.map((e) => e.id),
        [ack.event_id, ack2.event_id, ...acks.map((x) => x.event_id)],
      );
      const pr = await a.presence(`chat:${tr}`);
      assert.equal(pr.clients, 2);
      const viaRPC = await a.rpc('presence', { room: `chat:${tr}`, counts_only: true });
      assert.equal(viaRPC.clients, 2);
      await assert.rejects(a.publish('bad room', 1), { code: 'invalid_room' });
      assert.equal(a.state, 'open');

      // The client's ping goes up by POST, the pong comes down: no 4008.
      await sleep(1500);
      assert.ok(pongs >= 3, `only ${pongs} pongs in 1.5 s with a ping every 300 ms`);
      assert.deepEqual(closes, []);

      const left = next(sb, 'user_left');
      a.close();
      assert.equal((await left).user_id, a.info.user_id);
      await waitFor(() => a.state === 'closed', 'a to close');
    });

    test(`${tr}: the stream is cut: reconnect, recover what was published meanwhile (recovered, once each)`, async () => {
      const proxy = await tcpProxy(srv.addr);
      try {
        const a = mk(proxy.url, { transports: [tr] });
        const b = mk(srv.url);
        const sa = a.subscribe(`chat:cut-${tr}`);
        const ga = collect(sa);
        const subs = [];
        sa.on('subscribed', (d) => subs.push(d));
        a.connect();
        b.connect();
        await sa.ready;
        const acks = [];
        for (let i = 0; i < 5; i++) acks.push((await b.publish(`chat:cut-${tr}`, i)).event_id);
        await waitFor(() => ga.length === 5, 'a to get 5 events');
        proxy.refuse = true;
        const lost = next(a, 'close');
        proxy.cut();
        const cl = await lost;
        assert.deepEqual([cl.code, cl.reconnect], [1006, true]);
        for (let i = 5; i < 15; i++) acks.push((await b.publish(`chat:cut-${tr}`, i)).event_id);
        const mine = a.publish(`chat:cut-${tr}`, 'a'); // queued while away
        proxy.refuse = false;
        const re = await waitFor(() => subs[1], 'a to subscribe again');
        assert.deepEqual([re.recovered, re.replayed, re.resubscribed], [true, 10, true]);
        assert.equal(a.transport, tr);
        acks.push((await mine).event_id);
        await waitFor(() => ga.length >= 16, 'a to get all 16 events');
        await sleep(100);
        assert.deepEqual(
          ga.map((e) => e.id),
          acks,
          'every event once, in order',
        );
      } finally {
        await proxy.close();
      }
    });

    test(`${tr}: a POST answered 404 (unknown session) ends the connection; the client reconnects and goes on`, async () => {
      let bogus = false;
      const posts = [];
      const f = (u, init) => {
        if (init?.method === 'POST') {
          const body = bogus ? init.body.replace(/"session":"[^"]*"/, '"session":"nope"') : init.body;
          return fetch(u, { ...init, body }).then((r) => (posts.push(r.status), r));
        }
        return fetch(u, init);
      };
      const a = mk(srv.url, { transports: [tr], fetch: f, pingInterval: 0 });
      const sa = a.subscribe(`chat:404-${tr}`);
      a.connect();
      await sa.ready;
      bogus = true;
      const lost = next(a, 'close');
      const p = a.publish(`chat:404-${tr}`, 'again');
      const cl = await lost;
      assert.deepEqual([cl.code, cl.reconnect], [1006, true]);
      assert.equal(posts.at(-1), 404);
      bogus = false;
      const ack = await p; // sent again with its id on the next session
      assert.ok(ack.event_id);
      await waitFor(() => a.state === 'open' && sa.state === 'subscribed', 'a open again');
      const page = await a.history(`chat:404-${tr}`);
      assert.deepEqual(
        page.events.map((e) => e.data),
        ['again'],
      );
    });
  }

  test('fallback: the WebSocket is refused, http_stream connects; the events say so', async () => {
    Refused.n = 0;
    const a = mk(srv.url, { WebSocket: Refused });
    const falls = [];
    a.on('fallback', (x) => falls.push(x));
    const open = next(a, 'open');
    const s = a.subscribe('chat:fallback');
    a.connect();
    const info = await open;
    assert.equal(info.transport, 'http_stream');
    assert.equal(a.transport, 'http_stream');
    assert.deepEqual(
      falls.map((x) => [x.from, x.to]),
      [['websocket', 'http_stream']],
    );
    assert.equal(Refused.n, 1);
    await s.ready;
    const ack = await s.publish('via fallback');
    assert.ok(ack.event_id);
  });

  test('server restarts (drain, then kill): reconnect over the emulation, recovered:false surfaced, chat again', async () => {
    const a = mk(srv.url, { transports: ['http_stream', 'sse'] });
    const b = mk(srv.url, { transports: ['sse'] });
    const sa = a.subscribe('chat:restart');
    const sb = b.subscribe('chat:restart');
    const ga = collect(sa);
    const infoA = [];
    const infoB = [];
    sa.on('subscribed', (d) => infoA.push(d));
    sb.on('subscribed', (d) => infoB.push(d));
    a.connect();
    b.connect();
    await Promise.all([sa.ready, sb.ready]);
    await b.publish('chat:restart', 'before');
    await waitFor(() => ga.length === 1, 'a gets "before"');
    for (const [signal, code] of [
      ['SIGTERM', 1012],
      ['SIGKILL', 1006],
    ]) {
      const n = infoA.length;
      const closed = next(a, 'close');
      await srv.stop(signal);
      const cl = await closed;
      assert.deepEqual([cl.code, cl.reconnect], [code, true]);
      srv = await startServer(bin, { listen: srv.addr });
      await waitFor(() => infoA.length === n + 1 && infoB.length === n + 1, 'both to subscribe again', 20000);
      for (const d of [infoA.at(-1), infoB.at(-1)]) {
        assert.equal(d.recovered, false); // an in-memory server restarted: new epoch
        assert.equal(d.resubscribed, true);
      }
      // a starts with http_stream, which worked; if that attempt comes before
      // the node is back, sse is tried next, so either may carry it now.
      assert.ok(['http_stream', 'sse'].includes(a.transport), a.transport);
      assert.equal(b.transport, 'sse');
      const ack = await b.publish('chat:restart', signal);
      await waitFor(() => ga.some((e) => e.id === ack.event_id), `a gets the message after ${signal}`);
    }
    assert.deepEqual(
      ga.map((e) => e.data),
      ['before', 'SIGTERM', 'SIGKILL'],
    );
  });
});

// reachable reports whether a TCP listener answers at host:port.
const reachable = (hostport) =>
  new Promise((resolve) => {
    const i = hostport.lastIndexOf(':');
    const sock = tcpConnect({ host: hostport.slice(0, i), port: +hostport.slice(i + 1), timeout: 1000 }, () => {
      sock.destroy();
      resolve(true);
    });
    sock.on('error', () => resolve(false));
    sock.on('timeout', () => {
      sock.destroy();
      resolve(false);
    });
  });

describe('emulation with the Redis engine', { skip: !bin }, () => {
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });

  for (const tr of ['http_stream', 'sse']) {
    test(`${tr}: the server restarts, the client reconnects and recovers what a second node published meanwhile`, async (t) => {
      const redis = process.env.SWITCHBOARD_TEST_REDIS || '127.0.0.1:6379';
      if (!(await reachable(redis))) {
        if (process.env.CI === 'true') assert.fail(`no Redis at ${redis}`);
        t.skip(`no Redis at ${redis}`);
        return;
      }
      const args = ['--engine', 'redis', '--redis-addr', redis, '--redis-key-prefix', `sbjs-emu-${process.pid}x${Date.now()}:`];
      let a = await startServer(bin, { args });
      const b = await startServer(bin, { args });
      try {
        const room = `chat:redis-${tr}`;
        const c = mk(a.url, { transports: [tr] });
        const s = c.subscribe(room);
        const got = collect(s);
        const subs = [];
        s.on('subscribed', (d) => subs.push(d));
        c.connect();
        await s.ready;
        const first = (await c.publish(room, 'before')).event_id;
        await waitFor(() => got.length === 1, 'the first event');
        const closed = next(c, 'close');
        await a.stop('SIGTERM');
        assert.equal((await closed).code, 1012);
        const missed = [];
        const other = mk(b.url, { transports: [tr] }).connect();
        for (let i = 0; i < 3; i++) missed.push((await other.publish(room, `missed ${i}`)).event_id);
        a = await startServer(bin, { listen: a.addr, args });
        await waitFor(() => subs.length === 2, 'subscribed again', 20000);
        assert.deepEqual([subs[1].resubscribed, subs[1].recovered, subs[1].replayed], [true, true, 3]);
        assert.equal(c.transport, tr);
        await waitFor(() => got.length >= 4, 'the missed events');
        await sleep(100);
        assert.deepEqual(
          got.map((e) => e.id),
          [first, ...missed],
          'every event once, in order',
        );
      } finally {
        await a.stop('SIGKILL');
        await b.stop('SIGKILL');
      }
    });
  }
});

// With --jwt-secret: the token goes in the Authorization header (no auth
// frame); a bad one is refused with 401 -> close 4001, and the client stops.
const SECRET = 'switchboard-js-emulation-test-secret-0123456789';
const b64 = (x) => Buffer.from(JSON.stringify(x)).toString('base64url');
function jwt(claims) {
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

describe('emulation with authentication', { skip: !bin }, () => {
  let srv;
  before(async () => {
    srv = await startServer(bin, { args: ['--jwt-secret', SECRET] });
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });
  after(async () => {
    await srv?.stop('SIGKILL');
  });

  for (const tr of ['http_stream', 'sse']) {
    test(`${tr}: a good token connects as its user; a bad one stops with unauthorized`, async () => {
      const ok = mk(srv.url, { transports: [tr], token: jwt({ sub: 'alice', exp: Math.floor(Date.now() / 1000) + 600 }) });
      const opened = next(ok, 'open');
      ok.connect();
      assert.equal((await opened).user_id, 'alice');
      const ack = await ok.publish('chat:auth', 1);
      assert.ok(ack.event_id);

      const bad = mk(srv.url, { transports: [tr], token: 'not-a-jwt' });
      const err = next(bad, 'error');
      bad.connect();
      const e = await err;
      assert.deepEqual([e.code, e.closeCode], ['unauthorized', 4001]);
      await waitFor(() => bad.state === 'closed', 'bad to stop');
    });
  }
});
