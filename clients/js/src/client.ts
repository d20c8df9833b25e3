import { Emitter, Envelope, SwitchboardError } from './emitter';
import { backoffDelay, closeInfo } from './codes';
import { Subscription, SubscribedData } from './subscription';
import { Emulation, emuURL, TransportName, EventSourceConstructor, FetchLike } from './transport';

/**
 * Client state. `reconnecting` is the wait between a lost connection and
 * the next attempt (also while the page is hidden or the browser offline);
 * `connecting` covers getting a token and the handshake (of every transport
 * tried in turn), up to the server's connection_established.
 */
export type State = 'connecting' | 'open' | 'closing' | 'closed' | 'reconnecting';

/** The part of the WHATWG WebSocket the client uses (browsers, Node >= 22, ws). */
export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: any) => void) | null;
  onclose: ((ev: any) => void) | null;
  onerror: ((ev: any) => void) | null;
}

/** A WebSocket class: globalThis.WebSocket, or the ws package's default export. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** Client options. Times are in milliseconds. */
export interface ClientOptions {
  /** WebSocket implementation. Default: globalThis.WebSocket. On Node 20 pass the ws package. */
  WebSocket?: WebSocketConstructor;
  /**
   * The transports to try, in order: when one fails before the server's
   * connection_established, the next is tried at once. A transport that
   * worked is tried first on later reconnects; after a round in which every
   * transport failed, the next round starts from the top again. Transports
   * this runtime cannot run (websocket without a WebSocket class, the HTTP
   * ones without fetch) are left out. Default ['websocket', 'http_stream', 'sse'].
   */
  transports?: TransportName[];
  /** URL of the emulation's stream. Default: beside the WebSocket URL, /ws -> /emulation/stream, http(s). */
  streamURL?: string;
  /** URL of the emulation's POSTs. Default: beside the WebSocket URL, /ws -> /emulation/send, http(s). */
  sendURL?: string;
  /** fetch implementation of the HTTP transports. Default: globalThis.fetch. */
  fetch?: FetchLike;
  /**
   * EventSource class of the sse transport. Default: globalThis.EventSource;
   * without one (Node 20, or null here) the sse stream is read with fetch.
   */
  EventSource?: EventSourceConstructor | null;
  /** Subprotocols offered. Default "switchboard.v1". */
  protocols?: string | string[];
  /** Token sent as the first frame ({"type":"auth"}). */
  token?: string;
  /**
   * Called for a token when none is held: before connecting, after close
   * 4000 (session expired) and on session_expiring (the new token is sent
   * as {"type":"refresh"} unless it is the token the connection already
   * has; a refusal is an error event).
   */
  getToken?: () => string | Promise<string>;
  /** Reconnect after a transient close. Default true. */
  reconnect?: boolean;
  /** Backoff cap of the first reconnect attempt. Default 500. */
  initialDelay?: number;
  /** Largest backoff cap. Default 30000. */
  maxDelay?: number;
  /** Growth of the backoff cap per attempt. Default 2. */
  factor?: number;
  /** Consecutive failed attempts before giving up (close, error "reconnect_failed"). Default Infinity. */
  maxAttempts?: number;
  /**
   * Messages that may wait for a connection (sends, publishes and requests,
   * including publishes waiting to be sent again); beyond it a publish or
   * request rejects with "queue_full" and send returns false. Default 100.
   */
  queueSize?: number;
  /** Interval of the client's {"type":"ping"}; 0 turns it off. Default 25000. */
  pingInterval?: number;
  /** Pings left unanswered before the connection is dropped and re-made. Default 2. */
  maxMissedPongs?: number;
  /** Default timeout of publish, history, presence and rpc; 0 for none. Default 15000. */
  timeout?: number;
  /**
   * How long an attempt may take from the handshake to connection_established
   * before it counts as failed (the next transport is tried); 0 for no limit.
   * Default 10000.
   */
  connectTimeout?: number;
}

