"""The server API client's error mapping, retries and request encoding,
against a scripted HTTP server on loopback (no Switchboard needed)."""

import json
import socket
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import switchboard as sb
from switchboard.api import quote_segment
from switchboard.errors import api_error


class TestErrorMapping(unittest.TestCase):
    def test_status_and_code(self):
        for status, cls in [(400, sb.BadRequest), (401, sb.Unauthorized), (403, sb.Forbidden), (404, sb.NotFound),
                            (405, sb.MethodNotAllowed), (413, sb.PayloadTooLarge), (415, sb.UnsupportedMediaType),
                            (429, sb.RateLimited), (500, sb.ServerError), (502, sb.ServerError), (503, sb.Unavailable), (418, sb.APIError)]:
            with self.subTest(status=status):
                e = api_error(status, b'{"error":{"code":"some_code","message":"why"}}')
                self.assertIs(type(e), cls)
                self.assertEqual((e.status, e.code, e.message), (status, "some_code", "why"))
                self.assertEqual(e.retryable, status >= 500 or status == 429)
        self.assertTrue(issubclass(sb.Unauthorized, sb.AuthError) and issubclass(sb.Forbidden, sb.AuthError))
        self.assertTrue(issubclass(sb.Unavailable, sb.ServerError))

    def test_body_that_is_not_the_api_error(self):
        e = api_error(502, b"<html>Bad Gateway</html>", None, "Bad Gateway")
        self.assertEqual((e.code, e.message), ("http_502", "<html>Bad Gateway</html>"))
        e = api_error(404, b"", None, "Not Found")
        self.assertEqual((e.code, e.message), ("http_404", "Not Found"))
        e = api_error(400, b'{"error":"flat"}')
        self.assertEqual(e.code, "http_400")

    def test_retry_after(self):
        self.assertEqual(api_error(429, b"", {"Retry-After": "3"}).retry_after, 3.0)
        self.assertIsNone(api_error(429, b"", {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}).retry_after)
        self.assertIsNone(api_error(429, b"", {"Retry-After": "-1"}).retry_after)
        self.assertIsNone(api_error(429, b"", {}).retry_after)


class TestQuote(unittest.TestCase):
    def test_segments(self):
        self.assertEqual(quote_segment("match:42"), "match:42")
        self.assertEqual(quote_segment("team/42"), "team%2F42")
        self.assertEqual(quote_segment("a@b=c+d-e_f.g"), "a@b=c+d-e_f.g")
        self.assertEqual(quote_segment("."), "%2E")
        self.assertEqual(quote_segment(".."), "%2E%2E")
        self.assertEqual(quote_segment("a b?#"), "a%20b%3F%23")


