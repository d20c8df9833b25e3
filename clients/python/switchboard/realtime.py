"""An asyncio client of the Switchboard WebSocket protocol (docs/protocol.md).

Needs the ``websockets`` package (10.4, Debian bookworm's, or newer)::

    import asyncio
    from switchboard.realtime import Client

    async def main():
        async with Client("ws://127.0.0.1:8080/ws") as sb:
            room = await sb.subscribe("chat:lobby", lambda ev: print(ev.data))
            ack = await room.publish({"text": "hi"})
            print("stored as", ack.event_id)
            await asyncio.sleep(60)

    asyncio.run(main())

The client keeps one connection open across network failures and server
restarts: it reconnects with exponential backoff and full jitter, decided by
the close code (section 8); subscribes again with the last event id of each
room so the server replays what was missed, and drops duplicates; sends
unacknowledged publishes again with their original ids, which the server
does not deliver twice. Every method must be called from the event loop the
client runs on; none is thread-safe.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import random
import uuid
from collections import deque
from dataclasses import dataclass
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Deque,
    Dict,
    List,
    Optional,
    Tuple,
    TypeVar,
    Union,
)

import websockets
import websockets.exceptions

from .errors import (
    ClientClosed,
    CloseError,
    ConnectionLost,
    HandshakeError,
    ProtocolError,
    QueueFull,
    RequestError,
    RequestTimeout,
    RPCError,
    SwitchboardError,
)
from .models import Event, HistoryPage, Presence

try:  # websockets >= 13: the new asyncio implementation
    from websockets.asyncio.client import connect as _ws_connect  # type: ignore

    _HEADERS_ARG = "additional_headers"
except ImportError:  # websockets 10-12 (Debian bookworm ships 10.4)
    from websockets.client import connect as _ws_connect  # type: ignore[no-redef]

    _HEADERS_ARG = "extra_headers"

__all__ = [
    "Client",
    "Subscription",
    "Ack",
    "ConnectionInfo",
    "SubscribedInfo",
    "CLOSE_CODES",
    "close_action",
    "backoff_delay",
    "PROTOCOL_VERSION",
]

#: The protocol version this client speaks; another one stops it.
PROTOCOL_VERSION = 1

# What the client does after a close code: reconnect, stop, or get a new
# token and reconnect. The table of docs/protocol.md section 8 (a test
# checks it against protocol/codes.go), plus 1005 and 1006, which no server
# sends but a client sees when a close frame had no code or never came.
RECONNECT, STOP, REFRESH = "reconnect", "stop", "refresh"

#: code -> (name, action)
CLOSE_CODES: Dict[int, Tuple[str, str]] = {
    1000: ("normal", STOP),
    1001: ("going_away", STOP),
    1002: ("protocol_error", STOP),
    1003: ("unsupported_data", STOP),
    1005: ("no_status", RECONNECT),
    1006: ("abnormal", RECONNECT),
    1007: ("invalid_payload", STOP),
    1008: ("policy_violation", STOP),
    1009: ("message_too_big", STOP),
    1011: ("internal_error", RECONNECT),
    1012: ("service_restart", RECONNECT),
    1013: ("try_again_later", RECONNECT),
    4000: ("session_expired", REFRESH),
    4001: ("unauthorized", STOP),
    4003: ("forbidden", STOP),
    4004: ("banned", STOP),
    4005: ("slow_consumer", RECONNECT),
    4006: ("kicked", STOP),
    4008: ("heartbeat_timeout", RECONNECT),
}


def close_action(code: int, advice: Optional[bool] = None) -> str:
    """What to do after close ``code``: ``"reconnect"``, ``"stop"`` or
    ``"refresh"`` (a new token, then reconnect). ``advice`` is the
    ``reconnect`` of the server's ``disconnect`` event for this code, which
    is authoritative. Codes not in the table: reconnect below 3000 (like a
    network failure), stop from 3000 (decisions of libraries and apps)."""
    row = CLOSE_CODES.get(code)
    act = row[1] if row else (RECONNECT if code < 3000 else STOP)
    if advice is False:
        return STOP
    if advice is True and act == STOP:
        return RECONNECT
    return act


def backoff_delay(
    attempt: int,
    initial: float = 0.5,
    maximum: float = 30.0,
    factor: float = 2.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (0 first): full
    jitter, uniform in [0, min(maximum, initial * factor**attempt)), which
    spreads a crowd of clients cut at once over the whole window."""
    try:
        ceiling = min(maximum, initial * factor**attempt)
    except OverflowError:
        ceiling = maximum
    return rand() * max(0.0, ceiling)


@dataclass(frozen=True)
class Ack:
    """The acknowledgement of a publish: the stored event's id, and whether
    the id had been seen before (a re-send: the event was not delivered
    twice)."""

    event_id: str
    duplicate: bool = False


@dataclass(frozen=True)
class ConnectionInfo:
    """The data of ``connection_established``."""

    user_id: str
    connection_id: str
    heartbeat_interval_ms: int
    protocol_version: int
    server_time: int = 0
    node: str = ""
    expires_at: Optional[int] = None


