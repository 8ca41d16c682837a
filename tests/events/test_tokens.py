"""Channel tokens: signed, expiring, rotatable, and every bad one refused."""

from __future__ import annotations

import re

import orjson
import pytest
from itsdangerous.encoding import base64_encode

from karaffe.api.errors import ApiException, problem_document
from karaffe.events.tokens import (
    ChannelForbidden,
    ChannelTokenError,
    ExpiredToken,
    ForeignToken,
    MalformedToken,
    MissingToken,
    RevokedToken,
    TamperedToken,
    TokenSigner,
)

NOW = 1_700_000_000.0


@pytest.fixture
def signer() -> TokenSigner:
    return TokenSigner("app-secret", max_age=600)


def test_valid_token_grants_its_channels(signer: TokenSigner) -> None:
    token = signer.sign(42, ["project:1", "project:2"], now=NOW)
    grant = signer.verify(token, now=NOW + 10)
    assert grant.user == "42"
    assert grant.channels == ("project:1", "project:2")
    assert grant.issued_at == NOW
    assert grant.expires_at == NOW + 600


def test_a_token_bound_to_a_credential_names_it(signer: TokenSigner) -> None:
    token = signer.sign(42, ["project:1"], now=NOW, credential="session:7")
    assert signer.verify(token, now=NOW).credential == "session:7"
    assert signer.verify(signer.sign(42, ["project:1"], now=NOW), now=NOW).credential is None


def test_token_is_url_safe(signer: TokenSigner) -> None:
    token = signer.sign("u", ["project:1"])
    assert all(c.isalnum() or c in "-_." for c in token)


def test_expired_token_is_rejected(signer: TokenSigner) -> None:
    token = signer.sign(1, ["a"], now=NOW, max_age=5)
    with pytest.raises(ExpiredToken) as info:
        signer.verify(token, now=NOW + 5)
    assert (info.value.status, info.value.slug) == (401, "expired-token")


def test_tampered_token_is_rejected(signer: TokenSigner) -> None:
    token = signer.sign(1, ["project:1"], now=NOW)
    _, signed_at, sig = token.split(".")
    claims = signer.signer.loads_unverified(token)
    forged = base64_encode(orjson.dumps({**claims, "c": ["project:9"]})).decode()
    with pytest.raises(TamperedToken) as info:
        signer.verify(f"{forged}.{signed_at}.{sig}", now=NOW)
    assert (info.value.status, info.value.slug) == (401, "tampered-token")


def test_token_with_a_changed_signature_is_tampered(signer: TokenSigner) -> None:
    token = signer.sign(1, ["a"], now=NOW)
    # Not the last character: its low bits are base64 padding, and some
    # changes there decode to the same signature.
    flipped = token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:]
    with pytest.raises(TamperedToken):
        signer.verify(flipped, now=NOW)


def test_foreign_token_is_rejected(signer: TokenSigner) -> None:
    token = TokenSigner("another-apps-secret").sign(1, ["a"], now=NOW)
    with pytest.raises(ForeignToken) as info:
        signer.verify(token, now=NOW)
    assert (info.value.status, info.value.slug) == (401, "foreign-token")


@pytest.mark.parametrize(
    "token",
    ["garbage", "a.b", "!!!.???", "e30.sig", "W10.sig", "x" * 9000 + ".y"],
    ids=["no-dot", "not-base64-json", "bad-chars", "empty-object", "a-list", "too-long"],
)
def test_malformed_token_is_rejected(signer: TokenSigner, token: str) -> None:
    with pytest.raises(MalformedToken) as info:
        signer.verify(token, now=NOW)
    assert (info.value.status, info.value.slug) == (401, "malformed-token")


def test_signed_payload_of_the_wrong_shape_is_malformed(signer: TokenSigner) -> None:
    token = signer.signer.dumps({"u": 1, "c": "not-a-list"})
    with pytest.raises(MalformedToken):
        signer.verify(token, now=NOW)


@pytest.mark.parametrize("token", [None, ""])
def test_missing_token_is_rejected(signer: TokenSigner, token: str | None) -> None:
    with pytest.raises(MissingToken) as info:
        signer.verify(token)
    assert (info.value.status, info.value.slug) == (401, "missing-token")


def test_rotated_key_still_accepts_old_tokens_for_a_grace_period() -> None:
    old = TokenSigner("old-secret").sign(1, ["a"], now=NOW)
    rotated = TokenSigner("new-secret", fallbacks=["old-secret"])
    assert rotated.verify(old, now=NOW).channels == ("a",)
    new = rotated.sign(1, ["a"], now=NOW)
    with pytest.raises(ForeignToken):
        TokenSigner("old-secret").verify(new, now=NOW)
    with pytest.raises(ForeignToken):
        TokenSigner("new-secret").verify(old, now=NOW)


def test_grant_refuses_a_channel_it_does_not_hold(signer: TokenSigner) -> None:
    grant = signer.verify(signer.sign(1, ["a", "b"], now=NOW), now=NOW)
    assert grant.check_channels(["b"]) == ("b",)
    assert grant.check_channels([]) == ("a", "b")
    with pytest.raises(ChannelForbidden) as info:
        grant.check_channels(["a", "c"])
    assert (info.value.status, info.value.slug) == (403, "channel-forbidden")
    assert "'c'" in info.value.detail


def test_error_details_never_contain_the_token(signer: TokenSigner) -> None:
    token = signer.sign(1, ["a"], now=NOW, max_age=1)
    with pytest.raises(ChannelTokenError) as info:
        signer.verify(token, now=NOW + 2)
    assert token not in str(info.value)


def test_signing_needs_channels_and_a_secret() -> None:
    with pytest.raises(ValueError, match="at least one channel"):
        TokenSigner("s").sign(1, [])
    with pytest.raises(ValueError, match="secret key is required"):
        TokenSigner("")


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ChannelTokenError, 401),
        (MissingToken, 401),
        (MalformedToken, 401),
        (TamperedToken, 401),
        (ForeignToken, 401),
        (ExpiredToken, 401),
        (RevokedToken, 401),
        (ChannelForbidden, 403),
    ],
)
def test_token_errors_are_api_problems_with_kebab_case_types(
    error: type[ChannelTokenError], status: int
) -> None:
    exc = error()
    assert isinstance(exc, ApiException)
    assert re.fullmatch(r"[a-z]+(-[a-z]+)+", exc.slug)
    # No app needed: the relay renders them outside Flask.
    assert problem_document(exc, type_base="urn:karaffe:problem:").model_dump() == {
        "type": f"urn:karaffe:problem:{exc.slug}",
        "title": error.title,
        "status": status,
        "detail": error.detail,
        "errors": [],
    }
