"""HS256 token minting (the node accepting them is tested in
test_integration, where every realtime client connects with one)."""

import base64
import hashlib
import hmac
import json
import unittest

from switchboard.token import connection_token, subscription_token

SECRET = "s" * 32


def decode(tok):
    head, body, sig = tok.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    want = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(pad(sig)) == want, "bad signature"
    return json.loads(base64.urlsafe_b64decode(pad(head))), json.loads(base64.urlsafe_b64decode(pad(body)))


class TestTokens(unittest.TestCase):
    def test_connection_token(self):
        head, claims = decode(connection_token(SECRET, "42", ttl=60, rooms=["doc:1"], info={"name": "Ada"}, now=1000))
        self.assertEqual(head, {"alg": "HS256", "typ": "JWT"})
        self.assertEqual(claims, {"sub": "42", "iat": 1000, "exp": 1060, "rooms": ["doc:1"], "info": {"name": "Ada"}})

    def test_subscription_token(self):
        _, claims = decode(subscription_token(SECRET, "42", "secret:7", ttl=10, now=5))
        self.assertEqual(claims, {"sub": "42", "room": "secret:7", "iat": 5, "exp": 15})

    def test_refused(self):
        with self.assertRaises(ValueError):
            connection_token("short", "42")
        with self.assertRaises(ValueError):
            connection_token(SECRET, "")
        with self.assertRaises(ValueError):
            subscription_token(SECRET, "42", "")


if __name__ == "__main__":
    unittest.main()