@dataclass(frozen=True)
class SubscribedInfo:
    """A ``subscribed`` answer. ``recovered`` and ``replayed`` are set on a
    subscribe that asked for missed events (after a reconnect, or with
    ``last_event_id``); ``recovered`` False means some were lost for good:
    reload the room's state. ``resubscribed`` is True after a reconnect."""

    room: str
    members: int
    position: str
    recovered: Optional[bool]
    replayed: int
    resubscribed: bool


Handler = Callable[[Event], Union[None, Awaitable[None]]]
T = TypeVar("T")


def _obj(v: Any) -> Dict[str, Any]:
    """v if it is a JSON object, else an empty one: the server's data is
    read defensively."""
    return v if isinstance(v, dict) else {}

# Server frames that answer a request by its id.
_REPLY = frozenset(
    {"ack", "error", "subscribed", "unsubscribed", "history_result", "presence_result", "rpc_result", "refreshed", "pong"}
)
# Server frames that are not room events.
_CONTROL = _REPLY | {"connection_established", "disconnect", "session_expiring"}

# After a lost connection a request is sent again, failed, or forgotten
# (subscribes: the re-subscription replaces them).
_RESEND, _REJECT, _FORGET = 1, 0, 2


class _Request:
    __slots__ = ("frame", "id", "kind", "sent", "future", "parse")

    def __init__(self, frame: Dict[str, Any], kind: int, future: "asyncio.Future[Any]", parse: Callable[[Dict[str, Any]], Any]) -> None:
        self.frame = frame
        self.id: str = frame["id"]
        self.kind = kind
        self.sent = False
        self.future = future
        self.parse = parse


class Subscription:
    """A client's interest in one room; it survives reconnects.

    Events go to the handler given to :meth:`Client.subscribe`; without
    one, iterate: ``async for event in subscription``. Handlers (and
    ``on_subscribed``) run one at a time, in order, on one task of the
    client, so a handler may ``await`` a publish.
    """

    def __init__(
        self,
        client: "Client",
        room: str,
        handler: Optional[Handler],
        on_subscribed: Optional[Callable[[SubscribedInfo], Any]],
        last_event_id: Optional[str],
    ) -> None:
        self.client = client
        self.room = room
        self.state = "subscribing"
        self._handler = handler
        self._on_subscribed = on_subscribed
        self._events: Optional["asyncio.Queue[Optional[Event]]"] = None if handler else asyncio.Queue()
        self._ready: "asyncio.Future[SubscribedInfo]" = asyncio.get_running_loop().create_future()
        self._answers = 0
        self._epoch: Optional[str] = None
        self._offset = -1
        #: The newest event id seen (``EPOCH-OFFSET``), or the room's
        #: position when subscribed; sent as ``last_event_id`` on reconnect.
        self.last_event_id: Optional[str] = None
        if last_event_id:
            self._seen(last_event_id)

    def __repr__(self) -> str:
        return f"<Subscription {self.room!r} {self.state} at {self.last_event_id}>"

    async def publish(self, data: Any = None, *, type: str = "message", id: Optional[str] = None, timeout: Optional[float] = None) -> Ack:
        """Publish to this room; see :meth:`Client.publish`."""
        return await self.client.publish(self.room, data, type=type, id=id, timeout=timeout)

    async def history(self, *, since: Optional[str] = None, limit: Optional[int] = None) -> HistoryPage:
        """This room's stored events; see :meth:`Client.history`."""
        return await self.client.history(self.room, since=since, limit=limit)

    async def presence(self, *, counts_only: bool = False) -> Presence:
        """Who is in this room; see :meth:`Client.presence`."""
        return await self.client.presence(self.room, counts_only=counts_only)

    async def unsubscribe(self) -> None:
        """Leave the room; events already on the wire are dropped."""
        await self.client._unsubscribe(self)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Event]:
        if self._events is None:
            raise TypeError("switchboard: this subscription has a handler; iterate only subscriptions made without one")
        while True:
            ev = await self._events.get()
            if ev is None:
                return
            yield ev

    # Called by the client.

    def _seen(self, event_id: str) -> bool:
        """Record event_id as the newest if it is; False for an id at or
        before the newest seen in the same epoch (a duplicate at the
        reconnect seam). Ids not in EPOCH-OFFSET form are let through."""
        epoch, dash, offset = event_id.rpartition("-")
        if not dash or not epoch or not offset.isdigit():
            return True
        n = int(offset)
        if epoch == self._epoch and n <= self._offset:
            return False
        self._epoch, self._offset = epoch, n
        self.last_event_id = event_id
        return True

    def _subscribed(self, d: Dict[str, Any]) -> Tuple[SubscribedInfo, Optional[Event]]:
        recovered = d.get("recovered")
        pos = d.get("position")
        position = pos if isinstance(pos, str) else ""
        info = SubscribedInfo(
            room=self.room,
            members=int(d.get("members") or 0),
            position=position,
            recovered=recovered if isinstance(recovered, bool) else None,
            replayed=int(d.get("replayed") or 0),
            resubscribed=self._answers > 0,
        )
        self._answers += 1
        self.state = "subscribed"
        marker = None
        if recovered is False:
            marker = Event(type="subscribed", id=position, room=self.room, data=d, recovery_failed=True, raw=d)
        # With recovered True the replayed events follow and move the
        # position themselves; otherwise the room's position is where we
        # stand now (a new epoch replaces the old one).
        if recovered is not True and position:
            self._seen(position)
        if not self._ready.done():
            self._ready.set_result(info)
        return info, marker

    def _gap(self, m: Dict[str, Any], d: Dict[str, Any]) -> Event:
        """A ``stream_gap`` notice (protocol.md section 4): events of the
        room could not be delivered. The position moves to ``until`` (when
        given), so the events that follow are in order and a reconnect
        does not ask for the lost range again; the app gets a marker with
        ``recovery_failed`` True, type ``stream_gap`` and id ``until``."""
        until = d.get("until")
        if not isinstance(until, str) or not until:
            until = None
        if until is not None:
            self._seen(until)
        ev = Event.from_dict(m)
        return dataclasses.replace(ev, id=until, data=d, recovery_failed=True)

    def _end(self, err: Optional[BaseException]) -> None:
        self.state = "unsubscribed"
        if not self._ready.done():
            self._ready.set_exception(err or ClientClosed("unsubscribed before the server answered"))
            self._ready.exception()  # mark retrieved: nobody may be waiting
        if self._events is not None:
            self._events.put_nowait(None)


