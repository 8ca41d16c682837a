"""Admission of stream requests: one path for the dev stream and the relay."""

from __future__ import annotations

import time

import pytest

from karaffe.api.errors import InvalidCursor
from karaffe.events.admission import Admission, StreamRequest
from karaffe.events.protocol import Position, StreamId, encode_cursor
from karaffe.events.tokens import ChannelForbidden, MissingToken, RevokedToken, TokenSigner

SIGNER = TokenSigner("admission-secret")


def scope(
    query: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
) -> dict[str, object]:
    return {"type": "http", "query_string": query, "headers": headers or []}


def test_a_request_reads_token_channels_and_cursor_from_asgi() -> None:
    asked = StreamRequest.from_asgi(
        scope(b"token=abc&channel=a&channel=b&cursor=c1", [(b"last-event-id", b"c2")]), "k"
    )
    assert asked == StreamRequest("abc", ["a", "b"], "c2")
    from_cookie = StreamRequest.from_asgi(scope(b"cursor=c1", [(b"cookie", b"x=1; k=tok")]), "k")
    assert from_cookie == StreamRequest("tok", [], "c1")
    assert StreamRequest.from_asgi(scope(), "k") == StreamRequest(None, [], "")


def test_check_verifies_the_token_the_channels_and_the_cursor() -> None:
    admission = Admission(SIGNER)
    token = SIGNER.sign("u1", ["a", "b"])
    cursor = encode_cursor({"b": Position(7, StreamId(5, 1))})
    ticket = admission.check(StreamRequest(token, ["b"], cursor))
    assert (ticket.user, ticket.channels, ticket.cursor.get("b")) == (
        "u1",
        ("b",),
        Position(7, StreamId(5, 1)),
    )
    with pytest.raises(MissingToken):
        admission.check(StreamRequest(None, [], ""))
    with pytest.raises(ChannelForbidden):
        admission.check(StreamRequest(token, ["c"], ""))
    with pytest.raises(InvalidCursor, match="segment 0 is malformed"):
        admission.check(StreamRequest(token, [], "garbage"))


def test_revocation_refuses_tokens_issued_before_it() -> None:
    ticket = Admission(SIGNER).check(StreamRequest(SIGNER.sign("u1", ["a"]), [], ""))
    ticket.check_revocation(None)
    ticket.check_revocation(ticket.grant.issued_at - 1)
    with pytest.raises(RevokedToken):
        ticket.check_revocation(time.time() + 1)


def test_a_revoked_credential_refuses_the_tokens_bound_to_it_issued_before() -> None:
    token = SIGNER.sign("u1", ["a"], credential="session:3", now=time.time() - 5)
    ticket = Admission(SIGNER).check(StreamRequest(token, [], ""))
    assert ticket.credential == "session:3"
    ticket.check_revocation(None, None)
    ticket.check_revocation(time.time() - 10, time.time() - 10)
    with pytest.raises(RevokedToken):
        ticket.check_revocation(None, time.time())


def test_verified_tokens_are_cached_until_they_expire() -> None:
    calls = []

    class Counting(TokenSigner):
        def verify(self, token, *, now=None):  # type: ignore[no-untyped-def]
            calls.append(token)
            return super().verify(token, now=now)

    signer = Counting("admission-secret")
    admission = Admission(signer)
    token = signer.sign("u1", ["a"])
    for _ in range(3):
        admission.check(StreamRequest(token, [], ""))
    assert len(calls) == 1
    uncached = Admission(signer, cache_size=0)
    uncached.check(StreamRequest(token, [], ""))
    uncached.check(StreamRequest(token, [], ""))
    assert len(calls) == 3
