// The HTTP transports of the bidirectional emulation (docs/protocol.md,
// "Bidirectional emulation"): the server's frames come down one long GET
// (NDJSON lines for http_stream, SSE events for sse), the client's frames go
// up as POSTs of {"session","frames":[...]}, one POST at a time. Each
// transport looks like a WebSocket to the client (WebSocketLike: send,
// close, onopen/onmessage/onclose), so the client drives all three alike.
import type { WebSocketLike } from './client';

/** A transport the client can connect with, in the order of ClientOptions.transports. */
export type TransportName = 'websocket' | 'http_stream' | 'sse';

/** The part of the WHATWG EventSource the sse transport uses. */
export interface EventSourceLike {
  close(): void;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: any) => void) | null;
  onerror: ((ev: any) => void) | null;
}

/** An EventSource class: globalThis.EventSource in browsers. */
export type EventSourceConstructor = new (url: string, init?: { withCredentials?: boolean }) => EventSourceLike;

/** A fetch function: globalThis.fetch, or one of the application's. */
export type FetchLike = (url: string, init?: any) => Promise<any>;

// emuURL derives an emulation URL from the WebSocket URL: the same host,
// http(s) for ws(s), `path` in place of the last path segment (/ws ->
// /emulation/stream), the query kept for the stream only.
export function emuURL(ws: string, path: string, query: boolean): string {
  const u = new URL(ws, (globalThis as any).location?.href);
  u.protocol = u.protocol.replace(/^ws/, 'http');
  u.pathname = u.pathname.replace(/[^/]*$/, path);
  if (!query) u.search = '';
  u.hash = '';
  return u.href;
}

const closeOf = (status: number) => (status == 401 ? 4001 : status == 403 ? 4003 : status == 413 ? 1009 : 1006);

/**
 * Emulation is one emulated connection. The session ends when the stream
 * ends (server close, network failure, abort by close()) or when a POST is
 * answered 404 (the server no longer has the session) or fails: onclose
 * then reports the code of the server's `disconnect` event, or 1006.
 */
export class Emulation implements WebSocketLike {
  onopen: ((ev: any) => void) | null = null;
  onmessage: ((ev: { data: string }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: any) => void) | null = null;
  private s?: string; // the session, from connection_established
  private q: string[] = []; // frames waiting for the POST in flight
  private busy = false;
  private done = false;
  private bye?: { code: number; reason: string }; // the server's disconnect event
  private ac = new AbortController();
  private es?: EventSourceLike;

  constructor(
    sse: boolean,
    url: string,
    private post: string,
    token: string | undefined,
    private F: FetchLike,
    ES?: EventSourceConstructor | null,
  ) {
    const u = new URL(url, (globalThis as any).location?.href);
    u.searchParams.set('format', sse ? 'sse' : 'ndjson');
    if (sse && ES) {
      // EventSource sends no headers: the token goes by query (or cookie).
      if (token != null) u.searchParams.set('token', token);
      const es = (this.es = new ES(u.href, { withCredentials: true }));
      es.onopen = () => this.onopen?.({});
      es.onmessage = (e) => this.frame(e.data);
      // It would reconnect on its own: the client decides that, so close it.
      es.onerror = () => this.end(1006, 'the event stream failed');
      return;
    }
    F(u.href, {
      headers: token != null ? { Authorization: 'Bearer ' + token } : {},
      signal: this.ac.signal,
      credentials: 'include',
      cache: 'no-store',
    })
      .then(async (r: any) => {
        if (r.status != 200) {
          let c = '';
          try {
            c = ' ' + (await r.json()).error.code;
          } catch {}
          return this.end(closeOf(r.status), `HTTP ${r.status}${c}`);
        }
        this.onopen?.({});
        const rd = r.body.getReader();
        const dec = new TextDecoder();
        let buf = '';
        let data: string[] = [];
        for (;;) {
          const { done, value } = await rd.read();
          if (done || this.done) break;
          buf += dec.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf('\n')) >= 0) {
            let l = buf.slice(0, i);
            buf = buf.slice(i + 1);
            if (l.endsWith('\r')) l = l.slice(0, -1);
            if (!sse) this.frame(l);
            // SSE: data lines gather until a blank line; comments (: heartbeat),
            // retry, event and id lines are ignored.
            else if (!l) data.length && this.frame(data.join('\n')), (data = []);
            else if (/^data:/.test(l)) data.push(l.slice(l[5] == ' ' ? 6 : 5));
          }
        }
        this.end(1006, 'the stream ended');
      })
      .catch((e: any) => this.end(1006, String((e && e.message) || e)));
  }

  private frame(t: string): void {
    if (!t || this.done) return; // an NDJSON heartbeat
    if (!this.s || t.includes('"disconnect"')) {
      try {
        const m = JSON.parse(t);
        if (m.type == 'connection_established') (this.s = m.data?.session), this.flush();
        if (m.type == 'disconnect') this.bye = m.data;
      } catch {}
    }
    this.onmessage?.({ data: t });
  }

  send(f: string): void {
    if (this.done) return;
    this.q.push(f);
    this.flush();
  }

  // flush POSTs the waiting frames (at most 64, the server's limit) when no
  // POST is in flight: one at a time keeps their order.
  private flush(): void {
    if (this.busy || this.done || !this.s || !this.q.length) return;
    const fr = this.q.splice(0, 64);
    this.busy = true;
    // A string body is text/plain: no CORS preflight.
    this.F(this.post, { method: 'POST', body: `{"session":${JSON.stringify(this.s)},"frames":[${fr.join(',')}]}`, credentials: 'include' }).then(
      (r: any) => {
        this.busy = false;
        if (r.ok) this.flush();
        else this.end(r.status == 404 ? 1006 : closeOf(r.status), r.status == 404 ? 'the session is gone (404)' : `send: HTTP ${r.status}`);
      },
      () => this.end(1006, 'send failed'),
    );
  }

  close(code = 1000, reason = ''): void {
    this.end(code, reason);
  }

  private end(code: number, reason: string): void {
    if (this.done) return;
    this.done = true;
    this.ac.abort();
    this.es?.close();
    const b = this.bye;
    // A stream that ended after the server's disconnect ends with its code.
    if (b && code == 1006) (code = b.code), (reason = (b as any).reason || reason);
    queueMicrotask(() => this.onclose?.({ code, reason }));
  }
}
