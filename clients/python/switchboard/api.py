"""A client of the Switchboard server API (docs/api.md), for backends.

Standard library only (``urllib.request``)::

    from switchboard import APIClient

    sb = APIClient("http://127.0.0.1:8080", api_key=os.environ["SWITCHBOARD_API_KEY"])
    res = sb.publish("match:42", {"home": 2, "away": 1}, type="score_update")
    print(res.event_id, res.recipients)

Calls block; an :class:`APIClient` is safe to share between threads (it
keeps no connection state). In ``async`` code use :class:`AsyncAPIClient`,
which runs the same calls in a thread pool, or call from a sync endpoint,
which frameworks such as FastAPI run in a thread pool.
"""

from __future__ import annotations

import asyncio
import functools
import http.client
import json
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, TypeVar

from .errors import APIError, SwitchboardError, TransportError, api_error
from .models import BatchResult, Event, HistoryPage, Presence, PublishResult, RoomInfo

__all__ = ["APIClient", "AsyncAPIClient", "quote_segment"]

_NO_BODY = object()
T = TypeVar("T")


def quote_segment(name: str) -> str:
    """Escape a room, user or connection id as one path segment: ``/`` as
    ``%2F``, and the names ``.`` and ``..`` as ``%2E`` / ``%2E%2E`` so that
    no URL layer collapses them (docs/api.md, "Conventions")."""
    if name in (".", ".."):
        return "%2E" * len(name)
    return urllib.parse.quote(name, safe=":@=+")