class Client:
    """One connection to a Switchboard node, kept open.

    ``url`` is the WebSocket endpoint (``ws://host:8080/ws``). ``token``
    (or ``get_token``, called for a token before connecting, after 401 and
    close 4000, and on ``session_expiring``; it may be a coroutine
    function) is sent as ``Authorization: Bearer`` with each handshake.
    Times are in seconds.

    Reconnects: ``initial_delay`` (0.5), ``max_delay`` (30), ``factor``
    (2): full-jitter backoff; ``max_attempts`` failed attempts in a row
    before giving up (0: never); ``reconnect=False`` never reconnects.

    ``queue_size`` (1024) bounds the messages waiting for a connection;
    ``timeout`` (15; 0 or None: none) is the default wait for an answer.
    ``ping_interval`` / ``ping_timeout`` (20 / 20) are the library's
    WebSocket pings, which find a dead connection from this side; the
    server's pings are answered automatically.

    Callbacks: ``on_state(state, error)`` for ``connecting``, ``open``,
    ``reconnecting`` and ``closed``; ``on_error(error)`` for errors about no
    call in particular; ``on_event(event)`` for frames no subscription or
    call consumed (events sent to the user, broadcasts to everyone).
    """

    def __init__(
        self,
        url: str,
        *,
        token: Optional[str] = None,
        get_token: Optional[Callable[[], Union[str, Awaitable[str]]]] = None,
        headers: Optional[Dict[str, str]] = None,
        reconnect: bool = True,
        initial_delay: float = 0.5,
        max_delay: float = 30.0,
        factor: float = 2.0,
        max_attempts: int = 0,
        queue_size: int = 1024,
        timeout: Optional[float] = 15.0,
        open_timeout: float = 10.0,
        ping_interval: Optional[float] = 20.0,
        ping_timeout: Optional[float] = 20.0,
        max_size: int = 4 * 1024 * 1024,
        compression: bool = False,
        on_state: Optional[Callable[[str, Optional[BaseException]], Any]] = None,
        on_error: Optional[Callable[[BaseException], Any]] = None,
        on_event: Optional[Handler] = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"switchboard: the WebSocket URL must start with ws:// or wss://, got {url!r}")
        self.url = url
        self.token = token
        self.get_token = get_token
        self.headers = dict(headers or {})
        self.reconnect = reconnect
        self.initial_delay, self.max_delay, self.factor = initial_delay, max_delay, factor
        self.max_attempts = max_attempts
        self.queue_size = queue_size
        self.timeout = timeout
        self.open_timeout = open_timeout
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.max_size = max_size
        self.compression = compression
        self.on_state, self.on_error, self.on_event = on_state, on_error, on_event
        self._rand = rand

        #: ``connecting``, ``open``, ``reconnecting`` or ``closed``.
        self.state = "closed"
        #: The latest ``connection_established`` data.
        self.info: Optional[ConnectionInfo] = None
        #: Why the client stopped for good (None after :meth:`close`).
        self.error: Optional[BaseException] = None
        self._ws: Any = None
        self._wq: Optional["asyncio.Queue[str]"] = None
        self._up = False  # connection_established seen on the current connection
        self._established = False
        self._stopped = False
        self._closing = False
        self._runner: Optional["asyncio.Task[None]"] = None
        self._dispatcher: Optional["asyncio.Task[None]"] = None
        # Created in connect(), on the loop (asyncio.Queue binds to one
        # before Python 3.10).
        self._calls: Optional["asyncio.Queue[Optional[Tuple[Callable[..., Any], Tuple[Any, ...]]]]"] = None
        self._opened: Optional["asyncio.Future[ConnectionInfo]"] = None
        self._wake: Optional[asyncio.Event] = None
        self._subs: Dict[str, Subscription] = {}
        self._pending: Dict[str, _Request] = {}
        self._outbox: Deque[Union[_Request, str]] = deque()
        self._advice: Optional[Dict[str, Any]] = None
        self._expiring: Optional[int] = None
        self._prefix = uuid.uuid4().hex[:12] + "."
        self._n = 0

    # Lifecycle

    async def connect(self, timeout: Optional[float] = None) -> ConnectionInfo:
        """Open the connection and wait for ``connection_established``.

        Failed attempts are retried with backoff as after a lost
        connection; the wait ends with the first success, with the error
        that stopped the client (a :class:`HandshakeError` for 401 without
        ``get_token``, a :class:`CloseError`...), or after ``timeout``
        seconds, which closes the client and raises :class:`RequestTimeout`.
        """
        if self._runner is None or self._runner.done():
            loop = asyncio.get_running_loop()
            self._closing = False
            self._stopped = False
            self.error = None
            self._opened = loop.create_future()
            self._wake = asyncio.Event()
            if self._dispatcher is None or self._dispatcher.done():
                self._calls = asyncio.Queue()
                self._dispatcher = loop.create_task(self._dispatch(self._calls))
            self._runner = loop.create_task(self._run())
        assert self._opened is not None
        try:
            return await asyncio.wait_for(asyncio.shield(self._opened), timeout)
        except asyncio.TimeoutError:
            await self.close()
            raise RequestTimeout(f"no connection to {self.url} within {timeout} s") from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection for good; waiting calls fail with
        :class:`ClientClosed`. Handlers already queued still run. Safe to
        call more than once."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        ws = self._ws
        if ws is not None:
            try:
                await asyncio.wait_for(ws.close(code, reason), 5)
            except (asyncio.TimeoutError, OSError, websockets.exceptions.WebSocketException):
                pass
        if self._runner is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._runner), 10)
            except asyncio.TimeoutError:
                self._runner.cancel()
        self._stop(None)
        d = self._dispatcher
        if d is not None and not d.done() and self._calls is not None:
            self._calls.put_nowait(None)
            if asyncio.current_task() is d:
                return  # close() from a handler: the dispatcher ends after it
            try:
                await asyncio.wait_for(asyncio.shield(d), 10)
            except asyncio.TimeoutError:
                d.cancel()

    async def wait_closed(self) -> Optional[BaseException]:
        """Wait until the client stops for good; returns why (None after
        :meth:`close`)."""
        if self._runner is not None:
            await asyncio.shield(self._runner)
        return self.error

    async def __aenter__(self) -> "Client":
        await self.connect(self.open_timeout * 3)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # Rooms and requests

    async def subscribe(
        self,
        room: str,
        handler: Optional[Handler] = None,
        *,
        on_subscribed: Optional[Callable[[SubscribedInfo], Any]] = None,
        last_event_id: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> Subscription:
        """Join ``room`` and wait for the server's ``subscribed``.

        ``handler(event)`` (a function or coroutine function) gets each
        room event once, in order, across reconnects; without a handler,
        iterate the subscription. When a reconnect could not recover the
        missed events, the handler gets an event with ``recovery_failed``
        True in their place: reload the room's state. The same marker, with
        type ``stream_gap``, ``data`` ``{after, until, reason}`` and id
        ``until``, comes when the server could not deliver some events on
        the live subscription. ``last_event_id``
        starts from a known position (the server replays what came after).
        A refused subscribe raises :class:`RequestError`.
        """
        if self._stopped:
            raise ClientClosed("the client is closed") from self.error
        if room in self._subs:
            raise ValueError(f"switchboard: already subscribed to {room!r}")
        sub = Subscription(self, room, handler, on_subscribed, last_event_id)
        self._subs[room] = sub
        if self._up:
            self._join(sub)
        t = self._timeout(timeout)
        try:
            await asyncio.wait_for(asyncio.shield(sub._ready), t)
        except asyncio.TimeoutError:
            if self._subs.get(room) is sub:
                del self._subs[room]
                if self._up:  # the server may subscribe us later
                    self._enqueue(json.dumps({"type": "unsubscribe", "id": self._id(), "room": room}))
            sub._end(None)
            raise RequestTimeout(f"no answer to subscribe {room!r} in {t} s") from None
        except SwitchboardError:
            self._subs.pop(room, None)
            raise
        return sub

    def subscription(self, room: str) -> Optional[Subscription]:
        """The subscription to ``room``, if any."""
        return self._subs.get(room)

    async def _unsubscribe(self, sub: Subscription) -> None:
        if self._subs.get(sub.room) is not sub:
            return
        del self._subs[sub.room]
        sub._end(None)
        if self._up:
            self._enqueue(json.dumps({"type": "unsubscribe", "id": self._id(), "room": sub.room}))

    async def publish(
        self,
        room: str,
        data: Any = None,
        *,
        type: str = "message",
        id: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> Ack:
        """Publish an event to ``room`` (no subscription needed) and wait
        for the ``ack``. The id (a random UUID unless given) is the
        idempotency key: across a reconnect the publish is sent again with
        it, and the server delivers it once. A refusal raises
        :class:`RequestError` (``forbidden``, ``invalid_room``...)."""
        frame = {"type": type, "id": id or str(uuid.uuid4()), "room": room, "data": data}

        def parse(m: Dict[str, Any]) -> Ack:
            d = _obj(m.get("data"))
            return Ack(event_id=str(d.get("event_id", "")), duplicate=d.get("duplicate") is True)

        return await self._request(frame, _RESEND, parse, timeout)

    async def history(
        self, room: str, *, since: Optional[str] = None, limit: Optional[int] = None, timeout: Optional[float] = None
    ) -> HistoryPage:
        """A page of the room's stored events (``history_result``)."""
        data: Dict[str, Any] = {}
        if since is not None:
            data["since"] = since
        if limit is not None:
            data["limit"] = limit
        frame = {"type": "history", "id": self._id(), "room": room, "data": data}
        return await self._request(frame, _RESEND, lambda m: HistoryPage.from_dict(_obj(m.get("data"))), timeout)

    async def presence(self, room: str, *, counts_only: bool = False, timeout: Optional[float] = None) -> Presence:
        """Who is in the room across the cluster (``presence_result``)."""
        frame = {"type": "presence", "id": self._id(), "room": room, "data": {"counts_only": counts_only}}
        return await self._request(frame, _RESEND, lambda m: Presence.from_dict(_obj(m.get("data"))), timeout)

    async def rpc(self, method: str, params: Any = None, *, timeout: Optional[float] = None) -> Any:
        """Call a server method and return its JSON-RPC result. A JSON-RPC
        error raises :class:`RPCError`. A call already sent is not sent again
        after a lost connection (it may not be safe to run twice): it raises
        :class:`ConnectionLost`."""

        def parse(m: Dict[str, Any]) -> Any:
            d = m.get("data")
            if isinstance(d, dict) and isinstance(d.get("error"), dict):
                e = d["error"]
                raise RPCError(int(e.get("code") or 0), str(e.get("message", "")), e.get("data"))
            return d.get("result") if isinstance(d, dict) and "jsonrpc" in d else d

        frame = {"type": "rpc", "id": self._id(), "data": {"method": method, "params": params}}
        return await self._request(frame, _REJECT, parse, timeout)

    async def send(self, message: Dict[str, Any]) -> None:
        """Send any protocol message as it is (queued while not connected;
        :class:`QueueFull` beyond ``queue_size``). Answers go to
        ``on_event``."""
        raw = json.dumps(message, separators=(",", ":"))
        if self._up:
            self._enqueue(raw)
        elif len(self._outbox) >= self.queue_size:
            raise QueueFull(f"more than {self.queue_size} messages wait for a connection")
        else:
            self._outbox.append(raw)

    # Internals: requests

    def _id(self) -> str:
        self._n += 1
        return f"{self._prefix}{self._n}"

    def _timeout(self, timeout: Optional[float]) -> Optional[float]:
        t = self.timeout if timeout is None else timeout
        return t if t else None

    async def _request(self, frame: Dict[str, Any], kind: int, parse: Callable[[Dict[str, Any]], T], timeout: Optional[float]) -> T:
        if self._stopped:
            raise ClientClosed("the client is closed") from self.error
        if frame["id"] in self._pending:
            raise ValueError(f"switchboard: request id {frame['id']!r} is already waiting for an answer")
        if not self._up and len(self._outbox) >= self.queue_size:
            raise QueueFull(f"more than {self.queue_size} messages wait for a connection")
        fut: "asyncio.Future[T]" = asyncio.get_running_loop().create_future()
        req = _Request(frame, kind, fut, parse)
        self._pending[req.id] = req
        if self._up:
            self._write(req)
        else:
            self._outbox.append(req)
        t = self._timeout(timeout)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), t)
        except asyncio.TimeoutError:
            raise RequestTimeout(f"no answer to {frame['type']} {req.id!r} in {t} s") from None
        finally:
            self._forget(req)

    def _forget(self, req: _Request) -> None:
        if self._pending.get(req.id) is req:
            del self._pending[req.id]
        try:
            self._outbox.remove(req)
        except ValueError:
            pass

    def _write(self, req: _Request) -> None:
        req.sent = True
        self._enqueue(json.dumps(req.frame, separators=(",", ":")))

    def _enqueue(self, raw: str) -> None:
        # One writer task per connection sends in order; callers never
        # wait on the socket, so nothing can overtake what was queued first.
        if self._wq is not None:
            self._wq.put_nowait(raw)

    def _settle(self, req: _Request, m: Dict[str, Any]) -> None:
        self._forget(req)
        if req.future.done():
            return
        if m.get("type") == "error":
            d = _obj(m.get("data"))
            req.future.set_exception(RequestError(str(d.get("code", "")), str(d.get("message", "")), m.get("id")))
            return
        try:
            req.future.set_result(req.parse(m))
        except SwitchboardError as e:
            req.future.set_exception(e)

    def _join(self, sub: Subscription) -> None:
        """Send a subscribe for sub, from its last event id if it has one."""
        frame: Dict[str, Any] = {"type": "subscribe", "id": self._id(), "room": sub.room}
        if sub.last_event_id:
            frame["last_event_id"] = sub.last_event_id
        fut: "asyncio.Future[Any]" = asyncio.get_running_loop().create_future()
        req = _Request(frame, _FORGET, fut, lambda m: m)

        def done(f: "asyncio.Future[Any]") -> None:
            if f.cancelled() or self._subs.get(sub.room) is not sub:
                return
            err = f.exception()
            if err is None:
                info, marker = sub._subscribed(_obj(f.result().get("data")))
                if sub._on_subscribed is not None:
                    self._call(sub._on_subscribed, info)
                if marker is not None:
                    self._deliver(sub, marker)
            else:
                # Refused (on a re-subscription too): the subscription ends.
                del self._subs[sub.room]
                resub = sub._answers > 0
                sub._end(err)
                if resub:
                    self._report(err)

        fut.add_done_callback(done)
        self._pending[req.id] = req
        self._write(req)

    # Internals: callbacks, run one at a time on the dispatcher task.

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._calls is not None:
            self._calls.put_nowait((fn, args))

    def _deliver(self, sub: Subscription, ev: Event) -> None:
        if sub._handler is not None:
            self._call(sub._handler, ev)
        elif sub._events is not None:
            sub._events.put_nowait(ev)

    def _report(self, err: BaseException) -> None:
        if self.on_error is not None:
            self._call(self.on_error, err)

    def _set_state(self, state: str, err: Optional[BaseException] = None) -> None:
        if state != self.state:
            self.state = state
            if self.on_state is not None:
                self._call(self.on_state, state, err)

    async def _dispatch(self, calls: "asyncio.Queue[Optional[Tuple[Callable[..., Any], Tuple[Any, ...]]]]") -> None:
        while True:
            item = await calls.get()
            if item is None:
                return
            fn, args = item
            try:
                r = fn(*args)
                if inspect.isawaitable(r):
                    await r
            except Exception as e:  # a handler's bug must not stop the client
                if fn is not self.on_error:
                    self._report(e)

    # Internals: the connection loop.

    async def _token(self, fresh: bool) -> Optional[str]:
        if self.get_token is not None and (fresh or self.token is None):
            t = self.get_token()
            self.token = await t if inspect.isawaitable(t) else t  # type: ignore[assignment]
        return self.token

    async def _dial(self, fresh_token: bool) -> Any:
        token = await self._token(fresh_token)
        headers = dict(self.headers)
        if token:
            headers["Authorization"] = "Bearer " + token
        kwargs: Dict[str, Any] = {
            "subprotocols": ["switchboard.v1"],
            "open_timeout": self.open_timeout,
            "ping_interval": self.ping_interval,
            "ping_timeout": self.ping_timeout,
            "close_timeout": 5,
            "max_size": self.max_size,
            "compression": "deflate" if self.compression else None,
        }
        if headers:
            kwargs[_HEADERS_ARG] = headers
        return await _ws_connect(self.url, **kwargs)

    async def _run(self) -> None:
        attempt = 0
        fresh = False
        while not self._closing:
            self._set_state("connecting" if self.info is None else "reconnecting")
            retry_after: Optional[float] = None
            try:
                ws = await self._dial(fresh)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # every dial failure is decided by _failure
                act, err, retry_after = _failure(e)
            else:
                fresh = False
                if self._closing:  # close() was called while dialling
                    await _abort(ws, 1000)
                    break
                code, reason, advice, fatal = await self._session(ws)
                if self._established:
                    attempt = 0  # backoff restarts after a good connection
                self._lost()
                if fatal is not None:
                    act, err = STOP, fatal
                else:
                    act = close_action(code, advice)
                    err = CloseError(code, reason, CLOSE_CODES.get(code, (str(code), ""))[0])
            if self._closing:
                break
            if act == REFRESH:
                if self.get_token is None:
                    act = STOP
                else:
                    fresh = True
            if act == STOP or not self.reconnect:
                normal = isinstance(err, CloseError) and err.code in (1000, 1001)
                self._stop(None if normal else err)
                return
            if self.max_attempts and attempt >= self.max_attempts:
                self._stop(CloseError(getattr(err, "code", 1006), f"gave up after {attempt} failed attempts: {err}", "reconnect_failed"))
                return
            delay = backoff_delay(attempt, self.initial_delay, self.max_delay, self.factor, self._rand)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.max_delay))
            attempt += 1
            self._set_state("reconnecting", err)
            if not isinstance(err, CloseError):
                self._report(err)
            assert self._wake is not None
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass
        self._stop(None)

    async def _session(self, ws: Any) -> Tuple[int, str, Optional[bool], Optional[BaseException]]:
        """Run one connection until it ends; returns (close code, reason,
        the server's reconnect advice for that code, a fatal error)."""
        self._established = False
        self._advice = None
        self._expiring = None
        self._ws = ws
        wq: "asyncio.Queue[str]" = asyncio.Queue()
        self._wq = wq
        writer = asyncio.get_running_loop().create_task(_writer(ws, wq))
        code, reason = 1006, "no close frame"
        try:
            raw = await asyncio.wait_for(ws.recv(), self.open_timeout)
            m = _decode(raw)
            if m is None or m.get("type") != "connection_established":
                await _abort(ws, 1002)
                return 1002, "", None, ProtocolError(f"the first frame is not connection_established: {str(raw)[:200]}")
            d = _obj(m.get("data"))
            if d.get("protocol_version") != PROTOCOL_VERSION:
                await _abort(ws, 1000)
                return 1000, "", None, ProtocolError(
                    f"the server speaks protocol_version {d.get('protocol_version')!r}, this client {PROTOCOL_VERSION}"
                )
            self._opened_with(d)
            while True:
                raw = await ws.recv()
                m = _decode(raw)
                if m is None:
                    self._report(ProtocolError(f"the server sent a frame that is not a JSON envelope: {str(raw)[:200]}"))
                    continue
                self._frame(m)
        except websockets.exceptions.ConnectionClosed as e:
            rcvd = getattr(e, "rcvd", None)
            if rcvd is not None:
                code, reason = int(rcvd.code), str(rcvd.reason)
        except asyncio.TimeoutError:
            await _abort(ws, 1000)
            reason = "no connection_established in time"
        except OSError as e:
            reason = str(e)
        finally:
            writer.cancel()
            self._ws = None
            self._wq = None
            self._up = False
        return code, reason, self._advice_for(code), None

    def _advice_for(self, code: int) -> Optional[bool]:
        """The reconnect advice of the disconnect event, if it came with
        this close code."""
        adv = self._advice
        if adv is None or adv.get("code") != code or not isinstance(adv.get("reconnect"), bool):
            return None
        return bool(adv["reconnect"])

    def _opened_with(self, d: Dict[str, Any]) -> None:
        def num(k: str) -> int:
            v = d.get(k)
            return v if isinstance(v, int) and not isinstance(v, bool) else 0

        exp = d.get("expires_at")
        self.info = ConnectionInfo(
            user_id=str(d.get("user_id", "")),
            connection_id=str(d.get("connection_id", "")),
            heartbeat_interval_ms=num("heartbeat_interval_ms"),
            protocol_version=num("protocol_version"),
            server_time=num("server_time"),
            node=str(d.get("node", "")),
            expires_at=exp if isinstance(exp, int) else None,
        )
        self._established = True
        self._up = True
        # Re-subscribe first, so replays come before anything published
        # now; then what waited, re-sent publishes first, in their order.
        for sub in list(self._subs.values()):
            self._join(sub)
        out, self._outbox = self._outbox, deque()
        for item in out:
            if isinstance(item, str):
                self._enqueue(item)
            elif self._pending.get(item.id) is item:
                self._write(item)
        self._set_state("open")
        if self._opened is not None and not self._opened.done():
            self._opened.set_result(self.info)

    def _frame(self, m: Dict[str, Any]) -> None:
        t = m.get("type")
        mid = m.get("id")
        req = self._pending.get(mid) if isinstance(mid, str) and t in _REPLY else None
        if req is not None:
            self._settle(req, m)
            return
        d = _obj(m.get("data"))
        room = m.get("room")
        if t == "disconnect":
            self._advice = d
        elif t == "session_expiring":
            if self.get_token is not None:
                asyncio.get_running_loop().create_task(self._refresh(d))
            elif self.on_event is not None:
                self._call(self.on_event, Event.from_dict(m))
        elif t == "error":
            self._report(RequestError(str(d.get("code", "")), str(d.get("message", "")), d.get("ref")))
        elif t == "stream_gap" and isinstance(room, str) and room in self._subs:
            sub = self._subs[room]
            self._deliver(sub, sub._gap(m, d))
        elif t not in _CONTROL and isinstance(room, str) and room in self._subs:
            sub = self._subs[room]
            ev = Event.from_dict(m)
            if ev.id is not None and not sub._seen(ev.id):
                return  # a duplicate at the reconnect seam
            self._deliver(sub, ev)
        elif t not in _CONTROL and self.on_event is not None:
            self._call(self.on_event, Event.from_dict(m))

    async def _refresh(self, d: Dict[str, Any]) -> None:
        """Answer session_expiring with a token from get_token, sent as
        refresh; once per expires_at, since a token already inside the
        server's lead gets the warning again at once."""
        at = d.get("expires_at")
        if at is not None and at == self._expiring:
            return
        self._expiring = at
        old = self.token
        try:
            token = await self._token(True)
            if token and token != old:
                m = await self._request({"type": "refresh", "id": self._id(), "data": {"token": token}}, _REJECT, lambda m: m, None)
                d = _obj(m.get("data"))
                exp = d.get("expires_at")
                if self.info is not None:
                    # The new credentials' expiry (absent: they never expire).
                    self.info = dataclasses.replace(self.info, expires_at=exp if isinstance(exp, int) else None)
        except SwitchboardError as e:
            self._report(e)
        except Exception as e:  # get_token's own failure
            self._report(SwitchboardError(f"get_token failed: {e!r}"))

    def _lost(self) -> None:
        """The connection ended: requests sent on it are queued again
        (publishes, history, presence), failed (RPC) or dropped
        (subscribes: the re-subscription replaces them)."""
        self._up = False
        again: List[Union[_Request, str]] = []
        for req in list(self._pending.values()):
            if not req.sent:
                continue
            req.sent = False
            if req.kind == _RESEND:
                again.append(req)
                continue
            del self._pending[req.id]
            if req.future.done():
                continue
            if req.kind == _FORGET:
                req.future.cancel()
            else:
                req.future.set_exception(ConnectionLost("the connection was lost before the answer"))
        self._outbox.extendleft(reversed(again))
        for sub in self._subs.values():
            sub.state = "subscribing"

    def _stop(self, err: Optional[BaseException]) -> None:
        """Stop for good: waiting calls fail with err (or ClientClosed)."""
        if self._stopped:
            return
        self._stopped = True
        self._up = False
        self.error = err
        x = err or ClientClosed("the client was closed")
        for req in list(self._pending.values()):
            if not req.future.done():
                req.future.set_exception(x)
                req.future.exception()  # retrieved: the caller may be gone
        self._pending.clear()
        self._outbox.clear()
        for sub in list(self._subs.values()):
            sub._end(x)
        self._subs.clear()
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(x)
            self._opened.exception()
        self._set_state("closed", err)
        if err is not None:
            self._report(err)


