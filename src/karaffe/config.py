"""Settings: documented defaults < environment variables < an explicit mapping.

Every setting karaffe reads is declared here once, with its type, its default and
what it does. :meth:`karaffe.App.configure` loads them in that order and refuses
an unknown or malformed value at start-up, naming the setting, so a typo in
``KARAFFE_PAGINATION_MAX_LIMIT`` or ``{"SECERT_KEY": ...}`` fails loudly instead of
being ignored.
"""

from __future__ import annotations

import difflib
import os
import typing as t
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

__all__ = ["ConfigError", "Setting", "load_settings", "parse_bool", "parse_list"]


class ConfigError(RuntimeError):
    """A setting is unknown or has a value that cannot be used."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"expected one of {sorted(_TRUE | _FALSE - {''})}, got {raw!r}")


def parse_list(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def _parse_int(raw: str) -> int:
    return int(raw.strip())


_PARSERS: dict[type, Callable[[str], t.Any]] = {
    bool: parse_bool,
    int: _parse_int,
    float: float,
    str: str,
    list: parse_list,
}


@dataclass(frozen=True)
class Setting:
    """One configuration key.

    :param name: the key in ``app.config``, e.g. ``"PAGINATION_MAX_LIMIT"``.
    :param type: ``bool``, ``int``, ``float``, ``str`` or ``list`` (comma-separated
        in the environment); ``None`` values are allowed when ``default`` is ``None``.
    :param default: the documented default.
    :param doc: one line saying what the setting does (shown in ``docs/config.md``).
    :param env: extra environment variable names read for this setting, such as
        ``DATABASE_URL``; the prefixed names (``KARAFFE_<NAME>``) are always read.
    :param check: an optional validator that raises ``ValueError`` with a reason.
    """

    name: str
    type: type
    default: t.Any
    doc: str
    env: tuple[str, ...] = ()
    check: Callable[[t.Any], None] | None = None

    def coerce(self, value: t.Any, source: str) -> t.Any:
        """Turn ``value`` (a string from the environment, or any Python value from
        a mapping) into this setting's type, or raise :class:`ConfigError`."""
        try:
            if isinstance(value, str) and self.type is not str:
                value = _PARSERS[self.type](value)
            elif value is None and self.default is None:
                return None
            elif self.type is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            elif self.type is list and isinstance(value, tuple):
                value = list(value)
            if not isinstance(value, self.type) or (self.type is int and isinstance(value, bool)):
                raise ValueError(f"expected {self.type.__name__}, got {type(value).__name__}")
            if self.check is not None:
                self.check(value)
        except ValueError as exc:
            raise ConfigError(f"setting {self.name} (from {source}) is invalid: {exc}") from None
        return value


def _parse_like(default: t.Any, raw: str, name: str, source: str) -> t.Any:
    """Parse ``raw`` as the type of a Flask setting's ``default``. With no
    default to go by, a whole number becomes an int, ``true``/``false`` a bool,
    anything else stays text."""
    kind = type(default)
    if default is None:
        lowered = raw.strip().lower()
        if lowered.lstrip("-").isdigit():
            return int(lowered)
        return {"true": True, "false": False}.get(lowered, raw)
    if kind not in _PARSERS or kind is str:
        return raw
    return Setting(name, kind, default, "").coerce(raw, source)


def positive(value: t.Any) -> None:
    if value <= 0:
        raise ValueError(f"must be greater than 0, got {value}")


def load_settings(
    settings: Iterable[Setting],
    *,
    env_prefixes: Iterable[str],
    explicit: Mapping[str, t.Any] | None,
    passthrough: Mapping[str, t.Any],
    passthrough_prefixes: Iterable[str],
    environ: Mapping[str, str] | None = None,
    deferred: Collection[str] = (),
) -> dict[str, t.Any]:
    """Resolve every setting from defaults, then the environment, then ``explicit``.

    Keys of ``explicit`` that are neither declared settings, nor in ``passthrough``
    (Flask's own keys, with their defaults), nor start with one of
    ``passthrough_prefixes`` (``SQLALCHEMY_``, ``WTF_``...) are refused, with a
    suggestion when one is near. Prefixed environment variables naming such a key
    (``KARAFFE_SESSION_COOKIE_SECURE``) are parsed by the type of its default.
    Environment variables under one of ``env_prefixes`` that name no setting are
    refused the same way.
    """
    environ = os.environ if environ is None else environ
    declared = {s.name: s for s in settings}
    prefixes = tuple(env_prefixes)
    passthrough_prefixes = tuple(passthrough_prefixes)
    resolved: dict[str, t.Any] = {name: s.default for name, s in declared.items()}

    def unknown(key: str, source: str) -> ConfigError:
        near = difflib.get_close_matches(key, list(declared), n=1)
        hint = f"; did you mean {near[0]}?" if near else ""
        return ConfigError(f"unknown setting {key} (from {source}){hint}")

    for prefix in prefixes:
        for env_key, raw in environ.items():
            if not env_key.startswith(prefix):
                continue
            name = env_key[len(prefix) :]
            source = f"environment variable {env_key}"
            if name in declared:
                resolved[name] = declared[name].coerce(raw, source)
            elif name in passthrough or name.startswith(passthrough_prefixes):
                resolved[name] = _parse_like(passthrough.get(name), raw, name, source)
            elif name not in deferred:
                raise unknown(name, source)
    for setting in declared.values():
        for env_key in setting.env:
            if env_key in environ and not any(f"{p}{setting.name}" in environ for p in prefixes):
                resolved[setting.name] = setting.coerce(
                    environ[env_key], f"environment variable {env_key}"
                )

    for key, value in (explicit or {}).items():
        if key in declared:
            resolved[key] = declared[key].coerce(value, "the config mapping")
        elif key in passthrough or key.startswith(passthrough_prefixes):
            resolved[key] = value
        elif key not in deferred:
            raise unknown(key, "the config mapping")
    return resolved


