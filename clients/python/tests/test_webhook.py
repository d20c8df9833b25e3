"""The webhook verifier against WEBHOOK-SPEC's test vector and every way a
request can be wrong. No server needed."""

import json
import unittest
import unittest.mock

from switchboard.webhook import (
    ConnectionClosed,
    ConnectionOpened,
    InvalidPayload,
    MalformedHeader,
    MemberAdded,
    MemberRemoved,
    MissingHeader,
    Publication,
    RoomOccupied,
    RoomVacated,
    SignatureMismatch,
    TimestampOutOfTolerance,
    UnknownEvent,
    WebhookError,
    WebhookVerifier,
    parse_events,
    sign,
    signature_header,
    verify,
)

# The test vector both sides test against (docs/webhooks, agreed format).
SECRET = "whsec_test"
TS = 1764806400
BODY = (
    b'{"events":[{"id":"n1-1","type":"connection.opened","ts":1764806400000,'
    b'"node":"n1","client":"c1","user":"alice"}]}'
)
SIG = "v1=3924ea950f4e05ba2c2da05b0a18200497b9bafbfd440be1783e753b36053687"


def headers(ts=TS, sig=SIG, batch="b-1"):
    h = {}
    if batch is not None:
        h["Switchboard-Webhook-Id"] = batch
    if ts is not None:
        h["Switchboard-Webhook-Timestamp"] = str(ts)
    if sig is not None:
        h["Switchboard-Webhook-Signature"] = sig
    return h


def verifier(secrets=SECRET, now=TS, **kw):
    return WebhookVerifier(secrets, clock=lambda: now, **kw)


class TestVector(unittest.TestCase):
    def test_sign_gives_the_vector(self):
        self.assertEqual("v1=" + sign(SECRET, TS, BODY), SIG)
        self.assertEqual(signature_header(SECRET, TS, BODY), SIG)

    def test_verify_the_vector(self):
        batch = verifier().verify(BODY, headers())
        self.assertEqual(batch.id, "b-1")
        self.assertEqual(batch.timestamp, TS)
        self.assertEqual(len(batch.events), 1)
        ev = batch.events[0]
        self.assertIsInstance(ev, ConnectionOpened)
        self.assertEqual((ev.id, ev.type, ev.ts, ev.node, ev.client, ev.user), ("n1-1", "connection.opened", 1764806400000, "n1", "c1", "alice"))

    def test_header_names_are_case_insensitive(self):
        lower = {k.lower(): v for k, v in headers().items()}
        self.assertEqual(len(verifier().verify(BODY, lower).events), 1)
        pairs = [(k.upper().encode(), v.encode()) for k, v in headers().items()]  # ASGI's raw form
        self.assertEqual(verifier().verify(BODY, pairs).id, "b-1")

    def test_one_call_form_and_str_body(self):
        with unittest.mock.patch("time.time", return_value=TS):
            self.assertEqual(len(verify(BODY.decode(), headers(), SECRET).events), 1)

    def test_within_tolerance_either_way(self):
        verifier(now=TS + 300).verify(BODY, headers())
        verifier(now=TS - 300).verify(BODY, headers())
        verifier(now=TS + 10, tolerance=10).verify(BODY, headers())


class TestRefused(unittest.TestCase):
    def assertRefused(self, exc, body=BODY, hdrs=None, **kw):
        with self.assertRaises(exc) as cm:
            verifier(**kw).verify(body, headers() if hdrs is None else hdrs)
        self.assertIsInstance(cm.exception, WebhookError)
        self.assertTrue(str(cm.exception))  # a message a person can read
        return cm.exception

    def test_tampered_body(self):
        self.assertRefused(SignatureMismatch, body=BODY.replace(b"alice", b"mallory"))
        self.assertRefused(SignatureMismatch, body=BODY + b" ")
        self.assertRefused(SignatureMismatch, body=b"")

    def test_tampered_timestamp(self):
        # The timestamp is signed: moving it (to dodge the tolerance) breaks
        # the signature even when the new one is within tolerance.
        self.assertRefused(SignatureMismatch, hdrs=headers(ts=TS + 1), now=TS + 1)

    def test_old_timestamp(self):
        e = self.assertRefused(TimestampOutOfTolerance, now=TS + 301)
        self.assertIn("301", str(e))
        self.assertRefused(TimestampOutOfTolerance, now=TS - 301)
        self.assertRefused(TimestampOutOfTolerance, now=TS + 11, tolerance=10)

    def test_wrong_secret(self):
        self.assertRefused(SignatureMismatch, secrets="whsec_other")
        self.assertRefused(SignatureMismatch, secrets=b"whsec_tesT")

    def test_missing_headers(self):
        self.assertRefused(MissingHeader, hdrs=headers(ts=None))
        self.assertRefused(MissingHeader, hdrs=headers(sig=None))
        self.assertRefused(MissingHeader, hdrs={})

    def test_missing_batch_id_is_fine(self):
        # The id is not signed; it is only a hint for dedupe.
        self.assertIsNone(verifier().verify(BODY, headers(batch=None)).id)

    def test_malformed_timestamp(self):
        for ts in ["", "abc", "1764806400.5", "-1764806400", "1e9", "１７６４８０６４００", "9" * 40]:
            with self.subTest(ts=ts):
                self.assertRefused(MalformedHeader, hdrs=headers(ts=ts))

    def test_malformed_signature(self):
        good = SIG[3:]
        for sig in ["", "v1", "v1=", "=abc", good, "v1=" + good[:-1], "v1=" + good + "0", "v1=" + "g" * 64, "v2=" + good, ",", "v1=" + good + ",junk"]:
            with self.subTest(sig=sig):
                self.assertRefused(MalformedHeader, hdrs=headers(sig=sig))
        self.assertRefused(MalformedHeader, hdrs=headers(sig=",".join([SIG] * 17)))

    def test_bad_secrets_refused_at_construction(self):
        for s in ["", b"", [], [SECRET, ""]]:
            with self.subTest(secret=s), self.assertRaises(ValueError):
                WebhookVerifier(s)
        with self.assertRaises(ValueError):
            WebhookVerifier(SECRET, tolerance=-1)


