// Unit tests of the client against a fake WebSocket, with fake timers: no
// network, no real time.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Client, SwitchboardError, backoffDelay, closeInfo } from '../dist/index.js';
import { fakeSocketClass, flush } from './fake.mjs';

const noId = ({ id, ...rest }) => rest;

function setup(t, opts = {}) {
  t.mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  const WS = fakeSocketClass();
  const c = new Client('ws://test/ws', { WebSocket: WS, transports: ['websocket'], pingInterval: 0, ...opts });
  const log = { close: [], error: [], state: [], reconnecting: [], open: [] };
  for (const k of Object.keys(log)) c.on(k, (x) => log[k].push(x));
  return { c, WS, log };
}

// connected returns a client whose first connection is established.
function connected(t, opts) {
  const s = setup(t, opts);
  s.c.connect();
  s.WS.last.establish();
  return s;
}

describe('backoff', () => {
  test('schedule: the cap grows by factor from initialDelay up to maxDelay', () => {
    const o = { initialDelay: 100, maxDelay: 1000, factor: 2 };
    const half = () => 0.5;
    const got = [0, 1, 2, 3, 4, 5, 6].map((a) => backoffDelay(a, o, half));
    assert.deepEqual(got, [50, 100, 200, 400, 500, 500, 500]);
    const o3 = { initialDelay: 10, maxDelay: 100000, factor: 3 };
    assert.deepEqual([0, 1, 2, 3].map((a) => backoffDelay(a, o3, () => 0.999999)), [9, 29, 89, 269]);
  });

  test('full jitter: every delay in [0, cap), spread over the range', () => {
    const o = { initialDelay: 500, maxDelay: 20000, factor: 2 };
    assert.equal(backoffDelay(3, o, () => 0), 0);
    assert.equal(backoffDelay(3, o, () => 1 - Number.EPSILON), 3999);
    for (const attempt of [0, 3, 10]) {
      const cap = Math.min(20000, 500 * 2 ** attempt);
      const ds = Array.from({ length: 2000 }, () => backoffDelay(attempt, o));
      for (const d of ds) assert.ok(d >= 0 && d < cap && Number.isInteger(d), `delay ${d} outside [0, ${cap})`);
      // 2000 uniform draws all in one quarter of the range: probability 2 * 0.75^2000.
      assert.ok(Math.min(...ds) < cap / 4 && Math.max(...ds) > (cap * 3) / 4, 'delays are not spread over [0, cap)');
    }
  });

  test('the client waits each scheduled delay before the next attempt', (t) => {
    t.mock.method(Math, 'random', () => 0.5);
    const { c, WS, log } = setup(t, { initialDelay: 100, maxDelay: 1000, factor: 2, maxAttempts: 10 });
    c.connect();
    const want = [50, 100, 200, 400, 500, 500];
    for (let i = 0; i < want.length; i++) {
      WS.last.closeWith(1006); // the attempt fails: no connection
      assert.equal(c.state, 'reconnecting');
      assert.deepEqual(log.reconnecting.at(-1), { attempt: i + 1, delay: want[i], code: 1006 });
      const n = WS.instances.length;
      t.mock.timers.tick(want[i] - 1);
      assert.equal(WS.instances.length, n, `attempt ${i + 1} came early`);
      t.mock.timers.tick(1);
      assert.equal(WS.instances.length, n + 1, `attempt ${i + 1} did not come at ${want[i]} ms`);
      assert.equal(c.state, 'connecting');
    }
    // A connection resets the schedule.
    WS.last.establish();
    WS.last.closeWith(1012);
    assert.equal(log.reconnecting.at(-1).delay, 50);
    assert.equal(log.reconnecting.at(-1).attempt, 1);
  });

  test('maxAttempts: gives up with reconnect_failed', (t) => {
    const { c, WS, log } = setup(t, { initialDelay: 10, maxAttempts: 2 });
    c.connect();
    WS.last.closeWith(1006);
    t.mock.timers.tick(10);
    WS.last.closeWith(1006);
    t.mock.timers.tick(20);
    WS.last.closeWith(1006);
    assert.equal(WS.instances.length, 3);
    assert.equal(c.state, 'closed');
    assert.equal(log.close.at(-1).reconnect, false);
    assert.equal(log.error.at(-1).code, 'reconnect_failed');
    t.mock.timers.tick(100000);
    assert.equal(WS.instances.length, 3);
  });
});

