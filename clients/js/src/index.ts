// Switchboard client: one connection (WebSocket, or its HTTP emulation) that survives network
// failures and server restarts, with rooms that recover missed events.
export { Client } from './client';
export type {
  State,
  ClientOptions,
  ClientEvents,
  ConnectionInfo,
  CloseDetail,
  Ack,
  RequestOptions,
  PublishOptions,
  SubscribeOptions,
  HistoryOptions,
  HistoryPage,
  PresenceInfo,
  WebSocketLike,
  WebSocketConstructor,
} from './client';
export { Subscription } from './subscription';
export type { SubscribedData, SubscriptionEvents, SubscriptionState, GapData } from './subscription';
export { SwitchboardError, Emitter } from './emitter';
export type { Envelope } from './emitter';
export { closeInfo, closeCodes, backoffDelay } from './codes';
export type { CloseInfo, BackoffOptions } from './codes';
export type { TransportName, EventSourceLike, EventSourceConstructor, FetchLike } from './transport';