class TestRotation(unittest.TestCase):
    def test_several_signatures_any_matches(self):
        other = "v1=" + sign("whsec_new", TS, BODY)
        for sig in [SIG + "," + other, other + "," + SIG, other + ", " + SIG, "v2=" + "ab" * 40 + "," + SIG]:
            with self.subTest(sig=sig):
                verifier().verify(BODY, headers(sig=sig))

    def test_receiver_with_old_and_new_secret(self):
        # The receiver rotates first: it accepts both while the node still
        # signs with the old one, then with the new one.
        v = verifier(secrets=["whsec_new", SECRET])
        v.verify(BODY, headers())
        v.verify(BODY, headers(sig=signature_header("whsec_new", TS, BODY)))
        with self.assertRaises(SignatureMismatch):
            v.verify(BODY, headers(sig=signature_header("whsec_gone", TS, BODY)))

    def test_node_with_two_secrets_receiver_with_either(self):
        sig = signature_header(["whsec_old", "whsec_new"], TS, BODY)
        self.assertEqual(sig.count("v1="), 2)
        verifier(secrets="whsec_old").verify(BODY, headers(sig=sig))
        verifier(secrets="whsec_new").verify(BODY, headers(sig=sig))

    def test_uppercase_hex_is_accepted(self):
        verifier().verify(BODY, headers(sig=SIG.upper().replace("V1=", "v1=")))


class TestEvents(unittest.TestCase):
    def test_every_type(self):
        events = [
            {"id": "a", "type": "connection.opened", "ts": 1, "node": "n", "client": "c1", "user": ""},
            {"id": "b", "type": "member.added", "ts": 2, "node": "n", "room": "chat:1", "user": "u", "client": "c1"},
            {"id": "c", "type": "room.occupied", "ts": 3, "node": "n", "room": "chat:1", "generation": 4},
            {"id": "d", "type": "publication", "ts": 4, "node": "n", "room": "chat:1", "event_id": "e-1", "event_type": "chat.line", "data": {"text": "hi"}, "user": "u", "client": "c1"},
            {"id": "e", "type": "member.removed", "ts": 5, "node": "n", "room": "chat:1", "user": "u", "client": "c1"},
            {"id": "f", "type": "room.vacated", "ts": 6, "node": "n", "room": "chat:1", "generation": 4},
            {"id": "g", "type": "connection.closed", "ts": 7, "node": "n", "client": "c1", "user": "", "code": 1000, "reason": "bye"},
            {"id": "h", "type": "something.new", "ts": 8, "node": "n", "extra": [1]},
        ]
        got = parse_events(json.dumps({"events": events, "future_field": 1}).encode())
        self.assertEqual(
            [type(e) for e in got],
            [ConnectionOpened, MemberAdded, RoomOccupied, Publication, MemberRemoved, RoomVacated, ConnectionClosed, UnknownEvent],
        )
        pub = got[3]
        self.assertEqual((pub.room, pub.event_id, pub.event_type, pub.data, pub.user), ("chat:1", "e-1", "chat.line", {"text": "hi"}, "u"))
        self.assertEqual((got[2].generation, got[5].generation), (4, 4))
        closed = got[6]
        self.assertEqual((closed.code, closed.reason, closed.user), (1000, "bye", ""))
        self.assertEqual(got[7].raw["extra"], [1])
        # An API publish has no user or client.
        api = parse_events(b'{"events":[{"id":"x","type":"publication","ts":1,"node":"n","room":"r","event_id":"e-2","data":null}]}')[0]
        self.assertEqual((api.user, api.client, api.data, api.event_type), ("", "", None, ""))
        # Without generation (an older server) room events still parse.
        old = parse_events(b'{"events":[{"id":"y","type":"room.occupied","ts":1,"node":"n","room":"r"}]}')[0]
        self.assertEqual((old.room, old.generation), ("r", 0))

    def test_bad_bodies(self):
        for body in [b"", b"not json", b"[]", b'{"events":{}}', b'{"events":[1]}',
                     b'{"events":[{"type":"publication","ts":1,"node":"n"}]}',
                     b'{"events":[{"id":"x","type":"publication","ts":"1","node":"n"}]}',
                     b'{"events":[{"id":"x","type":"publication","ts":true,"node":"n"}]}',
                     b'{"events":[{"id":"x","type":"connection.closed","ts":1,"node":"n","code":"1000"}]}',
                     b'{"events":[{"id":"x","type":"member.added","ts":1,"node":"n","room":5}]}',
                     b'{"events":[{"id":"x","type":"room.occupied","ts":1,"node":"n","room":"r","generation":"2"}]}',
                     b'{"events":[{"id":"x","type":"publication","ts":1,"node":"n","room":"r","event_type":7}]}',
                     b"\xff\xfe"]:
            with self.subTest(body=body), self.assertRaises(InvalidPayload):
                parse_events(body)

    def test_signed_but_invalid_payload(self):
        body = b'{"events":"nope"}'
        with self.assertRaises(InvalidPayload):
            verifier().verify(body, headers(sig=signature_header(SECRET, TS, body)))

if __name__ == "__main__":
    unittest.main()