/** The data of connection_established. */
export interface ConnectionInfo {
  user_id: string;
  connection_id: string;
  server_time: number;
  heartbeat_interval_ms: number;
  protocol_version: number;
  node?: string;
  /** When the credentials expire (Unix ms); absent: never. */
  expires_at?: number;
  /** The server sends {"type":"ping"} with every heartbeat (the client answers pong). */
  json_ping?: boolean;
  /** The transport of this connection (set by the client). */
  transport: TransportName;
}

/** The `close` event: the connection ended. */
export interface CloseDetail {
  code: number;
  reason: string;
  /** The close code's name ("service_restart"). */
  name: string;
  /** Whether the client will reconnect. */
  reconnect: boolean;
}

/** Client lifecycle events; every frame is also emitted as `message` and under its own type. */
export interface ClientEvents {
  open: ConnectionInfo;
  close: CloseDetail;
  error: SwitchboardError;
  state: { state: State; prev: State };
  reconnecting: { attempt: number; delay: number; code: number };
  /** A transport failed before connection_established: the next one is tried now. */
  fallback: { from: TransportName; to: TransportName; code: number; reason: string };
  message: Envelope;
}

/** Options of Client.subscribe. */
export interface SubscribeOptions<T = any> {
  /** Gets every room event, like on('*'). */
  handler?: (ev: Envelope<T>) => void;
  /**
   * Called for a subscription token (private rooms) before every subscribe
   * of the room: the first, each one after a reconnect, and the renewal on
   * subscription_expiring or after the server ended the subscription at the
   * token's expiry. A failure, or a token the server refuses, ends the
   * subscription: error event, then unsubscribed.
   */
  getToken?: (room: string) => string | Promise<string>;
}

/** The acknowledgement of a publish. */
export interface Ack {
  event_id: string;
  /** The server had already stored this publish id: not delivered twice. */
  duplicate?: boolean;
}

export interface RequestOptions {
  /** Milliseconds to wait for the answer (0: forever). Default: ClientOptions.timeout. */
  timeout?: number;
}

export interface PublishOptions extends RequestOptions {
  /** Event type. Default "message". */
  type?: string;
  /** Publish id; a re-send with the same id is not delivered twice. Default: generated. */
  id?: string;
  /**
   * Leave this connection out of the event: the rest of the room receives
   * it and the ack still comes (the seeds' broadcast(..., exclude=websocket)).
   */
  excludeSelf?: boolean;
}

export interface HistoryOptions extends RequestOptions {
  /** Only events after this event id. */
  since?: string;
  /** At most this many events (server default 100, at most 1000). */
  limit?: number;
}

/** A page of room history. */
export interface HistoryPage {
  events: Envelope[];
  position: string;
  /** False if events after `since` were already evicted. */
  complete: boolean;
  /** More events follow: ask again with since = the last event's id. */
  has_more: boolean;
}

/** A room's presence. */
export interface PresenceInfo {
  clients: number;
  users: number;
  members?: { user_id: string; connection_id: string; info?: unknown }[];
}

// A message waiting to be sent or answered.
interface Req {
  f: string; // the frame
  id?: string;
  k?: 0 | 1 | 2; // after a lost connection: 0 reject, 1 send again, 2 forget
  s?: boolean; // sent on the current connection
  t?: ReturnType<typeof setTimeout>;
  cb?: (e: SwitchboardError | null, d?: any) => void;
}

// Server frames that answer a request by its id.
const REPLY = /^(ack|error|subscribed|history_result|presence_result|rpc_result|refreshed)$/;
// Server frames that are not room events.
const CONTROL = /^(ack|error|subscribed|unsubscribed|history_result|presence_result|rpc_result|refreshed|pong|connection_established|disconnect|session_expiring|subscription_expiring)$/;
// Client event names that a frame type does not also use.
const OWN = /^(open|close|error|state|reconnecting|fallback|message)$/;

const noop = () => {};
const str = JSON.stringify;
const err = (code: string, msg: string, ref?: string, close?: number, detail?: unknown) => new SwitchboardError(code, msg, ref, close, detail);
const why = (e: any) => String((e && e.message) || e);
// A page that cannot be seen, or a browser that knows it is offline, would
// only waste reconnect attempts (and battery).
const paused = () =>
  (typeof document != 'undefined' && document.visibilityState == 'hidden') ||
  (typeof navigator != 'undefined' && navigator.onLine === false);