describe('close codes', () => {
  // Every code of the server's table, the two a browser reports for a
  // connection that ended without a close frame, and unknown codes.
  const cases = [
    [1000, false, 'normal'],
    [1001, false, 'going_away'],
    [1002, false, 'protocol_error'],
    [1003, false, 'unsupported_data'],
    [1005, true, 'no_status'],
    [1006, true, 'abnormal'],
    [1007, false, 'invalid_payload'],
    [1008, false, 'policy_violation'],
    [1009, false, 'message_too_big'],
    [1011, true, 'internal_error'],
    [1012, true, 'service_restart'],
    [1013, true, 'try_again_later'],
    [1014, true, '1014'], // unknown below 4000: transient
    [4001, false, 'unauthorized'],
    [4003, false, 'forbidden'],
    [4004, false, 'banned'],
    [4005, true, 'slow_consumer'],
    [4006, false, 'kicked'],
    [4008, true, 'heartbeat_timeout'],
    [4999, false, '4999'], // unknown application code: not retried
  ];
  for (const [code, reconnect, name] of cases) {
    test(`${code} ${name}: ${reconnect ? 'reconnect' : 'stop'}`, (t) => {
      const { c, WS, log } = connected(t, { initialDelay: 10 });
      WS.last.closeWith(code, 'why');
      assert.deepEqual(log.close, [{ code, reason: 'why', name, reconnect }]);
      assert.equal(c.state, reconnect ? 'reconnecting' : 'closed');
      t.mock.timers.tick(10);
      assert.equal(WS.instances.length, reconnect ? 2 : 1);
      // Stopping is reported as an error, except for the normal closes.
      const reported = !reconnect && code !== 1000 && code !== 1001;
      assert.equal(log.error.length, reported ? 1 : 0);
      if (reported) {
        assert.equal(log.error[0].code, name);
        assert.equal(log.error[0].closeCode, code);
      }
    });
  }

  test('4000 session_expired: a new token from getToken, then reconnect', async (t) => {
    let n = 0;
    const { c, WS, log } = setup(t, { initialDelay: 10, getToken: async () => `tok${++n}` });
    c.connect();
    await flush();
    assert.equal(n, 1);
    WS.last.establish();
    assert.deepEqual(noId(WS.last.sent[0]), { type: 'auth', data: { token: 'tok1' } });
    WS.last.closeWith(4000);
    assert.equal(log.close[0].reconnect, true);
    assert.equal(c.state, 'reconnecting');
    t.mock.timers.tick(10);
    await flush();
    assert.equal(n, 2);
    assert.equal(WS.instances.length, 2);
    WS.last.open();
    assert.deepEqual(noId(WS.last.sent[0]), { type: 'auth', data: { token: 'tok2' } });
  });

  test('4000 without getToken: stop and report', (t) => {
    const { c, WS, log } = connected(t, { token: 'static' });
    WS.last.closeWith(4000);
    assert.equal(c.state, 'closed');
    assert.equal(log.close[0].reconnect, false);
    assert.equal(log.error[0].code, 'session_expired');
  });

  test("the server's disconnect advice wins over the table", (t) => {
    const a = connected(t, { initialDelay: 10 });
    a.WS.last.frame({ type: 'disconnect', data: { code: 4006, reason: 'move to another node', reconnect: true } });
    a.WS.last.closeWith(4006, 'move to another node');
    assert.equal(a.c.state, 'reconnecting');
    t.mock.timers.reset();
    const b = connected(t, { initialDelay: 10 });
    b.WS.last.frame({ type: 'disconnect', data: { code: 1012, reason: 'gone for good', reconnect: false } });
    b.WS.last.closeWith(1012, 'gone for good');
    assert.equal(b.c.state, 'closed');
    assert.equal(b.log.error[0].code, 'service_restart');
    t.mock.timers.reset();
    // Advice for another code (the close frame says otherwise) is ignored,
    // and advice does not outlive its connection.
    const c = connected(t, { initialDelay: 10 });
    c.WS.last.frame({ type: 'disconnect', data: { code: 4006, reconnect: false } });
    c.WS.last.closeWith(1006);
    assert.equal(c.c.state, 'reconnecting');
    t.mock.timers.tick(10);
    c.WS.last.establish();
    c.WS.last.closeWith(4006);
    assert.equal(c.c.state, 'closed');
  });

  test('reconnect: false turns reconnecting off', (t) => {
    const { c, WS } = connected(t, { reconnect: false });
    WS.last.closeWith(1012);
    assert.equal(c.state, 'closed');
  });

  test('closeInfo follows the server rule for unknown codes', () => {
    assert.equal(closeInfo(2999).reconnect, true);
    assert.equal(closeInfo(3000).reconnect, false);
    assert.equal(closeInfo(4002).reconnect, false);
    assert.equal(closeInfo(4000).refresh, true);
    assert.equal(closeInfo(4005).refresh, false);
  });
});

describe('states and close', () => {
  test('connecting -> open -> reconnecting -> connecting -> open -> closing -> closed', (t) => {
    const { c, WS, log } = setup(t, { initialDelay: 10 });
    assert.equal(c.state, 'closed');
    c.connect();
    assert.equal(c.state, 'connecting');
    WS.last.open();
    assert.equal(c.state, 'connecting', 'open only after connection_established');
    WS.last.frame({ type: 'connection_established', data: { user_id: 'u1', connection_id: 'c1' } });
    assert.equal(c.state, 'open');
    assert.equal(log.open[0].user_id, 'u1');
    assert.equal(c.info.connection_id, 'c1');
    WS.last.closeWith(1006);
    t.mock.timers.tick(10);
    WS.last.establish();
    c.close();
    assert.equal(c.state, 'closing');
    assert.deepEqual(WS.last.closedWith, { code: 1000, reason: '' });
    WS.last.closeWith(1000);
    assert.equal(c.state, 'closed');
    assert.deepEqual(
      log.state.map((s) => s.state),
      ['connecting', 'open', 'reconnecting', 'connecting', 'open', 'closing', 'closed'],
    );
    assert.equal(log.error.length, 0);
  });

  test('close() during a reconnect wait cancels it', (t) => {
    const { c, WS } = connected(t, { initialDelay: 1000 });
    WS.last.closeWith(1012);
    c.close();
    assert.equal(c.state, 'closed');
    t.mock.timers.tick(100000);
    assert.equal(WS.instances.length, 1);
  });

  test('a close code the client sent by the user is not retried even if transient', (t) => {
    const { c, WS } = connected(t, { initialDelay: 10 });
    c.close(4321, 'bye');
    WS.last.closeWith(1006); // the close handshake did not finish
    assert.equal(c.state, 'closed');
    t.mock.timers.tick(1000);
    assert.equal(WS.instances.length, 1);
  });

  test('no WebSocket implementation: a clear error', () => {
    const saved = globalThis.WebSocket;
    try {
      delete globalThis.WebSocket;
      assert.throws(() => new Client('ws://x', { transports: ['websocket'] }), /pass options.WebSocket/);
      // The HTTP transports need only fetch: websocket is left out.
      const c = new Client('ws://x', { transports: ['websocket', 'sse'], fetch: async () => ({}) });
      assert.equal(c.transport, null);
      assert.throws(() => new Client('ws://x', { transports: ['websocket', 'sse'], fetch: null, EventSource: null }), /pass options.WebSocket/);
      assert.throws(() => new Client('ws://x', { transports: [] }), /no usable transport/);
    } finally {
      if (saved) globalThis.WebSocket = saved;
    }
  });

  test('a constructor that throws counts as a failed attempt', (t) => {
    let fail = true;
    const WS = fakeSocketClass();
    const Flaky = class extends WS {
      constructor(...a) {
        if (fail) throw new Error('bad url');
        super(...a);
      }
    };
    t.mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
    const c = new Client('ws://x', { WebSocket: Flaky, transports: ['websocket'], initialDelay: 10, pingInterval: 0 });
    const errors = [];
    c.on('error', (e) => errors.push(e));
    c.connect();
    assert.equal(c.state, 'reconnecting');
    assert.equal(errors[0].code, 'connect');
    fail = false;
    t.mock.timers.tick(10);
    WS.last.establish();
    assert.equal(c.state, 'open');
  });
});

