"""Value types shared by the server API client and the realtime client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

__all__ = [
    "Event",
    "PublishResult",
    "BatchResult",
    "HistoryPage",
    "Member",
    "Presence",
    "RoomInfo",
]


def _str(v: Any) -> Optional[str]:
    return v if isinstance(v, str) else None


def _int(v: Any, default: int = 0) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else default


@dataclass(frozen=True)
class Event:
    """A message from the server in the protocol's envelope
    (docs/protocol.md section 2).

    For room events ``id`` is the event id ``EPOCH-OFFSET``, ``room`` the
    room, ``user_id`` the publisher (``None`` when the server API published)
    and ``ts`` the Unix milliseconds when the server accepted it. ``raw`` is
    the whole decoded frame, unknown fields included.
    """

    type: str
    data: Any = None
    id: Optional[str] = None
    room: Optional[str] = None
    user_id: Optional[str] = None
    ts: Optional[int] = None
    #: True only on the marker the realtime client delivers, in place of
    #: the missed events, when the server could not replay them after a
    #: reconnect (``subscribed`` with ``recovered: false``): reload the
    #: room's state. ``id`` is then the position live events resume after.
    #: Also True on a ``stream_gap`` notice (type ``stream_gap``): the
    #: server could not deliver some events on a live subscription;
    #: ``data`` is ``{after, until, reason}`` and ``id`` is ``until``
    #: (``None`` when the server cannot tell).
    recovery_failed: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, m: Mapping[str, Any]) -> "Event":
        ts = m.get("ts")
        return cls(
            type=_str(m.get("type")) or "",
            data=m.get("data"),
            id=_str(m.get("id")),
            room=_str(m.get("room")),
            user_id=_str(m.get("user_id")),
            ts=ts if isinstance(ts, int) and not isinstance(ts, bool) else None,
            raw=m,
        )


@dataclass(frozen=True)
class PublishResult:
    """The answer to a publish: the event's id, the connections on the
    answering node it was queued to, and whether the idempotency key had
    been seen (then the event was not published again and ``event_id`` is
    the first publish's)."""

    event_id: str
    recipients: int = 0
    duplicate: bool = False

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PublishResult":
        return cls(
            event_id=_str(d.get("event_id")) or "",
            recipients=_int(d.get("recipients")),
            duplicate=d.get("duplicate") is True,
        )


@dataclass(frozen=True)
class BatchResult:
    """The answer to :meth:`APIClient.publish_many`: one entry per event,
    in order, each with ``room`` and either ``event_id``/``recipients`` or
    ``error`` (``{"code", "message"}``) when the engine failed on it;
    ``failed`` counts those."""

    results: List[Dict[str, Any]]
    failed: int = 0


@dataclass(frozen=True)
class HistoryPage:
    """A page of a room's retained events, oldest first.

    ``position`` is the room's newest event id. ``complete`` is False when
    events after ``since`` were already evicted (or ``since`` is from an
    earlier epoch): reload the state from your own source. ``has_more``
    (computed only with ``since``): ask again with since = the last event's
    id.
    """

    events: List[Event]
    position: str = ""
    complete: bool = True
    has_more: bool = False

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "HistoryPage":
        evs = d.get("events")
        return cls(
            events=[Event.from_dict(e) for e in evs if isinstance(e, dict)] if isinstance(evs, list) else [],
            position=_str(d.get("position")) or "",
            complete=d.get("complete") is not False,
            has_more=d.get("has_more") is True,
        )


@dataclass(frozen=True)
class Member:
    """One connection in a room: its user and connection ids and, when the
    token carried one, its presence ``info``."""

    user_id: str
    connection_id: str
    info: Any = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Member":
        return cls(
            user_id=_str(d.get("user_id")) or "",
            connection_id=_str(d.get("connection_id")) or "",
            info=d.get("info"),
        )


@dataclass(frozen=True)
class Presence:
    """Who is in a room across the cluster: ``clients`` connections of
    ``users`` distinct users; ``members`` is empty when counts only were
    asked for."""

    clients: int
    users: int
    members: List[Member]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Presence":
        ms = d.get("members")
        return cls(
            clients=_int(d.get("clients")),
            users=_int(d.get("users")),
            members=[Member.from_dict(m) for m in ms if isinstance(m, dict)] if isinstance(ms, list) else [],
        )


@dataclass(frozen=True)
class RoomInfo:
    """A room with members on the answering node."""

    name: str
    members: int