/**
 * Client is one connection to a Switchboard server, kept open across network
 * failures and server restarts. Create it, add handlers, call connect.
 *
 *     const sb = new Client('wss://example.com/ws').connect();
 *     const room = sb.subscribe('chat:lobby', (ev) => console.log(ev.data));
 *     await room.publish({ text: 'hi' });
 */
export class Client extends Emitter<ClientEvents> {
  state: State = 'closed';
  /** The data of the latest connection_established. */
  info?: ConnectionInfo;
  private o: Required<Omit<ClientOptions, 'token' | 'getToken' | 'streamURL' | 'sendURL' | 'EventSource'>> & ClientOptions;
  private T: TransportName[]; // the transports this runtime can run, in order
  private ti = 0; // the transport of the current attempt
  private p = 0; // where the next round of attempts starts
  private tn: TransportName | null = null;
  private ws?: WebSocketLike;
  private up = false; // connection_established seen: send directly
  private token?: string;
  private exp?: number; // expires_at of the session_expiring answered on this connection
  private gen = 0; // bumped per dial and close, to drop stale callbacks
  private attempt = 0;
  private timer?: ReturnType<typeof setTimeout>;
  private ct?: ReturnType<typeof setTimeout>; // connectTimeout
  private waiting = false; // an attempt is due but paused
  private listening = false;
  private hb?: ReturnType<typeof setInterval>;
  private missed = 0;
  private advice?: { code: number; reconnect: boolean }; // the server's `disconnect` event
  private subs = new Map<string, Subscription>();
  private reqs = new Map<string, Req>();
  private q: Req[] = [];
  private pre = Array.from(crypto.getRandomValues(new Uint8Array(16)), (x) => (x % 36).toString(36)).join('') + '.';
  private n = 0;

  constructor(
    readonly url: string,
    options: ClientOptions = {},
  ) {
    super();
    const F = globalThis.fetch;
    this.o = {
      WebSocket: globalThis.WebSocket,
      transports: ['websocket', 'http_stream', 'sse'],
      fetch: F && ((u, i) => F(u, i)),
      EventSource: (globalThis as any).EventSource,
      protocols: 'switchboard.v1',
      reconnect: true,
      initialDelay: 500,
      maxDelay: 30000,
      factor: 2,
      maxAttempts: Infinity,
      queueSize: 100,
      pingInterval: 25000,
      maxMissedPongs: 2,
      timeout: 15000,
      connectTimeout: 10000,
      ...options,
    };
    this.T = this.o.transports.filter((t) => (t == 'websocket' ? this.o.WebSocket : this.o.fetch || (t == 'sse' && this.o.EventSource)));
    if (!this.T.length)
      throw new TypeError(
        this.o.transports.includes('websocket')
          ? 'switchboard: no WebSocket: pass options.WebSocket (for example the ws package)'
          : 'switchboard: no usable transport in options.transports',
      );
    this.token = options.token;
  }

  /** The transport of the open connection ('websocket', 'http_stream', 'sse'); null while not open. */
  get transport(): TransportName | null {
    return this.tn;
  }

  /** connect opens the connection (or makes a waiting reconnect happen now). */
  connect(): this {
    if (this.state == 'closed') this.ti = this.p = 0;
    if (this.state == 'closed' || this.state == 'reconnecting') {
      this.listen(true);
      this.dial();
    }
    return this;
  }

  /**
   * close ends the connection for good: no reconnect; waiting publishes and
   * requests reject with "closed". connect may be called again later.
   */
  close(code = 1000, reason = ''): void {
    clearTimeout(this.timer);
    this.gen++;
    const ws = this.ws;
    if (ws) {
      this.set('closing');
      this.up = false;
      clearInterval(this.hb);
      try {
        ws.close(code, reason);
      } catch {
        ws.close(); // a browser refuses codes other than 1000 and 3000-4999
      }
    } else if (this.state != 'closed') this.stop(null);
  }