describe('send queue', () => {
  test('sends before open are queued in order and flushed after connection_established', (t) => {
    const { c, WS } = setup(t, { queueSize: 10 });
    assert.equal(c.send({ type: 'hello', room: 'r', data: 1 }), true);
    const p = c.publish('r', { n: 2 });
    c.connect();
    WS.last.open();
    assert.deepEqual(WS.last.sent, [], 'nothing before connection_established');
    WS.last.establish();
    assert.deepEqual(WS.last.types(), ['hello', 'message']);
    const pub = WS.last.sent[1];
    WS.last.frame({ type: 'ack', id: pub.id, room: 'r', data: { event_id: 'e-1' } });
    return p.then((ack) => assert.deepEqual(ack, { event_id: 'e-1' }));
  });

  test('the queue is bounded: send returns false, requests reject with queue_full', async (t) => {
    const { c, WS } = setup(t, { queueSize: 3 });
    assert.equal(c.send({ type: 'a', room: 'r' }), true);
    assert.equal(c.send({ type: 'b', room: 'r' }), true);
    const p = c.publish('r', 'c');
    assert.equal(c.send({ type: 'd', room: 'r' }), false);
    await assert.rejects(c.publish('r', 'e'), (e) => e instanceof SwitchboardError && e.code === 'queue_full');
    await assert.rejects(c.history('r'), { code: 'queue_full' });
    c.connect();
    WS.last.establish();
    assert.deepEqual(WS.last.types(), ['a', 'b', 'message']);
    // Open: no bound.
    for (let i = 0; i < 10; i++) assert.equal(c.send({ type: 'x', room: 'r' }), true);
    assert.equal(WS.last.sent.length, 13);
    WS.last.frame({ type: 'ack', id: WS.last.sent[2].id, data: { event_id: 'e-1' } });
    await p;
  });

  test('a request that times out in the queue is removed from it', async (t) => {
    const { c, WS } = setup(t);
    const p = c.publish('r', 1, { timeout: 1000 });
    t.mock.timers.tick(1000);
    await assert.rejects(p, { code: 'timeout' });
    c.connect();
    WS.last.establish();
    assert.deepEqual(WS.last.sent, []);
  });

  test('close() rejects what waits with "closed" and empties the queue', async (t) => {
    const { c, WS } = connected(t);
    WS.last.closeWith(1006);
    const p = c.publish('r', 1);
    const q = c.presence('r');
    c.close();
    await assert.rejects(p, { code: 'closed' });
    await assert.rejects(q, { code: 'closed' });
    c.connect();
    WS.last.establish();
    assert.deepEqual(WS.last.sent, []);
  });
});

