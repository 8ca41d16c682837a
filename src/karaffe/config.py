"""Settings: each part declares its own once, as a typed model, parsed once.

A part (the core, the data layer, auth, events, jobs, an app) declares its
settings as a :class:`Settings` subclass: one field per setting, its type, its
default and, as the field's docstring, what it does::

    class MailSettings(karaffe.Settings):
        mail_from: str = "app@localhost"
        \"\"\"Sender of the app's mail.\"\"\"

A field's config key is its name in upper case (``MAIL_FROM``). Values come
from, later winning:

1. the field's default (then the app's ``defaults=`` passed to ``configure``);
2. the environment: a conventional name given with :class:`Env` (``DATABASE_URL``),
   then ``KARAFFE_<KEY>``, then the app's own prefix (``TRACKER_<KEY>``);
3. the mapping passed to :meth:`karaffe.App.configure`.

and are validated by pydantic, by their declared type, exactly once per app:
:meth:`Settings.of` returns the parsed, frozen object, the same whether the part
was set up before or after ``configure``. The values are also written into
``app.config`` for code that reads Flask's config, but karaffe reads the typed
objects only.

From the environment, a list, tuple, set or mapping is a JSON value
(``["a", "b"]``); a list of plain names may also be comma-separated
(``a, b``). An empty variable means ``None`` for a setting that may be
``None``. Anything that does not parse is a :class:`ConfigError` naming the
setting, the variable and the expected type, on one line.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import json
import os
import types
import typing as t
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import click
from flask import Flask, current_app
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

__all__ = [
    "ConfigError",
    "CoreSettings",
    "Env",
    "FlaskSettings",
    "PositiveFloat",
    "PositiveInt",
    "RedisUrl",
    "Settings",
    "resolve",
]

_Self = t.TypeVar("_Self", bound="Settings")


class ConfigError(click.ClickException):
    """A setting is unknown or has a value that cannot be used.

    It is a :class:`click.ClickException`, so a ``flask`` or ``karaffe``
    command whose app fails to configure prints this one line and exits 1.
    """

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Env:
    """Conventional environment variable names also read for a setting, such
    as ``DATABASE_URL``; the prefixed ``KARAFFE_<KEY>`` and ``<APP>_<KEY>``
    win over them. Use it in the field's ``Annotated`` metadata."""

    names: tuple[str, ...]

    def __init__(self, *names: str) -> None:
        object.__setattr__(self, "names", names)


@dataclass(frozen=True)
class TypeName:
    """How docs and errors name a type (``Annotated`` metadata)."""

    name: str


def _positive(value: t.Any) -> t.Any:
    if value <= 0:
        raise ValueError(f"must be greater than 0, got {value}")
    return value


def _redis_url(value: str) -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    try:
        parts.port  # noqa: B018 (a malformed port raises here)
    except ValueError as exc:
        raise ValueError(f"malformed URL: {exc}") from None
    database = parts.path.strip("/")
    if parts.scheme != "unix" and database and not database.isdigit():
        raise ValueError("the path of a Redis URL is a database number, such as /0")
    if parts.scheme == "unix" and not parts.path:
        raise ValueError("a unix:// URL needs the socket's path")
    return value


#: An int greater than 0.
PositiveInt = t.Annotated[int, AfterValidator(_positive), TypeName("int > 0")]
#: A float greater than 0.
PositiveFloat = t.Annotated[float, AfterValidator(_positive), TypeName("number > 0")]
#: A Redis URL (``redis://``, ``rediss://`` or ``unix://``), checked when read.
RedisUrl = t.Annotated[str, AfterValidator(_redis_url), TypeName("Redis URL")]

#: Every Settings subclass defined so far, by the config key of each field.
_KEYS: dict[str, type[Settings]] = {}
#: The modules of karaffe's own parts, imported to name their keys in errors.
_PART_MODULES = (
    "karaffe.db",
    "karaffe.auth",
    "karaffe._tenancy.web",
    "karaffe.events.settings",
    "karaffe.jobs.extension",
    "karaffe.headers",
)


