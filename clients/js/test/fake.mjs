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