describe('requests', () => {
  test('publish is sent again with the same id after a reconnect', async (t) => {
    const { c, WS } = connected(t, { initialDelay: 10 });
    const p = c.publish('chat:1', { text: 'hi' }, { type: 'chat' });
    const first = WS.last.sent[0];
    assert.equal(first.type, 'chat');
    assert.equal(first.room, 'chat:1');
    assert.ok(first.id);
    WS.last.closeWith(1006); // lost before the ack
    t.mock.timers.tick(10);
    WS.last.establish();
    assert.deepEqual(WS.last.sent, [first], 'the same frame, same id');
    // A second loss: still the same id.
    WS.last.closeWith(1011);
    t.mock.timers.tick(20);
    WS.last.establish();
    assert.deepEqual(WS.last.sent, [first]);
    WS.last.frame({ type: 'ack', id: first.id, room: 'chat:1', data: { event_id: 'e-7', duplicate: true } });
    assert.deepEqual(await p, { event_id: 'e-7', duplicate: true });
  });

  test('an ack settles once; a late duplicate ack is ignored', async (t) => {
    const { c, WS } = connected(t);
    const p = c.publish('r', 1);
    const id = WS.last.sent[0].id;
    const ack = { type: 'ack', id, room: 'r', data: { event_id: 'e-1' } };
    WS.last.frame(ack);
    WS.last.frame(ack);
    assert.deepEqual(await p, { event_id: 'e-1' });
  });

  test('publish ids are unique across clients', (t) => {
    const ids = new Set();
    for (let i = 0; i < 50; i++) {
      const { c, WS } = connected(t);
      c.publish('r', 1).catch(() => {});
      c.publish('r', 2).catch(() => {});
      for (const m of WS.last.sent) ids.add(m.id);
      t.mock.timers.reset();
    }
    assert.equal(ids.size, 100);
  });

  test('a custom publish id is used, and not twice at once', async (t) => {
    const { c, WS } = connected(t);
    c.publish('r', 1, { id: 'my-id' }).catch(() => {});
    assert.equal(WS.last.sent[0].id, 'my-id');
    await assert.rejects(c.publish('r', 2, { id: 'my-id' }), { code: 'bad_request' });
  });

  test('a server error for a request rejects it with the server code', async (t) => {
    const { c, WS, log } = connected(t);
    const p = c.publish('bad room', 1);
    const id = WS.last.sent[0].id;
    WS.last.frame({ type: 'error', id, data: { code: 'invalid_room', message: 'nope', ref: id } });
    await assert.rejects(p, (e) => e.code === 'invalid_room' && e.message === 'nope' && e.ref === id);
    assert.equal(log.error.length, 0, 'a routed error is not also an error event');
  });

  test('rpc: sent as {type: rpc, data: {method, params}}; not_implemented rejects; not re-sent after a loss', async (t) => {
    const { c, WS } = connected(t, { initialDelay: 10 });
    const p = c.rpc('sum', [1, 2], { timeout: 5000 });
    const m = WS.last.sent[0];
    assert.deepEqual({ ...m, id: undefined }, { type: 'rpc', id: undefined, data: { method: 'sum', params: [1, 2] } });
    WS.last.frame({ type: 'error', id: m.id, data: { code: 'not_implemented', message: '"rpc" is not enabled on this server', ref: m.id } });
    await assert.rejects(p, { code: 'not_implemented' });
    const q = c.rpc('sum', [3]);
    WS.last.closeWith(1006);
    await assert.rejects(q, { code: 'disconnected' });
    t.mock.timers.tick(10);
    WS.last.establish();
    assert.deepEqual(WS.last.sent, []);
  });

  test('rpc_result: a JSON-RPC result resolves, a JSON-RPC error rejects with rpc_error', async (t) => {
    const { c, WS } = connected(t);
    const p = c.rpc('echo', 'x');
    let id = WS.last.sent[0].id;
    WS.last.frame({ type: 'rpc_result', id, data: { jsonrpc: '2.0', id, result: { ok: 1 } } });
    assert.deepEqual(await p, { ok: 1 });
    const q = c.rpc('nope');
    id = WS.last.sent[1].id;
    const error = { code: -32601, message: 'method "nope" not found' };
    WS.last.frame({ type: 'rpc_result', id, data: { jsonrpc: '2.0', id, error } });
    await assert.rejects(q, (e) => e.code === 'rpc_error' && e.message === error.message && e.detail.code === -32601);
    const r = c.rpc('nothing');
    id = WS.last.sent[2].id;
    WS.last.frame({ type: 'rpc_result', id, data: { jsonrpc: '2.0', id, result: null } });
    assert.equal(await r, null);
  });

  test('history and presence: frames, results, and a retry across a reconnect', async (t) => {
    const { c, WS } = connected(t, { initialDelay: 10 });
    const h = c.history('chat:1', { since: 'e-3', limit: 2 });
    const pr = c.presence('chat:1');
    const [hm, pm] = WS.last.sent;
    assert.deepEqual({ ...hm, id: 0 }, { type: 'history', id: 0, room: 'chat:1', data: { since: 'e-3', limit: 2 } });
    assert.deepEqual({ ...pm, id: 0 }, { type: 'presence', id: 0, room: 'chat:1' });
    WS.last.closeWith(1006);
    t.mock.timers.tick(10);
    WS.last.establish();
    assert.deepEqual(WS.last.sent, [hm, pm]);
    const page = { events: [{ type: 'message', id: 'e-4', room: 'chat:1', data: 1 }], position: 'e-9', complete: true, has_more: true };
    WS.last.frame({ type: 'history_result', id: hm.id, room: 'chat:1', data: page });
    WS.last.frame({ type: 'presence_result', id: pm.id, room: 'chat:1', data: { clients: 2, users: 1, members: [] } });
    assert.deepEqual(await h, page);
    assert.deepEqual(await pr, { clients: 2, users: 1, members: [] });
  });

  test('a request with no answer times out', async (t) => {
    const { c } = connected(t, { timeout: 2000 });
    const p = c.history('r');
    t.mock.timers.tick(2000);
    await assert.rejects(p, { code: 'timeout' });
  });
});

