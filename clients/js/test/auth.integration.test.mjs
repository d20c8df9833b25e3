// Integration tests of authentication: the client (on Node, with the ws
// package) against the real Go server started with --jwt-secret. Tokens are
// HS256 JWTs minted here with node:crypto. The server sends session_expiring
// --session-expiry-lead (2 s here) before the session ends (the token's exp
// plus the 5 s leeway it was accepted with) and closes with 4000 then unless
// the client refreshed.
import { test, describe, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import WebSocket from 'ws';
import { Client } from '../dist/index.js';
import { serverBinary, startServer, waitFor, next } from './server.mjs';

const bin = serverBinary();

test('the Go server is available', (t) => {
  if (bin) return;
  if (process.env.CI === 'true') assert.fail('Go is required on CI to build the server');
  t.skip('Go is not installed: auth integration tests skipped');
});

const SECRET = 'switchboard-js-auth-test-secret-0123456789'; // HS256 needs 32+ bytes
const LEAD = 2000; // --session-expiry-lead, ms
// The server accepts a token up to 5 s past its exp (clock skew) and keeps
// the session that long too: a session ends at exp + LEEWAY.
const LEEWAY = 5000;

const b64 = (x) => Buffer.from(JSON.stringify(x)).toString('base64url');
/** jwt mints an HS256 token with claims, signed with secret. */
function jwt(claims, secret = SECRET) {
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}
const nowS = () => Math.floor(Date.now() / 1000);
/** token for user sub that expires `inS` seconds from now (exp has 1 s precision). */
const token = (sub, inS = 3600) => jwt({ sub, exp: nowS() + inS });
const expOf = (tok) => JSON.parse(Buffer.from(tok.split('.')[1], 'base64url').toString()).exp;
/** endOf is when the server ends a session opened with tok, in ms. */
const endOf = (tok) => expOf(tok) * 1000 + LEEWAY;
const sleepUntil = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms - Date.now())));

// Spy records what each client sent and how many sockets it made.
function spyClass() {
  return class Spy extends WebSocket {
    static sockets = 0;
    static sent = [];
    constructor(url, protocols) {
      super(url, protocols);
      Spy.sockets++;
    }
    send(data) {
      Spy.sent.push(JSON.parse(data));
      super.send(data);
    }
    static frames(type) {
      return Spy.sent.filter((f) => f.type === type);
    }
  };
}

const clients = [];
function mk(url, opts = {}) {
  const WS = spyClass();
  // WebSocket only: these tests are about the WebSocket (emulation.integration.test.mjs has the rest).
  const c = new Client(url, { WebSocket: WS, transports: ['websocket'], initialDelay: 50, maxDelay: 300, pingInterval: 1000, ...opts });
  const log = { close: [], error: [], open: [] };
  for (const k of Object.keys(log)) c.on(k, (x) => log[k].push(x));
  clients.push(c);
  return { c, WS, log };
}

// Room events (with an id) a subscription received.
function collect(sub) {
  const evs = [];
  sub.on('*', (ev) => ev.id && evs.push(ev));
  return evs;
}