class Settings(BaseModel):
    """The settings of one part. Subclass it, one field per setting, with the
    setting's documentation as the field's docstring; read it with
    :meth:`of`. Instances are frozen."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", use_attribute_docstrings=True, validate_default=True
    )

    #: Heading of this part in the generated ``docs/config.md``.
    title: t.ClassVar[str] = ""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: t.Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for key in cls.config_keys().values():
            _KEYS[key] = cls

    @classmethod
    def config_keys(cls) -> dict[str, str]:
        """``{field name: config key}``."""
        return {name: name.upper() for name in cls.model_fields}

    @classmethod
    def conventional_env(cls) -> tuple[str, ...]:
        """The conventional environment variables (:class:`Env`) of its fields."""
        return tuple(n for info in cls.model_fields.values() for n in _env_names(info))

    @classmethod
    def of(cls: type[_Self], app: Flask | None = None) -> _Self:
        """This part's settings for ``app`` (the current app by default),
        resolved on first use and then kept."""
        # The app itself rather than the proxy: every attribute read through
        # ``current_app`` looks the context up again.
        target = current_app._get_current_object() if app is None else app  # type: ignore[attr-defined]
        store = _store(target)
        found = store.resolved.get(cls)
        if found is None:
            found = store.resolve(cls)
            target.config.update(found.as_config())
        return t.cast(_Self, found)

    def as_config(self) -> dict[str, t.Any]:
        """``{config key: value}`` for ``app.config``."""
        keys = self.config_keys()
        return {keys[name]: getattr(self, name) for name in type(self).model_fields}


class _Store:
    """Where an app's settings come from, and those resolved so far."""

    def __init__(self, app: Flask) -> None:
        self.explicit: Mapping[str, t.Any] = {}
        self.defaults: Mapping[str, t.Any] = {}
        self.environ: Mapping[str, str] = os.environ
        self.prefixes: Sequence[str] = getattr(app, "env_prefixes", ("KARAFFE_",))
        self.configured = False
        self.resolved: dict[type[Settings], Settings] = {}
        self._app_config = app.config

    def resolve(self, cls: type[_Self]) -> _Self:
        if self.configured:
            explicit = self.explicit
        else:
            # Before configure (or on a plain Flask app): what app.config holds;
            # configure() resolves it again from its own sources.
            # Flask keeps None for "not set".
            keys = set(cls.config_keys().values())
            explicit = {k: v for k, v in self._app_config.items() if k in keys and v is not None}
        value = resolve(
            cls,
            explicit=explicit,
            environ=self.environ,
            prefixes=self.prefixes,
            defaults=self.defaults,
        )
        self.resolved[cls] = value
        return value


def _store(app: Flask) -> _Store:
    store = app.extensions.get("karaffe.settings")
    if store is None:
        store = app.extensions["karaffe.settings"] = _Store(app)
    return t.cast(_Store, store)


# -- parsing -------------------------------------------------------------------


def _strip_annotated(annotation: t.Any) -> t.Any:
    while t.get_origin(annotation) is t.Annotated:
        annotation = t.get_args(annotation)[0]
    return annotation


def _optional(annotation: t.Any) -> tuple[bool, t.Any]:
    """(whether ``None`` is allowed, the annotation without ``None``)."""
    inner = _strip_annotated(annotation)
    if t.get_origin(inner) in (t.Union, types.UnionType):
        args = [a for a in t.get_args(inner) if a is not type(None)]
        if len(args) < len(t.get_args(inner)):
            return True, args[0] if len(args) == 1 else t.Union[tuple(args)]  # noqa: UP007
    return False, annotation


_COLLECTIONS = (list, tuple, set, frozenset, dict)


def _is_collection(annotation: t.Any) -> bool:
    kind = _strip_annotated(annotation)
    return kind in _COLLECTIONS or t.get_origin(kind) in (*_COLLECTIONS, Sequence, Mapping)


def _admits_text(annotation: t.Any) -> bool:
    """Whether a string may be a valid value as it is."""
    kind = _strip_annotated(annotation)
    origin = t.get_origin(kind)
    if origin in (t.Union, types.UnionType):
        return any(_admits_text(a) for a in t.get_args(kind))
    if origin is t.Literal:
        return any(isinstance(a, str) for a in t.get_args(kind))
    return kind in (str, t.Any)


def _admits_bool(annotation: t.Any) -> bool:
    kind = _strip_annotated(annotation)
    if t.get_origin(kind) in (t.Union, types.UnionType):
        return any(_admits_bool(a) for a in t.get_args(kind))
    return kind in (bool, t.Any) or t.get_origin(kind) is not None


def _plain_items(annotation: t.Any) -> bool:
    """A list/tuple/set of str: may be written comma-separated."""
    kind = _strip_annotated(annotation)
    if t.get_origin(kind) not in (list, tuple, set, frozenset, Sequence):
        return kind in (list, tuple, set, frozenset)
    return all(_strip_annotated(a) in (str, Ellipsis) for a in t.get_args(kind))


def field_type_name(info: FieldInfo) -> str:
    """How docs and errors name the type of a field."""
    named = [m for m in info.metadata if isinstance(m, TypeName)]
    return named[0].name if named else type_name(info.annotation)


