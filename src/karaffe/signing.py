"""The one signer: every value karaffe signs with the app's secret goes through here.

One key order: the current secret key signs; a signature is verified with the
current key, then with each fallback in order (``SECRET_KEY_FALLBACKS``, kept
while keys rotate). One salt per use, so a value signed for one use (a session
cookie, a pagination cursor, a channel token, an app's invitation link) never
verifies for another::

    signer = signer_for(app, CURSOR_SALT)
    token = signer.dumps(["n", [42]])
    signer.loads(token)                # ['n', [42]], or itsdangerous.BadSignature
    signer.loads(token, max_age=3600)  # itsdangerous.SignatureExpired when older

A token is itsdangerous' timestamped format: ``payload.timestamp.signature``,
base64url each, the payload compact JSON (orjson) unless another serializer is
given, the signature an HMAC-SHA256 under a key derived from the secret and
the salt. Deriving that key happens once per key and salt, when a
:class:`Signer` is built, not on every call; :func:`signer_for` builds one per
set of keys and salt, so a request pays only for the HMAC. The tokens are made
and read here, in a few lines rather than through itsdangerous' layers (a
page's cursors and every session cookie go through them), byte for byte as
itsdangerous' ``TimestampSigner`` (``key_derivation="hmac"``, SHA-256) makes
them; its exceptions are the ones raised.

A string where a sequence of keys is expected is refused (:func:`secret_keys`):
iterating it would make every one of its characters a valid key.
"""

from __future__ import annotations

import binascii
import datetime as dt
import functools
import hashlib
import hmac
import time
import typing as t
from collections.abc import Iterable

import orjson
from itsdangerous import BadPayload, BadSignature, BadTimeSignature, SignatureExpired
from itsdangerous.encoding import want_bytes

if t.TYPE_CHECKING:
    from flask import Flask

__all__ = [
    "CHANNEL_TOKEN_SALT",
    "CURSOR_SALT",
    "SESSION_SALT",
    "PayloadSerializer",
    "Signer",
    "secret_keys",
    "signer_for",
]

#: The session cookie (:class:`karaffe.sessions.CookieSessionInterface`).
SESSION_SALT = "karaffe.session"
#: Pagination cursors (:mod:`karaffe.api.pagination`).
CURSOR_SALT = "karaffe.cursor"
#: Channel tokens (:class:`karaffe.events.TokenSigner`).
CHANNEL_TOKEN_SALT = "karaffe.events.channel-token"


class PayloadSerializer(t.Protocol):
    """Turns a value into the text or bytes that get signed, and back. The
    default is orjson (compact JSON); Flask's ``TaggedJSONSerializer`` fits
    too (tuples, bytes, ``Markup``, datetimes). Hashable: :func:`signer_for`
    keeps a signer per serializer."""

    def __hash__(self) -> int: ...

    def dumps(self, obj: t.Any, /) -> str | bytes: ...

    def loads(self, s: str, /) -> t.Any: ...


def secret_keys(
    current: str | bytes | None, fallbacks: Iterable[str | bytes] | None = ()
) -> tuple[bytes, ...]:
    """The keys of a signer as bytes: ``current`` first (it signs), then the
    non-empty ``fallbacks`` in order (they only verify), without repeats.

    :raises TypeError: ``fallbacks`` is a single ``str`` or ``bytes`` rather
        than a sequence of keys (each character would become a key), or a key
        is not ``str`` or ``bytes``.
    :raises ValueError: ``current`` is empty: there is no key to sign with.
    """
    if current is None or (isinstance(current, str | bytes) and not current):
        raise ValueError("a secret key is required to sign (the current key is empty)")
    if not isinstance(current, str | bytes):
        raise TypeError(f"a secret key must be str or bytes, not {type(current).__name__}")
    if fallbacks is None:
        fallbacks = ()
    elif isinstance(fallbacks, str | bytes | bytearray):
        raise TypeError(
            "secret key fallbacks must be a sequence of keys, not a single "
            f"{type(fallbacks).__name__} (each of its characters would be a key): "
            "put the key in a list"
        )
    keys = [want_bytes(current)]
    for key in fallbacks:
        if not isinstance(key, str | bytes):
            raise TypeError(f"a secret key must be str or bytes, not {type(key).__name__}")
        if key and (raw := want_bytes(key)) not in keys:
            keys.append(raw)
    return tuple(keys)


