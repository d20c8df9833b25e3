"""The SDK against a real Switchboard node, which clients/python/python_test.go
starts (an API key and an HS256 JWT secret configured) before it runs
these tests. Without the node they skip, except under CI=true, where they
fail."""

import asyncio
import unittest
import uuid

from ._support import make_token, require_module, server

from switchboard import (  # noqa: E402
    APIClient,
    BadRequest,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    TransportError,
    Unauthorized,
)

WAIT = 20.0  # seconds: a bound on every wait, not a speed expectation


def room(prefix="py"):
    return f"{prefix}:{uuid.uuid4().hex[:12]}"


class APITest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.url, cls.ws_url, cls.key, cls.jwt = server()
        cls.api = APIClient(cls.url, cls.key)

    def test_publish_and_history(self):
        r = room()
        ids = [self.api.publish(r, {"n": i}, type="tick").event_id for i in range(5)]
        epoch = ids[0].rsplit("-", 1)[0]
        self.assertEqual(ids, [f"{epoch}-{i}" for i in range(1, 6)])
        page = self.api.history(r, limit=2)
        self.assertEqual([e.id for e in page.events], ids[3:])
        self.assertEqual(page.position, ids[-1])
        self.assertEqual([e.data for e in page.events], [{"n": 3}, {"n": 4}])
        self.assertEqual({e.type for e in page.events}, {"tick"})
        page = self.api.history(r, since=ids[0], limit=2)
        self.assertEqual(([e.id for e in page.events], page.has_more, page.complete), (ids[1:3], True, True))
        self.assertEqual([e.id for e in self.api.iter_history(r, ids[0], limit=2)], ids[1:])
        self.assertEqual(self.api.history(room()).events, [])

    def test_idempotency_key(self):
        r = room()
        key = "order-" + uuid.uuid4().hex
        first = self.api.publish(r, {"total": 5}, idempotency_key=key)
        again = self.api.publish(r, {"total": 5}, idempotency_key=key)
        self.assertEqual((again.event_id, first.duplicate, again.duplicate), (first.event_id, False, True))
        self.assertEqual(len(self.api.history(r).events), 1)
        # The key is per room.
        self.assertFalse(self.api.publish(room(), 1, idempotency_key=key).duplicate)

    def test_publish_many(self):
        a, b = room(), room()
        res = self.api.publish_many([{"room": a, "type": "odds", "data": 1}, {"room": b, "data": 2}, {"room": a, "data": 3}])
        self.assertEqual(res.failed, 0)
        self.assertEqual([x["room"] for x in res.results], [a, b, a])
        self.assertEqual(len(self.api.history(a).events), 2)
        with self.assertRaises(BadRequest) as cm:
            self.api.publish_many([{"room": a, "data": 1}, {"room": "bad:", "data": 2}])
        self.assertIn("events[1]", cm.exception.message)
        self.assertEqual(len(self.api.history(a).events), 2)  # nothing of a refused batch
        with self.assertRaises(BadRequest):
            self.api.publish_many([])

    def test_typed_errors(self):
        with self.assertRaises(Unauthorized) as cm:
            APIClient(self.url).stats()
        self.assertEqual((cm.exception.status, cm.exception.code), (401, "unauthorized"))
        with self.assertRaises(Forbidden) as cm:
            APIClient(self.url, "not-the-key-0123456789").stats()
        self.assertEqual((cm.exception.status, cm.exception.code), (403, "forbidden"))
        with self.assertRaises(BadRequest) as cm:
            self.api.publish("bad:", 1)
        self.assertEqual((cm.exception.status, cm.exception.code), (400, "invalid_room"))
        with self.assertRaises(BadRequest) as cm:
            self.api.publish(room(), 1, type="subscribe")
        self.assertEqual(cm.exception.code, "bad_request")
        with self.assertRaises(NotFound) as cm:
            self.api.request("GET", "/api/no/such/route")
        self.assertEqual((cm.exception.status, cm.exception.code), (404, "not_found"))
        with self.assertRaises(NotFound) as cm:
            self.api.send_to_connection("nope", 1)
        self.assertEqual(cm.exception.code, "connection_not_found")
        with self.assertRaises(NotFound) as cm:
            self.api.room(room())
        self.assertEqual(cm.exception.code, "room_not_found")
        with self.assertRaises(PayloadTooLarge) as cm:
            self.api.publish(room(), "x" * (300 * 1024))
        self.assertEqual(cm.exception.code, "data_too_large")
        with self.assertRaises(BadRequest) as cm:
            self.api.disconnect_user("u", code=3000)
        self.assertIn("3000", cm.exception.message)
        host = self.url.rsplit(":", 1)[0]
        with self.assertRaises(TransportError):
            APIClient(host + ":1", self.key, retries=0, timeout=5).stats()

    def test_rooms_with_slashes_and_dots(self):
        for name in ["team/42", ".", "..", "a.b/c"]:
            with self.subTest(room=name):
                res = self.api.publish(name, 1)
                self.assertIn(res.event_id, [e.id for e in self.api.history(name).events])

    def test_async_client(self):
        from switchboard import AsyncAPIClient

        async def run():
            a = AsyncAPIClient(self.url, self.key)
            r = room()
            res = await asyncio.gather(*(a.publish(r, i) for i in range(5)))
            self.assertEqual(len({x.event_id for x in res}), 5)
            self.assertEqual(len((await a.history(r)).events), 5)
            with self.assertRaises(BadRequest):
                await a.publish("bad:", 1)
            self.assertIn("api_key=***", repr(a))

        asyncio.run(run())

    def test_stats_and_ban(self):
        node = self.api.stats()["node"]
        self.assertGreater(node["publications"], 0)
        until = self.api.ban_user("py-banned-" + uuid.uuid4().hex[:6], 60)
        self.assertGreater(until, 0)


