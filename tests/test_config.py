"""Settings load as defaults < environment < explicit mapping, and refuse bad values."""

from __future__ import annotations

import pytest

import karaffe
from karaffe.config import ConfigError, Setting, load_settings, parse_bool


def configure(config: dict[str, object] | None = None, environ: dict[str, str] | None = None):
    app = karaffe.App("tracker")
    app.configure({"TESTING": True, **(config or {})}, environ=environ or {})
    return app


def test_documented_defaults_apply() -> None:
    app = configure()
    assert app.config["PAGINATION_DEFAULT_LIMIT"] == 20
    assert app.config["PAGINATION_MAX_LIMIT"] == 100
    assert app.config["VALIDATION_ERROR_STATUS"] == 422
    assert app.config["API_PREFIXES"] == ["/api"]
    assert app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024


def test_karaffe_environment_variable_overrides_default() -> None:
    app = configure(environ={"KARAFFE_PAGINATION_MAX_LIMIT": "50"})
    assert app.config["PAGINATION_MAX_LIMIT"] == 50


def test_app_prefixed_environment_variable_overrides_karaffe_prefix() -> None:
    environ = {"KARAFFE_PAGINATION_MAX_LIMIT": "50", "TRACKER_PAGINATION_MAX_LIMIT": "70"}
    assert configure(environ=environ).config["PAGINATION_MAX_LIMIT"] == 70


def test_explicit_mapping_overrides_environment() -> None:
    app = configure({"PAGINATION_MAX_LIMIT": 30}, {"KARAFFE_PAGINATION_MAX_LIMIT": "50"})
    assert app.config["PAGINATION_MAX_LIMIT"] == 30


def test_list_setting_reads_comma_separated_environment() -> None:
    app = configure(environ={"KARAFFE_API_PREFIXES": "/api, /v2"})
    assert app.config["API_PREFIXES"] == ["/api", "/v2"]


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


def test_malformed_integer_names_the_setting_and_its_source() -> None:
    with pytest.raises(ConfigError) as info:
        configure(environ={"KARAFFE_PAGINATION_MAX_LIMIT": "many"})
    message = str(info.value)
    assert message.startswith(
        "setting PAGINATION_MAX_LIMIT (from environment variable KARAFFE_PAGINATION_MAX_LIMIT) is invalid:"
    )
    assert "'many'" in message


def test_wrong_type_in_mapping_is_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"setting PAGINATION_MAX_LIMIT .* expected int, got list"
    ):
        configure({"PAGINATION_MAX_LIMIT": [1]})


def test_boolean_is_not_accepted_as_integer() -> None:
    with pytest.raises(ConfigError, match="expected int, got bool"):
        configure({"PAGINATION_MAX_LIMIT": True})


def test_check_rejects_out_of_range_values() -> None:
    with pytest.raises(ConfigError, match="must be one of \\(400, 422\\), got 418"):
        configure({"VALIDATION_ERROR_STATUS": 418})
    with pytest.raises(ConfigError, match="must be greater than 0, got 0"):
        configure(environ={"KARAFFE_PAGINATION_DEFAULT_LIMIT": "0"})


def test_flask_and_extension_keys_pass_through() -> None:
    app = configure({"SESSION_COOKIE_SECURE": True, "SQLALCHEMY_ECHO": True, "DEBUG": False})
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SQLALCHEMY_ECHO"] is True


def test_secret_key_is_required_outside_debug_and_testing() -> None:
    app = karaffe.App("tracker")
    with pytest.raises(ConfigError, match="setting SECRET_KEY is required"):
        app.configure({}, environ={})


def test_secret_key_from_environment_is_used() -> None:
    app = karaffe.App("tracker")
    app.configure({}, environ={"KARAFFE_SECRET_KEY": "s3cret"})
    assert app.config["SECRET_KEY"] == "s3cret"


