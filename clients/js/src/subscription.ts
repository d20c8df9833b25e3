import { Emitter, Envelope, SwitchboardError } from './emitter';
import type { Client, HistoryPage, PresenceInfo, PublishOptions, Ack, RequestOptions, HistoryOptions } from './client';

/** The data of a `subscribed` answer, plus whether it was a re-subscribe. */
export interface SubscribedData {
  /** Connections in the room on the server node. */
  members: number;
  /** The id of the room's newest event when the subscription started. */
  position: string;
  /**
   * Set on a re-subscribe after a reconnect: true if every missed event
   * was replayed (they follow this event), false if some were lost for good
   * (history too short, or the server restarted with an in-memory engine and
   * the room's epoch changed). On false, reload the room's state.
   */
  recovered?: boolean;
  /** How many missed events were replayed. */
  replayed?: number;
  /** True after a reconnect, false for the first subscribe. */
  resubscribed: boolean;
  /**
   * When the subscription token it was made with expires (Unix ms); absent
   * without a token, or for a token without an expiry.
   */
  expires_at?: number;
}

/**
 * The data of a `stream_gap` notice: events of the room could not be
 * delivered (protocol.md section 4). Reload the room's state; the events
 * that follow come after `until`.
 */
export interface GapData {
  /** The last event id delivered before the gap, if known. */
  after?: string;
  /** The last missing event id; absent when unknown. */
  until?: string;
  /** evicted, stream_lost, unavailable or too_many. */
  reason: string;
}

/** Events of a Subscription, besides one per room event type. */
export interface SubscriptionEvents {
  subscribed: SubscribedData;
  /** Events were lost for good on a live subscription: reload the room's state. */
  gap: GapData;
  unsubscribed: void;
  error: SwitchboardError;
}

/** State of a Subscription. */
export type SubscriptionState = 'subscribing' | 'subscribed' | 'unsubscribed';

/**
 * Subscription is a client's interest in one room. It survives reconnects:
 * the client subscribes again with the last event id seen, so the server
 * replays what was missed, and drops any event already seen. Listen with
 * on(type) for one event type ("message", "user_joined", ...) or with
 * on('*') (or the handler given to subscribe) for all of them. T is the
 * type of the room events' data (subscribe<T>()); it is not checked at run
 * time.
 */
export class Subscription<T = any> extends Emitter<SubscriptionEvents, Envelope<T>> {
  state: SubscriptionState = 'subscribing';
  /**
   * The id of the newest event seen ("EPOCH-OFFSET"), or the room's
   * position at subscribe time if none was; sent as last_event_id when
   * subscribing again.
   */
  lastEventId?: string;
  /** Resolves with the first `subscribed` answer; rejects if refused. */
  readonly ready: Promise<SubscribedData>;
  /** When the current subscription token expires (Unix ms), if it does. */
  expiresAt?: number;
  /** @internal */ getToken?: (room: string) => string | Promise<string>;
  /** @internal */ ok!: (d: SubscribedData) => void;
  /** @internal */ ko!: (e: SwitchboardError) => void;
  private epoch?: string;
  private offset = 0;
  private n = 0;

  constructor(
    readonly client: Client,
    readonly room: string,
  ) {
    super();
    this.ready = new Promise((res, rej) => {
      this.ok = res;
      this.ko = rej;
    });
    this.ready.catch(() => {}); // an app that never awaits ready gets the error event only
  }

  /** publish sends an event to this room; see Client.publish. */
  publish(data: unknown, opts?: PublishOptions): Promise<Ack> {
    return this.client.publish(this.room, data, opts);
  }

  /** history reads the room's stored events; see Client.history. */
  history(opts?: HistoryOptions): Promise<HistoryPage> {
    return this.client.history(this.room, opts);
  }

  /** presence lists who is in the room; see Client.presence. */
  presence(opts?: RequestOptions): Promise<PresenceInfo> {
    return this.client.presence(this.room, opts);
  }

  /** unsubscribe leaves the room. Events already on the wire are dropped. */
  unsubscribe(): void {
    this.client.unsubscribe(this);
  }

  /**
   * @internal: the server's `subscribed` answer. A renewal (a subscribe
   * with a new token while subscribed) changes nothing the app must hear
   * of, unless events were lost.
   */
  subscribed(d: SubscribedData, renew = false): void {
    this.expiresAt = d.expires_at;
    if (renew && d.recovered !== false) return;
    // With recovered true the replayed events follow and move the position
    // themselves; otherwise the room's position is where we stand now.
    if (d.recovered !== true) this.seen(d.position);
    d.resubscribed = this.n++ > 0;
    this.state = 'subscribed';
    this.emit('subscribed', d);
    this.ok(d);
  }

  /**
   * @internal: a room event. Returns false for an event at or before the
   * newest one seen in the same epoch: a duplicate at the reconnect seam.
   */
  deliver(ev: Envelope): boolean {
    if (ev.type == 'stream_gap') {
      // Skip past what is gone, so the events after it are in order.
      const d = (ev.data || {}) as GapData;
      if (d.until) this.seen(d.until);
      this.emit('gap', d);
    } else if (ev.id && !this.seen(ev.id)) return false;
    this.emit('*', ev);
    this.emit(ev.type, ev);
    return true;
  }

  // seen records id as the newest event id if it is newer; false if it is
  // not. Ids that are not EPOCH-OFFSET are let through and not recorded.
  private seen(id: string): boolean {
    const i = id.lastIndexOf('-');
    const epoch = id.slice(0, i);
    const offset = +id.slice(i + 1);
    if (i < 1 || !(offset >= 0)) return true;
    if (epoch == this.epoch && offset <= this.offset) return false;
    this.epoch = epoch;
    this.offset = offset;
    this.lastEventId = id;
    return true;
  }
}