def type_name(annotation: t.Any) -> str:
    """How ``docs/config.md`` and errors name a setting's type."""
    nullable, kind = _optional(annotation)
    named = [m for m in getattr(kind, "__metadata__", ()) if isinstance(m, TypeName)]
    kind = _strip_annotated(kind)
    origin = t.get_origin(kind)
    if named:
        name = named[0].name
    elif origin is t.Literal:
        name = "one of " + ", ".join(json.dumps(a) for a in t.get_args(kind))
    elif origin in (list, tuple, set, frozenset, Sequence):
        inner = [type_name(a) for a in t.get_args(kind) if a is not Ellipsis]
        name = f"list of {inner[0]}" if inner else "list"
    elif origin in (dict, Mapping):
        name = "mapping"
    elif origin in (t.Union, types.UnionType):
        name = " or ".join(type_name(a) for a in t.get_args(kind))
    else:
        name = {dt.timedelta: "seconds", float: "number"}.get(
            kind, getattr(kind, "__name__", str(kind))
        )
    return f"{name} or none" if nullable else name


def _from_environment(raw: str, annotation: t.Any) -> t.Any:
    """Turn an environment variable's text into what pydantic validates."""
    nullable, kind = _optional(annotation)
    if nullable and raw.strip() == "":
        return None
    if not _is_collection(kind):
        if not _admits_text(kind):
            # Numbers as numbers: a Literal[400, 422] or a duration in seconds.
            with contextlib.suppress(ValueError):
                number = float(raw)
                return int(number) if number.is_integer() and "." not in raw else number
        return raw
    text = raw.strip()
    if text.startswith(("[", "{")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc.msg}") from None
    if _plain_items(kind):
        return [part.strip() for part in text.split(",") if part.strip()]
    raise ValueError("expected a JSON value")


def _env_sources(
    key: str, extra: Iterable[str], environ: Mapping[str, str], prefixes: Sequence[str]
) -> tuple[str, str] | None:
    """(variable, text) of the environment variable that sets ``key``."""
    for name in (*(f"{p}{key}" for p in reversed(prefixes)), *extra):
        if name in environ:
            return name, environ[name]
    return None


def _env_names(info: t.Any) -> tuple[str, ...]:
    return tuple(n for m in info.metadata if isinstance(m, Env) for n in m.names)


def resolve(
    cls: type[_Self],
    *,
    explicit: Mapping[str, t.Any],
    environ: Mapping[str, str],
    prefixes: Sequence[str] = ("KARAFFE_",),
    defaults: Mapping[str, t.Any] | None = None,
) -> _Self:
    """Build ``cls`` from ``defaults`` < ``environ`` < ``explicit`` (all keyed by
    config key), or raise :class:`ConfigError` naming the first bad setting."""
    data: dict[str, t.Any] = {}
    sources: dict[str, str] = {}
    for name, key in cls.config_keys().items():
        info = cls.model_fields[name]
        if key in explicit:
            data[name], sources[name] = explicit[key], "the config mapping"
            if isinstance(data[name], bool) and not _admits_bool(info.annotation):
                raise _invalid(cls, name, sources[name], "a bool is not a number")
            continue
        found = _env_sources(key, _env_names(info), environ, prefixes)
        if found is not None:
            variable, raw = found
            sources[name] = f"environment variable {variable}"
            try:
                data[name] = _from_environment(raw, info.annotation)
            except ValueError as exc:
                raise _invalid(cls, name, sources[name], str(exc)) from None
        elif defaults and key in defaults:
            data[name], sources[name] = defaults[key], "the app's defaults"
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else ""
        message, source = error["msg"], sources.get(name, "")
        if ", got " in message or (error["type"] == "value_error" and "environment" not in source):
            pass
        elif "input" in error and sources.get(name, "").startswith("environment"):
            message = f"{message}, got {error['input']!r}"
        elif "input" in error and not isinstance(error["input"], dict):
            message = f"{message}, got {type(error['input']).__name__}"
        raise _invalid(cls, name, sources.get(name, "its default"), message) from None


def _invalid(cls: type[Settings], name: str, source: str, reason: str) -> ConfigError:
    key = cls.config_keys().get(name, name.upper())
    expected = field_type_name(cls.model_fields[name]) if name in cls.model_fields else "?"
    reason = reason.replace("Value error, ", "")
    return ConfigError(f"setting {key} (from {source}) is invalid: expected {expected}: {reason}")


def unknown_key(key: str, source: str, known: Iterable[str]) -> ConfigError:
    """The error for a key that no part declares, with the nearest known one."""
    near = difflib.get_close_matches(key, list(known), n=1)
    hint = f"; did you mean {near[0]}?" if near else ""
    return ConfigError(f"unknown setting {key} (from {source}){hint}")


def known_keys(key: str | None = None) -> dict[str, type[Settings]]:
    """Every key declared by a Settings class defined so far; when ``key`` is
    not among them, karaffe's parts are imported to look again (so an app that
    uses no events or jobs never imports them)."""
    import importlib

    if key is not None and key not in _KEYS:
        for module in _PART_MODULES:
            importlib.import_module(module)
    return _KEYS


