"""The I/O-free events core: SSE framing, cursors, event encoding."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from karaffe.events.protocol import (
    START,
    ZERO,
    Cursor,
    CursorError,
    Event,
    Position,
    ProtocolError,
    SSEMessage,
    SSEParser,
    StreamId,
    channel_key,
    comment,
    dump_data,
    encode_cursor,
    event_frame,
    event_tail,
    frame,
    needs_reset,
    pack_message,
    unpack_message,
    validate_channel,
    validate_type,
)

channels = st.from_regex(r"[A-Za-z0-9_.:\-]{1,40}", fullmatch=True)
stream_ids = st.builds(StreamId, st.integers(0, 2**48), st.integers(0, 2**32))
positions = st.builds(Position, st.integers(0, 2**53), stream_ids)
texts = st.text(st.characters(blacklist_categories=["Cs"]), max_size=200)


@given(data=texts, event=st.from_regex(r"[a-z\-]{1,20}", fullmatch=True), id=texts)
def test_frame_round_trips_through_the_parser(data: str, event: str, id: str) -> None:
    id = id.replace("\r", "").replace("\n", "").replace("\0", "")
    parser = SSEParser()
    [message] = parser.feed(frame(data, event=event, id=id))
    expected = data.replace("\r\n", "\n").replace("\r", "\n")
    assert message.data == expected
    assert message.event == event
    assert message.id == (id or None)


@given(data=texts, cut=st.integers(0, 400))
def test_parser_handles_any_chunking(data: str, cut: int) -> None:
    raw = frame(data, id="1") + frame("second")
    parser = SSEParser()
    messages = parser.feed(raw[:cut]) + parser.feed(raw[cut:])
    assert [m.data for m in messages] == [data.replace("\r\n", "\n").replace("\r", "\n"), "second"]


def test_multiline_data_is_one_data_line_per_line() -> None:
    assert frame("a\nb\r\nc") == b"data: a\ndata: b\ndata: c\n\n"


def test_retry_and_event_fields() -> None:
    assert frame("x", event="reset", id="7", retry=2000) == (
        b"id: 7\nevent: reset\nretry: 2000\ndata: x\n\n"
    )


def test_id_with_a_line_break_is_refused() -> None:
    with pytest.raises(ProtocolError, match="line break"):
        frame("x", id="a\nb")


def test_empty_frame_is_refused() -> None:
    with pytest.raises(ProtocolError, match="at least one field"):
        frame()


def test_heartbeat_comment_is_ignored_by_parsers() -> None:
    parser = SSEParser()
    assert parser.feed(comment() + comment("ping") + frame("x")) == [SSEMessage(data="x")]
    assert parser.comments == 2
    assert comment() == b":\n\n"
    assert comment("ping") == b": ping\n\n"


def test_parser_keeps_last_event_id_and_strips_bom() -> None:
    parser = SSEParser()
    messages = parser.feed(b"\xef\xbb\xbfid: c1\ndata: a\n\ndata: b\n\n")
    assert [(m.data, m.id) for m in messages] == [("a", "c1"), ("b", "c1")]


def test_parser_handles_crlf_split_across_chunks() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert [m.data for m in parser.feed(b"\n\r\n")] == ["a"]


@given(positions=st.dictionaries(channels, positions, min_size=0, max_size=8))
def test_cursor_round_trips(positions: dict[str, Position]) -> None:
    encoded = encode_cursor(positions)
    assert all(c.isalnum() or c in "-._~" for c in encoded)
    cursor = Cursor.parse(encoded)
    for channel, position in positions.items():
        assert cursor.get(channel) == position
    assert cursor.encode(positions) == encoded


def test_cursor_ignores_channels_it_does_not_name() -> None:
    cursor = Cursor.parse(encode_cursor({"a": Position(5, StreamId(10, 1))}))
    assert cursor.get("b") is None
    assert cursor.encode(["b", "a"]) == Position(5, StreamId(10, 1)).segment("a")


def test_cursor_segment_is_compact() -> None:
    segment = Position(1732512345123456, StreamId(1732512345678, 0)).segment("project:42")
    assert segment == f"{channel_key('project:42')}.h24h6m55s0.m3wl49ji-0"
    assert len(segment) == 28
    assert segment.startswith(channel_key("project:42") + ".")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("nonsense", "segment 0 is malformed"),
        ("abcdef.1.1-1~zzz", "segment 1 is malformed"),
        ("abcdef.1.1", "segment 0 is malformed"),
        ("abcdef.1.1-1~abcdef.2.2-2", "twice"),
        ("abc def.1.1-1", "malformed"),
        ("x" * 9000, "longer than"),
    ],
)
def test_malformed_cursor_is_refused_with_a_reason(raw: str, message: str) -> None:
    with pytest.raises(CursorError, match=message):
        Cursor.parse(raw)


def test_empty_cursor_is_empty() -> None:
    assert Cursor.parse("") == Cursor()


@given(st.integers(0, 2**48), st.integers(0, 2**20))
def test_stream_id_round_trips_and_orders(ms: int, seq: int) -> None:
    sid = StreamId(ms, seq)
    assert StreamId.parse(str(sid)) == sid
    assert sid < sid.next()


@pytest.mark.parametrize("raw", ["", "1", "a-1", "1-", "-1", "1-2-3"])
def test_malformed_stream_id_is_refused(raw: str) -> None:
    with pytest.raises(ProtocolError):
        StreamId.parse(raw)


@given(
    id=st.from_regex(r"[0-9]{1,13}-[0-9]{1,5}", fullmatch=True),
    epoch=st.integers(0, 2**53),
    type=st.from_regex(r"[a-z.]{1,20}", fullmatch=True),
    data=st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53), 2**53) | texts,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
        max_leaves=10,
    ),
)
def test_message_and_envelope_round_trip(id: str, epoch: int, type: str, data: object) -> None:
    data_json = dump_data(data)
    assert unpack_message(pack_message(id, epoch, type, data_json)) == (id, epoch, type, data_json)
    cursor = encode_cursor({"ch:1": Position(epoch, StreamId.parse(id))})
    [message] = SSEParser().feed(event_frame(cursor, event_tail(id, "ch:1", type, data_json)))
    assert orjson.loads(message.data) == {"id": id, "channel": "ch:1", "type": type, "data": data}
    assert (message.event, message.id) == ("message", cursor)


def test_malformed_message_is_refused() -> None:
    with pytest.raises(ProtocolError, match="malformed event message"):
        unpack_message(b"1-0\nx")


def test_unserializable_data_is_refused() -> None:
    with pytest.raises(ProtocolError, match="not JSON serializable"):
        dump_data(object())


@pytest.mark.parametrize("name", ["", "a b", "a/b", "é", "x" * 201, "a\nb"])
def test_bad_channel_names_are_refused(name: str) -> None:
    with pytest.raises(ProtocolError, match="invalid channel name"):
        validate_channel(name)


@pytest.mark.parametrize("name", ["reset", "auth-expired", "token-expiring"])
def test_control_event_types_are_reserved(name: str) -> None:
    with pytest.raises(ProtocolError, match="reserved"):
        validate_type(name)


def test_reset_rules() -> None:
    at_5 = Position(7, StreamId(5, 0))
    assert not needs_reset(at_5, 7, ZERO)
    assert not needs_reset(at_5, 7, StreamId(5, 0))
    assert needs_reset(at_5, 7, StreamId(5, 1)), "trimmed beyond the reader"
    assert needs_reset(at_5, 8, ZERO), "another epoch: history was lost"
    assert needs_reset(at_5, None, ZERO), "no history any more"
    assert not needs_reset(START, None, ZERO)
    assert not needs_reset(START, 7, ZERO), "channel began after the cursor: all is new"
    assert needs_reset(START, 7, StreamId(1, 0))


def test_an_event_from_json_decodes_its_data_only_when_read() -> None:
    lazy = Event.from_json("1-0", "project:1", "t", b'{"n":')
    assert (lazy.id, lazy.channel, lazy.type) == ("1-0", "project:1", "t")
    with pytest.raises(orjson.JSONDecodeError):
        lazy.data  # noqa: B018 - the broken JSON is decoded here, not before
    event = Event.from_json("1-0", "project:1", "t", b'{"n":1}')
    assert event == Event("1-0", "project:1", "t", {"n": 1})
    assert event.to_dict() == {"id": "1-0", "channel": "project:1", "type": "t", "data": {"n": 1}}