class APIClient:
    """A client of one Switchboard node's (or load balancer's) server API.

    ``url`` is the node's base URL (``http://127.0.0.1:8080``); ``api_key``
    is sent as ``Authorization: Bearer`` (without one, a node with no key
    configured answers loopback requests only). ``timeout`` bounds each HTTP
    request, in seconds.

    ``retries`` is how many times a call that is safe to repeat is sent
    again after a network failure, a 5xx or a 429, with full-jitter backoff
    (``backoff`` seconds doubling, at most ``max_backoff``; a
    ``Retry-After`` is honoured up to ``max_backoff``). Safe to repeat:
    publishes (each carries an idempotency key, generated when you give
    none, so the server never publishes a retry twice), reads, disconnects
    and bans. Sends to a user or connection and broadcasts to everyone have
    no key and are never retried.
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8080",
        api_key: Optional[str] = None,
        *,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        user_agent: str = "switchboard-python",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"switchboard: the API URL must be http:// or https://HOST[:PORT], got {url!r}")
        if retries < 0:
            raise ValueError("switchboard: retries must be >= 0")
        self.url = url.rstrip("/")
        self.api_key = api_key or None
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.user_agent = user_agent
        self._sleep = sleep

    @classmethod
    def from_env(cls, **kwargs: Any) -> "APIClient":
        """A client for ``$SWITCHBOARD_URL`` (default ``http://127.0.0.1:8080``)
        with the key in ``$SWITCHBOARD_API_KEY``."""
        return cls(
            os.environ.get("SWITCHBOARD_URL") or "http://127.0.0.1:8080",
            os.environ.get("SWITCHBOARD_API_KEY") or None,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"APIClient({self.url!r}, api_key={'***' if self.api_key else None})"

    # Publishing

    def publish(
        self,
        room: str,
        data: Any = None,
        *,
        type: str = "message",
        idempotency_key: Optional[str] = None,
    ) -> PublishResult:
        """Publish an event to ``room`` (``POST /api/broadcast/{room}``).

        Every member on every node receives it with an event id, and it is
        kept in the room's history for clients that recover. Give each
        logical event its own ``idempotency_key`` to make your own retries
        safe too (a key seen in the last 2 minutes is answered with
        ``duplicate=True`` and the first event's id); one is generated when
        you give none, which covers this client's own retries.
        """
        body = {"type": type, "data": data, "idempotency_key": idempotency_key or _key()}
        return PublishResult.from_dict(self._call("POST", "/api/broadcast/" + quote_segment(room), body, retry=True))

    def publish_many(self, events: Iterable[Mapping[str, Any]]) -> BatchResult:
        """Publish 1 to 100 events in one request (``POST /api/publish``).

        Each event is ``{"room", "type"?, "data"?, "idempotency_key"?}``; a key
        is generated for events without one. One invalid event refuses the
        whole batch (:class:`BadRequest`); an engine failure on one event is
        reported in its result and counted in ``failed``.
        """
        batch: List[Dict[str, Any]] = []
        for ev in events:
            e = dict(ev)
            e.setdefault("idempotency_key", _key())
            batch.append(e)
        d = self._call("POST", "/api/publish", {"events": batch}, retry=True)
        res = d.get("results")
        return BatchResult(results=res if isinstance(res, list) else [], failed=int(d.get("failed") or 0))

    def broadcast(self, data: Any = None, *, type: str = "message") -> int:
        """Send an event to every connection on every node
        (``POST /api/broadcast``). It has no room or id and is not stored.
        Returns the recipients on the answering node."""
        return int(self._call("POST", "/api/broadcast", {"type": type, "data": data}).get("recipients") or 0)

    # Users and connections

    def send_to_user(self, user: str, data: Any = None, *, type: str = "message") -> int:
        """Send an event to every connection of ``user`` on every node. Not
        stored; returns the recipients on the answering node (0 is not an
        error: the user may be connected elsewhere)."""
        path = "/api/users/" + quote_segment(user) + "/send"
        return int(self._call("POST", path, {"type": type, "data": data}).get("recipients") or 0)

    def send_to_connection(self, connection_id: str, data: Any = None, *, type: str = "message") -> int:
        """Send an event to one connection, which must be on the answering
        node (otherwise :class:`NotFound`, code ``connection_not_found``)."""
        path = "/api/connections/" + quote_segment(connection_id) + "/send"
        return int(self._call("POST", path, {"type": type, "data": data}).get("recipients") or 0)

    def disconnect_user(self, user: str, *, code: Optional[int] = None, reason: Optional[str] = None) -> int:
        """Close every connection of ``user`` on every node, with ``code``
        (default 4006, kicked: clients do not reconnect; 4000, 1012 or 4005
        make them reconnect). Returns the connections on the answering node."""
        path = "/api/users/" + quote_segment(user) + "/disconnect"
        return int(self._call("POST", path, _close_body(code, reason), retry=True).get("connections") or 0)

    def disconnect_connection(
        self, connection_id: str, *, code: Optional[int] = None, reason: Optional[str] = None
    ) -> None:
        """Close one connection, wherever it is. The command goes to every
        node, so no error tells whether the id existed."""
        path = "/api/connections/" + quote_segment(connection_id) + "/disconnect"
        self._call("POST", path, _close_body(code, reason), retry=True)

    def ban_user(self, user: str, seconds: int) -> int:
        """Ban ``user`` on every node for ``seconds`` (0 lifts the ban): open
        connections close with 4004 and new handshakes are refused. Returns
        the ban's end in Unix milliseconds (0 when lifted)."""
        path = "/api/users/" + quote_segment(user) + "/ban"
        return int(self._call("POST", path, {"seconds": seconds}, retry=True).get("banned_until") or 0)

    # Reading

    def rooms(self) -> List[RoomInfo]:
        """The rooms with members on the answering node, sorted by name."""
        d = self._call("GET", "/api/rooms", retry=True)
        rooms = d.get("rooms")
        if not isinstance(rooms, list):
            return []
        return [RoomInfo(str(r.get("name", "")), int(r.get("members") or 0)) for r in rooms if isinstance(r, dict)]

    def room(self, room: str) -> Dict[str, Any]:
        """The connections in ``room`` on the answering node
        (:class:`NotFound` ``room_not_found`` when it has none there)."""
        return self._call("GET", "/api/rooms/" + quote_segment(room), retry=True)

    def history(self, room: str, *, since: Optional[str] = None, limit: Optional[int] = None) -> HistoryPage:
        """A page of the room's retained events, oldest first: the newest
        ``limit`` (default 100), or with ``since`` the ones after that id."""
        q: Dict[str, str] = {}
        if since is not None:
            q["since"] = since
        if limit is not None:
            q["limit"] = str(limit)
        path = "/api/rooms/" + quote_segment(room) + "/history"
        if q:
            path += "?" + urllib.parse.urlencode(q)
        return HistoryPage.from_dict(self._call("GET", path, retry=True))

    def iter_history(self, room: str, since: str, *, limit: int = 100, max_pages: int = 1000) -> Iterator[Event]:
        """Every retained event after ``since``, page by page. Raises
        :class:`SwitchboardError` if events after ``since`` were evicted
        (the page is not ``complete``): they are gone, and the caller must
        reload its state from its own source."""
        for _ in range(max_pages):
            page = self.history(room, since=since, limit=limit)
            if not page.complete:
                raise SwitchboardError(f"history of {room!r} after {since!r} is incomplete: events were evicted")
            yield from page.events
            if not page.has_more or not page.events:
                return
            since = page.events[-1].id or since
        raise SwitchboardError(f"history of {room!r}: more than {max_pages} pages")

    def presence(self, room: str, *, counts_only: bool = False) -> Presence:
        """Who is in ``room`` across the cluster."""
        path = "/api/rooms/" + quote_segment(room) + "/presence" + ("?counts_only=1" if counts_only else "")
        return Presence.from_dict(self._call("GET", path, retry=True))

    def stats(self) -> Dict[str, Any]:
        """The answering node's counters, every live node's, and cluster
        totals (docs/api.md, ``GET /api/stats``)."""
        return self._call("GET", "/api/stats", retry=True)

    # Transport

    def request(self, method: str, path: str, body: Any = _NO_BODY, *, retry: bool = False) -> Dict[str, Any]:
        """Send any API request (``path`` starts with ``/api/``) and return
        the decoded JSON answer; errors are raised as for the other calls."""
        return self._call(method, path, body, retry=retry)

    def _call(self, method: str, path: str, body: Any = _NO_BODY, *, retry: bool = False) -> Dict[str, Any]:
        data = None if body is _NO_BODY else json.dumps(body, separators=(",", ":")).encode("utf-8")
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = "Bearer " + self.api_key
        attempts = self.retries + 1 if retry else 1
        for attempt in range(attempts):
            req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    raw = resp.read()
            except urllib.error.HTTPError as e:
                err = api_error(e.code, _read(e), dict(e.headers.items()) if e.headers else None, str(e.reason or ""))
                if not err.retryable or attempt + 1 >= attempts:
                    raise err from None
                self._sleep(self._delay(attempt, err))
                continue
            except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
                # URLError wraps refused connections and DNS failures;
                # OSError covers resets and socket timeouts mid-answer.
                reason = getattr(e, "reason", None) or e
                if attempt + 1 >= attempts:
                    raise TransportError(f"{method} {self.url}{path}: {reason}") from e
                self._sleep(self._delay(attempt, None))
                continue
            if not raw:
                return {}
            try:
                out = json.loads(raw.decode("utf-8"))
            except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
                raise TransportError(f"{method} {path}: the answer is not JSON: {e}") from None
            if not isinstance(out, dict):
                raise TransportError(f"{method} {path}: the answer is not a JSON object")
            return out
        raise AssertionError("unreachable")

    def _delay(self, attempt: int, err: Optional[APIError]) -> float:
        d = random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))
        if err is not None and err.retry_after is not None:
            d = max(d, min(err.retry_after, self.max_backoff))
        return d


