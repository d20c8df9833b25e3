// Unit tests of the transports and the fallback between them, against a
// fake WebSocket, a fake fetch (the emulation's stream and POSTs) and a
// fake EventSource: no network.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '../dist/index.js';
import { fakeSocketClass, fakeFetch, fakeEventSourceClass, established, settle } from './fake.mjs';

const line = (o) => JSON.stringify(o) + '\n';
const sse = (o) => `data: ${JSON.stringify(o)}\n\n`;

function setup(t, opts = {}) {
  t.mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  const WS = fakeSocketClass();
  const F = fakeFetch();
  const c = new Client('ws://test/ws', { WebSocket: WS, fetch: F, EventSource: null, pingInterval: 0, initialDelay: 10, ...opts });
  const log = { close: [], error: [], open: [], fallback: [], reconnecting: [] };
  for (const k of Object.keys(log)) c.on(k, (x) => log[k].push(x));
  return { c, WS, F, log };
}

// emulated returns a client connected over http_stream (or sse read by fetch).
async function emulated(t, transport = 'http_stream', opts = {}) {
  const s = setup(t, { transports: [transport], ...opts });
  s.c.connect();
  await settle();
  const st = s.F.streams().at(-1);
  st.stream();
  await settle();
  st.push(transport === 'sse' ? 'retry: 2000\n\n' + sse(established(transport)) : line(established(transport)));
  await settle();
  return { ...s, st };
}

