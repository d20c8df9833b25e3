"""Verify and parse the webhooks a Switchboard node sends.

The node POSTs batches of events to your URL, signed with a shared secret::

    Switchboard-Webhook-Id:        a batch id, stable across retries
    Switchboard-Webhook-Timestamp: Unix seconds when the attempt was signed
    Switchboard-Webhook-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>[,v1=...]

Verify the raw body bytes before you parse them, then answer 2xx::

    from switchboard.webhook import WebhookVerifier, WebhookError

    verifier = WebhookVerifier(os.environ["SWITCHBOARD_WEBHOOK_SECRET"])
    try:
        batch = verifier.verify(raw_body, request_headers)
    except WebhookError as e:
        return 400, str(e)
    for event in batch.events:
        ...

Standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Type, Union

from .errors import SwitchboardError

__all__ = [
    "ID_HEADER",
    "TIMESTAMP_HEADER",
    "SIGNATURE_HEADER",
    "DEFAULT_TOLERANCE",
    "WebhookError",
    "MissingHeader",
    "MalformedHeader",
    "TimestampOutOfTolerance",
    "SignatureMismatch",
    "InvalidPayload",
    "WebhookVerifier",
    "WebhookBatch",
    "WebhookEvent",
    "ConnectionOpened",
    "ConnectionClosed",
    "RoomOccupied",
    "RoomVacated",
    "MemberAdded",
    "MemberRemoved",
    "Publication",
    "UnknownEvent",
    "sign",
    "signature_header",
    "verify",
    "parse_events",
]

ID_HEADER = "Switchboard-Webhook-Id"
TIMESTAMP_HEADER = "Switchboard-Webhook-Timestamp"
SIGNATURE_HEADER = "Switchboard-Webhook-Signature"

#: Seconds a signature's timestamp may be away from the receiver's clock,
#: either way. Bounds how long a captured request can be replayed.
DEFAULT_TOLERANCE = 300

# The HMAC-SHA256 hex digest is 64 characters; a header of many thousands
# of signatures is an attack, not a rotation.
_HEX_LEN = 64
_MAX_SIGNATURES = 16

Secret = Union[str, bytes]
Headers = Union[Mapping[str, str], Sequence[Tuple[str, str]], Any]


class WebhookError(SwitchboardError):
    """A webhook request that must be refused (answer 400 or 401); the
    subclass says why."""


class MissingHeader(WebhookError):
    """A required ``Switchboard-Webhook-*`` header is absent."""


class MalformedHeader(WebhookError):
    """A header is present but not in the agreed form."""


class TimestampOutOfTolerance(WebhookError):
    """The signed timestamp is too far from this machine's clock: a replay
    of an old request, or a clock that is wrong on one side."""


class SignatureMismatch(WebhookError):
    """No signature matches the body with any of the secrets: the body was
    changed, or the secret is wrong."""


class InvalidPayload(WebhookError):
    """The signature is good but the body is not the agreed JSON."""


def sign(secret: Secret, timestamp: Union[int, str], body: bytes) -> str:
    """The lower-case hex HMAC-SHA256 of ``timestamp + "." + body``."""
    return hmac.new(_b(secret), str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secrets: Union[Secret, Sequence[Secret]], timestamp: Union[int, str], body: bytes) -> str:
    """The ``Switchboard-Webhook-Signature`` value a node sends for these
    secrets (for tests, and for a Python program that sends webhooks)."""
    return ",".join("v1=" + sign(s, timestamp, body) for s in _secrets(secrets))


@dataclass(frozen=True)
class WebhookEvent:
    """One event of a batch. ``id`` is unique and stable across retries:
    use it to drop events you have already handled. ``ts`` is Unix
    milliseconds, ``node`` the node it happened on, ``raw`` the decoded
    object with every field."""

    id: str
    type: str
    ts: int
    node: str
    raw: Mapping[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class ConnectionOpened(WebhookEvent):
    """``connection.opened``: ``user`` is empty for an anonymous connection."""

    client: str = ""
    user: str = ""


@dataclass(frozen=True)
class ConnectionClosed(WebhookEvent):
    """``connection.closed``, with the close ``code`` and ``reason``."""

    client: str = ""
    user: str = ""
    code: int = 0
    reason: str = ""


@dataclass(frozen=True)
class RoomOccupied(WebhookEvent):
    """``room.occupied``: the first member joined, cluster-wide.
    ``generation`` numbers the room's occupied periods (0 from a server
    that does not send it)."""

    room: str = ""
    generation: int = 0


@dataclass(frozen=True)
class RoomVacated(WebhookEvent):
    """``room.vacated``: the last member left, cluster-wide; ``generation``
    is the ending period's ``room.occupied`` generation."""

    room: str = ""
    generation: int = 0