describe('subscriptions', () => {
  test('subscribe sends {subscribe, id, room}; subscribed resolves ready; events reach handlers', async (t) => {
    const { c, WS } = connected(t);
    const all = [];
    const sub = c.subscribe('chat:1', (ev) => all.push(ev));
    const chats = [];
    sub.on('chat', (ev) => chats.push(ev.data));
    const m = WS.last.sent[0];
    assert.deepEqual(Object.keys(m).sort(), ['id', 'room', 'type']);
    assert.equal(sub.state, 'subscribing');
    WS.last.frame({ type: 'subscribed', id: m.id, room: 'chat:1', data: { members: 1, position: 'ab-0' } });
    assert.deepEqual(await sub.ready, { members: 1, position: 'ab-0', resubscribed: false });
    assert.equal(sub.state, 'subscribed');
    WS.last.frame({ type: 'chat', id: 'ab-1', room: 'chat:1', data: 'hi' });
    WS.last.frame({ type: 'user_joined', room: 'chat:1', user_id: 'u2', data: { connection_id: 'c2' } });
    WS.last.frame({ type: 'chat', id: 'ab-2', room: 'other', data: 'not mine' });
    assert.deepEqual(chats, ['hi']);
    assert.deepEqual(all.map((e) => e.type), ['chat', 'user_joined']);
    assert.equal(sub.lastEventId, 'ab-1');
    assert.equal(c.subscribe('chat:1'), sub, 'same room, same subscription');
  });

  test('client events: message for every frame, and one per type', (t) => {
    const { c, WS } = connected(t);
    const msgs = [];
    const joined = [];
    c.on('message', (m) => msgs.push(m.type));
    c.on('user_joined', (m) => joined.push(m.user_id));
    WS.last.frame({ type: 'user_joined', room: 'r', user_id: 'u9' });
    WS.last.frame({ type: 'pong' });
    assert.deepEqual(msgs, ['user_joined', 'pong']);
    assert.deepEqual(joined, ['u9']);
  });

  test('subscribing before connect subscribes on open', (t) => {
    const { c, WS } = setup(t);
    c.subscribe('a');
    c.subscribe('b');
    c.connect();
    WS.last.establish();
    assert.deepEqual(
      WS.last.sent.map((m) => [m.type, m.room, m.last_event_id]),
      [
        ['subscribe', 'a', undefined],
        ['subscribe', 'b', undefined],
      ],
    );
  });

  test('seam: re-subscribe from the last event id and drop duplicates', (t) => {
    const { c, WS } = connected(t, { initialDelay: 10 });
    const got = [];
    const info = [];
    const sub = c.subscribe('chat:1', (ev) => got.push(ev.id ?? ev.type));
    sub.on('subscribed', (d) => info.push(d));
    WS.last.frame({ type: 'subscribed', id: WS.last.sent[0].id, room: 'chat:1', data: { members: 1, position: 'e1-2' } });
    // At or before the position: already seen.
    WS.last.frame({ type: 'message', id: 'e1-2', room: 'chat:1' });
    for (const id of ['e1-3', 'e1-4', 'e1-5']) WS.last.frame({ type: 'message', id, room: 'chat:1' });
    WS.last.closeWith(1006);
    assert.equal(sub.state, 'subscribing');
    t.mock.timers.tick(10);
    WS.last.establish();
    const re = WS.last.sent[0];
    assert.deepEqual([re.type, re.room, re.last_event_id], ['subscribe', 'chat:1', 'e1-5']);
    WS.last.frame({ type: 'subscribed', id: re.id, room: 'chat:1', data: { members: 1, position: 'e1-7', recovered: true, replayed: 2 } });
    // A duplicate at the seam, then the replay and live events, one duplicate among them.
    for (const id of ['e1-4', 'e1-5', 'e1-6', 'e1-7', 'e1-7', 'e1-8']) WS.last.frame({ type: 'message', id, room: 'chat:1' });
    WS.last.frame({ type: 'user_left', room: 'chat:1' });
    assert.deepEqual(got, ['e1-3', 'e1-4', 'e1-5', 'e1-6', 'e1-7', 'e1-8', 'user_left']);
    assert.deepEqual(info.map((d) => [d.recovered, d.resubscribed]), [
      [undefined, false],
      [true, true],
    ]);
  });

  test('dropped duplicates are not emitted on the client either', (t) => {
    const { c, WS } = connected(t);
    const seen = [];
    c.on('message', (m) => m.type === 'message' && seen.push(m.id));
    c.subscribe('r');
    WS.last.frame({ type: 'subscribed', id: WS.last.sent[0].id, room: 'r', data: { position: 'e-1' } });
    WS.last.frame({ type: 'message', id: 'e-1', room: 'r' });
    WS.last.frame({ type: 'message', id: 'e-2', room: 'r' });
    WS.last.frame({ type: 'message', id: 'e-2', room: 'r' });
    assert.deepEqual(seen, ['e-2']);
  });

  test('recovered: false is surfaced, and the new epoch is taken', (t) => {
    const { c, WS } = connected(t, { initialDelay: 10 });
    const got = [];
    const info = [];
    const sub = c.subscribe('r', (ev) => got.push(ev.id));
    sub.on('subscribed', (d) => info.push(d));
    WS.last.frame({ type: 'subscribed', id: WS.last.sent[0].id, room: 'r', data: { position: 'old-0' } });
    WS.last.frame({ type: 'message', id: 'old-1', room: 'r' });
    WS.last.closeWith(1012); // the server restarted: its in-memory epochs are new
    t.mock.timers.tick(10);
    WS.last.establish();
    assert.equal(WS.last.sent[0].last_event_id, 'old-1');
    WS.last.frame({ type: 'subscribed', id: WS.last.sent[0].id, room: 'r', data: { members: 1, position: 'new-3', recovered: false } });
    assert.equal(info[1].recovered, false);
    assert.equal(info[1].resubscribed, true);
    assert.equal(sub.lastEventId, 'new-3');
    // Offsets are compared within an epoch only: new-2 is old news, new-4 is not.
    WS.last.frame({ type: 'message', id: 'new-2', room: 'r' });
    WS.last.frame({ type: 'message', id: 'new-4', room: 'r' });
    assert.deepEqual(got, ['old-1', 'new-4']);
    WS.last.closeWith(1006);
    t.mock.timers.tick(10);
    WS.last.establish();
    assert.equal(WS.last.sent[0].last_event_id, 'new-4');
  });

  test('stream_gap: surfaced as gap, and the position skips past the missing events', (t) => {
    const { c, WS } = connected(t, { initialDelay: 10 });
    const got = [];
    const gaps = [];
    const sub = c.subscribe('r', (ev) => got.push(ev.type == 'stream_gap' ? 'gap' : ev.id));
    sub.on('gap', (d) => gaps.push(d));
    WS.last.frame({ type: 'subscribed', id: WS.last.sent[0].id, room: 'r', data: { position: 'a-0' } });
    WS.last.frame({ type: 'message', id: 'a-1', room: 'r' });
    // The server's broker lost the stream; b-1..b-200 are gone, b-201 on follow.
    WS.last.frame({ type: 'stream_gap', room: 'r', data: { after: 'a-1', until: 'b-200', reason: 'stream_lost' }, ts: 1 });
    WS.last.frame({ type: 'message', id: 'b-150', room: 'r' }); // before until: not news
    WS.last.frame({ type: 'message', id: 'b-201', room: 'r' });
    assert.deepEqual(gaps, [{ after: 'a-1', until: 'b-200', reason: 'stream_lost' }]);
    assert.deepEqual(got, ['a-1', 'gap', 'b-201']);
    // An unknown end keeps the position; the next event is taken.
    WS.last.frame({ type: 'stream_gap', room: 'r', data: { after: 'b-201', reason: 'unavailable' } });
    WS.last.frame({ type: 'message', id: 'b-230', room: 'r' });
    assert.equal(gaps[1].until, undefined);
    assert.equal(sub.lastEventId, 'b-230');
    // A reconnect recovers from after the gap, not from before it.
    WS.last.closeWith(1006);
    t.mock.timers.tick(10);
    WS.last.establish();
    assert.equal(WS.last.sent[0].last_event_id, 'b-230');
  });

  test('offsets compare as numbers, not strings', (t) => {
    const { c, WS } = connected(t);
    const got = [];
    c.subscribe('r', (ev) => got.push(ev.id));
    WS.last.frame({ type: 'subscribed', id: WS.last.sent[0].id, room: 'r', data: { position: 'e-9' } });
    WS.last.frame({ type: 'message', id: 'e-10', room: 'r' });
    WS.last.frame({ type: 'message', id: 'e-9', room: 'r' });
    WS.last.frame({ type: 'message', id: 'e-100', room: 'r' });
    assert.deepEqual(got, ['e-10', 'e-100']);
  });

  test('a refused subscribe: error, unsubscribed, ready rejects', async (t) => {
    const { c, WS } = connected(t);
    const sub = c.subscribe('bad:');
    const events = [];
    sub.on('error', (e) => events.push(e.code));
    sub.on('unsubscribed', () => events.push('unsubscribed'));
    const m = WS.last.sent[0];
    WS.last.frame({ type: 'error', id: m.id, data: { code: 'invalid_room', message: 'no', ref: m.id } });
    await assert.rejects(sub.ready, { code: 'invalid_room' });
    assert.deepEqual(events, ['invalid_room', 'unsubscribed']);
    assert.equal(sub.state, 'unsubscribed');
    assert.equal(c.subscription('bad:'), undefined);
  });

  test('unsubscribe: sent when open, forgotten on reconnect, later events not delivered to it', (t) => {
    const { c, WS } = connected(t, { initialDelay: 10 });
    const got = [];
    const sub = c.subscribe('r', (ev) => got.push(ev.id));
    WS.last.frame({ type: 'subscribed', id: WS.last.sent[0].id, room: 'r', data: { position: 'e-0' } });
    sub.unsubscribe();
    assert.deepEqual(WS.last.sent.at(-1), { type: 'unsubscribe', room: 'r' });
    assert.equal(sub.state, 'unsubscribed');
    WS.last.frame({ type: 'message', id: 'e-1', room: 'r' });
    WS.last.closeWith(1006);
    t.mock.timers.tick(10);
    WS.last.establish();
    assert.deepEqual(WS.last.sent, []);
    assert.deepEqual(got, []);
  });

  test('subscription.publish/history/presence go to its room', (t) => {
    const { c, WS } = connected(t);
    const sub = c.subscribe('r');
    sub.publish(1, { type: 't' }).catch(() => {});
    sub.history({ limit: 1 }).catch(() => {});
    sub.presence().catch(() => {});
    assert.deepEqual(
      WS.last.sent.slice(1).map((m) => [m.type, m.room]),
      [
        ['t', 'r'],
        ['history', 'r'],
        ['presence', 'r'],
      ],
    );
    c.close();
  });
});