  /**
   * subscribe joins room. The handler (optional, or options.handler) gets
   * every room event; more can be added with on. options.getToken supplies
   * subscription tokens for a private room. Subscribing to a room already
   * subscribed returns the same Subscription. T types the events' data.
   */
  subscribe<T = any>(room: string, handler?: ((ev: Envelope<T>) => void) | SubscribeOptions<T>): Subscription<T> {
    const o: SubscribeOptions<T> = typeof handler == 'function' ? { handler } : handler || {};
    let s = this.subs.get(room) as Subscription<T> | undefined;
    if (!s) {
      this.subs.set(room, (s = new Subscription<T>(this, room)));
      s.getToken = o.getToken;
      if (this.up) this.join(s);
    } else if (o.getToken) s.getToken = o.getToken;
    if (o.handler) s.on('*', o.handler);
    return s;
  }

  /** subscription returns the room's Subscription, if subscribed. */
  subscription(room: string): Subscription | undefined {
    return this.subs.get(room);
  }

  /** unsubscribe leaves the subscription's room (same as sub.unsubscribe()). */
  unsubscribe(s: Subscription): void {
    if (this.subs.get(s.room) != s) return;
    this.subs.delete(s.room);
    s.state = 'unsubscribed';
    if (this.up) this.ws!.send(str({ type: 'unsubscribe', room: s.room }));
    s.ko(err('unsubscribed', 'unsubscribed before the server answered'));
    s.emit('unsubscribed');
  }

  /**
   * publish sends an event to room (no subscription needed) and resolves
   * with the server's ack. Across a reconnect it is sent again with the same
   * id; the server acknowledges that again without delivering it twice.
   */
  publish(room: string, data: unknown, opts: PublishOptions = {}): Promise<Ack> {
    return this.req({ type: opts.type || 'message', id: opts.id, room, data, exclude_self: opts.excludeSelf || undefined }, 1, opts.timeout);
  }

  /** history reads a page of the room's stored events. */
  history(room: string, opts: HistoryOptions = {}): Promise<HistoryPage> {
    return this.req({ type: 'history', room, data: { since: opts.since, limit: opts.limit } }, 1, opts.timeout);
  }

  /** presence lists the connections in room across the cluster. */
  presence(room: string, opts: RequestOptions = {}): Promise<PresenceInfo> {
    return this.req({ type: 'presence', room }, 1, opts.timeout);
  }

  /**
   * rpc calls a server method and resolves with its result. The server
   * answers with a JSON-RPC 2.0 response in rpc_result; a JSON-RPC error
   * rejects with code "rpc_error" (its object in `detail`), a server that
   * refuses rpc rejects with its error code (not_implemented). A call is not
   * sent again after a lost connection (it may not be idempotent): it
   * rejects with "disconnected" instead.
   */
  async rpc<T = unknown>(method: string, params?: unknown, opts: RequestOptions = {}): Promise<T> {
    const d: any = await this.req({ type: 'rpc', data: { method, params } }, 0, opts.timeout);
    const e = d && d.error;
    if (e) throw err('rpc_error', e.message, undefined, undefined, e);
    return d && d.jsonrpc ? d.result : d;
  }

  /**
   * send sends a raw message, queued while not connected. It returns false
   * if the queue is full.
   */
  send(msg: Envelope): boolean {
    if (!this.up && this.q.length >= this.o.queueSize) return false;
    this.out({ f: str(msg) });
    return true;
  }

  private req<T>(m: Envelope, k: 0 | 1, timeout = this.o.timeout): Promise<T> {
    return new Promise((res, rej) => {
      const id = (m.id ||= this.id());
      if (this.reqs.has(id)) return rej(err('bad_request', `request id ${id} is already waiting for an answer`, id));
      const r: Req = { f: str(m), id, k, cb: (e, d) => (e ? rej(e) : res(d)) };
      if (timeout > 0) r.t = setTimeout(() => this.fin(r, err('timeout', `no answer to ${m.type} in ${timeout} ms`, id)), timeout);
      this.reqs.set(id, r);
      this.out(r);
    });
  }

