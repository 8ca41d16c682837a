"""The one signer: one key order, one salt per use, and no key made of a
string's characters."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import itertools
import time

import orjson
import pytest
from flask.json.tag import TaggedJSONSerializer
from itsdangerous import (
    BadPayload,
    BadSignature,
    BadTimeSignature,
    SignatureExpired,
    TimestampSigner,
)
from itsdangerous.encoding import base64_decode, base64_encode
from markupsafe import Markup

from karaffe.events.tokens import TokenSigner
from karaffe.signing import (
    CHANNEL_TOKEN_SALT,
    CURSOR_SALT,
    SESSION_SALT,
    Signer,
    _Mac,
    secret_keys,
    signer_for,
)

#: Every use of the app's secret, the tracker's invitation links included.
USES = {
    "session": SESSION_SALT,
    "cursor": CURSOR_SALT,
    "channel token": CHANNEL_TOKEN_SALT,
    "invitation": "tracker.invitation",  # tracker.services.INVITATION_SALT
}
VALUE = {"u": "42", "c": ["project:1"], "n": [1, "x", None]}


def test_round_trips_json() -> None:
    signer = Signer("k", salt="s")
    assert signer.loads(signer.dumps(VALUE)) == VALUE


def test_is_url_safe_and_not_readable_json() -> None:
    token = Signer("k", salt="s").dumps({"a": "b/c+d"})
    assert not token.startswith("{")
    assert all(c.isalnum() or c in "-_." for c in token)


def test_the_current_key_signs_and_the_fallbacks_verify() -> None:
    rotated = Signer("new", ["older", "oldest"], salt="s")
    for key in ("older", "oldest"):
        assert rotated.loads(Signer(key, salt="s").dumps(VALUE)) == VALUE
    token = rotated.dumps(VALUE)
    assert Signer("new", salt="s").loads(token) == VALUE
    for key in ("older", "oldest"):
        with pytest.raises(BadSignature):
            Signer(key, salt="s").loads(token)


def test_a_value_signed_before_a_rotation_still_verifies_after_it() -> None:
    token = Signer("old", salt="s").dumps(VALUE)
    assert Signer("new", ["old"], salt="s").loads(token) == VALUE


def test_a_value_signed_with_a_removed_key_is_refused() -> None:
    token = Signer("old", salt="s").dumps(VALUE)
    with pytest.raises(BadSignature):
        Signer("newer", ["new"], salt="s").loads(token)


@pytest.mark.parametrize(
    ("signed_for", "read_as"), list(itertools.permutations(USES, 2)), ids="-as-".join
)
def test_value_signed_for_one_use_never_verifies_for_another(signed_for: str, read_as: str) -> None:
    token = Signer("k", ["old"], salt=USES[signed_for]).dumps(VALUE)
    with pytest.raises(BadSignature):
        Signer("k", ["old"], salt=USES[read_as]).loads(token)


def test_the_uses_have_their_own_salts() -> None:
    assert len(set(USES.values())) == len(USES)
    assert TokenSigner("k").signer.salt == CHANNEL_TOKEN_SALT


@pytest.mark.parametrize("fallbacks", ["old-secret", b"old-secret", bytearray(b"old-secret")])
def test_a_string_where_keys_are_expected_is_a_type_error(fallbacks) -> None:
    with pytest.raises(TypeError, match="sequence of keys, not a single"):
        secret_keys("k", fallbacks)
    with pytest.raises(TypeError, match="put the key in a list"):
        Signer("k", fallbacks, salt="s")
    with pytest.raises(TypeError):
        TokenSigner("k", fallbacks)


def test_an_app_whose_fallbacks_are_a_string_signs_nothing(make_app) -> None:
    app = make_app()
    app.config["SECRET_KEY_FALLBACKS"] = "old-secret"  # past configure(), which makes a list
    for salt in USES.values():
        with pytest.raises(TypeError):
            signer_for(app, salt)


def test_one_fallback_from_the_environment_verifies_as_one_whole_key() -> None:
    import karaffe

    app = karaffe.App("tracker")
    app.configure(
        {"TESTING": True, "SECRET_KEY": "current-secret-key"},
        environ={"KARAFFE_SECRET_KEY_FALLBACKS": "old-secret-key"},
    )
    for salt in USES.values():
        assert (
            signer_for(app, salt).loads(Signer("old-secret-key", salt=salt).dumps(VALUE)) == VALUE
        )
        for character in set("old-secret-key"):
            with pytest.raises(BadSignature):
                signer_for(app, salt).loads(Signer(character, salt=salt).dumps(VALUE))


@pytest.mark.parametrize("use", USES)
def test_one_character_keys_from_a_fallback_never_verify(use: str) -> None:
    # The forgery: with a string iterated as keys, each character was a key.
    signer = Signer("current-secret", ["old-secret"], salt=USES[use])
    for character in set("old-secret"):
        forged = Signer(character, salt=USES[use]).dumps(VALUE)
        with pytest.raises(BadSignature):
            signer.loads(forged)


def test_empty_fallbacks_are_ignored_and_an_empty_current_key_is_an_error() -> None:
    assert secret_keys("k", ["", b"old", "k", b""]) == (b"k", b"old")
    assert secret_keys("k", None) == (b"k",)
    for current in ("", b"", None):
        with pytest.raises(ValueError, match="secret key is required"):
            Signer(current, ["old"], salt="s")  # type: ignore[arg-type]


def test_a_key_that_is_not_text_or_bytes_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="not list"):
        secret_keys(["k"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not int"):
        secret_keys("k", [1])  # type: ignore[list-item]


@pytest.mark.parametrize(
    "mangle",
    [
        lambda tok: tok[:-2] + ("AA" if not tok.endswith("AA") else "BB"),
        lambda tok: "e30" + tok[3:],
        lambda tok: tok.replace(".", ""),
        lambda tok: tok.rsplit(".", 1)[0],
        lambda tok: ".".join(tok.split(".")[::2]),
        lambda tok: "é" + tok,
        lambda tok: "",
    ],
    ids=["signature", "payload", "no-dots", "no-signature", "no-timestamp", "non-ascii", "empty"],
)
def test_a_tampered_token_is_refused(mangle) -> None:
    signer = Signer("k", salt="s")
    with pytest.raises(BadSignature):
        signer.loads(mangle(signer.dumps([1, 2, 3])))


def test_a_token_older_than_max_age_has_expired(monkeypatch) -> None:
    signer = Signer("k", salt="s")
    token = signer.dumps(VALUE)
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(SignatureExpired):
        signer.loads(token, max_age=60)
    assert issubclass(SignatureExpired, BadSignature)
    assert signer.loads(token, max_age=120) == VALUE
    assert signer.loads(token) == VALUE


def test_a_signed_value_that_cannot_be_read_is_refused() -> None:
    class Text:
        def dumps(self, obj: object) -> str:
            return f"not json: {obj}"

        def loads(self, s: str) -> str:
            return s

    token = Signer("k", salt="s", serializer=Text()).dumps("x")
    with pytest.raises(BadSignature):
        Signer("k", salt="s").loads(token)


def test_a_pluggable_serializer_keeps_flask_session_types() -> None:
    signer = Signer("k", salt=SESSION_SALT, serializer=TaggedJSONSerializer())
    value = {
        "t": (1, "two"),
        "b": b"\x00\xff",
        "m": Markup("<b>safe</b>"),
        "d": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    }
    assert signer.loads(signer.dumps(value)) == value


def test_key_ids_tell_our_keys_from_others() -> None:
    rotated = Signer("new", ["old"], salt="s")
    assert rotated.key_ids[0] == Signer("new", salt="other").key_ids[0]
    assert Signer("old", salt="s").key_ids[0] == rotated.key_ids[1]
    assert Signer("foreign", salt="s").key_ids[0] not in rotated.key_ids
    assert all(len(key_id) == 8 for key_id in rotated.key_ids)


def test_an_unverified_value_is_readable_only_to_explain_a_refusal() -> None:
    token = Signer("foreign", salt="s").dumps(VALUE)
    signer = Signer("k", salt="s")
    with pytest.raises(BadSignature):
        signer.loads(token)
    assert signer.loads_unverified(token) == VALUE
    for garbage in ("", "a.b", "!!!.???.!!!", "e30.sig"):
        with pytest.raises(BadPayload):
            signer.loads_unverified(garbage)


def test_signer_for_builds_one_signer_per_set_of_keys_and_salt(make_app) -> None:
    app = make_app({"SECRET_KEY": "new", "SECRET_KEY_FALLBACKS": ["old"]})
    signer = signer_for(app, CURSOR_SALT)
    assert signer is signer_for(
        make_app({"SECRET_KEY": "new", "SECRET_KEY_FALLBACKS": ["old"]}), CURSOR_SALT
    )
    assert signer_for(app, SESSION_SALT) is not signer
    assert signer.keys == (b"new", b"old")
    assert signer.loads(Signer("old", salt=CURSOR_SALT).dumps(VALUE)) == VALUE
    app.config["SECRET_KEY_FALLBACKS"] = []  # Flask's keys are read live, as Flask reads them
    assert signer_for(app, CURSOR_SALT) is not signer
    with pytest.raises(BadSignature):
        signer_for(app, CURSOR_SALT).loads(Signer("old", salt=CURSOR_SALT).dumps(VALUE))


def test_a_signer_does_not_show_its_keys() -> None:
    assert "secret" not in repr(Signer("secret", ["old-secret"], salt="s"))


def test_tokens_are_itsdangerous_timestamped_tokens_both_ways() -> None:
    """Cookies and cursors signed before karaffe made tokens itself still
    verify, and a token it makes reads as itsdangerous' own."""
    ours = Signer("k" * 32, ["old" * 11], salt="s")
    for key in ("k" * 32, "old" * 11):
        theirs = TimestampSigner(key, salt="s", key_derivation="hmac", digest_method=hashlib.sha256)
        payload = base64_encode(orjson.dumps(VALUE))
        assert ours.loads(theirs.sign(payload)) == VALUE
    theirs = TimestampSigner(
        "k" * 32, salt="s", key_derivation="hmac", digest_method=hashlib.sha256
    )
    value, signed_at = theirs.unsign(ours.dumps(VALUE), max_age=5, return_timestamp=True)
    assert orjson.loads(base64_decode(value)) == VALUE
    assert abs(signed_at.timestamp() - time.time()) < 5


@pytest.mark.parametrize(
    "token",
    [b"e30.AAAAAAAAAAAA.", b"e30.AAAAA.", b"e30."],
    ids=["timestamp-too-long", "timestamp-not-base64", "no-timestamp"],
)
def test_a_signed_token_without_a_readable_timestamp_is_refused(token: bytes) -> None:
    signer = Signer("k", salt="s")
    signed = token[:-1]
    mac = hmac.digest(signer._derived[0], signed, "sha256")
    with pytest.raises(BadTimeSignature):
        signer.loads(signed + b"." + base64_encode(mac))


@pytest.mark.parametrize("key_length", [0, 1, 32, 64, 65, 200])
@pytest.mark.parametrize("message", [b"", b"e30.aw9wTQ", bytes(range(256)) * 8])
def test_the_mac_with_its_pads_computed_once_is_hmac_sha256(
    key_length: int, message: bytes
) -> None:
    key = bytes((7 * i + 3) % 256 for i in range(key_length))
    mac = _Mac(key)
    assert mac.digest(message) == hmac.digest(key, message, "sha256")
    assert mac.digest(message) == mac.digest(message)  # the pads are copied, never updated