describe('http_stream', () => {
  test('GET beside /ws with format=ndjson, token in the Authorization header, no auth frame', async (t) => {
    const { c, F, log, st } = await emulated(t, 'http_stream', { token: 'tok' });
    assert.equal(st.url, 'http://test/emulation/stream?format=ndjson');
    assert.deepEqual(st.headers, { Authorization: 'Bearer tok' });
    assert.equal(c.state, 'open');
    assert.equal(c.transport, 'http_stream');
    assert.equal(c.info.transport, 'http_stream');
    assert.equal(log.open[0].transport, 'http_stream');
    // The first frame up is not an auth frame: the token went with the GET.
    c.send({ type: 'typing', room: 'r' });
    await settle();
    assert.equal(F.posts().length, 1);
    assert.equal(F.posts()[0].url, 'http://test/emulation/send');
    assert.deepEqual(F.posts()[0].body, { session: 'sess-1', frames: [{ type: 'typing', room: 'r' }] });
  });

  test('lines split across chunks, heartbeats (empty lines) ignored, CRLF accepted', async (t) => {
    const { c, st } = await emulated(t);
    const got = [];
    c.on('message', (m) => got.push(m.type));
    const ev = JSON.stringify({ type: 'notice', data: { x: 'é' } });
    st.push(ev.slice(0, 7));
    await settle();
    assert.deepEqual(got, []);
    st.push(ev.slice(7) + '\n\n\r\n' + JSON.stringify({ type: 'other' }) + '\r\n');
    await settle();
    assert.deepEqual(got, ['notice', 'other']);
  });

  test('a character split between two chunks is decoded whole', async (t) => {
    const { c, st } = await emulated(t);
    const got = [];
    c.on('message', (m) => got.push(m.data));
    const bytes = new TextEncoder().encode(JSON.stringify({ type: 'notice', data: 'é€😀' }) + '\n');
    const cut = bytes.indexOf(0xe2) + 1; // inside the euro sign
    st.pushBytes(bytes.slice(0, cut));
    await settle();
    st.pushBytes(bytes.slice(cut));
    await settle();
    assert.deepEqual(got, ['é€😀']);
  });

  test('frames queued while a POST is in flight go as one POST after it is answered, in order', async (t) => {
    const { c, F } = await emulated(t);
    c.send({ type: 'a' });
    c.send({ type: 'b' });
    c.send({ type: 'c' });
    await settle();
    assert.equal(F.posts().length, 1, 'one POST at a time');
    assert.deepEqual(F.posts()[0].body.frames, [{ type: 'a' }]);
    F.posts()[0].respond(204);
    await settle();
    assert.equal(F.posts().length, 2);
    assert.deepEqual(F.posts()[1].body.frames, [{ type: 'b' }, { type: 'c' }]);
    // At most 64 frames a POST.
    F.posts()[1].respond(204);
    await settle();
    for (let i = 0; i < 70; i++) c.send({ type: 'n', data: i });
    await settle();
    F.posts()[2].respond(204);
    await settle();
    assert.equal(F.posts()[3].body.frames.length, 64);
    F.posts()[3].respond(204);
    await settle();
    assert.equal(F.posts()[4].body.frames.length, 5);
    assert.deepEqual(F.posts().slice(2).flatMap((p) => p.body.frames.map((f) => f.data)), [...Array(70).keys()]);
  });

  test('a subscribe, a publish and its ack round-trip over the emulation', async (t) => {
    const { c, F, st } = await emulated(t);
    const sub = c.subscribe('chat:a');
    const p = sub.publish({ text: 'hi' });
    await settle();
    const frames = F.posts().flatMap((x) => x.body.frames);
    assert.deepEqual(frames.map((f) => f.type), ['subscribe']);
    F.posts()[0].respond(204);
    await settle();
    const pub = F.posts()[1].body.frames[0];
    assert.equal(pub.type, 'message');
    st.push(line({ type: 'subscribed', id: frames[0].id, room: 'chat:a', data: { position: 'e-0' } }));
    st.push(line({ type: 'ack', id: pub.id, data: { event_id: 'e-1' } }));
    await settle();
    assert.deepEqual(await p, { event_id: 'e-1' });
    assert.equal(sub.state, 'subscribed');
  });

  test('POST 404 -> reconnect (backoff), re-subscribe with last_event_id, publish re-sent with its id', async (t) => {
    const { c, F, st, log } = await emulated(t);
    const sub = c.subscribe('chat:a');
    await settle();
    const s1 = F.posts()[0].body.frames[0];
    F.posts()[0].respond(204);
    st.push(line({ type: 'subscribed', id: s1.id, room: 'chat:a', data: { position: 'e-0' } }));
    st.push(line({ type: 'message', id: 'e-1', room: 'chat:a', data: 1 }));
    await settle();
    assert.equal(sub.lastEventId, 'e-1');
    const p = c.publish('chat:a', 'x');
    await settle();
    const pub = F.posts()[1].body.frames[0];
    F.posts()[1].respond(404, { error: { code: 'unknown_session', message: 'no such session' } });
    await settle();
    assert.equal(st.aborted, true, 'the stream is closed when the session is lost');
    assert.equal(log.close.length, 1);
    assert.equal(log.close[0].code, 1006);
    assert.equal(log.close[0].reconnect, true);
    assert.equal(log.fallback.length, 0);
    assert.equal(c.state, 'reconnecting');
    assert.equal(c.transport, null);
    t.mock.timers.tick(10);
    await settle();
    const st2 = F.streams().at(-1);
    assert.equal(F.streams().length, 2);
    st2.stream();
    await settle();
    st2.push(line(established('http_stream', 'sess-2')));
    await settle();
    assert.equal(F.posts()[2].body.session, 'sess-2');
    F.posts()[2].respond(204);
    await settle();
    const frames = F.posts().slice(2).flatMap((x) => x.body.frames);
    assert.deepEqual(
      frames.map((f) => [f.type, f.last_event_id, f.type === 'message' ? f.id : undefined]),
      [
        ['subscribe', 'e-1', undefined],
        ['message', undefined, pub.id],
      ],
    );
    st2.push(line({ type: 'subscribed', id: frames[0].id, room: 'chat:a', data: { position: 'e-1', recovered: true, replayed: 0 } }));
    st2.push(line({ type: 'ack', id: pub.id, data: { event_id: 'e-2' } }));
    await settle();
    assert.deepEqual(await p, { event_id: 'e-2' });
  });

  test('POST network failure: the session is lost as well', async (t) => {
    const { c, F, st, log } = await emulated(t);
    c.send({ type: 'x' });
    await settle();
    F.posts()[0].fail();
    await settle();
    assert.equal(st.aborted, true);
    assert.deepEqual([log.close[0].code, log.close[0].reconnect, c.state], [1006, true, 'reconnecting']);
  });

  test("the stream ends after the server's disconnect: its code and advice decide", async (t) => {
    const { c, st, log } = await emulated(t);
    st.push(line({ type: 'disconnect', data: { code: 1012, reason: 'restart', reconnect: true } }));
    st.end();
    await settle();
    assert.deepEqual(log.close[0], { code: 1012, reason: 'restart', name: 'service_restart', reconnect: true });
    assert.equal(c.state, 'reconnecting');
  });

  test('kicked (4006 disconnect) after connection_established: no fallback, no reconnect', async (t) => {
    const { c, F, st, log } = await emulated(t, 'http_stream', { transports: ['http_stream', 'sse'] });
    st.push(line({ type: 'disconnect', data: { code: 4006, reason: 'bye', reconnect: false } }));
    st.end();
    await settle();
    t.mock.timers.tick(1000);
    await settle();
    assert.equal(c.state, 'closed');
    assert.equal(log.fallback.length, 0);
    assert.equal(F.streams().length, 1);
    assert.equal(log.error.at(-1).code, 'kicked');
  });

  test('HTTP 401 on the stream: 4001 unauthorized, stop (no fallback, no retry)', async (t) => {
    const { c, F, log } = setup(t, { transports: ['http_stream', 'sse'], token: 'bad' });
    c.connect();
    await settle();
    F.streams()[0].respond(401, { error: { code: 'unauthorized', message: 'bad token' } });
    await settle();
    assert.deepEqual([log.close[0].code, log.close[0].reason, c.state], [4001, 'HTTP 401 unauthorized', 'closed']);
    assert.equal(log.fallback.length, 0);
    assert.equal(F.streams().length, 1);
  });

  test('client pings go up by POST, pongs come down the stream; missed pongs drop it with 4008', async (t) => {
    const { c, F, st, log } = await emulated(t, 'http_stream', { pingInterval: 1000, maxMissedPongs: 1 });
    t.mock.timers.tick(1000);
    await settle();
    assert.deepEqual(F.posts()[0].body.frames, [{ type: 'ping' }]);
    F.posts()[0].respond(204);
    st.push(line({ type: 'pong' }));
    await settle();
    t.mock.timers.tick(1000);
    await settle();
    assert.deepEqual(F.posts()[1].body.frames, [{ type: 'ping' }]);
    F.posts()[1].respond(204);
    await settle();
    t.mock.timers.tick(1000); // no pong to the second ping
    await settle();
    assert.deepEqual([log.close[0].code, log.close[0].reconnect], [4008, true]);
    assert.equal(st.aborted, true);
    assert.notEqual(c.state, 'open');
  });

  test("a server JSON ping is answered with a pong POST", async (t) => {
    const { F, st } = await emulated(t);
    st.push(line({ type: 'ping' }));
    await settle();
    assert.deepEqual(F.posts()[0].body.frames, [{ type: 'pong' }]);
  });

  test('close() aborts the stream and ends the client', async (t) => {
    const { c, st, log } = await emulated(t);
    c.close();
    await settle();
    assert.equal(st.aborted, true);
    assert.equal(c.state, 'closed');
    assert.equal(log.error.length, 0);
  });
});

