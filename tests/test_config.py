"""Settings: declared once per part as a typed model, parsed once, by type, from
defaults < environment < the explicit mapping; every bad value is one clear error."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask.cli import cli as flask_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from tracker.settings import TrackerSettings

import karaffe
from karaffe._configdocs import part_classes
from karaffe.cli import ScriptGroup
from karaffe.config import ConfigError, CoreSettings, Env, FlaskSettings, Settings, resolve
from karaffe.db import DbSettings
from karaffe.events.settings import EventsSettings
from karaffe.jobs import JobsSettings

ROOT = Path(__file__).resolve().parent.parent
LONG_KEY = "k" * 32


def configure(config: dict[str, object] | None = None, environ: dict[str, str] | None = None):
    app = karaffe.App("tracker")
    app.configure({"TESTING": True, **(config or {})}, environ=environ or {})
    return app


# -- sources and precedence ---------------------------------------------------------


def test_documented_defaults_apply() -> None:
    core = CoreSettings.of(configure())
    assert core.pagination_default_limit == 20
    assert core.pagination_max_limit == 100
    assert core.validation_error_status == 422
    assert core.api_prefixes == ["/api"]
    assert core.max_content_length == 1024 * 1024


def test_values_are_copied_into_flask_config() -> None:
    app = configure({"PAGINATION_MAX_LIMIT": 30})
    assert app.config["PAGINATION_MAX_LIMIT"] == 30
    assert app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024


def test_karaffe_environment_variable_overrides_default() -> None:
    app = configure(environ={"KARAFFE_PAGINATION_MAX_LIMIT": "50"})
    assert CoreSettings.of(app).pagination_max_limit == 50


def test_app_prefixed_environment_variable_overrides_karaffe_prefix() -> None:
    environ = {"KARAFFE_PAGINATION_MAX_LIMIT": "50", "TRACKER_PAGINATION_MAX_LIMIT": "70"}
    assert CoreSettings.of(configure(environ=environ)).pagination_max_limit == 70


def test_explicit_mapping_overrides_environment() -> None:
    app = configure({"PAGINATION_MAX_LIMIT": 30}, {"KARAFFE_PAGINATION_MAX_LIMIT": "50"})
    assert CoreSettings.of(app).pagination_max_limit == 30


def test_app_defaults_sit_between_declared_defaults_and_the_environment() -> None:
    app = karaffe.App("tracker")
    app.configure({"TESTING": True}, environ={}, defaults={"PAGINATION_MAX_LIMIT": 40})
    assert CoreSettings.of(app).pagination_max_limit == 40
    app = karaffe.App("tracker")
    app.configure(
        {"TESTING": True},
        environ={"KARAFFE_PAGINATION_MAX_LIMIT": "60"},
        defaults={"PAGINATION_MAX_LIMIT": 40},
    )
    assert CoreSettings.of(app).pagination_max_limit == 60


def test_conventional_name_is_read_and_prefixed_name_wins_over_it() -> None:
    app = configure(environ={"DATABASE_URL": "sqlite:///plain.db"})
    assert DbSettings.of(app).database_url == "sqlite:///plain.db"
    app = configure(
        environ={"DATABASE_URL": "sqlite:///plain.db", "TRACKER_DATABASE_URL": "sqlite://"}
    )
    assert DbSettings.of(app).database_url == "sqlite://"


def test_settings_objects_are_frozen() -> None:
    core = CoreSettings.of(configure())
    with pytest.raises(ValidationError):
        core.pagination_max_limit = 5  # type: ignore[misc]


def test_a_part_resolved_before_configure_is_resolved_again_by_configure() -> None:
    app = karaffe.App("tracker")
    assert JobsSettings.of(app).jobs_max_workers == 4
    app.configure({"TESTING": True, "JOBS_MAX_WORKERS": 2}, environ={"KARAFFE_JOBS_HISTORY": "9"})
    assert JobsSettings.of(app).jobs_max_workers == 2
    assert JobsSettings.of(app).jobs_history == 9


def test_plain_flask_app_reads_its_config_and_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flask import Flask

    monkeypatch.setenv("KARAFFE_JOBS_HISTORY", "7")
    app = Flask("plain")
    app.config["JOBS_MAX_WORKERS"] = 3
    settings = JobsSettings.of(app)
    assert (settings.jobs_max_workers, settings.jobs_history) == (3, 7)


# -- lists and the forgery this format closes -----------------------------------------


def test_one_fallback_from_the_environment_is_one_key_not_its_characters() -> None:
    app = configure(environ={"KARAFFE_SECRET_KEY_FALLBACKS": "old-secret-key"})
    assert CoreSettings.of(app).secret_key_fallbacks == ["old-secret-key"]
    assert app.config["SECRET_KEY_FALLBACKS"] == ["old-secret-key"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('["old-secret-key"]', ["old-secret-key"]),
        ('["a,b", "c"]', ["a,b", "c"]),
        ("a, b ,c", ["a", "b", "c"]),
        ("[]", []),
        ("", []),
    ],
)
def test_lists_are_a_json_array_or_comma_separated_names(raw: str, expected: list[str]) -> None:
    app = configure(environ={"KARAFFE_SECRET_KEY_FALLBACKS": raw})
    assert CoreSettings.of(app).secret_key_fallbacks == expected


def test_jobs_modules_from_the_environment_name_whole_modules() -> None:
    app = configure(environ={"KARAFFE_JOBS_MODULES": "tracker.jobs"})
    assert JobsSettings.of(app).jobs_modules == ["tracker.jobs"]


def test_a_string_where_a_list_is_expected_in_the_mapping_is_refused() -> None:
    with pytest.raises(
        ConfigError,
        match=r"setting SECRET_KEY_FALLBACKS \(from the config mapping\) is invalid: expected list of str",
    ):
        configure({"SECRET_KEY_FALLBACKS": "old-secret-key"})


def test_empty_variable_means_none_for_a_setting_that_may_be_none() -> None:
    app = configure(environ={"KARAFFE_EVENTS_RELAY_URL": ""})
    assert EventsSettings.of(app).events_relay_url is None


# -- bad values: one line naming the setting, the variable and the type --------------------

BAD_VALUES = [
    (
        "KARAFFE_PAGINATION_MAX_LIMIT",
        "many",
        "PAGINATION_MAX_LIMIT",
        "expected int > 0: Input should be a valid integer, unable to parse string as an integer, got 'many'",
    ),
    (
        "KARAFFE_PAGINATION_MAX_LIMIT",
        "0",
        "PAGINATION_MAX_LIMIT",
        "expected int > 0: must be greater than 0, got 0",
    ),
    (
        "KARAFFE_EVENTS_REDIS_CLUSTER",
        "sometimes",
        "EVENTS_REDIS_CLUSTER",
        "expected bool: Input should be a valid boolean, unable to interpret input, got 'sometimes'",
    ),
    (
        "KARAFFE_SESSION_COOKIE_SECURE",
        "maybe",
        "SESSION_COOKIE_SECURE",
        "expected bool or none: Input should be a valid boolean, unable to interpret input, got 'maybe'",
    ),
    (
        "KARAFFE_API_PREFIXES",
        '["/api"',
        "API_PREFIXES",
        "expected list of str: not valid JSON: Expecting ',' delimiter",
    ),
    (
        "KARAFFE_API_PREFIXES",
        '{"a": 1}',
        "API_PREFIXES",
        "expected list of str: Input should be a valid list, got {'a': 1}",
    ),
    (
        "KARAFFE_API_PREFIXES",
        "[1, 2]",
        "API_PREFIXES",
        "expected list of str: Input should be a valid string, got 1",
    ),
    (
        "KARAFFE_VALIDATION_ERROR_STATUS",
        "418",
        "VALIDATION_ERROR_STATUS",
        "expected one of 400, 422: Input should be 400 or 422, got 418",
    ),
    (
        "KARAFFE_EVENTS_HEARTBEAT",
        "soon",
        "EVENTS_HEARTBEAT",
        "expected number > 0: Input should be a valid number, unable to parse string as a number, got 'soon'",
    ),
    (
        "DATABASE_URL",
        "postgresq://u@h/d",
        "DATABASE_URL",
        "expected database URL or none: no database driver for 'postgresq' (postgresql://, sqlite:///path...), got 'postgresq://u@h/d'",
    ),
    (
        "KARAFFE_DATABASE_URL",
        "not a url",
        "DATABASE_URL",
        "expected database URL or none: not a database URL, such as postgresql://user@host/name, got 'not a url'",
    ),
    (
        "REDIS_URL",
        "http://localhost:6379",
        "REDIS_URL",
        "expected Redis URL or none: expected a redis://, rediss:// or unix:// URL, got 'http://localhost:6379'",
    ),
    (
        "REDIS_URL",
        "redis://localhost:port/0",
        "REDIS_URL",
        "expected Redis URL or none: malformed URL: Port could not be cast to integer value as 'port', got 'redis://localhost:port/0'",
    ),
    (
        "KARAFFE_REDIS_URL",
        "redis://localhost/zero",
        "REDIS_URL",
        "expected Redis URL or none: the path of a Redis URL is a database number, such as /0, got 'redis://localhost/zero'",
    ),
    (
        "KARAFFE_JOBS_BACKEND",
        "mysqlx://h/d",
        "JOBS_BACKEND",
        "expected str or none: no database driver for 'mysqlx' (postgresql://, sqlite:///path...), got 'mysqlx://h/d'",
    ),
    (
        "KARAFFE_JOBS_TIMEZONE",
        "Mars/Olympus",
        "JOBS_TIMEZONE",
        "expected str: unknown time zone 'Mars/Olympus', got 'Mars/Olympus'",
    ),
    (
        "KARAFFE_PERMANENT_SESSION_LIFETIME",
        "forever",
        "PERMANENT_SESSION_LIFETIME",
        "expected seconds or none: Input should be a valid timedelta, invalid character in hour, got 'forever'",
    ),
]


@pytest.mark.parametrize(("variable", "raw", "key", "reason"), BAD_VALUES)
def test_bad_environment_value_is_one_line_naming_setting_variable_and_type(
    variable: str, raw: str, key: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as info:
        configure(environ={variable: raw})
    message = str(info.value)
    assert message == f"setting {key} (from environment variable {variable}) is invalid: {reason}"
    assert "\n" not in message


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"PAGINATION_MAX_LIMIT": [1]},
            "setting PAGINATION_MAX_LIMIT (from the config mapping) is invalid: expected int > 0: Input should be a valid integer, got list",
        ),
        (
            {"PAGINATION_MAX_LIMIT": True},
            "setting PAGINATION_MAX_LIMIT (from the config mapping) is invalid: expected int > 0: a bool is not a number",
        ),
        (
            {"VALIDATION_ERROR_STATUS": 418},
            "setting VALIDATION_ERROR_STATUS (from the config mapping) is invalid: expected one of 400, 422: Input should be 400 or 422, got int",
        ),
        (
            {"DATABASE_URL": "postgresq://x"},
            "setting DATABASE_URL (from the config mapping) is invalid: expected database URL or none: no database driver for 'postgresq' (postgresql://, sqlite:///path...)",
        ),
    ],
)
def test_bad_mapping_value_is_one_line(config: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        configure(config)
    assert str(info.value) == message


def test_unknown_environment_setting_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        configure(environ={"KARAFFE_PAGINATION_MAX_LIMT": "50"})
    assert str(info.value) == (
        "unknown setting PAGINATION_MAX_LIMT (from environment variable "
        "KARAFFE_PAGINATION_MAX_LIMT); did you mean PAGINATION_MAX_LIMIT?"
    )


def test_unknown_explicit_setting_is_refused() -> None:
    with pytest.raises(
        ConfigError,
        match=r"unknown setting SECERT_KEY \(from the config mapping\); did you mean SECRET_KEY\?",
    ):
        configure({"SECERT_KEY": "x"})


def test_part_settings_are_checked_at_configure_before_the_part_is_set_up() -> None:
    with pytest.raises(ConfigError, match="setting JOBS_MAX_WORKERS"):
        configure(environ={"KARAFFE_JOBS_MAX_WORKERS": "four"})


def test_extension_keys_pass_through_and_parse_as_json_from_the_environment() -> None:
    app = configure(
        {"SQLALCHEMY_ECHO": True},
        {"KARAFFE_WTF_CSRF_ENABLED": "false", "KARAFFE_WTF_CSRF_FIELD_NAME": "tok"},
    )
    assert app.config["SQLALCHEMY_ECHO"] is True
    assert app.config["WTF_CSRF_ENABLED"] is False
    assert app.config["WTF_CSRF_FIELD_NAME"] == "tok"


def test_flask_settings_from_the_environment_are_parsed_by_their_type() -> None:
    environ = {
        "KARAFFE_SESSION_COOKIE_SECURE": "true",
        "KARAFFE_SEND_FILE_MAX_AGE_DEFAULT": "60",
        "KARAFFE_SERVER_NAME": "example.com",
        "KARAFFE_TRUSTED_HOSTS": "a.example, b.example",
    }
    app = configure(environ=environ)
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SEND_FILE_MAX_AGE_DEFAULT"] == dt.timedelta(seconds=60)
    assert app.config["SERVER_NAME"] == "example.com"
    assert app.config["TRUSTED_HOSTS"] == ["a.example", "b.example"]


def test_unset_flask_keys_keep_flask_defaults() -> None:
    app = configure()
    assert app.config["SESSION_COOKIE_NAME"] == "session"
    assert app.config["TRAP_HTTP_EXCEPTIONS"] is False


def test_flask_settings_name_every_flask_key() -> None:
    from flask import Flask

    declared = set(FlaskSettings.config_keys().values()) | set(CoreSettings.config_keys().values())
    assert set(Flask.default_config) <= declared


# -- secrets ----------------------------------------------------------------------


def test_secret_key_is_required_outside_debug_and_testing() -> None:
    app = karaffe.App("tracker")
    with pytest.raises(ConfigError, match="setting SECRET_KEY is required"):
        app.configure({}, environ={})


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"KARAFFE_SECRET_KEY": "s3cret"}, "setting SECRET_KEY is too short: 6 characters"),
        (
            {"KARAFFE_SECRET_KEY": LONG_KEY, "KARAFFE_SECRET_KEY_FALLBACKS": "old-secret-key"},
            r"setting SECRET_KEY_FALLBACKS\[0\] is too short: 14 characters",
        ),
    ],
)
def test_short_secrets_are_refused_in_production(environ: dict[str, str], message: str) -> None:
    app = karaffe.App("tracker")
    with pytest.raises(ConfigError, match=message):
        app.configure({}, environ=environ)


def test_long_secret_from_the_environment_is_used() -> None:
    app = karaffe.App("tracker")
    app.configure({}, environ={"KARAFFE_SECRET_KEY": LONG_KEY})
    assert CoreSettings.of(app).secret_key == LONG_KEY


@pytest.mark.parametrize("mode", ["TESTING", "DEBUG"])
def test_debug_and_testing_get_a_development_key(mode: str) -> None:
    app = karaffe.App("tracker")
    app.configure({mode: True}, environ={})
    assert CoreSettings.of(app).secret_key == "karaffe-insecure-development-key"


# -- every declared setting, from the environment, by its type --------------------------

SAMPLES: dict[str, st.SearchStrategy[t.Any]] = {
    "DATABASE_URL": st.sampled_from(
        ["sqlite:///x.db", "postgresql+psycopg://u@h:5432/d", "sqlite://"]
    ),
    "REDIS_URL": st.sampled_from(
        ["redis://127.0.0.1:6379/0", "rediss://h:1/2", "unix:///tmp/r.sock"]
    ),
    "LOGIN_THROTTLE_REDIS_URL": st.sampled_from(["redis://h/1", "redis://u:p@h:7000"]),
    "JOBS_BACKEND": st.sampled_from(["memory://", "redis://h/0", "sqlite:///jobs.db"]),
    "JOBS_TIMEZONE": st.sampled_from(["UTC", "Europe/Paris", "America/New_York"]),
    "SESSION_COOKIE_SAMESITE": st.sampled_from(["Lax", "Strict", "None"]),
}
NAMES = st.text(
    st.characters(categories=["L", "N"], include_characters="._-/:"), min_size=1, max_size=12
)
TEXT = st.text(st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=20).filter(
    lambda s: s.strip() == s
)


def _strategy(annotation: t.Any) -> st.SearchStrategy[t.Any]:
    from karaffe.config import _optional, _strip_annotated

    nullable, kind = _optional(annotation)
    base = _strip_annotated(kind)
    origin = t.get_origin(base)
    if origin is t.Literal:
        values: st.SearchStrategy[t.Any] = st.sampled_from(t.get_args(base))
    elif origin in (t.Union, __import__("types").UnionType):
        values = st.one_of([_strategy(a) for a in t.get_args(base)])
    elif origin is list:
        values = st.lists(NAMES | TEXT, max_size=4)
    elif base is bool:
        values = st.booleans()
    elif base is int:
        values = st.integers(0, 10**9)
    elif base is float:
        values = st.floats(0, 1e6, allow_nan=False)
    elif base is dt.timedelta:
        values = st.integers(0, 10**6).map(lambda s: dt.timedelta(seconds=s))
    else:
        values = TEXT
    return (values | st.none()) if nullable else values


def _to_environment(value: t.Any, draw: t.Callable[[st.SearchStrategy[t.Any]], t.Any]) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        spelled = draw(
            st.sampled_from(
                ["true", "1", "yes", "on", "True"]
                if value
                else ["false", "0", "no", "off", "FALSE"]
            )
        )
        return str(spelled)
    if isinstance(value, dt.timedelta):
        return str(int(value.total_seconds()))
    if isinstance(value, list):
        plain = all(
            item and "," not in item and item.strip() == item and not item.startswith(("[", "{"))
            for item in value
        )
        if value and plain and draw(st.booleans()):
            return ", ".join(value)
        return json.dumps(value)
    return str(value)


FIELDS = [
    (cls, name, key)
    for cls in [*part_classes(), TrackerSettings]
    for name, key in cls.config_keys().items()
    if key not in ("SECRET_KEY", "TESTING", "DEBUG")
]


@pytest.mark.parametrize(("cls", "name", "key"), FIELDS, ids=[key for _, _, key in FIELDS])
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), before=st.booleans(), prefix=st.sampled_from(["KARAFFE_", "TRACKER_"]))
def test_every_setting_from_the_environment_comes_back_with_its_type_and_value(
    cls: type[Settings], name: str, key: str, data: st.DataObject, before: bool, prefix: str
) -> None:
    info = cls.model_fields[name]
    value = data.draw(SAMPLES.get(key, _strategy(info.annotation)))
    try:
        checked = (
            t.Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        )
        TypeAdapter(checked).validate_python(value)
    except ValidationError:
        return  # outside the setting's declared bounds: refusing it is tested above
    if key == "SECRET_KEY_FALLBACKS":
        value = [v.ljust(32, "k") for v in value]
    raw = _to_environment(value, data.draw)
    app = karaffe.App("tracker")
    if before:
        cls.of(app)
    app.configure({"TESTING": True}, environ={f"{prefix}{key}": raw})
    got = getattr(cls.of(app), name)
    assert got == value and type(got) is type(value), (raw, got)


# -- commands ---------------------------------------------------------------------


BAD_SETTINGS = [
    (
        "KARAFFE_SECRET_KEY_FALLBACKS",
        "[oops",
        "Error: setting SECRET_KEY_FALLBACKS (from environment variable KARAFFE_SECRET_KEY_FALLBACKS) is invalid",
    ),
    (
        "DATABASE_URL",
        "postgresq://u@h/d",
        "Error: setting DATABASE_URL (from environment variable DATABASE_URL) is invalid",
    ),
    (
        "REDIS_URL",
        "redis://h:port",
        "Error: setting REDIS_URL (from environment variable REDIS_URL) is invalid",
    ),
    ("KARAFFE_SECRET_KEY", "short", "Error: setting SECRET_KEY is too short"),
    (
        "KARAFFE_JOBS_MAX_WORKERS",
        "lots",
        "Error: setting JOBS_MAX_WORKERS (from environment variable KARAFFE_JOBS_MAX_WORKERS) is invalid",
    ),
]
COMMANDS = [["flask", "--app", "tracker", "routes"], ["karaffe", "--app", "tracker", "jobs"]]


def environ_with(variable: str, raw: str) -> dict[str, str | None]:
    """This process's environment with one bad setting and no other app
    setting (``None``: unset)."""
    env: dict[str, str | None] = {
        k: (None if k.startswith(("KARAFFE_", "TRACKER_", "FLASK_")) else v)
        for k, v in os.environ.items()
    }
    env["DATABASE_URL"] = env["REDIS_URL"] = None
    env[variable] = raw
    if variable != "KARAFFE_SECRET_KEY":
        env["KARAFFE_SECRET_KEY"] = LONG_KEY
    return env


@pytest.mark.parametrize(("variable", "raw", "expected"), BAD_SETTINGS)
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_prints_one_line_and_exits_non_zero_on_a_bad_setting(
    command: list[str], variable: str, raw: str, expected: str
) -> None:
    """Through the entry points of the console scripts, in this process:
    Flask's command group (``flask``) and karaffe's ``ScriptGroup`` as
    ``karaffe.cli.main`` builds it (``karaffe``). The next test runs each
    script as a real process."""
    group = flask_cli if command[0] == "flask" else ScriptGroup()
    result = CliRunner().invoke(group, command[1:], env=environ_with(variable, raw))
    assert result.exit_code in (1, 2), result.output  # run-job and jobs: 2 for a bad config
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), result.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_every_console_script_prints_one_line_and_exits_non_zero_on_a_bad_setting(
    command: list[str],
) -> None:
    variable, raw, expected = BAD_SETTINGS[1]  # DATABASE_URL
    env = {k: v for k, v in environ_with(variable, raw).items() if v is not None}
    binary = str(Path(sys.executable).parent / command[0])
    result = subprocess.run(
        [binary, *command[1:]], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode in (1, 2), result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), result.stderr


# -- the resolver on its own ---------------------------------------------------------


class _Gadgets(Settings):
    gadget_count: int = 2
    """How many gadgets."""
    gadget_home: t.Annotated[str | None, Env("GADGET_HOME")] = None
    """Where gadgets live."""


def test_resolve_reads_explicit_then_prefixes_then_conventional_names() -> None:
    environ = {"GADGET_HOME": "/plain", "KARAFFE_GADGET_COUNT": "3"}
    got = resolve(_Gadgets, explicit={}, environ=environ)
    assert (got.gadget_count, got.gadget_home) == (3, "/plain")
    got = resolve(
        _Gadgets, explicit={"GADGET_COUNT": 5}, environ=environ, prefixes=("KARAFFE_", "APP_")
    )
    assert got.gadget_count == 5