@dataclass(frozen=True)
class _MemberEvent(WebhookEvent):
    room: str = ""
    user: str = ""
    client: str = ""


@dataclass(frozen=True)
class MemberAdded(_MemberEvent):
    """``member.added``: a connection (``client``, of ``user``) joined ``room``."""


@dataclass(frozen=True)
class MemberRemoved(_MemberEvent):
    """``member.removed``: a connection left ``room``."""


@dataclass(frozen=True)
class Publication(WebhookEvent):
    """``publication``: an event published to ``room``, with its event id
    (``EPOCH-OFFSET``), its ``event_type`` (``message`` or an application
    type; empty from a server that does not send it) and ``data``; ``user``
    and ``client`` are empty when the server API published it."""

    room: str = ""
    event_id: str = ""
    event_type: str = ""
    data: Any = None
    user: str = ""
    client: str = ""


@dataclass(frozen=True)
class UnknownEvent(WebhookEvent):
    """An event type this SDK does not know (a newer server): ignore it or
    read ``raw``."""


_TYPES: Dict[str, Type[WebhookEvent]] = {
    "connection.opened": ConnectionOpened,
    "connection.closed": ConnectionClosed,
    "room.occupied": RoomOccupied,
    "room.vacated": RoomVacated,
    "member.added": MemberAdded,
    "member.removed": MemberRemoved,
    "publication": Publication,
}

# Fields by type, with the JSON type each must have when present.
_FIELDS: Dict[Type[WebhookEvent], Tuple[Tuple[str, type], ...]] = {
    ConnectionOpened: (("client", str), ("user", str)),
    ConnectionClosed: (("client", str), ("user", str), ("code", int), ("reason", str)),
    RoomOccupied: (("room", str), ("generation", int)),
    RoomVacated: (("room", str), ("generation", int)),
    MemberAdded: (("room", str), ("user", str), ("client", str)),
    MemberRemoved: (("room", str), ("user", str), ("client", str)),
    Publication: (("room", str), ("event_id", str), ("event_type", str), ("user", str), ("client", str)),
    UnknownEvent: (),
}


@dataclass(frozen=True)
class WebhookBatch:
    """A verified batch: the ``Switchboard-Webhook-Id`` (``None`` if the
    header was absent; it is not covered by the signature), the signed
    timestamp, and the events in order."""

    id: Optional[str]
    timestamp: int
    events: List[WebhookEvent]