def _key() -> str:
    # 32 hex digits: unique, and at least the 16 bytes the protocol asks of
    # idempotency keys.
    return uuid.uuid4().hex


def _read(e: urllib.error.HTTPError) -> bytes:
    try:
        return e.read()
    except (OSError, http.client.HTTPException):
        return b""


def _close_body(code: Optional[int], reason: Optional[str]) -> Dict[str, Any]:
    body: Dict[str, Any] = {}
    if code is not None:
        body["code"] = code
    if reason is not None:
        body["reason"] = reason
    return body



class AsyncAPIClient:
    """The :class:`APIClient` for ``async`` code: the same methods as
    coroutines, each run in the loop's default thread pool so that the
    blocking HTTP call does not stall the event loop (an ``async def``
    FastAPI endpoint, for example). Takes the same arguments; ``.sync`` is
    the underlying :class:`APIClient`."""

    def __init__(self, url: str = "http://127.0.0.1:8080", api_key: Optional[str] = None, **kwargs: Any) -> None:
        self.sync = APIClient(url, api_key, **kwargs)

    @classmethod
    def from_env(cls, **kwargs: Any) -> "AsyncAPIClient":
        """See :meth:`APIClient.from_env`."""
        c = cls.__new__(cls)
        c.sync = APIClient.from_env(**kwargs)
        return c

    def __repr__(self) -> str:
        return "Async" + repr(self.sync)

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))

    async def publish(self, room: str, data: Any = None, *, type: str = "message", idempotency_key: Optional[str] = None) -> PublishResult:
        return await self._run(self.sync.publish, room, data, type=type, idempotency_key=idempotency_key)

    async def publish_many(self, events: Iterable[Mapping[str, Any]]) -> BatchResult:
        return await self._run(self.sync.publish_many, list(events))

    async def broadcast(self, data: Any = None, *, type: str = "message") -> int:
        return await self._run(self.sync.broadcast, data, type=type)

    async def send_to_user(self, user: str, data: Any = None, *, type: str = "message") -> int:
        return await self._run(self.sync.send_to_user, user, data, type=type)

    async def send_to_connection(self, connection_id: str, data: Any = None, *, type: str = "message") -> int:
        return await self._run(self.sync.send_to_connection, connection_id, data, type=type)

    async def disconnect_user(self, user: str, *, code: Optional[int] = None, reason: Optional[str] = None) -> int:
        return await self._run(self.sync.disconnect_user, user, code=code, reason=reason)

    async def disconnect_connection(self, connection_id: str, *, code: Optional[int] = None, reason: Optional[str] = None) -> None:
        await self._run(self.sync.disconnect_connection, connection_id, code=code, reason=reason)

    async def ban_user(self, user: str, seconds: int) -> int:
        return await self._run(self.sync.ban_user, user, seconds)

    async def rooms(self) -> List[RoomInfo]:
        return await self._run(self.sync.rooms)

    async def room(self, room: str) -> Dict[str, Any]:
        return await self._run(self.sync.room, room)

    async def history(self, room: str, *, since: Optional[str] = None, limit: Optional[int] = None) -> HistoryPage:
        return await self._run(self.sync.history, room, since=since, limit=limit)

    async def presence(self, room: str, *, counts_only: bool = False) -> Presence:
        return await self._run(self.sync.presence, room, counts_only=counts_only)

    async def stats(self) -> Dict[str, Any]:
        return await self._run(self.sync.stats)

    async def request(self, method: str, path: str, body: Any = _NO_BODY, *, retry: bool = False) -> Dict[str, Any]:
        return await self._run(self.sync.request, method, path, body, retry=retry)
