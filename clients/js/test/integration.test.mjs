// Integration tests: the client (on Node, with the ws package) against the
// real Go server, built from this repository and run on a loopback port.
import { test, describe, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { Client } from '../dist/index.js';
import { serverBinary, startServer, deadURL, waitFor, next } from './server.mjs';

const bin = serverBinary();

test('the Go server is available', (t) => {
  if (bin) return;
  if (process.env.CI === 'true') assert.fail('Go is required on CI to build the server');
  t.skip('Go is not installed: integration tests skipped');
});

// Sockets made by the test's WebSocket classes, and switches to misbehave.
const net = { gateOpen: true, dropAcks: false, dead: '' };

// Gated connects to a dead port while the gate is closed (so a client cannot
// reconnect before the test lets it) and can swallow acks (as if lost in
// the connection that is about to die).
class Gated extends WebSocket {
  static sockets = [];
  constructor(url, protocols) {
    super(net.gateOpen ? url : net.dead, protocols);
    Gated.sockets.push(this);
  }
  set onmessage(fn) {
    super.onmessage = (e) => {
      if (net.dropAcks && String(e.data).startsWith('{"type":"ack"')) return;
      fn(e);
    };
  }
  get onmessage() {
    return super.onmessage;
  }
  // cut destroys the TCP connection with no close frame: the client sees 1006.
  static cut() {
    Gated.sockets.at(-1)._socket.destroy();
  }
}

const clients = [];
function mk(url, opts = {}) {
  // WebSocket only: a refused reconnect must not fall back to the HTTP transports here
  // (emulation.integration.test.mjs tests those).
  const c = new Client(url, { WebSocket, transports: ['websocket'], initialDelay: 50, maxDelay: 300, pingInterval: 1000, ...opts });
  clients.push(c);
  return c;
}

// collect records a subscription's room events of type "message"/"chat".
function collect(sub) {
  const evs = [];
  sub.on('*', (ev) => ev.id && evs.push(ev));
  return evs;
}

describe('against the Go server', { skip: !bin }, () => {
  let srv;
  before(async () => {
    srv = await startServer(bin);
    net.dead = await deadURL();
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    Object.assign(net, { gateOpen: true, dropAcks: false });
  });
  after(async () => {
    await srv?.stop('SIGKILL');
  });

  test('two clients chat through a room; history, presence, errors', async () => {
    const a = mk(srv.url);
    const b = mk(srv.url);
    const sa = a.subscribe('chat:one');
    const sb = b.subscribe('chat:one');
    const ga = collect(sa);
    const gb = collect(sb);
    const joined = [];
    sa.on('user_joined', (ev) => joined.push(ev.user_id));
    a.connect();
    await sa.ready;
    b.connect();
    await sb.ready;
    assert.equal(a.state, 'open');
    assert.match(a.info.user_id, /^anon-/);

    const ack = await a.publish('chat:one', { text: 'hi' });
    assert.match(ack.event_id, /^[a-z0-9]+-1$/);
    await waitFor(() => gb.length === 1, 'b to get the first message');
    assert.deepEqual(
      { type: gb[0].type, id: gb[0].id, room: gb[0].room, data: gb[0].data, user_id: gb[0].user_id },
      { type: 'message', id: ack.event_id, room: 'chat:one', data: { text: 'hi' }, user_id: a.info.user_id },
    );
    const ack2 = await sb.publish({ text: 'yo' }, { type: 'chat' });
    await waitFor(() => ga.length === 2, 'a to get both messages');
    assert.deepEqual(
      ga.map((e) => [e.type, e.id]),
      [
        ['message', ack.event_id],
        ['chat', ack2.event_id],
      ],
    );
    await waitFor(() => joined.includes(b.info.user_id), "a to see b's user_joined");

    const page = await a.history('chat:one');
    assert.deepEqual(
      page.events.map((e) => e.id),
      [ack.event_id, ack2.event_id],
    );
    assert.equal(page.complete, true);
    assert.equal(page.position, ack2.event_id);
    const after1 = await b.history('chat:one', { since: ack.event_id, limit: 10 });
    assert.deepEqual(
      after1.events.map((e) => e.data),
      [{ text: 'yo' }],
    );

    const pr = await a.presence('chat:one');
    assert.equal(pr.clients, 2);
    assert.deepEqual(pr.members.map((m) => m.user_id).sort(), [a.info.user_id, b.info.user_id].sort());

    // rpc: the built-in "presence" method, and an unknown one.
    const viaRPC = await a.rpc('presence', { room: 'chat:one', counts_only: true });
    assert.equal(viaRPC.clients, 2);
    await assert.rejects(a.rpc('no.such.method', [1, 2]), (e) => e.code === 'rpc_error' && e.detail.code === -32601);
    await assert.rejects(a.publish('bad room', 1), { code: 'invalid_room' });
    await assert.rejects(a.history('chat:one', { since: 'nope' }), { code: 'bad_request' });
    const bad = a.subscribe(':bad');
    await assert.rejects(bad.ready, { code: 'invalid_room' });
    assert.equal(a.state, 'open');

    const pong = next(a, 'pong');
    a.send({ type: 'ping' });
    await pong;

    const left = next(sb, 'user_left');
    a.close();
    assert.equal((await left).user_id, a.info.user_id);
    await waitFor(() => a.state === 'closed', 'a to close');
  });

  test('publish with excludeSelf: the rest of the room gets it, the sender only its ack', async () => {
    const a = mk(srv.url);
    const b = mk(srv.url);
    const sa = a.subscribe('chat:excl');
    const sb = b.subscribe('chat:excl');
    const ga = collect(sa);
    const gb = collect(sb);
    a.connect();
    b.connect();
    await sa.ready;
    await sb.ready;
    const quiet = await a.publish('chat:excl', { n: 1 }, { excludeSelf: true });
    assert.match(quiet.event_id, /^[a-z0-9]+-1$/);
    // A plain publish after it: once a has this one, the first one would
    // have arrived before it (one room's events come in order).
    const loud = await sa.publish({ n: 2 });
    await waitFor(() => gb.length === 2 && ga.length === 1, 'b to get both events and a the second');
    assert.deepEqual(gb.map((e) => e.id), [quiet.event_id, loud.event_id]);
    assert.deepEqual(ga.map((e) => e.id), [loud.event_id]);
  });

  test('auth frame to a server without auth: error bad_request (already authenticated), the connection stays open', async () => {
    const c = mk(srv.url, { token: 'tok' });
    const err = next(c, 'error');
    c.connect();
    assert.equal((await err).code, 'bad_request');
    await waitFor(() => c.state === 'open', 'open');
    const ack = await c.publish('chat:auth', 1);
    assert.ok(ack.event_id);
    c.close();
  });

  test('abrupt drop: reconnect, recover every event published meanwhile, no loss, no duplicates', async () => {
    const a = mk(srv.url, { WebSocket: Gated });
    const b = mk(srv.url);
    const sa = a.subscribe('chat:resume');
    const sb = b.subscribe('chat:resume');
    const ga = collect(sa);
    const gb = collect(sb);
    const subs = [];
    sa.on('subscribed', (d) => subs.push(d));
    a.connect();
    b.connect();
    await Promise.all([sa.ready, sb.ready]);

    const acks = [];
    for (let i = 0; i < 10; i++) acks.push((await b.publish('chat:resume', { n: i })).event_id);
    await waitFor(() => ga.length === 10, 'a to get 10 events');

    net.gateOpen = false;
    const lost = next(a, 'close');
    Gated.cut();
    const cl = await lost;
    assert.equal(cl.code, 1006);
    assert.equal(cl.reconnect, true);
    // Published while a is away (a cannot reconnect: its gate is closed).
    for (let i = 10; i < 30; i++) acks.push((await b.publish('chat:resume', { n: i })).event_id);
    // a publishes while disconnected: queued, sent after the reconnect.
    const mine = a.publish('chat:resume', { n: 'a' });
    assert.equal(a.state === 'reconnecting' || a.state === 'connecting', true);
    net.gateOpen = true;
    const re = await waitFor(() => subs[1], 'a to subscribe again');
    assert.deepEqual([re.recovered, re.replayed, re.resubscribed], [true, 20, true]);
    acks.push((await mine).event_id);
    for (let i = 30; i < 35; i++) acks.push((await b.publish('chat:resume', { n: i })).event_id);
    await waitFor(() => ga.length >= 36 && gb.length >= 36, 'both to get all 36 events');
    await new Promise((r) => setTimeout(r, 100)); // let any duplicate arrive before counting
    assert.deepEqual(
      ga.map((e) => e.id),
      acks,
      'a: every event once, in order',
    );
    assert.deepEqual(
      gb.map((e) => e.id),
      acks,
      'b: every event once, in order',
    );
  });

  test('a publish whose ack was lost is re-sent with the same id and delivered once', async () => {
    const a = mk(srv.url, { WebSocket: Gated });
    const b = mk(srv.url);
    const sb = b.subscribe('chat:retry');
    const gb = collect(sb);
    a.connect();
    b.connect();
    await sb.ready;
    await waitFor(() => a.state === 'open', 'a open');

    net.dropAcks = true;
    const p = a.publish('chat:retry', 'once');
    await waitFor(() => gb.length === 1, 'b to get the publish');
    net.gateOpen = false;
    Gated.cut(); // the ack never reached a
    await next(a, 'close');
    net.dropAcks = false;
    net.gateOpen = true;
    const ack = await p;
    assert.deepEqual(ack, { event_id: gb[0].id, duplicate: true });
    const marker = await b.publish('chat:retry', 'marker');
    await waitFor(() => gb.some((e) => e.id === marker.event_id), 'the marker');
    assert.deepEqual(
      gb.map((e) => e.data),
      ['once', 'marker'],
    );
  });

  test('server restarts (drain with 1012, then a kill): reconnect, recovered:false surfaced, chat again', async () => {
    const a = mk(srv.url);
    const b = mk(srv.url);
    const sa = a.subscribe('chat:restart');
    const sb = b.subscribe('chat:restart');
    const ga = collect(sa);
    const gb = collect(sb);
    const infoA = [];
    const infoB = [];
    sa.on('subscribed', (d) => infoA.push(d));
    sb.on('subscribed', (d) => infoB.push(d));
    a.connect();
    b.connect();
    await Promise.all([sa.ready, sb.ready]);
    await a.publish('chat:restart', 'before');
    await waitFor(() => gb.length === 1, 'b gets "before"');
    const epoch1 = sa.lastEventId.split('-')[0];

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
      await waitFor(() => infoA.length === n + 1 && infoB.length === n + 1, 'both to subscribe again');
      for (const d of [infoA.at(-1), infoB.at(-1)]) {
        // An in-memory server that restarted has a new epoch: the history
        // is gone, and the client is told so.
        assert.equal(d.recovered, false);
        assert.equal(d.resubscribed, true);
      }
      assert.notEqual(sa.lastEventId.split('-')[0], epoch1);
      const ack = await b.publish('chat:restart', signal);
      await waitFor(() => ga.some((e) => e.id === ack.event_id), `a gets the message after ${signal}`);
    }
    assert.deepEqual(
      ga.map((e) => e.data),
      ['before', 'SIGTERM', 'SIGKILL'],
    );
  });
});
