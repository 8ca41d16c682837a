"""The public API of karaffe.events is pinned: the tracker and the JS client build on it."""

from __future__ import annotations

import inspect
from pathlib import Path

import karaffe.events as events


def test_exported_members_are_exactly_the_documented_ones() -> None:
    assert sorted(events.__all__) == sorted(
        [
            "Broker",
            "ChannelForbidden",
            "ChannelGrant",
            "ChannelTokenError",
            "Cursor",
            "CursorError",
            "Event",
            "Events",
            "ExpiredToken",
            "ForeignToken",
            "MalformedToken",
            "MemoryBroker",
            "MissingToken",
            "ProtocolError",
            "RedisBroker",
            "RevokedToken",
            "TamperedToken",
            "TokenSigner",
            "channel_token",
            "cursor",
            "event_published",
            "publish",
            "revoke",
            "stream_url",
        ]
    )
    for name in events.__all__:
        assert hasattr(events, name), name


def test_publishing_signatures_are_stable() -> None:
    assert str(inspect.signature(events.publish)) == (
        "(channel: 'str', type: 'str', data: 't.Any' = None) -> 'None'"
    )
    assert str(inspect.signature(events.channel_token)) == (
        "(user: 't.Any', channels: 'Iterable[str]', *, max_age: 'int | None' = None, "
        "credential: 'str | None' = 'current') -> 'str'"
    )
    assert str(inspect.signature(events.revoke)) == (
        "(user: 't.Any', at: 'float | None' = None, *, credential: 'str | None' = None) -> 'None'"
    )


def test_js_client_exposes_its_documented_api() -> None:
    source = (Path(events.__file__).parent / "static" / "karaffe-events.js").read_text()
    for member in ("connect:", ".prototype.on =", ".prototype.off =", ".prototype.onReset =",
                   ".prototype.onStatus =", ".prototype.close =",
                   "fetchFragment:", "parseFragment:", "swap:", "swapById:", "refresher:"):  # fmt: skip
        assert member in source, member