  private id(): string {
    return this.pre + (++this.n).toString(36);
  }

  private out(r: Req): void {
    if (this.up) {
      this.ws!.send(r.f);
      r.s = true;
    } else if (this.q.length < this.o.queueSize) this.q.push(r);
    else if (r.cb) this.fin(r, err('queue_full', `more than ${this.o.queueSize} messages wait for a connection`, r.id));
  }

  // fin settles a request and forgets it.
  private fin(r: Req, e: SwitchboardError | null, d?: unknown): void {
    this.reqs.delete(r.id!);
    clearTimeout(r.t);
    const i = this.q.indexOf(r);
    if (i >= 0) this.q.splice(i, 1);
    r.cb!(e, d);
  }

  private set(state: State): void {
    const prev = this.state;
    if (prev != state) {
      this.state = state;
      this.emit('state', { state, prev });
    }
  }

  private listen(on: boolean): void {
    if (on == this.listening) return;
    this.listening = on;
    const k = on ? 'addEventListener' : 'removeEventListener';
    if (typeof document != 'undefined') document[k]?.('visibilitychange', this.wake);
    (globalThis as any)[k]?.('online', this.wake);
  }

  private wake = () => {
    if (this.waiting && !paused()) {
      this.waiting = false;
      this.dial();
    }
  };

  private dial(): void {
    clearTimeout(this.timer);
    this.waiting = false;
    const g = ++this.gen;
    this.set('connecting');
    const go = (token?: string) => {
      if (g != this.gen) return;
      const t = this.T[this.ti];
      const o = this.o;
      let ws: WebSocketLike;
      try {
        ws = this.ws =
          t == 'websocket'
            ? new o.WebSocket(this.url, o.protocols)
            : new Emulation(
                t == 'sse',
                o.streamURL || emuURL(this.url, 'emulation/stream', true),
                o.sendURL || emuURL(this.url, 'emulation/send', false),
                token,
                o.fetch,
                o.EventSource,
              );
      } catch (e) {
        this.emit('error', err('connect', why(e)));
        return this.lost(1006, why(e));
      }
      // The HTTP transports send the token with the request (no auth frame).
      ws.onopen = () => token && t == 'websocket' && ws.send(str({ type: 'auth', id: this.id(), data: { token } }));
      ws.onmessage = (e) => this.recv(e.data);
      ws.onclose = (e) => this.lost(e.code, e.reason);
      ws.onerror = noop; // the close event that follows has the code
      // A handshake that hangs (a proxy that holds the upgrade) fails too.
      const ms = o.connectTimeout;
      if (ms > 0)
        this.ct = setTimeout(() => {
          if (this.ws != ws || this.up) return;
          this.lost(1006, `no connection_established within ${ms} ms`);
          ws.close();
        }, ms);
    };
    const get = this.o.getToken;
    if (this.token != null || !get) go(this.token);
    else
      Promise.resolve()
        .then(get)
        .then(
          (t) => go((this.token = t)),
          (e) => {
            if (g != this.gen) return;
            this.emit('error', err('token', 'getToken failed: ' + why(e)));
            this.lost(1006, 'no token', 1);
          },
        );
  }

  private recv(raw: unknown): void {
    let m: Envelope | undefined;
    try {
      m = JSON.parse(raw as string);
    } catch {}
    if (!m || typeof m.type != 'string') return this.emit('error', err('bad_json', 'the server sent a frame that is not a JSON envelope'));
    const { type: t, data: d } = m;
    const r = m.id != null && REPLY.test(t) ? this.reqs.get(m.id) : undefined;
    if (r) this.fin(r, t == 'error' ? err(d?.code, d?.message, m.id) : null, d);
    if (t == 'connection_established') this.opened(d);
    else if (t == 'pong') this.missed = 0;
    else if (t == 'ping') this.ws!.send('{"type":"pong"}'); // a JSON heartbeat (json_ping)
    else if ((t == 'subscription_expiring' || (t == 'unsubscribed' && !r && d?.code)) && m.room != null) this.expiring(m);
    else if (t == 'session_expiring') this.refresh(d);
    else if (t == 'disconnect') this.advice = d;
    else if (t == 'error' && !r) this.emit('error', err(d?.code, d?.message, d?.ref));
    else if (!CONTROL.test(t) && m.room != null) {
      const s = this.subs.get(m.room);
      if (s && !s.deliver(m)) return; // a duplicate at the reconnect seam
    }
    this.emit('message', m);
    if (!OWN.test(t)) this.emit(t, m);
  }

