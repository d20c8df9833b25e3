"""The realtime client's close-code table (checked against the server's,
protocol/codes.go), backoff and duplicate filter. Needs websockets, no
server."""

import os
import re
import unittest

from ._support import require_module

require_module("websockets")

from switchboard.realtime import CLOSE_CODES, REFRESH, RECONNECT, STOP, backoff_delay, close_action  # noqa: E402

REPO = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def parse_go():
    """The rows of protocol/codes.go's closeTable: code -> (name, reconnect)."""
    with open(os.path.join(REPO, "protocol", "codes.go"), encoding="utf-8") as f:
        src = f.read()
    consts = {m[0]: int(m[1]) for m in re.findall(r"^\s*(Close\w+)\s+CloseCode\s*=\s*(\d+)", src, re.M)}
    rows = {}
    for name, wire, reconnect in re.findall(r'\{(Close\w+),\s*"(\w+)",\s*"(?:[^"\\]|\\.)*",\s*(true|false)\}', src):
        rows[consts[name]] = (wire, reconnect == "true")
    return consts, rows


class TestCloseCodes(unittest.TestCase):
    def test_same_table_as_the_server(self):
        consts, rows = parse_go()
        self.assertGreaterEqual(len(rows), 17)
        self.assertEqual(len(rows), len(consts), "every const has a table row")
        for code, (name, reconnect) in rows.items():
            with self.subTest(code=code):
                self.assertEqual(CLOSE_CODES[code][0], name)
                act = close_action(code)
                self.assertEqual(act != STOP, reconnect)
                self.assertEqual(act == REFRESH, name == "session_expired")
        # Only codes a client library reports itself are extra.
        self.assertEqual(sorted(set(CLOSE_CODES) - set(rows)), [1005, 1006])

    def test_codes_outside_the_table(self):
        for code in [1004, 1010, 1014, 1015, 2000, 2999]:
            self.assertEqual(close_action(code), RECONNECT, code)
        for code in [3000, 3999, 4002, 4007, 4009, 4999]:
            self.assertEqual(close_action(code), STOP, code)

    def test_advice_wins(self):
        self.assertEqual(close_action(4006, advice=True), RECONNECT)
        self.assertEqual(close_action(1012, advice=False), STOP)
        self.assertEqual(close_action(4000, advice=True), REFRESH)  # still needs a token
        self.assertEqual(close_action(4005, advice=None), RECONNECT)


class TestBackoff(unittest.TestCase):
    def test_full_jitter_window(self):
        self.assertEqual(backoff_delay(0, rand=lambda: 0.0), 0.0)
        self.assertAlmostEqual(backoff_delay(0, rand=lambda: 0.999), 0.4995)
        self.assertAlmostEqual(backoff_delay(3, rand=lambda: 0.5), 2.0)  # window 4 s
        self.assertAlmostEqual(backoff_delay(10, rand=lambda: 0.5), 15.0)  # capped at 30 s
        self.assertAlmostEqual(backoff_delay(5000, rand=lambda: 0.5), 15.0)  # no overflow
        for attempt in range(12):
            d = backoff_delay(attempt)
            self.assertTrue(0 <= d <= min(30.0, 0.5 * 2**attempt), (attempt, d))


class TestDuplicates(unittest.TestCase):
    def test_seen(self):
        import asyncio

        from switchboard.realtime import Client, Subscription

        async def run():
            sub = Subscription(Client("ws://127.0.0.1:1/ws"), "r", None, None, "ep-5")
            self.assertEqual(sub.last_event_id, "ep-5")
            self.assertFalse(sub._seen("ep-5"))
            self.assertFalse(sub._seen("ep-4"))
            self.assertTrue(sub._seen("ep-6"))
            self.assertTrue(sub._seen("other-1"))  # a new epoch replaces the old
            self.assertTrue(sub._seen("not an id"))  # let through, not recorded
            self.assertEqual(sub.last_event_id, "other-1")
            self.assertTrue(sub._seen("a-b-c-7"))  # the epoch is everything before the last dash
            self.assertFalse(sub._seen("a-b-c-7"))

        asyncio.run(run())

    def test_bad_url(self):
        from switchboard.realtime import Client

        with self.assertRaises(ValueError):
            Client("http://127.0.0.1:8080/ws")


if __name__ == "__main__":
    unittest.main()