def test_added_settings_read_their_conventional_environment_name() -> None:
    app = karaffe.App("tracker")
    app.add_settings(Setting("DATABASE_URL", str, "sqlite://", "db", env=("DATABASE_URL",)))
    app.configure({"TESTING": True}, environ={"DATABASE_URL": "postgresql://x/y"})
    assert app.config["DATABASE_URL"] == "postgresql://x/y"


def test_prefixed_name_wins_over_conventional_name() -> None:
    setting = Setting("DATABASE_URL", str, "sqlite://", "db", env=("DATABASE_URL",))
    values = load_settings(
        [setting],
        env_prefixes=["KARAFFE_"],
        explicit=None,
        passthrough={},
        passthrough_prefixes=(),
        environ={"DATABASE_URL": "a", "KARAFFE_DATABASE_URL": "b"},
    )
    assert values["DATABASE_URL"] == "b"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("Yes", True), ("on", True), ("0", False), ("false", False), ("", False)],
)
def test_booleans_parse_the_usual_spellings(raw: str, expected: bool) -> None:
    assert parse_bool(raw) is expected


def test_bad_boolean_is_refused() -> None:
    with pytest.raises(ValueError, match="got 'maybe'"):
        parse_bool("maybe")


def test_flask_settings_from_the_environment_are_parsed_by_their_default() -> None:
    environ = {
        "KARAFFE_SESSION_COOKIE_SECURE": "true",
        "KARAFFE_SEND_FILE_MAX_AGE_DEFAULT": "60",
        "KARAFFE_SERVER_NAME": "example.com",
        "KARAFFE_SQLALCHEMY_ECHO": "1",
    }
    app = configure(environ=environ)
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SEND_FILE_MAX_AGE_DEFAULT"] == 60  # no default to go by: a number
    assert app.config["SERVER_NAME"] == "example.com"
    assert app.config["SQLALCHEMY_ECHO"] == 1


def test_malformed_flask_setting_in_the_environment_is_refused() -> None:
    with pytest.raises(
        ConfigError,
        match=r"setting SESSION_COOKIE_SECURE \(from environment variable KARAFFE_SESSION_COOKIE_SECURE\) is invalid",
    ):
        configure(environ={"KARAFFE_SESSION_COOKIE_SECURE": "sometimes"})


def test_settings_declared_after_configure_are_read_from_the_environment() -> None:
    app = configure(environ={"DATABASE_URL": "sqlite:///x.db", "KARAFFE_REDIS_URL": "redis://r"})
    app.add_settings(
        Setting("DATABASE_URL", str, "sqlite://", "db", env=("DATABASE_URL",)),
        Setting("REDIS_URL", str, "", "redis"),
        Setting("GADGETS", int, 2, "gadgets"),
    )
    assert app.config["DATABASE_URL"] == "sqlite:///x.db"
    assert app.config["REDIS_URL"] == "redis://r"
    assert app.config["GADGETS"] == 2


def test_parts_settings_in_the_mapping_wait_for_the_part() -> None:
    app = configure({"JOBS_MAX_WORKERS": 3})
    assert "JOBS_MAX_WORKERS" not in app.config
    app.add_settings(Setting("JOBS_MAX_WORKERS", int, 1, "workers"))
    assert app.config["JOBS_MAX_WORKERS"] == 3


def test_late_setting_with_a_malformed_environment_value_is_refused() -> None:
    app = configure(environ={"KARAFFE_JOBS_MAX_WORKERS": "four"})
    with pytest.raises(ConfigError, match=r"setting JOBS_MAX_WORKERS .* is invalid"):
        app.add_settings(Setting("JOBS_MAX_WORKERS", int, 1, "workers"))


def test_part_setting_names_match_the_parts() -> None:
    from karaffe import auth, db, tenancy
    from karaffe.config import PART_SETTING_NAMES
    from karaffe.events.settings import SETTINGS as EVENTS
    from karaffe.jobs import SETTINGS as JOBS

    parts = (db.SETTINGS, auth.SETTINGS, tenancy.SETTINGS, EVENTS, JOBS)
    assert {s.name for settings in parts for s in settings} == PART_SETTING_NAMES
