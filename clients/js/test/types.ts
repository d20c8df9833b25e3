// Compiled with tsc --noEmit (npm test): the published declarations must
// let an app write ordinary code with useful types. Never run.
import { Client, SwitchboardError, closeInfo } from '../dist/index.js';
import type { Ack, ConnectionInfo, HistoryPage, PresenceInfo, State, SubscribedData, Envelope } from '../dist/index.js';

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
