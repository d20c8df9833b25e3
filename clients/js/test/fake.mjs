// A fake WebSocket for unit tests: it records what the client sends and lets
// the test play the server (open, frames, close) step by step.

export function fakeSocketClass() {
  return class FakeWebSocket {
    static instances = [];

    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.sent = [];
      this.closedWith = null;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      new.target.instances.push(this);
    }

    static get last() {
      return this.instances[this.instances.length - 1];
    }

    send(s) {
      if (typeof s !== 'string') throw new TypeError('the client must send text');
      this.sent.push(JSON.parse(s));
    }

    close(code, reason) {
      this.closedWith = { code, reason };
    }

    // ---- the server side ----
    open() {
      this.onopen?.({});
    }
    frame(obj) {
      this.onmessage?.({ data: typeof obj === 'string' ? obj : JSON.stringify(obj) });
    }
    establish(extra = {}) {
      this.open();
      this.frame({
        type: 'connection_established',
        data: { user_id: 'anon-1', connection_id: 'c1', server_time: 1, heartbeat_interval_ms: 25000, protocol_version: 1, ...extra },
      });
    }
    closeWith(code, reason = '') {
      this.onclose?.({ code, reason });
    }
    // types returns the types of the frames sent so far.
    types() {
      return this.sent.map((m) => m.type);
    }
  };
}

// flush lets pending promise callbacks run (getToken, request promises).
export function flush() {
  return new Promise((resolve) => setImmediate(resolve));
}

// fakeFetch plays the server of the HTTP emulation: every call is recorded
// (url, method, headers, parsed body) and answered by the test. A stream
// call is answered with stream(), then fed with push(text) and end(); an
// abort by the client is seen as call.aborted.
export function fakeFetch() {
  const calls = [];
  const enc = new TextEncoder();
  const f = (url, init = {}) =>
    new Promise((resolve, reject) => {
      const call = {
        url,
        u: new URL(url),
        method: init.method || 'GET',
        headers: init.headers || {},
        body: init.body !== undefined ? JSON.parse(init.body) : undefined,
        aborted: false,
        answered: false,
      };
      let ctl;
      init.signal?.addEventListener('abort', () => {
        call.aborted = true;
        const e = new DOMException('The operation was aborted.', 'AbortError');
        if (!call.answered) reject(e);
        else
          try {
            ctl?.error(e);
          } catch {}
      });
      call.respond = (status, json) => {
        call.answered = true;
        resolve(new Response(json === undefined ? null : JSON.stringify(json), { status }));
      };
      call.fail = (msg = 'fetch failed') => reject(new TypeError(msg));
      call.stream = () => {
        call.answered = true;
        resolve(new Response(new ReadableStream({ start: (c) => (ctl = c) }), { status: 200 }));
      };
      call.push = (s) => ctl.enqueue(enc.encode(s));
      call.pushBytes = (b) => ctl.enqueue(b);
      call.end = () => ctl.close();
      calls.push(call);
    });
  f.calls = calls;
  f.streams = () => calls.filter((c) => c.method === 'GET');
  f.posts = () => calls.filter((c) => c.method === 'POST');
  return f;
}

// established is the connection_established of an emulated session.
export function established(transport = 'http_stream', session = 'sess-1', extra = {}) {
  return {
    type: 'connection_established',
    data: { user_id: 'anon-1', connection_id: 'c1', server_time: 1, heartbeat_interval_ms: 25000, protocol_version: 1, transport, session, ...extra },
  };
}

// fakeEventSourceClass records EventSources; the test plays the server.
export function fakeEventSourceClass() {
  return class FakeEventSource {
    static instances = [];
    constructor(url, init) {
      this.url = url;
      this.init = init;
      this.closed = false;
      this.onopen = this.onmessage = this.onerror = null;
      new.target.instances.push(this);
    }
    static get last() {
      return this.instances[this.instances.length - 1];
    }
    close() {
      this.closed = true;
    }
    open() {
      this.onopen?.({});
    }
    frame(obj) {
      this.onmessage?.({ data: JSON.stringify(obj) });
    }
    error() {
      this.onerror?.({});
    }
  };
}

// settle lets fetch's promises and stream reads run (several turns).
export async function settle(n = 5) {
  for (let i = 0; i < n; i++) await flush();
}