describe('pause while hidden or offline', () => {
  // A browser-like environment: document.visibilityState and navigator.onLine
  // with their events.
  function browserEnv(t) {
    const doc = new EventTarget();
    doc.visibilityState = 'visible';
    const win = new EventTarget();
    const nav = { onLine: true };
    const saved = Object.getOwnPropertyDescriptor(globalThis, 'navigator');
    globalThis.document = doc;
    globalThis.addEventListener = win.addEventListener.bind(win);
    globalThis.removeEventListener = win.removeEventListener.bind(win);
    Object.defineProperty(globalThis, 'navigator', { value: nav, configurable: true, writable: true });
    t.after(() => {
      delete globalThis.document;
      delete globalThis.addEventListener;
      delete globalThis.removeEventListener;
      if (saved) Object.defineProperty(globalThis, 'navigator', saved);
      else delete globalThis.navigator;
    });
    return { doc, win, nav };
  }

  test('a hidden page does not reconnect until it is visible', (t) => {
    const env = browserEnv(t);
    const { c, WS } = connected(t, { initialDelay: 100, maxDelay: 100 });
    env.doc.visibilityState = 'hidden';
    env.doc.dispatchEvent(new Event('visibilitychange'));
    assert.equal(c.state, 'open', 'hiding does not touch an open connection');
    WS.last.closeWith(1006);
    t.mock.timers.tick(100000);
    assert.equal(WS.instances.length, 1, 'no attempt while hidden');
    assert.equal(c.state, 'reconnecting');
    env.doc.dispatchEvent(new Event('visibilitychange')); // still hidden
    assert.equal(WS.instances.length, 1);
    env.doc.visibilityState = 'visible';
    env.doc.dispatchEvent(new Event('visibilitychange'));
    assert.equal(WS.instances.length, 2, 'an attempt as soon as it is visible');
    assert.equal(c.state, 'connecting');
  });

  test('an offline browser does not reconnect until online', (t) => {
    const env = browserEnv(t);
    const { c, WS } = connected(t, { initialDelay: 100, maxDelay: 100 });
    env.nav.onLine = false;
    WS.last.closeWith(1006);
    t.mock.timers.tick(100000);
    assert.equal(WS.instances.length, 1);
    env.nav.onLine = true;
    env.win.dispatchEvent(new Event('online'));
    assert.equal(WS.instances.length, 2);
    WS.last.establish();
    assert.equal(c.state, 'open');
  });

  test('visible again before the delay ends: the scheduled attempt happens', (t) => {
    const env = browserEnv(t);
    t.mock.method(Math, 'random', () => 0.5);
    const { WS } = connected(t, { initialDelay: 1000, maxDelay: 1000 });
    WS.last.closeWith(1006);
    env.doc.visibilityState = 'hidden';
    env.doc.visibilityState = 'visible';
    env.doc.dispatchEvent(new Event('visibilitychange'));
    assert.equal(WS.instances.length, 1, 'visibility alone does not skip the backoff');
    t.mock.timers.tick(500);
    assert.equal(WS.instances.length, 2);
  });

  test('a closed client stops listening', (t) => {
    const env = browserEnv(t);
    const { c, WS } = connected(t, { initialDelay: 10 });
    env.doc.visibilityState = 'hidden';
    WS.last.closeWith(1006);
    t.mock.timers.tick(10);
    c.close();
    env.doc.visibilityState = 'visible';
    env.doc.dispatchEvent(new Event('visibilitychange'));
    assert.equal(WS.instances.length, 1);
    assert.equal(c.state, 'closed');
  });
});