class RealtimeTest(unittest.IsolatedAsyncioTestCase):
    @classmethod
    def setUpClass(cls):
        require_module("websockets")
        cls.url, cls.ws_url, cls.key, cls.jwt = server()
        cls.api = APIClient(cls.url, cls.key)

    def token(self, user, **kw):
        return make_token(self.jwt, user, **kw)

    async def client(self, user=None, connect=True, **kw):
        from switchboard.realtime import Client

        self.errors = getattr(self, "errors", [])
        kw.setdefault("on_error", self.errors.append)
        kw.setdefault("token", self.token(user or "u-" + uuid.uuid4().hex[:8]))
        c = Client(self.ws_url, **kw)
        self.addAsyncCleanup(c.close)
        if connect:
            await c.connect(WAIT)
        return c

    async def away_client(self, user, away, delay):
        """A client that sets away when it starts waiting to reconnect, and
        waits exactly delay seconds (the backoff's random factor pinned)."""
        return await self.client(user, initial_delay=delay, rand=lambda: 1.0,
                                 on_state=lambda s, e: away.set() if s == "reconnecting" else None)

    async def eventually(self, cond, what):
        for _ in range(int(WAIT / 0.02)):
            if cond():
                return
            await asyncio.sleep(0.02)
        self.fail(f"timed out waiting for {what}")

    async def api_call(self, fn, *args, **kw):
        return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kw))

    async def test_subscribe_publish_ack(self):
        r = room()
        a, b = await self.client("alice"), await self.client("bob")
        got_a, got_b = [], []
        await a.subscribe(r, got_a.append)
        sub_b = await b.subscribe(r, got_b.append)
        ack = await a.publish(r, {"text": "hi"}, type="chat")
        self.assertFalse(ack.duplicate)
        await self.eventually(lambda: got_a and any(e.type == "chat" for e in got_b), "the event at both")
        ev = [e for e in got_b if e.type == "chat"][0]
        self.assertEqual((ev.id, ev.room, ev.user_id, ev.data), (ack.event_id, r, "alice", {"text": "hi"}))
        self.assertEqual(sub_b.last_event_id, ack.event_id)
        # The same id again: acknowledged as a duplicate, delivered once.
        pid = str(uuid.uuid4())
        first = await a.publish(r, 1, id=pid)
        again = await a.publish(r, 1, id=pid)
        self.assertEqual((again.event_id, again.duplicate), (first.event_id, True))
        await self.eventually(lambda: sub_b.last_event_id == first.event_id, "the second event")
        await asyncio.sleep(0.2)
        self.assertEqual([e.id for e in got_b if e.id == first.event_id], [first.event_id])
        self.assertEqual(self.errors, [])

    async def test_iterate_a_subscription_and_unsubscribe(self):
        r = room()
        c = await self.client()
        sub = await c.subscribe(r)
        for i in range(3):
            await self.api_call(self.api.publish, r, i)
        seen = []
        async for ev in sub:
            seen.append(ev.data)
            if len(seen) == 3:
                await sub.unsubscribe()
        self.assertEqual(seen, [0, 1, 2])
        self.assertIsNone(c.subscription(r))

    async def test_requests(self):
        r = room()
        c = await self.client("carol")
        await c.subscribe(r)
        e1 = (await c.publish(r, 1)).event_id
        page = await c.history(r)
        self.assertEqual([e.id for e in page.events], [e1])
        p = await c.presence(r)
        self.assertEqual((p.clients, p.users, p.members[0].user_id), (1, 1, "carol"))
        self.assertEqual((await c.presence(r, counts_only=True)).members, [])
        res = await c.rpc("presence", {"room": r, "counts_only": True})
        self.assertEqual(res["clients"], 1)
        from switchboard.errors import RequestError, RPCError

        with self.assertRaises(RPCError) as cm:
            await c.rpc("no_such_method")
        self.assertEqual(cm.exception.code, -32601)
        with self.assertRaises(RequestError) as cm:
            await c.publish("bad:", 1)
        self.assertEqual(cm.exception.code, "invalid_room")
        with self.assertRaises(RequestError) as cm:
            await c.subscribe("bad:")
        self.assertEqual(cm.exception.code, "invalid_room")
        self.assertIsNone(c.subscription("bad:"))

    async def test_api_reaches_the_client(self):
        user = "dave-" + uuid.uuid4().hex[:6]
        r = room()
        other = []
        c = await self.client(user, on_event=other.append)
        await c.subscribe(r)
        self.assertEqual(await self.api_call(self.api.send_to_user, user, {"text": "dm"}, type="dm"), 1)
        self.assertEqual(await self.api_call(self.api.send_to_connection, c.info.connection_id, 2, type="direct"), 1)
        self.assertGreaterEqual(await self.api_call(self.api.broadcast, {"text": "all"}, type="notice"), 1)
        await self.eventually(lambda: {"dm", "direct", "notice"} <= {e.type for e in other}, "dm, direct and notice")
        self.assertEqual([e.data for e in other if e.type == "dm"], [{"text": "dm"}])
        p = await self.api_call(self.api.presence, r)
        self.assertEqual([(m.user_id, m.connection_id) for m in p.members], [(user, c.info.connection_id)])
        self.assertIn(r, [x.name for x in await self.api_call(self.api.rooms)])
        self.assertEqual((await self.api_call(self.api.room, r))["members"], 1)

    async def test_kicked_client_stops(self):
        from switchboard.errors import CloseError

        user = "eve-" + uuid.uuid4().hex[:6]
        states = []
        c = await self.client(user, on_state=lambda s, e: states.append(s))
        self.assertEqual(await self.api_call(self.api.disconnect_user, user), 1)  # 4006 kicked
        err = await asyncio.wait_for(c.wait_closed(), WAIT)
        self.assertIsInstance(err, CloseError)
        self.assertEqual((err.code, err.name), (4006, "kicked"))
        self.assertEqual(c.state, "closed")
        self.assertNotIn("reconnecting", states)
        from switchboard.errors import ClientClosed

        with self.assertRaises(ClientClosed):
            await c.publish(room(), 1)

    async def test_recovery_after_the_server_drops_the_connection(self):
        # Disconnected with 1012 (restart: reconnect), the client waits a
        # second (rand pinned) while five events are published; it must get
        # exactly those, once each and in order, recovered from history.
        user = "frank-" + uuid.uuid4().hex[:6]
        r = room()
        got, subscribed, states = [], [], []
        away = asyncio.Event()

        def on_state(s, e):
            states.append((s, getattr(e, "code", None)))
            if s == "reconnecting":
                away.set()

        c = await self.client(user, on_state=on_state, initial_delay=1.0, rand=lambda: 1.0)
        await c.subscribe(r, got.append, on_subscribed=subscribed.append)
        before = [(await c.publish(r, {"n": i})).event_id for i in range(2)]
        await self.eventually(lambda: len(got) == 2, "the first two events")
        first_conn = c.info.connection_id
        await self.api_call(self.api.disconnect_user, user, code=1012, reason="test restart")
        await asyncio.wait_for(away.wait(), WAIT)
        missed = [(await self.api_call(self.api.publish, r, {"n": i})).event_id for i in range(2, 7)]
        await self.eventually(lambda: len(got) >= 7 and c.state == "open", "the missed events")
        await asyncio.sleep(0.3)  # anything doubled would arrive by now
        self.assertEqual([e.id for e in got], before + missed)
        self.assertEqual([e.data["n"] for e in got], list(range(7)))
        self.assertNotEqual(c.info.connection_id, first_conn)
        self.assertEqual(len(subscribed), 2)
        again = subscribed[1]
        self.assertEqual((again.resubscribed, again.recovered, again.replayed), (True, True, 5))
        self.assertIn(("reconnecting", 1012), states)
        self.assertEqual(self.errors, [])

    async def test_recovery_after_a_cut_socket(self):
        # No close frame at all (1006): the client reconnects and recovers
        # what was published while the socket was gone.
        user, r, got, away = "ivan-" + uuid.uuid4().hex[:6], room(), [], asyncio.Event()
        c = await self.away_client(user, away, 1.0)
        await c.subscribe(r, got.append)
        first = (await c.publish(r, 0)).event_id
        await self.eventually(lambda: len(got) == 1, "the first event")
        c._ws.transport.abort()  # a dead network, as far as both sides can tell
        await asyncio.wait_for(away.wait(), WAIT)
        missed = [(await self.api_call(self.api.publish, r, i)).event_id for i in range(1, 4)]
        await self.eventually(lambda: len(got) >= 4 and c.state == "open", "the missed events")
        await asyncio.sleep(0.3)
        self.assertEqual([e.id for e in got], [first] + missed)

    async def test_publish_while_away_is_sent_after_reconnect(self):
        user, r, got, away = "gina-" + uuid.uuid4().hex[:6], room(), [], asyncio.Event()
        c = await self.away_client(user, away, 0.5)
        await c.subscribe(r, got.append)
        await self.api_call(self.api.disconnect_user, user, code=4005)  # slow consumer: reconnect
        await asyncio.wait_for(away.wait(), WAIT)
        self.assertEqual(c.state, "reconnecting")
        ack = await asyncio.wait_for(c.publish(r, "queued"), WAIT)
        await self.eventually(lambda: [e.id for e in got] == [ack.event_id], "the queued publish")

    async def test_recovery_failed_when_history_is_too_short(self):
        # More events than the room keeps (100) while away: the handler gets
        # the recovery_failed marker, then live events from the new position.
        user, r, got, away = "hal-" + uuid.uuid4().hex[:6], room(), [], asyncio.Event()
        c = await self.away_client(user, away, 1.0)
        await c.subscribe(r, got.append)
        await c.publish(r, "before")
        await self.eventually(lambda: len(got) == 1, "the first event")
        await self.api_call(self.api.disconnect_user, user, code=1012)
        await asyncio.wait_for(away.wait(), WAIT)
        for _ in range(2):
            res = await self.api_call(self.api.publish_many, [{"room": r, "data": i} for i in range(60)])
            self.assertEqual(res.failed, 0)
        await self.eventually(lambda: any(e.recovery_failed for e in got), "the recovery_failed marker")
        live = (await c.publish(r, "after")).event_id
        await self.eventually(lambda: got[-1].id == live, "the live event")
        self.assertEqual([e.recovery_failed for e in got], [False, True, False])
        self.assertEqual(got[1].id, res.results[-1]["event_id"])

    async def test_handshake_refused(self):
        from switchboard.errors import HandshakeError

        bad = make_token("x" * 32, "mallory")
        c = await self.client(connect=False, token=bad)
        with self.assertRaises(HandshakeError) as cm:
            await c.connect(WAIT)
        self.assertEqual(cm.exception.status, 401)
        # With get_token the client asks again after a 401 and gets in.
        tokens = [bad, self.token("nina")]
        c = await self.client(connect=False, token=None, get_token=lambda: tokens.pop(0), initial_delay=0.05)
        info = await c.connect(WAIT)
        self.assertEqual((info.user_id, tokens), ("nina", []))

    async def test_session_expiring_is_refreshed(self):
        # exp 26 s ahead plus the verifier's 5 s leeway is inside the
        # server's 30 s lead: session_expiring comes at once, and get_token
        # (async here) gives a long-lived token that is sent as refresh.
        calls = []

        async def get_token():
            calls.append(1)
            return self.token("olga", ttl=3600)

        c = await self.client(connect=False, token=self.token("olga", ttl=26), get_token=get_token)
        info = await c.connect(WAIT)
        self.assertIsNotNone(info.expires_at)
        await self.eventually(lambda: c.info.expires_at and c.info.expires_at > info.expires_at + 3000_000, "refreshed")
        await asyncio.sleep(0.5)
        self.assertEqual((len(calls), c.state, self.errors), (1, "open", []))

    async def test_close_is_final(self):
        from switchboard.errors import ClientClosed

        c = await self.client()
        await c.close()
        await c.close()  # twice is fine
        self.assertEqual(c.state, "closed")
        self.assertIsNone(c.error)
        with self.assertRaises(ClientClosed):
            await c.publish(room(), 1)


if __name__ == "__main__":
    unittest.main()