#: The settings every karaffe app has. Parts add their own with
#: :meth:`karaffe.App.add_settings` (the data layer adds ``DATABASE_URL``...).
CORE_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "SECRET_KEY",
        str,
        None,
        "Signs sessions, cursors and channel tokens. Required outside debug and testing.",
    ),
    Setting("SECRET_KEY_FALLBACKS", list, [], "Old secret keys still accepted while rotating."),
    Setting("API_PREFIXES", list, ["/api"], "URL prefixes whose errors render as problem+json."),
    Setting(
        "MAX_CONTENT_LENGTH",
        int,
        1024 * 1024,
        "Largest request body in bytes; larger bodies get 413.",
        check=positive,
    ),
    Setting(
        "VALIDATION_ERROR_STATUS",
        int,
        422,
        "Status for failed validation: 422 or 400.",
        check=lambda v: _one_of(v, (400, 422)),
    ),
    Setting(
        "PROBLEM_TYPE_BASE",
        str,
        "urn:karaffe:problem:",
        "Prefix of the `type` URI of every problem response.",
    ),
    Setting(
        "PAGINATION_DEFAULT_LIMIT",
        int,
        20,
        "Page size when the client sends no `limit`.",
        check=positive,
    ),
    Setting(
        "PAGINATION_MAX_LIMIT",
        int,
        100,
        "Largest `limit` a client may ask for; more gets a 422.",
        check=positive,
    ),
)


def _one_of(value: t.Any, allowed: tuple[t.Any, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"must be one of {allowed}, got {value!r}")


#: Settings that karaffe's parts declare in their ``init_app``, which may run
#: after :meth:`karaffe.App.configure`: ``configure`` leaves them for the part
#: to resolve instead of refusing them as unknown. A test keeps this in step
#: with the parts' own ``SETTINGS``.
PART_SETTING_NAMES: frozenset[str] = frozenset(
    {
        "API_TOKEN_PREFIX", "API_TOKEN_TOUCH_INTERVAL", "DATABASE_ECHO",
        "DATABASE_MIGRATIONS_DIR", "DATABASE_SQLITE_BUSY_TIMEOUT", "DATABASE_URL",
        "EVENTS_BROKER", "EVENTS_COOKIE_NAME", "EVENTS_CORS_ORIGINS", "EVENTS_HEARTBEAT",
        "EVENTS_HISTORY_SIZE", "EVENTS_MAX_BUFFER", "EVENTS_REDIS_CLUSTER",
        "EVENTS_REDIS_PREFIX", "EVENTS_RELAY_HOST", "EVENTS_RELAY_PORT", "EVENTS_RELAY_URL",
        "EVENTS_REPLAY_LIMIT", "EVENTS_RETRY_MS", "EVENTS_SERVE_STREAM",
        "EVENTS_TOKEN_MAX_AGE", "EVENTS_TOKEN_NOTICE", "JOBS_BACKEND", "JOBS_GRACE_SECONDS",
        "JOBS_HISTORY", "JOBS_LEASE_SECONDS", "JOBS_MAX_WORKERS", "JOBS_MODULES",
        "JOBS_POLL_SECONDS", "JOBS_TIMEZONE", "LOGIN_MAX_FAILURES_PER_ACCOUNT",
        "LOGIN_MAX_FAILURES_PER_ADDRESS", "LOGIN_THROTTLE_REDIS_URL", "LOGIN_THROTTLE_WINDOW",
        "LOGIN_VIEW", "PASSWORD_HASH_METHOD", "REDIS_URL", "TENANCY_ORG_VIEW_ARGS",
        "TENANCY_RAW_SQL",
    }
)  # fmt: skip