  private opened(d: ConnectionInfo): void {
    if (this.state != 'connecting') return;
    this.info = d = { ...d, transport: (this.tn = this.T[(this.p = this.ti)]) };
    this.attempt = this.missed = 0;
    this.exp = undefined;
    this.up = true;
    clearTimeout(this.ct);
    clearInterval(this.hb);
    if (this.o.pingInterval > 0)
      this.hb = setInterval(() => {
        if (this.missed++ < this.o.maxMissedPongs) this.ws!.send('{"type":"ping"}');
        else {
          const ws = this.ws!;
          this.lost(4008, 'heartbeat timeout');
          ws.close(4008, 'heartbeat timeout');
        }
      }, this.o.pingInterval);
    this.subs.forEach((s) => this.join(s));
    const q = this.q;
    this.q = [];
    q.forEach((r) => this.out(r));
    this.set('open');
    this.emit('open', d);
  }

  // join sends a subscribe for s, from its last event id if it has one,
  // with a subscription token from its getToken if it has one. renew: s is
  // subscribed and its token is being replaced.
  private join(s: Subscription, renew = false): void {
    const get = s.getToken;
    if (!get) return this.sub(s, undefined, renew);
    const ws = this.ws;
    Promise.resolve(s.room)
      .then(get)
      .then(
        // A token that comes after the connection changed is not used: the
        // next connection_established asks for another.
        (token) => this.ws == ws && this.up && this.subs.get(s.room) == s && this.sub(s, token, renew),
        (e) => this.subs.get(s.room) == s && this.drop(s, err('token', `getToken failed for room ${s.room}: ${why(e)}`), renew),
      );
  }

  private sub(s: Subscription, token: string | undefined, renew: boolean): void {
    const id = this.id();
    const f = str({ type: 'subscribe', id, room: s.room, last_event_id: s.lastEventId, data: token != null ? { token } : undefined });
    const cb = (e: SwitchboardError | null, d: SubscribedData) => {
      if (this.subs.get(s.room) != s) return;
      if (!e) return s.subscribed(d, renew);
      this.drop(s, e, renew);
    };
    this.reqs.set(id, { f, id, k: 2, s: true, cb });
    this.ws!.send(f);
  }

  // drop ends s after a refusal or a failed getToken. A refused renewal
  // leaves the server's subscription until the old token expires: leave it.
  private drop(s: Subscription, e: SwitchboardError, renew: boolean): void {
    this.subs.delete(s.room);
    s.state = 'unsubscribed';
    if (renew && this.up) this.ws!.send(str({ type: 'unsubscribe', room: s.room }));
    s.emit('error', e);
    s.ko(e);
    s.emit('unsubscribed');
  }

  // expiring handles the subscription token's expiry: subscription_expiring
  // (renew it) and the server's own unsubscribed at expiry (subscribe again
  // with a new token, recovering what was missed, or end the subscription).
  private expiring(m: Envelope): void {
    const s = this.subs.get(m.room!);
    if (!s || s.state != 'subscribed') return;
    if (m.type == 'subscription_expiring') {
      if (s.getToken) this.join(s, true);
    } else if (s.getToken) {
      s.state = 'subscribing';
      this.join(s);
    } else this.drop(s, err(m.data?.code || 'subscription_expired', m.data?.message || `the server ended the subscription to ${s.room}`), false);
  }

