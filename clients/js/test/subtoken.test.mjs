// Unit tests of per-subscription getToken (private rooms) against a fake
// WebSocket: when getToken is called, what the subscribe frames carry, and
// how subscription_expiring and the server's own unsubscribed are handled.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '../dist/index.js';
import { fakeSocketClass, flush } from './fake.mjs';

function connected(opts = {}) {
  const WS = fakeSocketClass();
  const c = new Client('ws://test/ws', { WebSocket: WS, transports: ['websocket'], pingInterval: 0, initialDelay: 1, maxDelay: 1, ...opts });
  c.connect();
  WS.last.establish();
  return { c, WS };
}

const subscribes = (ws) => ws.sent.filter((f) => f.type === 'subscribe');

// answer replies to the last subscribe on ws.
function answer(ws, data = {}) {
  const f = subscribes(ws).at(-1);
  ws.frame({ type: 'subscribed', id: f.id, room: f.room, data: { members: 1, position: 'e-0', ...data } });
}

test('getToken(room) is called for the first subscribe and again after a reconnect; its token is in data.token', async () => {
  const { c, WS } = connected();
  const calls = [];
  const sub = c.subscribe('secret:1', { getToken: async (room) => (calls.push(room), `tok${calls.length}`) });
  await flush();
  assert.deepEqual(calls, ['secret:1']);
  assert.deepEqual(subscribes(WS.last).map((f) => f.data), [{ token: 'tok1' }]);
  answer(WS.last, { expires_at: 1234 });
  await sub.ready;
  assert.equal(sub.expiresAt, 1234);
  WS.last.frame({ type: 'message', room: 'secret:1', id: 'e-1', data: 'x' });

  WS.last.closeWith(1012);
  await new Promise((r) => setTimeout(r, 5));
  WS.last.establish();
  await flush();
  assert.deepEqual(calls, ['secret:1', 'secret:1']);
  const again = subscribes(WS.last);
  assert.equal(again.length, 1);
  assert.deepEqual([again[0].data, again[0].last_event_id], [{ token: 'tok2' }, 'e-1']);
  c.close();
});

test('a token that arrives after its connection died is not sent', async () => {
  const { c, WS } = connected();
  let release;
  c.subscribe('secret:1', { getToken: () => new Promise((r) => (release = r)) });
  const first = WS.last;
  await flush();
  first.closeWith(1012);
  release('late');
  await flush();
  assert.equal(subscribes(first).length, 0);
  c.close();
});

test('subscription_expiring: a renewal with a new token and last_event_id, no new subscribed event, not a room event', async () => {
  const { c, WS } = connected();
  let n = 0;
  const sub = c.subscribe('secret:1', { getToken: () => `tok${++n}` });
  await flush();
  answer(WS.last, { expires_at: 1000 });
  await sub.ready;
  const seen = [];
  sub.on('*', (ev) => seen.push(ev.type));
  const subscribed = [];
  sub.on('subscribed', (d) => subscribed.push(d));
  WS.last.frame({ type: 'subscription_expiring', room: 'secret:1', data: { expires_at: 1000 } });
  await flush();
  const renew = subscribes(WS.last).at(-1);
  assert.deepEqual([renew.data, renew.last_event_id], [{ token: 'tok2' }, 'e-0']);
  answer(WS.last, { expires_at: 5000, recovered: true });
  assert.equal(sub.expiresAt, 5000);
  assert.deepEqual(subscribed, [], 'a renewal that lost nothing is not a subscribed event');
  assert.deepEqual(seen, [], 'subscription_expiring is not a room event');
  assert.equal(sub.state, 'subscribed');
  c.close();
});

test('the server ends a subscription at expiry: with getToken it is made again, without it ends with an error', async () => {
  const { c, WS } = connected();
  let n = 0;
  const withTok = c.subscribe('secret:1', { getToken: () => `tok${++n}` });
  const plain = c.subscribe('chat:1');
  await flush();
  for (const f of subscribes(WS.last)) WS.last.frame({ type: 'subscribed', id: f.id, room: f.room, data: { members: 1, position: 'e-0' } });
  await Promise.all([withTok.ready, plain.ready]);
  const ended = { code: 'subscription_expired', message: 'the subscription token expired' };
  WS.last.frame({ type: 'unsubscribed', room: 'secret:1', data: ended });
  await flush();
  assert.equal(withTok.state, 'subscribing');
  assert.deepEqual(subscribes(WS.last).at(-1).data, { token: 'tok2' });

  const errs = [];
  plain.on('error', (e) => errs.push(e.code));
  let gone = 0;
  plain.on('unsubscribed', () => gone++);
  WS.last.frame({ type: 'unsubscribed', room: 'chat:1', data: ended });
  assert.deepEqual(errs, ['subscription_expired']);
  assert.equal(gone, 1);
  assert.equal(c.subscription('chat:1'), undefined);
  c.close();
});

test('a failing getToken ends the subscription with error "token"; a refused renewal unsubscribes', async () => {
  const { c, WS } = connected();
  const bad = c.subscribe('secret:1', { getToken: () => Promise.reject(new Error('backend down')) });
  await assert.rejects(bad.ready, (e) => e.code === 'token' && /backend down/.test(e.message));
  assert.equal(bad.state, 'unsubscribed');

  const sub = c.subscribe('secret:2', { getToken: () => 't' });
  await flush();
  answer(WS.last);
  await sub.ready;
  WS.last.frame({ type: 'subscription_expiring', room: 'secret:2', data: { expires_at: 1 } });
  await flush();
  const renew = subscribes(WS.last).at(-1);
  const errs = [];
  sub.on('error', (e) => errs.push(e.code));
  WS.last.frame({ type: 'error', id: renew.id, data: { code: 'forbidden', message: 'subscription token rejected' } });
  assert.deepEqual(errs, ['forbidden']);
  assert.equal(sub.state, 'unsubscribed');
  assert.deepEqual(noId(WS.last.sent.at(-1)), { type: 'unsubscribe', room: 'secret:2' });
  c.close();
});

const noId = ({ id, ...rest }) => rest;