describe('sse', () => {
  test('without EventSource: read with fetch (format=sse): retry, comments, multi-line data, CRLF', async (t) => {
    const { c, st, F } = await emulated(t, 'sse', { token: 'tok' });
    assert.equal(st.url, 'http://test/emulation/stream?format=sse');
    assert.deepEqual(st.headers, { Authorization: 'Bearer tok' });
    assert.equal(c.transport, 'sse');
    const got = [];
    c.on('message', (m) => got.push(m.data));
    st.push(': heartbeat\n\n');
    st.push('data: {"type":"a",\r\ndata: "data":1}\r\n\r\n');
    st.push('data:{"type":"b","data":2}\n');
    await settle();
    assert.deepEqual(got, [1]);
    st.push('\n');
    await settle();
    assert.deepEqual(got, [1, 2]);
    c.send({ type: 'x' });
    await settle();
    assert.deepEqual(F.posts()[0].body, { session: 'sess-1', frames: [{ type: 'x' }] });
  });

  test('native EventSource: token by query, withCredentials; on error it is closed and the client reconnects itself', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
    const F = fakeFetch();
    const ES = fakeEventSourceClass();
    const c2 = new Client('wss://rt.example/app/ws?json_ping=1', { EventSource: ES, fetch: F, transports: ['sse'], token: 't k', pingInterval: 0, initialDelay: 10 });
    const closes = [];
    c2.on('close', (x) => closes.push(x));
    c2.connect();
    const es = ES.last;
    assert.equal(es.url, 'https://rt.example/app/emulation/stream?json_ping=1&format=sse&token=t+k');
    assert.deepEqual(es.init, { withCredentials: true });
    es.open();
    es.frame(established('sse', 's-9'));
    assert.equal(c2.transport, 'sse');
    c2.send({ type: 'hello' });
    await settle();
    assert.equal(F.posts()[0].url, 'https://rt.example/app/emulation/send');
    assert.deepEqual(F.posts()[0].body, { session: 's-9', frames: [{ type: 'hello' }] });
    es.error();
    await settle();
    assert.equal(es.closed, true, 'EventSource must not reconnect on its own');
    assert.deepEqual([closes[0].code, closes[0].reconnect, c2.state], [1006, true, 'reconnecting']);
    t.mock.timers.tick(10);
    assert.equal(ES.instances.length, 2);
    c2.close();
    await settle();
    assert.equal(ES.instances[1].closed, true);
  });

  test('streamURL and sendURL override the derived ones', async (t) => {
    const { F } = await emulated(t, 'http_stream', { streamURL: 'http://other:1/s?x=1', sendURL: 'http://other:1/p' });
    assert.equal(F.streams()[0].url, 'http://other:1/s?x=1&format=ndjson');
  });
});