def parse_loose(raw: str) -> t.Any:
    """An extension's key from the environment (``KARAFFE_WTF_CSRF_ENABLED``):
    a JSON value when it is one (``false``, ``5``, ``["a"]``), else the text."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


# -- the settings of the core and of Flask -----------------------------------------


class CoreSettings(Settings):
    """The settings every karaffe app has."""

    title: t.ClassVar[str] = "Core"

    secret_key: str | None = None
    """Signs sessions, cursors, channel tokens and invitations. Required outside
    debug and testing, and at least 32 characters there."""

    secret_key_fallbacks: list[str] = []
    """Old secret keys still accepted while rotating: a JSON array, or names
    separated by commas. Each at least 32 characters outside debug and testing."""

    api_prefixes: list[str] = ["/api"]
    """URL prefixes whose errors render as problem+json."""

    max_content_length: PositiveInt = 1024 * 1024
    """Largest request body in bytes; larger bodies get 413."""

    validation_error_status: t.Literal[400, 422] = 422
    """Status for failed validation: 422 or 400."""

    problem_type_base: str = "urn:karaffe:problem:"
    """Prefix of the `type` URI of every problem response."""

    pagination_default_limit: PositiveInt = 20
    """Page size when the client sends no `limit`."""

    pagination_max_limit: PositiveInt = 100
    """Largest `limit` a client may ask for; more gets a 422."""

    redis_url: t.Annotated[RedisUrl | None, Env("REDIS_URL")] = None
    """Redis server shared by karaffe's parts (events, jobs), e.g.
    redis://127.0.0.1:6379/0. Checked at start-up."""


class FlaskSettings(Settings):
    """Flask's own keys, typed so that the environment can set them
    (``KARAFFE_SESSION_COOKIE_SECURE=true``). ``None`` leaves Flask's default;
    only the keys that are set are written into ``app.config``."""

    title: t.ClassVar[str] = "Flask"

    debug: bool | None = None
    """Flask's debug mode (prefer `flask run --debug`)."""
    testing: bool | None = None
    """Testing mode: exceptions propagate; short secrets are allowed."""
    propagate_exceptions: bool | None = None
    """Re-raise exceptions instead of answering 500 (default: in debug and testing)."""
    trap_http_exceptions: bool | None = None
    """Raise HTTP exceptions instead of answering them (to debug)."""
    trap_bad_request_errors: bool | None = None
    """Raise bad request errors such as a missing form key (default: in debug)."""
    permanent_session_lifetime: dt.timedelta | None = None
    """Lifetime of a permanent session, in seconds."""
    use_x_sendfile: bool | None = None
    """Let the front server send files (X-Sendfile)."""
    trusted_hosts: list[str] | None = None
    """Host names the app answers for (others get 400)."""
    server_name: str | None = None
    """The host and port the app is served at (for URLs built outside requests)."""
    application_root: str | None = None
    """Path the app is mounted under."""
    session_cookie_name: str | None = None
    """Name of the session cookie."""
    session_cookie_domain: str | None = None
    """Domain of the session cookie."""
    session_cookie_path: str | None = None
    """Path of the session cookie."""
    session_cookie_httponly: bool | None = None
    """Hide the session cookie from scripts."""
    session_cookie_secure: bool | None = None
    """Send the session cookie over HTTPS only."""
    session_cookie_partitioned: bool | None = None
    """Partitioned (CHIPS) session cookie."""
    session_cookie_samesite: t.Literal["Lax", "Strict", "None"] | None = None
    """SameSite attribute of the session cookie."""
    session_refresh_each_request: bool | None = None
    """Send the session cookie on every request."""
    max_form_memory_size: PositiveInt | None = None
    """Largest non-file form field in bytes."""
    max_form_parts: PositiveInt | None = None
    """Most form fields per request."""
    send_file_max_age_default: dt.timedelta | None = None
    """Cache lifetime of static files, in seconds."""
    explain_template_loading: bool | None = None
    """Log how templates are found."""
    preferred_url_scheme: str | None = None
    """Scheme of URLs built outside requests."""
    templates_auto_reload: bool | None = None
    """Reload changed templates (default: in debug)."""
    max_cookie_size: int | None = None
    """Warn about cookies larger than this many bytes."""
    provide_automatic_options: bool | None = None
    """Answer OPTIONS for every route."""

    def as_config(self) -> dict[str, t.Any]:
        return {k: v for k, v in super().as_config().items() if v is not None}


#: Prefixes of keys the extensions karaffe builds on read (Flask-SQLAlchemy,
#: Flask-WTF...): passed through from the mapping, JSON-or-text from the environment.
PASSTHROUGH_PREFIXES = ("SQLALCHEMY_", "WTF_")