describe('heartbeat', () => {
  test('pings every interval; missed pongs force a reconnect with 4008', (t) => {
    // Reconnect delay 5 ms: not 0, so the attempt does not fall inside the
    // tick that drops the connection.
    t.mock.method(Math, 'random', () => 0.5);
    const { c, WS, log } = connected(t, { pingInterval: 1000, maxMissedPongs: 2, initialDelay: 10 });
    t.mock.timers.tick(1000);
    assert.deepEqual(WS.last.sent, [{ type: 'ping' }]);
    WS.last.frame({ type: 'pong' });
    t.mock.timers.tick(1000);
    t.mock.timers.tick(1000);
    assert.equal(WS.last.sent.length, 3);
    assert.equal(c.state, 'open', 'two unanswered pings are allowed');
    t.mock.timers.tick(1000);
    assert.equal(WS.last.sent.length, 3);
    assert.deepEqual(WS.last.closedWith, { code: 4008, reason: 'heartbeat timeout' });
    assert.equal(c.state, 'reconnecting');
    assert.deepEqual(log.close, [{ code: 4008, reason: 'heartbeat timeout', name: 'heartbeat_timeout', reconnect: true }]);
    // A late close event from the dropped socket changes nothing.
    WS.instances[0].closeWith(1006);
    assert.equal(log.close.length, 1);
    assert.equal(WS.instances.length, 1);
    t.mock.timers.tick(5);
    assert.equal(WS.instances.length, 2);
    WS.last.establish();
    t.mock.timers.tick(1000);
    assert.deepEqual(WS.last.sent, [{ type: 'ping' }], 'the count starts again on a new connection');
  });

  test('pingInterval 0: no pings', (t) => {
    const { WS } = connected(t, { pingInterval: 0 });
    t.mock.timers.tick(1e6);
    assert.deepEqual(WS.last.sent, []);
  });
});