describe('authentication against the Go server', { skip: !bin }, () => {
  let srv;
  before(async () => {
    srv = await startServer(bin, {
      args: ['--jwt-secret', SECRET, '--session-expiry-lead', `${LEAD}ms`, '--auth-timeout', '1s'],
    });
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });
  after(async () => {
    await srv?.stop('SIGKILL');
  });

  test('first-frame auth: connected as the token\'s sub; bad or missing tokens close 4001, reported, no reconnect', async () => {
    const good = mk(srv.url, { token: token('alice') });
    const established = next(good.c, 'connection_established');
    // Rejected: another secret, expired (beyond the server's 5 s leeway), no
    // sub, from getToken, and no token at all (the --auth-timeout of 1 s).
    let calls = 0;
    const bad = [
      mk(srv.url, { token: jwt({ sub: 'mallory', exp: nowS() + 3600 }, 'another-secret-of-at-least-32-bytes!!') }),
      mk(srv.url, { token: token('alice', -60) }),
      mk(srv.url, { token: jwt({ exp: nowS() + 3600 }) }),
      mk(srv.url, { getToken: () => (calls++, 'not.a.jwt') }),
      mk(srv.url),
    ];
    const t0 = Date.now();
    for (const x of [good, ...bad]) x.c.connect();

    const est = await established;
    const auth = good.WS.sent[0];
    assert.equal(auth.type, 'auth', 'the first frame is auth');
    assert.equal(est.id, auth.id, 'connection_established answers the auth frame');
    assert.equal(good.c.state, 'open');
    assert.equal(good.c.info.user_id, 'alice');
    assert.equal(good.c.info.expires_at, endOf(auth.data.token));
    // Authenticated: the default permission lets it subscribe and publish.
    const sub = good.c.subscribe('chat:auth-first');
    await sub.ready;
    const ack = await good.c.publish('chat:auth-first', 'hi');
    await waitFor(() => sub.lastEventId === ack.event_id, 'alice to get her own message');

    await waitFor(() => bad.every((x) => x.c.state === 'closed'), 'every bad client to stop', 5000);
    assert.ok(Date.now() - t0 >= 900, 'the client without a token waited for the auth timeout');
    for (const [i, { c, WS, log }] of bad.entries()) {
      assert.equal(log.open.length, 0, `bad[${i}] was let in`);
      assert.deepEqual(
        log.close.map((d) => [d.code, d.name, d.reconnect]),
        [[4001, 'unauthorized', false]],
        `bad[${i}] close`,
      );
      assert.deepEqual(
        log.error.map((e) => [e.code, e.closeCode]),
        [['unauthorized', 4001]],
        `bad[${i}] error`,
      );
      assert.ok(log.error[0].message, `bad[${i}] reports the server's reason`);
      assert.equal(c.state, 'closed');
      assert.equal(WS.sockets, 1, `bad[${i}] made one socket`);
    }
    assert.match(bad[4].log.close[0].reason, /auth timeout/);
    assert.match(bad[1].log.close[0].reason, /expired/);
    // No reconnect loop: nothing more after several backoff periods.
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(
      bad.map((x) => x.WS.sockets),
      [1, 1, 1, 1, 1],
    );
    assert.equal(calls, 1, 'getToken called once');
    assert.equal(good.c.state, 'open');
  });

  test('expiry and refresh: session_expiring -> getToken -> refresh -> refreshed; the connection outlives the first token', async () => {
    const first = token('bob', 3);
    const exp1 = endOf(first);
    const tokens = [first];
    const bob = mk(srv.url, {
      getToken: () => {
        const t = tokens.length ? tokens.shift() : token('bob', 3600);
        bob.given.push(t);
        return t;
      },
    });
    bob.given = [];
    const pub = mk(srv.url, { token: token('pat') });
    const expiring = next(bob.c, 'session_expiring');
    const refreshed = next(bob.c, 'refreshed');
    const sub = bob.c.subscribe('chat:auth-refresh');
    const got = collect(sub);
    bob.c.connect();
    pub.c.connect();
    await sub.ready;
    assert.equal(bob.c.info.user_id, 'bob');
    assert.equal(bob.c.info.expires_at, exp1);
    const conn = bob.c.info.connection_id;

    const se = await expiring;
    assert.equal(se.data.expires_at, exp1);
    assert.ok(Date.now() >= exp1 - LEAD - 100 && Date.now() < exp1, 'session_expiring comes the lead before exp');
    const rf = await refreshed;
    assert.equal(bob.given.length, 2, 'getToken: once to connect, once to refresh');
    const refreshes = bob.WS.frames('refresh');
    assert.equal(refreshes.length, 1);
    assert.equal(refreshes[0].id, rf.id);
    assert.equal(refreshes[0].data.token, bob.given[1]);
    assert.equal(rf.data.expires_at, endOf(bob.given[1]));

    // Past the first token's exp (when the server would have closed with
    // 4000), the same connection still gets room events.
    await sleepUntil(exp1 + 2000);
    const ack = await pub.c.publish('chat:auth-refresh', 'after the old exp');
    await waitFor(() => got.some((e) => e.id === ack.event_id), 'bob to get the message published after the old exp');
    assert.deepEqual(bob.log.close, []);
    assert.deepEqual(bob.log.error, []);
    assert.equal(bob.c.state, 'open');
    assert.equal(bob.c.info.connection_id, conn, 'the same connection');
    assert.equal(bob.WS.sockets, 1);
    assert.equal(bob.given.length, 2);
  });

  test('expiry without refresh: close 4000, then getToken and a reconnect with the fresh token; without getToken: stop', async () => {
    // carol's getToken hands out a cached token until it has expired (a
    // common pattern): on session_expiring it gets the same token again,
    // which cannot extend the session, so the server closes with 4000 at
    // exp; then getToken mints a fresh one and the client reconnects.
    let cached = token('carol', 3);
    const exp1 = endOf(cached);
    const calls = [];
    const carol = mk(srv.url, {
      getToken: () => {
        if (endOf(cached) <= Date.now() + 100) cached = token('carol', 3600);
        calls.push({ at: Date.now(), token: cached });
        return cached;
      },
    });
    // dave has only a token: nothing to refresh or reconnect with.
    const dave = mk(srv.url, { token: token('dave', 3) });
    const pub = mk(srv.url, { token: token('pat') });
    const sub = carol.c.subscribe('chat:auth-expire');
    const got = collect(sub);
    const subs = [];
    sub.on('subscribed', (d) => subs.push(d));
    // Published while carol is away: recovered after the reconnect.
    let away;
    carol.c.on('close', () => (away ??= pub.c.publish('chat:auth-expire', 'while away')));
    const daveExpiring = next(dave.c, 'session_expiring');
    for (const x of [carol, dave, pub]) x.c.connect();
    await sub.ready;
    const conn1 = carol.c.info.connection_id;
    await daveExpiring;

    const cl = await next(carol.c, 'close', () => true, 15000);
    assert.deepEqual([cl.code, cl.name, cl.reconnect], [4000, 'session_expired', true]);
    assert.ok(Date.now() >= exp1 - 100, '4000 comes at exp');
    await next(carol.c, 'open');
    assert.equal(carol.c.info.user_id, 'carol');
    assert.notEqual(carol.c.info.connection_id, conn1, 'a new connection');
    const last = calls.at(-1);
    assert.ok(last.at >= exp1 - 100, 'getToken was called after the close');
    assert.notEqual(last.token, calls[0].token, 'with a fresh token');
    assert.deepEqual(
      carol.WS.frames('auth').map((f) => f.data.token),
      [calls[0].token, last.token],
    );
    assert.equal(carol.c.info.expires_at, endOf(last.token));
    // One getToken on session_expiring, and no refresh with the same token
    // (it would get session_expiring again at once: a refresh storm).
    assert.equal(calls.length, 3, `getToken calls: ${calls.length}`);
    assert.deepEqual(carol.WS.frames('refresh'), []);
    assert.deepEqual(carol.log.error, []);

    const awayAck = await away;
    await waitFor(() => subs.length === 2, 'carol to subscribe again');
    assert.deepEqual([subs[1].resubscribed, subs[1].recovered], [true, true]);
    await waitFor(() => got.some((e) => e.id === awayAck.event_id), 'carol to recover the message published while away');
    const ack = await pub.c.publish('chat:auth-expire', 'after');
    await waitFor(() => got.some((e) => e.id === ack.event_id), 'carol to get a live message');
    assert.deepEqual(
      got.map((e) => e.data),
      ['while away', 'after'],
    );
    assert.equal(carol.WS.sockets, 2);

    await waitFor(() => dave.c.state === 'closed', 'dave to stop', 3000);
    assert.deepEqual(
      dave.log.close.map((d) => [d.code, d.reconnect]),
      [[4000, false]],
    );
    assert.deepEqual(
      dave.log.error.map((e) => [e.code, e.closeCode]),
      [['session_expired', 4000]],
    );
    assert.equal(dave.WS.sockets, 1);
  });
});
