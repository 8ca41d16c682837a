"""``flask karaffe relay`` and the relay's configuration from the app."""

from __future__ import annotations

import pytest

import karaffe
from karaffe.config import ConfigError
from karaffe.events import Events
from karaffe.events.relay import RelayConfig


def make(config: dict[str, object]) -> karaffe.App:
    app = karaffe.App("karaffe_cli_test")
    Events(app)
    app.configure({"TESTING": True, "SECRET_KEY": "cli-secret", **config}, environ={})
    return app


def test_relay_command_is_listed() -> None:
    result = make({}).test_cli_runner().invoke(args=["karaffe", "relay", "--help"])
    assert result.exit_code == 0, result.output
    assert "Stream events to browsers" in result.output
    assert "--port" in result.output


def test_relay_config_comes_from_the_app() -> None:
    app = make(
        {
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "SECRET_KEY_FALLBACKS": ["old"],
            "EVENTS_CORS_ORIGINS": ["https://a.example"],
            "EVENTS_HEARTBEAT": 5.0,
            "EVENTS_TOKEN_MAX_AGE": 60,
            "EVENTS_RELAY_WRITE_INTERVAL": 0.05,
        }
    )
    config = RelayConfig.from_app(app)
    assert config.secret_key == "cli-secret"
    assert config.secret_key_fallbacks == ["old"]
    assert config.redis_url == "redis://127.0.0.1:1/0"
    assert config.cors_origins == ["https://a.example"]
    assert (config.heartbeat, config.token_max_age) == (5.0, 60)
    assert config.write_interval == 0.05


def test_a_negative_write_interval_is_refused() -> None:
    with pytest.raises(ConfigError, match="EVENTS_RELAY_WRITE_INTERVAL"):
        make({"REDIS_URL": "redis://127.0.0.1:1/0", "EVENTS_RELAY_WRITE_INTERVAL": -1})


def test_relay_needs_redis() -> None:
    with pytest.raises(ConfigError, match="the relay needs REDIS_URL"):
        RelayConfig.from_app(make({}))