  // refresh answers session_expiring: a new token from getToken, sent as
  // {"type":"refresh"}. A token that expires within the server's lead gets
  // session_expiring again at once; answering each of those would be a
  // refresh storm, so each expires_at is answered once per connection, and
  // the token the connection already has is not sent again (it extends
  // nothing: the server closes with 4000 at expiry, then getToken is asked
  // for a new token to reconnect with).
  private refresh(d: any): void {
    const get = this.o.getToken;
    const at = d && d.expires_at;
    if (get && !(at && at == this.exp)) {
      this.exp = at;
      Promise.resolve()
        .then(get)
        .then(
          (token) => {
            if (token == this.token) return;
            this.token = token;
            // Not connected: the next connection authenticates with it.
            if (this.up)
              this.req<{ expires_at?: number } | undefined>({ type: 'refresh', data: { token } }, 0).then(
                (d) => {
                  // The new credentials' expiry (absent: they never expire).
                  if (this.info) this.info.expires_at = d && d.expires_at;
                },
                (e) => this.emit('error', e),
              );
          },
          (e) => this.emit('error', err('token', 'getToken failed: ' + why(e))),
        );
    }
  }

  // lost handles the end of a connection (or of an attempt): what was sent
  // and not answered is queued again or rejected, then the close code decides.
  // nt: no transport was tried (getToken failed): no fallback.
  private lost(code: number, reason: string, nt?: 1): void {
    const ws = this.ws;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = ws.onerror = noop;
    const was = this.up;
    clearTimeout(this.ct);
    this.ws = undefined;
    this.up = false;
    this.tn = null;
    clearInterval(this.hb);
    const again: Req[] = [];
    this.reqs.forEach((r) => {
      if (!r.s) return;
      r.s = false;
      if (r.k == 1) again.push(r);
      else if (r.k) this.reqs.delete(r.id!);
      else this.fin(r, err('disconnected', 'the connection was lost before the answer', r.id));
    });
    this.q = again.concat(this.q);
    this.subs.forEach((s) => (s.state = 'subscribing'));

    // The server's advice in its `disconnect` event wins over the table.
    const adv = this.advice;
    this.advice = undefined;
    const info = closeInfo(code);
    const mine = this.state == 'closing';
    if (info.refresh) this.token = undefined;
    let retry =
      !mine && this.o.reconnect && (adv && adv.code == code ? adv.reconnect : info.reconnect) && (!info.refresh || !!this.o.getToken);
    const from = this.T[this.ti];
    // An attempt that never came up: the next transport, at once; after the
    // last, a new round from the top after the backoff. A connection that
    // came up: the next round starts with its transport.
    if (!nt) this.ti = was ? this.p : ++this.ti < this.T.length ? this.ti : (this.p = 0);
    const fall = retry && !was && !nt && this.ti > 0;
    const gaveUp = retry && !fall && this.attempt >= this.o.maxAttempts;
    if (gaveUp) retry = false;
    this.emit('close', { code, reason, name: info.name, reconnect: retry });
    if (fall) {
      this.emit('fallback', { from, to: this.T[this.ti], code, reason });
      this.dial();
    } else if (retry) {
      const delay = backoffDelay(this.attempt++, this.o);
      this.set('reconnecting');
      this.emit('reconnecting', { attempt: this.attempt, delay, code });
      this.timer = setTimeout(() => (paused() ? (this.waiting = true) : this.dial()), delay);
    } else
      this.stop(
        mine || code == 1000 || code == 1001
          ? null
          : gaveUp
            ? err('reconnect_failed', `gave up after ${this.attempt} reconnect attempts`, undefined, code)
            : err(info.name, reason || `connection closed with ${code} (${info.name})`, undefined, code),
      );
  }

  // stop ends the client: pending work is rejected with e (or "closed").
  private stop(e: SwitchboardError | null): void {
    this.set('closed');
    this.listen(false);
    this.waiting = false;
    const x = e || err('closed', 'the client was closed');
    this.reqs.forEach((r) => this.fin(r, x));
    this.q = [];
    this.subs.forEach((s) => (s.state = 'subscribing'));
    if (e) this.emit('error', e);
  }
}