def parse_events(body: Union[bytes, str]) -> List[WebhookEvent]:
    """Parse a webhook body (``{"events": [...]}``) into typed events.

    Call it only on a body whose signature was verified (``verify`` does
    both). Raises :class:`InvalidPayload` when the body or an event is not
    in the agreed form; events of unknown types become
    :class:`UnknownEvent`, and unknown fields are ignored.
    """
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidPayload(f"webhook body is not JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
        raise InvalidPayload('webhook body is not {"events": [...]}')
    return [_event(i, ev) for i, ev in enumerate(doc["events"])]


def _event(i: int, ev: Any) -> WebhookEvent:
    if not isinstance(ev, dict):
        raise InvalidPayload(f"events[{i}] is not an object")
    for name in ("id", "type", "node"):
        if not isinstance(ev.get(name), str) or not ev[name]:
            raise InvalidPayload(f"events[{i}].{name} is missing or not a non-empty string")
    ts = ev.get("ts")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise InvalidPayload(f"events[{i}].ts is missing or not an integer")
    cls = _TYPES.get(ev["type"], UnknownEvent)
    kw: Dict[str, Any] = {}
    for name, typ in _FIELDS[cls]:
        v = ev.get(name)
        if v is None:
            continue
        if not isinstance(v, typ) or isinstance(v, bool):
            raise InvalidPayload(f"events[{i}].{name} ({ev['type']}) has the wrong JSON type")
        kw[name] = v
    if cls is Publication:
        kw["data"] = ev.get("data")
    return cls(id=ev["id"], type=ev["type"], ts=ts, node=ev["node"], raw=ev, **kw)


class WebhookVerifier:
    """Checks webhook signatures with one or more secrets.

    Give several secrets while rotating (the old and the new): a request
    signed with any of them is accepted. ``tolerance`` is how many seconds
    the signed timestamp may be away from this clock (default 300).
    ``clock`` returns the current Unix time (default ``time.time``).
    """

    def __init__(
        self,
        secrets: Union[Secret, Sequence[Secret]],
        *,
        tolerance: float = DEFAULT_TOLERANCE,
        clock: Optional[Callable[[], float]] = None,
    ) -> None:
        self._keys = _secrets(secrets)
        if tolerance < 0:
            raise ValueError("switchboard: webhook tolerance must be >= 0 seconds")
        self.tolerance = tolerance
        self._clock = clock

    def check(self, body: Union[bytes, str], headers: Headers) -> Tuple[Optional[str], int]:
        """Verify the signature only; returns (batch id, timestamp). Raises
        a :class:`WebhookError` subclass."""
        raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        ts_text = _header(headers, TIMESTAMP_HEADER)
        sig_text = _header(headers, SIGNATURE_HEADER)
        if ts_text is None:
            raise MissingHeader(f"no {TIMESTAMP_HEADER} header")
        if sig_text is None:
            raise MissingHeader(f"no {SIGNATURE_HEADER} header")
        ts_text = ts_text.strip()
        if not ts_text.isdigit() or not ts_text.isascii() or len(ts_text) > 12:
            raise MalformedHeader(f"{TIMESTAMP_HEADER} is not Unix seconds: {ts_text[:40]!r}")
        ts = int(ts_text)
        now = self._clock() if self._clock is not None else time.time()
        if abs(now - ts) > self.tolerance:
            raise TimestampOutOfTolerance(
                f"{TIMESTAMP_HEADER} {ts} is {abs(now - ts):.0f} s from this clock (tolerance {self.tolerance:g} s)"
            )
        sigs = _signatures(sig_text)
        # Every candidate against every secret, each compare in constant
        # time; the loop stops only at a match, which tells an attacker
        # nothing they did not send.
        for key in self._keys:
            want = hmac.new(key, ts_text.encode("ascii") + b"." + raw, hashlib.sha256).hexdigest()
            for got in sigs:
                if hmac.compare_digest(want, got):
                    return _header(headers, ID_HEADER), ts
        raise SignatureMismatch("no signature matches the body with the configured secret(s)")

    def verify(self, body: Union[bytes, str], headers: Headers) -> WebhookBatch:
        """Verify the signature and parse the body into typed events.

        ``body`` must be the raw bytes as received (not re-encoded JSON);
        ``headers`` any mapping with ``get`` (case-insensitive ones such as
        Starlette's and Django's ``request.headers`` included) or a list of
        (name, value) pairs. Raises a :class:`WebhookError` subclass.
        """
        batch_id, ts = self.check(body, headers)
        return WebhookBatch(id=batch_id, timestamp=ts, events=parse_events(body))


def verify(
    body: Union[bytes, str],
    headers: Headers,
    secrets: Union[Secret, Sequence[Secret]],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> WebhookBatch:
    """One-call form of :meth:`WebhookVerifier.verify`."""
    return WebhookVerifier(secrets, tolerance=tolerance).verify(body, headers)


def _b(secret: Secret) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


def _secrets(secrets: Union[Secret, Sequence[Secret]]) -> List[bytes]:
    items = [secrets] if isinstance(secrets, (str, bytes, bytearray)) else list(secrets)
    keys = [_b(s) for s in items]
    if not keys or any(not k for k in keys):
        raise ValueError("switchboard: a webhook secret must be a non-empty string or bytes")
    return keys


def _header(headers: Headers, name: str) -> Optional[str]:
    """Look a header up without regard to case: in a mapping (exact name,
    then any case, as WSGI/ASGI frameworks vary), or in (name, value) pairs."""
    if hasattr(headers, "get"):
        v = headers.get(name)
        if v is None:
            v = headers.get(name.lower())
        if v is not None:
            return v.decode("latin-1") if isinstance(v, bytes) else str(v)
        items = headers.items() if hasattr(headers, "items") else []
    else:
        items = headers
    lname = name.lower()
    for k, v in items:
        k = k.decode("latin-1") if isinstance(k, bytes) else str(k)
        if k.lower() == lname:
            return v.decode("latin-1") if isinstance(v, bytes) else str(v)
    return None


def _signatures(value: str) -> List[str]:
    """The v1 signatures of a signature header, lower-cased. Entries of
    other versions are skipped (a newer node may add them); anything else
    malformed is refused."""
    parts = [p.strip() for p in value.split(",")]
    if len(parts) > _MAX_SIGNATURES:
        raise MalformedHeader(f"{SIGNATURE_HEADER} has {len(parts)} entries (at most {_MAX_SIGNATURES})")
    sigs: List[str] = []
    for p in parts:
        version, eq, sig = p.partition("=")
        if not eq or not version or not sig:
            raise MalformedHeader(f"{SIGNATURE_HEADER} entry {p[:80]!r} is not VERSION=SIGNATURE")
        if version != "v1":
            continue
        sig = sig.lower()
        if len(sig) != _HEX_LEN or any(c not in "0123456789abcdef" for c in sig):
            raise MalformedHeader(f"{SIGNATURE_HEADER} v1 value is not {_HEX_LEN} hex digits")
        sigs.append(sig)
    if not sigs:
        raise MalformedHeader(f"{SIGNATURE_HEADER} has no v1 signature")
    return sigs