describe('fallback', () => {
  const all = ['websocket', 'http_stream', 'sse'];

  test('handshake refused (1006 before open) -> http_stream at once; transport reported', async (t) => {
    const { c, WS, F, log } = setup(t, { transports: all });
    c.connect();
    WS.last.closeWith(1006);
    assert.deepEqual(log.fallback, [{ from: 'websocket', to: 'http_stream', code: 1006, reason: '' }]);
    assert.equal(log.reconnecting.length, 0, 'no backoff wait for a fallback');
    assert.equal(c.state, 'connecting');
    await settle();
    assert.equal(F.streams().length, 1);
    F.streams()[0].stream();
    await settle();
    F.streams()[0].push(line(established()));
    await settle();
    assert.equal(c.transport, 'http_stream');
    assert.equal(log.open[0].transport, 'http_stream');
  });

  test('socket opened then closed before connection_established -> next transport', async (t) => {
    const { c, WS, F, log } = setup(t, { transports: all });
    c.connect();
    WS.last.open();
    WS.last.closeWith(1011, 'proxy cut it');
    assert.equal(log.fallback[0].from, 'websocket');
    await settle();
    assert.equal(F.streams().length, 1);
  });

  test('a handshake that hangs: after connectTimeout the socket is closed and the next transport tried', async (t) => {
    const { c, WS, F, log } = setup(t, { transports: all, connectTimeout: 3000 });
    c.connect();
    WS.last.open(); // upgraded, but connection_established never comes
    t.mock.timers.tick(2999);
    assert.equal(log.fallback.length, 0);
    t.mock.timers.tick(1);
    assert.deepEqual(WS.last.closedWith, { code: undefined, reason: undefined });
    assert.deepEqual(log.fallback, [{ from: 'websocket', to: 'http_stream', code: 1006, reason: 'no connection_established within 3000 ms' }]);
    await settle();
    assert.equal(F.streams().length, 1);
    // The stream answers but stays silent too: sse is next.
    F.streams()[0].stream();
    await settle();
    t.mock.timers.tick(3000);
    await settle();
    assert.equal(F.streams()[0].aborted, true);
    assert.equal(log.fallback[1].to, 'sse');
    F.streams()[1].stream();
    await settle();
    F.streams()[1].push(sse(established('sse')));
    await settle();
    assert.equal(c.transport, 'sse');
    t.mock.timers.tick(10000); // the timer is gone once established
    assert.equal(c.state, 'open');
  });

  test('connectTimeout 0: no limit', (t) => {
    const { c, WS, log } = setup(t, { transports: all, connectTimeout: 0 });
    c.connect();
    t.mock.timers.tick(600000);
    assert.equal(log.fallback.length, 0);
    assert.equal(c.state, 'connecting');
    WS.last.establish();
    assert.equal(c.state, 'open');
  });

  test('an established WebSocket that drops: reconnect on WebSocket, no fallback', async (t) => {
    const { c, WS, F, log } = setup(t, { transports: all });
    c.connect();
    WS.last.establish();
    assert.equal(c.transport, 'websocket');
    WS.last.closeWith(1006);
    assert.equal(log.fallback.length, 0);
    assert.equal(c.state, 'reconnecting');
    t.mock.timers.tick(10);
    assert.equal(WS.instances.length, 2);
    assert.equal(F.calls.length, 0);
  });

  test('fatal close (4006 kicked) after connection_established: no fallback, stop', async (t) => {
    const { c, WS, F, log } = setup(t, { transports: all });
    c.connect();
    WS.last.establish();
    WS.last.closeWith(4006, 'kicked');
    t.mock.timers.tick(1000);
    await settle();
    assert.equal(c.state, 'closed');
    assert.equal(log.fallback.length, 0);
    assert.equal(F.calls.length, 0);
    assert.equal(WS.instances.length, 1);
  });

  test('fatal close before connection_established (4001 on the auth frame): no fallback either', async (t) => {
    const { c, WS, F, log } = setup(t, { transports: all, token: 'bad' });
    c.connect();
    WS.last.open();
    WS.last.closeWith(4001, 'bad token');
    await settle();
    assert.equal(c.state, 'closed');
    assert.equal(log.fallback.length, 0);
    assert.equal(F.calls.length, 0);
  });

  test('every transport fails: backoff, then a new round from the top of the list', async (t) => {
    const { c, WS, F, log } = setup(t, { transports: all });
    t.mock.method(Math, 'random', () => 0.5);
    c.connect();
    WS.last.closeWith(1006);
    await settle();
    F.streams()[0].respond(502);
    await settle();
    assert.deepEqual(
      log.fallback.map((f) => f.to),
      ['http_stream', 'sse'],
    );
    assert.equal(F.streams()[1].u.searchParams.get('format'), 'sse');
    F.streams()[1].fail();
    await settle();
    assert.equal(c.state, 'reconnecting');
    assert.deepEqual(log.reconnecting, [{ attempt: 1, delay: 5, code: 1006 }]);
    assert.equal(log.close.at(-1).reason.includes('failed'), true);
    t.mock.timers.tick(5);
    assert.equal(WS.instances.length, 2, 'the next round starts with websocket');
  });

  test('sticky: reconnects after a drop start with the transport that worked; a failed round goes back to websocket', async (t) => {
    const { c, WS, F, log } = setup(t, { transports: all });
    c.connect();
    WS.last.closeWith(1006);
    await settle();
    F.streams()[0].stream();
    await settle();
    F.streams()[0].push(line(established()));
    await settle();
    // The server restarts: the stream ends.
    F.streams()[0].push(line({ type: 'disconnect', data: { code: 1012, reason: 'restart', reconnect: true } }));
    F.streams()[0].end();
    await settle();
    assert.equal(c.state, 'reconnecting');
    t.mock.timers.tick(10);
    await settle();
    assert.equal(WS.instances.length, 1, 'no WebSocket attempt: http_stream worked');
    assert.equal(F.streams().length, 2);
    // The server is still down: http_stream and sse fail, then websocket again.
    F.streams()[1].respond(502);
    await settle();
    F.streams()[2].respond(502);
    await settle();
    assert.equal(c.state, 'reconnecting');
    t.mock.timers.tick(20);
    await settle();
    assert.equal(WS.instances.length, 2);
    assert.equal(log.fallback.length, 2);
  });

  test('maxAttempts counts rounds, not transports', async (t) => {
    const { c, WS, F, log } = setup(t, { transports: ['websocket', 'http_stream'], maxAttempts: 1 });
    c.connect();
    WS.last.closeWith(1006);
    await settle();
    F.streams()[0].respond(503);
    await settle();
    t.mock.timers.tick(10);
    WS.last.closeWith(1006);
    await settle();
    assert.equal(F.streams().length, 2, 'the second round tries http_stream too');
    F.streams()[1].respond(503);
    await settle();
    assert.equal(c.state, 'closed');
    assert.equal(log.error.at(-1).code, 'reconnect_failed');
  });

  test('getToken failing is not a transport failure: no fallback', async (t) => {
    const { c, log } = setup(t, {
      transports: all,
      getToken: async () => {
        throw new Error('no');
      },
    });
    c.connect();
    await settle();
    assert.equal(log.fallback.length, 0);
    assert.equal(c.state, 'reconnecting');
  });

  test('connect() after close() starts from the top of the list', async (t) => {
    const { c, WS, F } = setup(t, { transports: all });
    c.connect();
    WS.last.closeWith(1006);
    await settle();
    F.streams()[0].stream();
    await settle();
    F.streams()[0].push(line(established()));
    await settle();
    c.close();
    await settle();
    assert.equal(c.state, 'closed');
    c.connect();
    assert.equal(WS.instances.length, 2);
  });
});
