"""A webhook receiver for webhook_test.go: verifies each request with
switchboard.webhook and the secret given as argv[1], answers 200 or 401,
and prints one JSON line per request (what it accepted or why it refused).
Listens on 127.0.0.1 on a free port, printed first as {"port": n}."""

import dataclasses
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from switchboard.webhook import WebhookError, WebhookVerifier

verifier = WebhookVerifier(sys.argv[1])


def report(line):
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        try:
            batch = verifier.verify(body, self.headers)
        except WebhookError as e:
            report({"status": 401, "batch": self.headers.get("Switchboard-Webhook-Id"), "error": type(e).__name__})
            self.answer(401, {"error": type(e).__name__})
            return
        events = []
        for ev in batch.events:
            d = {f.name: getattr(ev, f.name) for f in dataclasses.fields(ev) if f.name != "raw"}
            d["class"] = type(ev).__name__
            events.append(d)
        report({"status": 200, "batch": batch.id, "events": events})
        self.answer(200, {"ok": True})

    def answer(self, status, doc):
        b = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
report({"port": server.server_address[1]})
server.serve_forever()