async def _writer(ws: Any, wq: "asyncio.Queue[str]") -> None:
    try:
        while True:
            await ws.send(await wq.get())
    except websockets.exceptions.ConnectionClosed:
        pass  # the reader sees the close and handles it


def _decode(raw: Any) -> Optional[Dict[str, Any]]:
    if not isinstance(raw, str):
        return None
    try:
        m = json.loads(raw)
    except ValueError:
        return None
    return m if isinstance(m, dict) and isinstance(m.get("type"), str) else None


async def _abort(ws: Any, code: int) -> None:
    try:
        await asyncio.wait_for(ws.close(code), 2)
    except (asyncio.TimeoutError, OSError, websockets.exceptions.WebSocketException):
        pass


def _status(e: BaseException) -> Tuple[Optional[int], Any, bytes]:
    """The HTTP status, headers and body of a refused handshake, from
    websockets' legacy InvalidStatusCode (10.x) or new InvalidStatus."""
    resp = getattr(e, "response", None)
    if resp is not None and hasattr(resp, "status_code"):
        return int(resp.status_code), getattr(resp, "headers", None), bytes(getattr(resp, "body", b"") or b"")
    code = getattr(e, "status_code", None)
    if isinstance(code, int):
        return code, getattr(e, "headers", None), b""
    return None, None, b""