_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64encode(data: bytes) -> bytes:
    """base64url without padding, as itsdangerous writes it (without its
    layers of checks: this runs several times per token)."""
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=")


def _b64decode(data: bytes) -> bytes:
    """The inverse of :func:`_b64encode` (:exc:`binascii.Error`, a ``ValueError``)."""
    return binascii.a2b_base64(data.translate(_FROM_URLSAFE) + b"=" * (-len(data) % 4))


def _derive_key(secret: bytes, salt: bytes) -> bytes:
    """The key that signs for ``salt``: itsdangerous' ``key_derivation="hmac"``
    with SHA-256, derived once per key and salt."""
    return hmac.digest(secret, salt, "sha256")


#: Each byte XOR 0x36 and XOR 0x5c: HMAC's inner and outer pads (RFC 2104).
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


class _Mac:
    """HMAC-SHA256 under one key, as :func:`hmac.digest` computes it, with the
    hashes of the padded key (RFC 2104's inner and outer pads) computed once:
    a MAC then costs two copies and two digests, rather than OpenSSL looking
    the algorithm up and hashing the key again on every call. The two hashes
    are only ever copied, never updated, so threads share them safely."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


_SHA256_BLOCK = 64


def _timestamp_bytes(timestamp: int) -> bytes:
    """The timestamp as itsdangerous writes it: big-endian, no leading zeros."""
    return timestamp.to_bytes(8, "big").lstrip(b"\x00")


def _key_id(key: bytes) -> str:
    """A short public fingerprint of a secret key (an HMAC: it reveals nothing
    of the key)."""
    return hmac.new(key, b"karaffe.signing.key-id", hashlib.sha256).hexdigest()[:8]


class Signer:
    """Signs values for one use and verifies them.

    :param secret_key: the current secret key; it signs.
    :param fallbacks: older keys, still accepted when verifying, tried in
        order after the current one. A sequence: a ``str`` is a ``TypeError``.
    :param salt: what the values are for; a value signed with one salt never
        verifies with another.
    :param serializer: turns values into what is signed and back (compact
        JSON by default).
    """

    def __init__(
        self,
        secret_key: str | bytes,
        fallbacks: Iterable[str | bytes] | None = (),
        *,
        salt: str,
        serializer: PayloadSerializer = orjson,
    ) -> None:
        self.keys = secret_keys(secret_key, fallbacks)
        self.salt = salt
        self.serializer = serializer
        #: Fingerprints of :attr:`keys`, the current key's first. A value can
        #: carry its signer's, so that a bad signature by one of our keys
        #: (tampering) is told from one by a key we never had (foreign).
        self.key_ids = tuple(_key_id(key) for key in self.keys)
        #: The keys derived for :attr:`salt`, in the same order: the first signs.
        self._derived = tuple(_derive_key(key, salt.encode()) for key in self.keys)
        #: Their MACs, in the same order.
        self._macs = tuple(_Mac(key) for key in self._derived)

    def __repr__(self) -> str:
        return f"<Signer salt={self.salt!r} keys={len(self.keys)}>"

    def dumps(self, value: t.Any) -> str:
        """``value`` serialized, timestamped and signed with the current key:
        a URL-safe string."""
        signed = (
            _b64encode(want_bytes(self.serializer.dumps(value)))
            + b"."
            + _b64encode(_timestamp_bytes(int(time.time())))
        )
        mac = self._macs[0].digest(signed)
        return (signed + b"." + _b64encode(mac)).decode("ascii")

    def loads(self, token: str | bytes, max_age: int | None = None) -> t.Any:
        """The value signed in ``token``.

        :param max_age: refuse a token signed more than this many seconds ago.
        :raises itsdangerous.SignatureExpired: older than ``max_age``.
        :raises itsdangerous.BadSignature: any other refusal: no key of ours
            signed it for this salt, it was changed, or it is not a token.
        """
        return self._load(self._verified(want_bytes(token), max_age))

    def _verified(self, token: bytes, max_age: int | None) -> bytes:
        """The payload of ``token`` (``payload.timestamp.signature``, as
        itsdangerous' ``TimestampSigner`` writes it) once its signature is
        checked against each of our keys in order, and its age."""
        signed, dot, signature = token.rpartition(b".")
        if not dot:
            raise BadSignature("No '.' found in value")
        try:
            mac = _b64decode(signature)
        except ValueError:
            mac = b""
        for key in self._macs:
            if hmac.compare_digest(mac, key.digest(signed)):
                break
        else:
            raise BadSignature(f"Signature {signature!r} does not match", payload=signed)
        payload, dot, stamp = signed.rpartition(b".")
        if not dot:
            raise BadTimeSignature("timestamp missing", payload=signed)
        try:
            raw: bytes | None = _b64decode(stamp)
        except ValueError:
            raw = None
        if raw is None or len(raw) > 8:
            raise BadTimeSignature("Malformed timestamp", payload=payload)
        if max_age is not None:
            signed_at = int.from_bytes(raw, "big")
            age = int(time.time()) - signed_at
            if not 0 <= age <= max_age:
                raise SignatureExpired(
                    f"Signature age {age} is not within 0 to {max_age} seconds",
                    payload=payload,
                    date_signed=dt.datetime.fromtimestamp(signed_at, dt.UTC),
                )
        return payload

    def _load(self, payload: bytes) -> t.Any:
        """The value in a verified ``payload``."""
        try:
            return self._deserialize(payload)
        except BadPayload:
            # Signed by us yet unreadable: refused like a bad signature, so
            # that callers need to catch one exception only.
            raise BadSignature("the signed value cannot be read", payload=payload) from None

    def loads_unverified(self, token: str | bytes) -> t.Any:
        """The value in ``token`` without checking its signature or age: only
        to tell why :meth:`loads` refused a token, never to trust it.

        :raises itsdangerous.BadPayload: there is no readable value in it.
        """
        parts = want_bytes(token).split(b".")
        if len(parts) != 3:
            raise BadPayload("not a signed value")
        return self._deserialize(parts[0])

    def _deserialize(self, payload: bytes) -> t.Any:
        try:
            return self.serializer.loads(_b64decode(payload).decode("utf-8"))
        except Exception as error:
            raise BadPayload("the value cannot be read", original_error=error) from None


def _secret_keys(app: Flask) -> tuple[bytes, ...]:
    """The app's secret keys, current first: the one place karaffe reads them."""
    # Flask's own keys, read live from app.config as Flask's sessions read
    # them; configure() has parsed them (a list from the environment), and
    # secret_keys() refuses a string put there since.
    fallbacks = app.config.get("SECRET_KEY_FALLBACKS")
    if isinstance(fallbacks, list):
        fallbacks = tuple(fallbacks)
    try:
        hash((app.secret_key, fallbacks))
    except TypeError:
        return secret_keys(app.secret_key, fallbacks)  # raises, naming the key
    return _checked_keys(app.secret_key, fallbacks)


@functools.lru_cache(maxsize=64)
def _checked_keys(current: t.Any, fallbacks: t.Any) -> tuple[bytes, ...]:
    """:func:`secret_keys`, checked once per value of the settings."""
    return secret_keys(current, fallbacks)


@functools.lru_cache(maxsize=64)
def _signer(keys: tuple[bytes, ...], salt: str, serializer: PayloadSerializer) -> Signer:
    return Signer(keys[0], keys[1:], salt=salt, serializer=serializer)


def signer_for(app: Flask, salt: str, *, serializer: PayloadSerializer = orjson) -> Signer:
    """The :class:`Signer` of ``app``'s secret keys for ``salt``: built once per
    set of keys, salt and serializer, so rotating the keys takes effect at once.

    :raises ValueError: the app has no ``SECRET_KEY``.
    :raises TypeError: ``SECRET_KEY_FALLBACKS`` is a string, not a list.
    """
    return _signer(_secret_keys(app), salt, serializer)
