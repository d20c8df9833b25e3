/** One protocol message: what every frame carries. */
export interface Envelope<D = any> {
  type: string;
  id?: string;
  room?: string;
  data?: D;
  /** Unix time in milliseconds, set by the server on room events. */
  ts?: number;
  user_id?: string;
  last_event_id?: string;
  /** On a publish: leave the sending connection out of the event. */
  exclude_self?: boolean;
}

/**
 * SwitchboardError is a failed request or connection. `code` is a server
 * error code (bad_request, invalid_room, not_implemented, ...), a close code
 * name (unauthorized, kicked, ...), "rpc_error" (a JSON-RPC error answer) or
 * one of the client's own: timeout, disconnected, closed, queue_full, token,
 * connect, unsubscribed, reconnect_failed.
 */
export class SwitchboardError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** The id of the request the server refused, if any. */
    readonly ref?: string,
    /** The close code, for errors that ended the connection. */
    readonly closeCode?: number,
    /** For "rpc_error": the JSON-RPC error object ({code, message, data}). */
    readonly detail?: unknown,
  ) {
    super(message);
    this.name = 'SwitchboardError';
  }
}

type Fn = (arg: any) => void;

/**
 * Emitter is a small typed event emitter. A handler that throws does not
 * break the client: the exception is re-thrown from a microtask, so it
 * still reaches the console or the process's uncaught-exception handler.
 * M maps the named events to their argument; any other name is a frame
 * type, whose handler gets an E.
 */
export class Emitter<M, E = Envelope> {
  private h = new Map<string, Set<Fn>>();

  /** on adds a handler and returns a function that removes it. */
  on<K extends keyof M & string>(event: K, fn: (arg: M[K]) => void): () => void;
  on(event: string, fn: (ev: E) => void): () => void;
  on(event: string, fn: Fn): () => void {
    let s = this.h.get(event);
    if (!s) this.h.set(event, (s = new Set()));
    s.add(fn);
    return () => this.off(event, fn);
  }

  /** off removes a handler added with on. */
  off(event: string, fn: Fn): void {
    this.h.get(event)?.delete(fn);
  }

  /** @internal */
  emit(event: string, arg?: unknown): void {
    this.h.get(event)?.forEach((fn) => {
      try {
        fn(arg);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    });
  }
}
