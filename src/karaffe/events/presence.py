"""Presence: who is on a channel right now ("Bob is also viewing").

A page that shows presence sends a heartbeat every third of
``EVENTS_PRESENCE_TTL`` (:func:`here`) and a goodbye when it closes
(:func:`gone`, best effort: ``navigator.sendBeacon``). Each open page is one
*entry*, ``<user>/<tab>``, kept in the broker until its heartbeat is
``EVENTS_PRESENCE_TTL`` seconds old: a tab that crashed, a laptop that slept,
a relay or an app process that died leave nothing behind for longer than
that, since nothing but heartbeats keeps an entry. With Redis, the entries
of a channel are one sorted set (score: when the entry expires), written by
one script that also drops expired entries and lets the key itself expire;
with the memory broker, a :class:`PresenceSet` per channel.

When the set of *users* present changes (a first tab opens, the last one
closes or expires), a ``presence`` event ``{"users": [ids]}`` is published on
the channel, straight to the broker (presence is not data of a transaction).
Expiry is noticed by the next heartbeat on the channel, so a dead tab
disappears from the others' pages within ``EVENTS_PRESENCE_TTL`` plus one
heartbeat interval.

This module's :class:`PresenceSet` and :func:`users_of` are I/O-free and
tested once; :func:`here` and :func:`gone` need an app with
:class:`~karaffe.events.Events`.
"""

from __future__ import annotations

import re
import typing as t
from collections.abc import Iterable
from dataclasses import dataclass, field

from werkzeug.routing import UnicodeConverter

from .protocol import dump_data, validate_channel

__all__ = [
    "TAB_RE",
    "Presence",
    "PresenceSet",
    "TabConverter",
    "entry",
    "gone",
    "here",
    "users_of",
]

#: A tab id: what a page picks at random once (letters, digits, ``_ -``).
TAB_RE = re.compile(r"[A-Za-z0-9_\-]{1,64}")


class TabConverter(UnicodeConverter):
    """``<tab:name>`` in a URL: a tab id (:data:`TAB_RE`); anything else does
    not match, so the URL is a 404, and the OpenAPI document says the pattern.
    Register it with ``app.url_map.converters["tab"] = TabConverter``."""

    part_isolating = True

    def __init__(self, map: t.Any, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(map, *args, **kwargs)
        self.regex = TAB_RE.pattern  # the parent sets its own from lengths


#: The event type announcing a change of the users present.
EVENT_TYPE = "presence"


def entry(user: t.Any, tab: str) -> str:
    """The entry of one open page: ``<user id>/<tab>``. A ``tab`` outside
    :data:`TAB_RE` is a :class:`ValueError`."""
    if not isinstance(tab, str) or not TAB_RE.fullmatch(tab):
        raise ValueError("a tab id is 1-64 letters, digits, '_' or '-'")
    user_id = str(getattr(user, "id", user))
    if not user_id or "/" in user_id:
        raise ValueError("a user id cannot be empty or contain '/'")
    return f"{user_id}/{tab}"


def users_of(entries: Iterable[str]) -> list[str]:
    """The distinct users of ``entries``, sorted (numerically when they are numbers)."""
    users = {e.rpartition("/")[0] for e in entries}
    return sorted(users, key=lambda u: (0, int(u), "") if u.isdigit() else (1, 0, u))


@dataclass
class PresenceSet:
    """The entries of one channel and when each expires (I/O-free: the time
    is passed in)."""

    expires: dict[str, float] = field(default_factory=dict)

    def expire(self, now: float) -> list[str]:
        """Drop the entries expired at ``now``; returns them."""
        gone = [e for e, until in self.expires.items() if until <= now]
        for e in gone:
            del self.expires[e]
        return gone

    def touch(self, entry: str, now: float, ttl: float) -> None:
        """``entry`` is present until ``now + ttl`` (a heartbeat)."""
        self.expire(now)
        self.expires[entry] = now + ttl

    def leave(self, entry: str, now: float) -> None:
        self.expire(now)
        self.expires.pop(entry, None)

    def entries(self) -> list[str]:
        return sorted(self.expires)


@dataclass(frozen=True, slots=True)
class Presence:
    """Who is on a channel after a heartbeat or a goodbye.

    ``users`` are user ids (strings), sorted; ``changed`` tells whether they
    differ from before (then a ``presence`` event was published)."""

    users: list[str]
    changed: bool


def here(channel: str, user: t.Any, tab: str) -> Presence:
    """A heartbeat: ``user`` has ``channel`` open in ``tab`` (a page's random
    id), for ``EVENTS_PRESENCE_TTL`` seconds from now. The app checks first
    that the user may follow the channel."""
    return _update(channel, entry(user, tab), leave=False)


def gone(channel: str, user: t.Any, tab: str) -> Presence:
    """A goodbye: ``tab`` of ``user`` closed ``channel``."""
    return _update(channel, entry(user, tab), leave=True)


def _update(channel: str, member: str, *, leave: bool) -> Presence:
    from .publish import _send, state_for
    from .settings import EventsSettings

    validate_channel(channel)
    state = state_for()
    ttl = EventsSettings.of(state.app).events_presence_ttl
    before, after = state.broker.presence(channel, member, ttl, leave=leave)
    users = users_of(after)
    changed = users != users_of(before)
    if changed:
        _send(state, [(channel, EVENT_TYPE, dump_data({"users": users}))])
    return Presence(users, changed)