describe('auth', () => {
  test('token: {"type":"auth"} is the first frame, before subscribes and queued sends', (t) => {
    const { c, WS } = setup(t, { token: 'secret' });
    c.subscribe('r');
    c.send({ type: 'x', room: 'r' });
    c.connect();
    WS.last.open();
    assert.deepEqual(WS.last.sent.map(noId), [{ type: 'auth', data: { token: 'secret' } }]);
    assert.ok(WS.last.sent[0].id, 'auth has an id: connection_established answers with it');
    WS.last.frame({ type: 'connection_established', data: {} });
    assert.deepEqual(WS.last.types(), ['auth', 'subscribe', 'x']);
  });

  test('no token: no auth frame', (t) => {
    const { WS } = connected(t);
    assert.deepEqual(WS.last.sent, []);
  });

  test('getToken is awaited before the socket is made; the token is kept for reconnects', async (t) => {
    let calls = 0;
    let release;
    const { c, WS } = setup(t, { initialDelay: 10, getToken: () => new Promise((r) => ((release = r), calls++)) });
    c.connect();
    await flush();
    assert.equal(c.state, 'connecting');
    assert.equal(WS.instances.length, 0);
    release('t1');
    await flush();
    assert.equal(WS.instances.length, 1);
    WS.last.establish();
    assert.deepEqual(noId(WS.last.sent[0]), { type: 'auth', data: { token: 't1' } });
    WS.last.closeWith(1012);
    t.mock.timers.tick(10);
    await flush();
    WS.last.open();
    assert.deepEqual(noId(WS.last.sent[0]), { type: 'auth', data: { token: 't1' } });
    assert.equal(calls, 1);
  });

  test('getToken failing: error "token", then a backoff retry', async (t) => {
    let n = 0;
    const { c, WS, log } = setup(t, {
      initialDelay: 10,
      getToken: async () => {
        if (++n === 1) throw new Error('auth server down');
        return 'ok';
      },
    });
    c.connect();
    await flush();
    assert.equal(log.error[0].code, 'token');
    assert.match(log.error[0].message, /auth server down/);
    assert.equal(c.state, 'reconnecting');
    t.mock.timers.tick(10);
    await flush();
    WS.last.open();
    assert.deepEqual(noId(WS.last.sent[0]), { type: 'auth', data: { token: 'ok' } });
  });

  test('session_expiring: getToken, then {"type":"refresh"}', async (t) => {
    let n = 0;
    const { c, WS, log } = setup(t, { token: 'first', getToken: async () => `fresh${++n}` });
    c.connect();
    WS.last.establish();
    WS.last.frame({ type: 'session_expiring', data: { expires_at: 1e12 } });
    await flush();
    const r = WS.last.sent.at(-1);
    assert.deepEqual(noId(r), { type: 'refresh', data: { token: 'fresh1' } });
    assert.equal(n, 1);
    WS.last.frame({ type: 'refreshed', id: r.id, data: { expires_at: 2e12 } });
    await flush();
    assert.equal(c.info.expires_at, 2e12, 'info carries the refreshed expiry');
    // A refused refresh is an error event; the connection stays (the server
    // closes it with 4000 when the old credentials expire).
    WS.last.frame({ type: 'session_expiring', data: { expires_at: 2e12 } });
    await flush();
    const r2 = WS.last.sent.at(-1);
    assert.deepEqual(noId(r2), { type: 'refresh', data: { token: 'fresh2' } });
    WS.last.frame({ type: 'error', id: r2.id, data: { code: 'forbidden', message: 'refresh token rejected', ref: r2.id } });
    await flush();
    assert.deepEqual(log.error.map((e) => e.code), ['forbidden']);
    assert.equal(c.state, 'open');
  });

  test('session_expiring while disconnected: the token is kept for the next connection', async (t) => {
    let n = 0;
    const { c, WS } = setup(t, { token: 'first', initialDelay: 10, getToken: async () => `fresh${++n}` });
    c.connect();
    WS.last.establish();
    WS.last.frame({ type: 'session_expiring', data: {} });
    WS.last.closeWith(1006);
    await flush();
    t.mock.timers.tick(10);
    WS.last.open();
    assert.deepEqual(WS.last.sent.map(noId), [{ type: 'auth', data: { token: 'fresh1' } }]);
  });

  test('session_expiring: getToken returning the token the connection has: no refresh (no refresh storm)', async (t) => {
    // A cache that renews only expired tokens: a refresh with the same token
    // extends nothing and would only get session_expiring again at once.
    let calls = 0;
    const { c, WS, log } = setup(t, { getToken: async () => (calls++, 'cached') });
    c.connect();
    await flush();
    WS.last.establish();
    WS.last.frame({ type: 'session_expiring', data: { expires_at: 1e12 } });
    await flush();
    assert.equal(calls, 2); // connect, session_expiring
    assert.deepEqual(WS.last.types(), ['auth']);
    assert.deepEqual(log.error, []);
  });

  test('session_expiring: each expires_at is answered once per connection (no refresh storm)', async (t) => {
    // A new token that expires as soon: the server answers the refresh with
    // session_expiring for the same expires_at; getToken is not asked again.
    let n = 0;
    const { c, WS, log } = connected(t, { token: 'first', initialDelay: 10, getToken: async () => `short${++n}` });
    let answered = 0;
    for (let i = 0; i < 3; i++) {
      WS.last.frame({ type: 'session_expiring', data: { expires_at: 1e12 } });
      await flush();
      for (const r of WS.last.sent.filter((f) => f.type == 'refresh').slice(answered++))
        WS.last.frame({ type: 'refreshed', id: r.id, data: { expires_at: 1e12 } });
    }
    assert.equal(n, 1);
    assert.deepEqual(WS.last.types(), ['auth', 'refresh']);
    // A later expiry, or the same one on a new connection, is answered.
    WS.last.frame({ type: 'session_expiring', data: { expires_at: 2e12 } });
    await flush();
    assert.equal(n, 2);
    const r2 = WS.last.sent.at(-1);
    assert.deepEqual(noId(r2), { type: 'refresh', data: { token: 'short2' } });
    WS.last.frame({ type: 'refreshed', id: r2.id, data: { expires_at: 2e12 } });
    WS.last.closeWith(1006);
    t.mock.timers.tick(10);
    await flush();
    WS.last.establish();
    WS.last.frame({ type: 'session_expiring', data: { expires_at: 2e12 } });
    await flush();
    assert.equal(n, 3);
    assert.deepEqual(WS.last.types(), ['auth', 'refresh']);
    assert.deepEqual(log.error, []);
    assert.equal(c.state, 'open');
  });

  test('close() while getToken runs: no socket is made', async (t) => {
    let release;
    const { c, WS } = setup(t, { getToken: () => new Promise((r) => (release = r)) });
    c.connect();
    await flush();
    c.close();
    release('late');
    await flush();
    assert.equal(WS.instances.length, 0);
    assert.equal(c.state, 'closed');
  });

  test('an error answer to auth (a server without auth) is an error event; the connection stays', (t) => {
    const { c, WS, log } = setup(t, { token: 'x' });
    c.connect();
    WS.last.establish();
    const id = WS.last.sent[0].id;
    WS.last.frame({ type: 'error', id, data: { code: 'bad_request', message: 'already authenticated', ref: id } });
    assert.equal(log.error[0].code, 'bad_request');
    assert.equal(c.state, 'open');
  });

  test('a rejected token closes with 4001: stop and report', (t) => {
    const { c, WS, log } = setup(t, { token: 'bad', initialDelay: 10 });
    c.connect();
    WS.last.open();
    WS.last.frame({ type: 'disconnect', data: { code: 4001, reason: 'invalid token', reconnect: false } });
    WS.last.closeWith(4001, 'invalid token');
    assert.equal(c.state, 'closed');
    assert.deepEqual([log.error[0].code, log.error[0].message, log.error[0].closeCode], ['unauthorized', 'invalid token', 4001]);
    t.mock.timers.tick(1000);
    assert.equal(WS.instances.length, 1);
  });
});

describe('bad input from the server', () => {
  for (const frame of ['not json', '42', 'null', '{"no":"type"}', '[1,2]']) {
    test(`frame ${frame}: error bad_json, connection kept`, (t) => {
      const { c, WS, log } = connected(t);
      WS.last.frame(frame);
      assert.equal(log.error[0].code, 'bad_json');
      assert.equal(c.state, 'open');
    });
  }

  test('a throwing handler does not break delivery to the others; its error is re-thrown later', (t) => {
    const { c, WS } = connected(t);
    const later = [];
    t.mock.method(globalThis, 'queueMicrotask', (fn) => later.push(fn));
    const got = [];
    c.on('message', () => {
      throw new Error('app bug');
    });
    c.on('message', (m) => got.push(m.type));
    WS.last.frame({ type: 'pong' });
    WS.last.frame({ type: 'x', room: 'r' });
    assert.deepEqual(got, ['pong', 'x']);
    assert.equal(later.length, 2);
    for (const fn of later) assert.throws(fn, /app bug/);
  });
});