class Script:
    """A loopback HTTP server that answers from a list of (status,
    headers, body) and records the requests."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []
        script = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                script.requests.append((self.command, self.path, dict(self.headers), body))
                status, headers, out = script.answers.pop(0) if script.answers else (500, {}, b"no more answers")
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = _answer

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def ok(d):
    return (200, {"Content-Type": "application/json"}, json.dumps(d).encode())


def err(status, code, headers=None):
    return (status, dict(headers or {}, **{"Content-Type": "application/json"}), json.dumps({"error": {"code": code, "message": code}}).encode())


class TestClient(unittest.TestCase):
    def client(self, answers, **kw):
        s = Script(answers)
        self.addCleanup(s.close)
        self.sleeps = []
        kw.setdefault("sleep", self.sleeps.append)
        return s, sb.APIClient(s.url, "k" * 20, **kw)

    def test_request_encoding(self):
        s, c = self.client([ok({"event_id": "e-1", "recipients": 2})])
        res = c.publish("team/42", {"a": 1}, type="goal", idempotency_key="key-1")
        self.assertEqual((res.event_id, res.recipients, res.duplicate), ("e-1", 2, False))
        method, path, headers, body = s.requests[0]
        self.assertEqual((method, path), ("POST", "/api/broadcast/team%2F42"))
        self.assertEqual(headers["Authorization"], "Bearer " + "k" * 20)
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(json.loads(body), {"type": "goal", "data": {"a": 1}, "idempotency_key": "key-1"})

    def test_generated_keys_are_long_and_unique(self):
        s, c = self.client([ok({"event_id": "e-1"}), ok({"event_id": "e-2"})])
        c.publish("r", 1)
        c.publish("r", 1)
        keys = [json.loads(r[3])["idempotency_key"] for r in s.requests]
        self.assertNotEqual(keys[0], keys[1])
        self.assertGreaterEqual(min(map(len, keys)), 16)

    def test_publish_retried_with_the_same_key(self):
        s, c = self.client([err(503, "unavailable"), err(500, "internal"), ok({"event_id": "e-1", "duplicate": True})])
        self.assertTrue(c.publish("r", 1).duplicate)
        keys = {json.loads(r[3])["idempotency_key"] for r in s.requests}
        self.assertEqual((len(s.requests), len(keys)), (3, 1))
        self.assertEqual(len(self.sleeps), 2)

    def test_retry_after_is_honoured(self):
        s, c = self.client([err(429, "too_many", {"Retry-After": "2"}), ok({"recipients": 0})], max_backoff=5)
        c.stats()
        self.assertGreaterEqual(self.sleeps[0], 2)
        s, c = self.client([err(429, "too_many", {"Retry-After": "600"}), ok({})], max_backoff=5)
        c.stats()
        self.assertLessEqual(self.sleeps[0], 5)

    def test_gives_up_after_retries(self):
        s, c = self.client([err(503, "unavailable")] * 3, retries=2)
        with self.assertRaises(sb.Unavailable) as cm:
            c.publish("r", 1)
        self.assertEqual(cm.exception.code, "unavailable")
        self.assertEqual(len(s.requests), 3)

    def test_4xx_is_not_retried(self):
        s, c = self.client([err(400, "invalid_room")])
        with self.assertRaises(sb.BadRequest) as cm:
            c.publish("r", 1)
        self.assertEqual((cm.exception.code, len(s.requests)), ("invalid_room", 1))

    def test_sends_are_not_retried(self):
        # No idempotency key: a retry could deliver twice.
        for call in (lambda c: c.send_to_user("u", 1), lambda c: c.send_to_connection("x", 1), lambda c: c.broadcast(1)):
            s, c = self.client([err(503, "unavailable"), ok({"recipients": 1})])
            with self.assertRaises(sb.Unavailable):
                call(c)
            self.assertEqual(len(s.requests), 1)

    def test_answer_that_is_not_json(self):
        s, c = self.client([(200, {}, b"<html>")])
        with self.assertRaises(sb.TransportError):
            c.stats()
        s, c = self.client([(200, {}, b"[1]")])
        with self.assertRaises(sb.TransportError):
            c.stats()

    def test_connection_refused(self):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()  # nothing listens there now
        sleeps = []
        c = sb.APIClient("http://127.0.0.1:%d" % port, retries=1, sleep=sleeps.append, timeout=5)
        with self.assertRaises(sb.TransportError) as cm:
            c.stats()
        self.assertIn("127.0.0.1", str(cm.exception))
        self.assertEqual(len(sleeps), 1)

    def test_bad_arguments(self):
        for url in ["ws://127.0.0.1", "127.0.0.1:8080", "http://"]:
            with self.subTest(url=url), self.assertRaises(ValueError):
                sb.APIClient(url)
        with self.assertRaises(ValueError):
            sb.APIClient("http://127.0.0.1", retries=-1)

    def test_repr_hides_the_key(self):
        self.assertNotIn("secret", repr(sb.APIClient("http://127.0.0.1", "secret-key-123456")))


if __name__ == "__main__":
    unittest.main()
