// Integration tests of subscription tokens (private rooms): the client's
// per-subscription getToken against the real Go server, started with
// --jwt-secret and a private namespace "secret". Subscription tokens are
// HS256 JWTs {sub, room, exp} minted here; the server accepts them up to 5 s
// past exp, ends the subscription then, and sends subscription_expiring
// --session-expiry-lead (2 s here) before.
import { test, describe, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { Client } from '../dist/index.js';
import { serverBinary, startServer, waitFor, next, tcpProxy } from './server.mjs';

const bin = serverBinary();

test('the Go server is available', (t) => {
  if (bin) return;
  if (process.env.CI === 'true') assert.fail('Go is required on CI to build the server');
  t.skip('Go is not installed: subscription token tests skipped');
});

const SECRET = 'switchboard-js-subtoken-test-secret-0123456789';
const b64 = (x) => Buffer.from(JSON.stringify(x)).toString('base64url');
function jwt(claims) {
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}
const nowS = () => Math.floor(Date.now() / 1000);
const session = (sub) => jwt({ sub, exp: nowS() + 3600 });
/** subToken grants sub the room until `inS` seconds from now (exp is whole seconds, rounded down). */
const subToken = (sub, room, inS = 3600) => jwt({ sub, room, exp: Math.floor(Date.now() / 1000 + inS) });

// Spy records the frames a client sent.
function spyClass() {
  return class Spy extends WebSocket {
    static sent = [];
    send(data) {
      Spy.sent.push(JSON.parse(data));
      super.send(data);
    }
    static subscribes(room) {
      return Spy.sent.filter((f) => f.type === 'subscribe' && f.room === room);
    }
  };
}

const clients = [];
function mk(url, user = 'alice') {
  const WS = spyClass();
  const c = new Client(url, { WebSocket: WS, transports: ['websocket'], token: session(user), initialDelay: 50, maxDelay: 300 });
  clients.push(c);
  return { c, WS };
}

// on records a subscription's events of one kind.
function record(sub, event) {
  const xs = [];
  sub.on(event, (x) => xs.push(x));
  return xs;
}

describe('subscription tokens against the Go server', { skip: !bin }, () => {
  let srv, dir;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'switchboard-subtoken-'));
    const cfg = join(dir, 'switchboard.yaml');
    writeFileSync(cfg, 'namespaces:\n  secret:\n    private: true\n');
    srv = await startServer(bin, { args: ['--config', cfg, '--jwt-secret', SECRET, '--session-expiry-lead', '2000ms'] });
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });
  after(async () => {
    await srv?.stop('SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a private room needs a token: none, another user\'s or another room\'s is refused with forbidden', async () => {
    const { c } = mk(srv.url);
    c.connect();
    const cases = {
      'secret:none': undefined,
      'secret:foreign': () => subToken('bob', 'secret:foreign'),
      'secret:other-room': () => subToken('alice', 'secret:elsewhere'),
      'secret:failing': () => Promise.reject(new Error('backend down')),
    };
    for (const [room, getToken] of Object.entries(cases)) {
      const sub = c.subscribe(room, getToken && { getToken });
      const errs = record(sub, 'error');
      const gone = next(sub, 'unsubscribed');
      await assert.rejects(sub.ready, (e) => e.code === (room === 'secret:failing' ? 'token' : 'forbidden'), room);
      await gone;
      assert.equal(sub.state, 'unsubscribed', room);
      assert.equal(errs.length, 1, room);
      assert.equal(c.subscription(room), undefined, room);
    }
    assert.equal(c.state, 'open', 'refusals do not end the connection');
  });

  test('getToken is called with the room on the first subscribe and again on every resubscribe after a reconnect', async () => {
    const proxy = await tcpProxy(srv.addr);
    try {
      const { c, WS } = mk(proxy.url);
      const calls = [];
      const sub = c.subscribe('secret:team', {
        getToken: async (room) => {
          calls.push(room);
          return subToken('alice', room);
        },
      });
      c.connect();
      const d = await sub.ready;
      assert.deepEqual(calls, ['secret:team']);
      assert.ok(d.expires_at > Date.now() + 3000 * 1000, `expires_at ${d.expires_at} is the token's exp + leeway`);
      assert.equal(WS.subscribes('secret:team')[0].data.token.split('.').length, 3, 'the subscribe carried the token');

      const pub = mk(srv.url);
      pub.c.connect();
      const msgs = record(sub, 'message');
      await pub.c.publish('secret:team', { n: 1 });
      await waitFor(() => msgs.length === 1, 'the first message');

      // The connection dies; an event is published meanwhile.
      const again = next(sub, 'subscribed');
      proxy.cut();
      await waitFor(() => c.state !== 'open', 'the client to see the drop');
      await pub.c.publish('secret:team', { n: 2 });
      const r = await again;
      assert.equal(r.resubscribed, true);
      assert.equal(r.recovered, true);
      assert.deepEqual(calls, ['secret:team', 'secret:team'], 'getToken was asked again for the resubscribe');
      const subs = WS.subscribes('secret:team');
      assert.equal(subs.length, 2);
      assert.ok(subs[1].last_event_id && subs[1].data.token, 'the resubscribe recovers and carries a token');
      await waitFor(() => msgs.length === 2, 'the message published while disconnected');
      assert.deepEqual(msgs.map((m) => m.data.n), [1, 2]);
    } finally {
      await proxy.close();
    }
  });

  test('before the token expires, subscription_expiring gets a new token from getToken; the subscription outlives the first token', async () => {
    const { c, WS } = mk(srv.url);
    let calls = 0;
    // The first token ends 1 + 5 (leeway) s from now; its warning comes 2 s before.
    const sub = c.subscribe('secret:renew', { getToken: (room) => subToken('alice', room, ++calls === 1 ? 1 : 3600) });
    const ends = record(sub, 'unsubscribed');
    const subscribed = record(sub, 'subscribed');
    c.connect();
    const first = await sub.ready;
    await waitFor(() => calls === 2, 'getToken to be called on subscription_expiring', 10000);
    await waitFor(() => sub.expiresAt > first.expires_at + 60000, 'the renewal to be answered', 5000);
    assert.equal(WS.subscribes('secret:renew').length, 2, 'the renewal is a subscribe with the new token');
    await new Promise((r) => setTimeout(r, Math.max(0, first.expires_at + 500 - Date.now())));
    assert.equal(ends.length, 0, 'the renewed subscription was ended at the first token\'s expiry');
    assert.equal(sub.state, 'subscribed');
    assert.equal(subscribed.length, 1, 'a renewal is not a new subscribed event');
    const msgs = record(sub, 'message');
    const pub = mk(srv.url);
    pub.c.connect();
    await pub.c.publish('secret:renew', 'still here');
    await waitFor(() => msgs.length === 1, 'a message after the first token expired');
  });

  test('a subscription the server ended at expiry is made again with a new token and recovers', async () => {
    const { c } = mk(srv.url);
    let calls = 0;
    // 1: ends in 6 s, warned at 4 s; 2 (the renewal): -3.2 s, already in the
    // 5 s leeway, ends 0.8-1.8 s later (exp is whole seconds) with no
    // warning (-4 s left 0-1 s, and the token could expire before the
    // subscribe reached the server); 3: after the server's unsubscribed.
    const sub = c.subscribe('secret:ended', {
      getToken: (room) => {
        calls++;
        return subToken('alice', room, calls === 1 ? 1 : calls === 2 ? -3.2 : 3600);
      },
    });
    c.connect();
    await sub.ready;
    const again = next(sub, 'subscribed', () => true, 15000);
    const r = await again;
    assert.equal(calls, 3, 'getToken: first subscribe, renewal, after the server ended it');
    assert.equal(r.resubscribed, true);
    assert.equal(r.recovered, true, 'subscribed again from the last event id');
    assert.equal(sub.state, 'subscribed');
    assert.ok(sub.expiresAt > Date.now() + 3000 * 1000);
  });
});