def _failure(e: BaseException) -> Tuple[str, BaseException, Optional[float]]:
    """What a failed connection attempt means: (action, error, retry-after)."""
    status, headers, body = _status(e)
    if status is not None:
        code, message = "", ""
        try:
            err = json.loads(body.decode("utf-8")).get("error", {}) if body else {}
            code, message = str(err.get("code", "")), str(err.get("message", ""))
        except (ValueError, AttributeError, UnicodeDecodeError):
            pass
        retry_after = None
        try:
            if headers is not None and headers.get("Retry-After") is not None:
                retry_after = float(headers.get("Retry-After"))
        except (TypeError, ValueError):
            retry_after = None
        herr = HandshakeError(status, code, message, retry_after)
        if status == 401:
            return REFRESH, herr, retry_after  # the token was rejected: a new one may pass
        if 400 <= status < 500 and status not in (408, 429):
            return STOP, herr, retry_after
        return RECONNECT, herr, retry_after
    if isinstance(e, websockets.exceptions.InvalidURI):
        return STOP, SwitchboardError(f"invalid WebSocket URL: {e}"), None
    if isinstance(e, websockets.exceptions.InvalidHandshake):
        return RECONNECT, SwitchboardError(f"handshake failed: {e}"), None
    # Refused, reset, DNS, TLS, timeouts: the network; try again.
    return RECONNECT, SwitchboardError(f"cannot connect: {e or type(e).__name__}"), None
