// Compiled with tsc --noEmit (npm test): the published declarations must
// let an app write ordinary code with useful types. Never run.
import { Client, SwitchboardError, closeInfo } from '../dist/index.js';
import type { Ack, ConnectionInfo, HistoryPage, PresenceInfo, State, SubscribedData, Envelope, TransportName } from '../dist/index.js';

export async function example(): Promise<void> {
  // The DOM WebSocket class is an acceptable implementation.
  const c = new Client('ws://127.0.0.1:1/ws', { WebSocket, token: 't', getToken: async () => 'u', initialDelay: 100 });
  const offOpen = c.on('open', (info: ConnectionInfo) => info.user_id.toUpperCase());
  offOpen();
  c.on('close', (d) => d.code + d.name.length + (d.reconnect ? 1 : 0));
  c.on('error', (e: SwitchboardError) => e.code.length + (e.closeCode ?? 0));
  c.on('state', (s) => {
    const now: State = s.state;
    return now;
  });
  c.on('reconnecting', (r) => r.attempt + r.delay + r.code);
  c.on('user_joined', (ev: Envelope) => ev.user_id);
  c.connect();
  const sub = c.subscribe('chat:lobby', (ev) => ev.data);
  sub.on('subscribed', (d: SubscribedData) => (d.recovered === false ? d.position : d.members));
  sub.on('message', (ev) => ev.id);
  const ready: SubscribedData = await sub.ready;
  const ack: Ack = await sub.publish({ text: 'hi' }, { type: 'chat', timeout: 1000 });
  const page: HistoryPage = await c.history('chat:lobby', { since: ack.event_id, limit: 10 });
  const who: PresenceInfo = await sub.presence();
  const sum = await c.rpc<number>('sum', [1, 2], { timeout: 500 });
  const ok: boolean = c.send({ type: 'typing', room: 'chat:lobby' });
  sub.unsubscribe();
  c.close(1000, 'bye');
  void [ready, page.events[0]?.id, who.clients, sum + 1, ok, closeInfo(1012).reconnect, c.state];
}

// Transports: the option, the getter, the open and fallback events.
export function transports(): void {
  const c = new Client('wss://rt.example/ws', {
    transports: ['websocket', 'http_stream', 'sse'],
    streamURL: 'https://rt.example/emulation/stream',
    sendURL: 'https://rt.example/emulation/send',
    fetch: (url, init) => fetch(url, init),
    EventSource,
    connectTimeout: 5000,
  });
  new Client('/ws', { transports: ['sse'], EventSource: null });
  // @ts-expect-error: not a transport
  new Client('/ws', { transports: ['long_polling'] });
  const now: TransportName | null = c.transport;
  // @ts-expect-error: the getter is read-only
  c.transport = 'sse';
  c.on('open', (info) => {
    const t: TransportName = info.transport;
    return t.length;
  });
  c.on('fallback', (f) => f.from.length + f.to.length + f.code + f.reason.length);
  void now;
}

interface Chat {
  text: string;
}

// subscribe<T>: the room's events carry data of type T; options with getToken.
export function typedRooms(c: Client): void {
  const chat = c.subscribe<Chat>('chat:typed', (ev) => ev.data?.text.toUpperCase());
  chat.on('message', (ev) => ev.data?.text.length);
  // @ts-expect-error: Chat has no field nope
  chat.on('message', (ev) => ev.data?.nope);
  const priv = c.subscribe<Chat>('secret:1', { getToken: async (room) => room + '-token', handler: (ev) => ev.data?.text });
  priv.on('subscribed', (d) => d.expires_at ?? 0);
  const at: number | undefined = priv.expiresAt;
  // @ts-expect-error: getToken must return a string
  c.subscribe('secret:2', { getToken: () => 1 });
  void at;
}
