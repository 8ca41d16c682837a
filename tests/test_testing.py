"""The pytest plugin: the talk's view test (slide 57) runs against the user's
own factory, named in the pytest configuration."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

APP = """
import karaffe
from flask import Blueprint

def create_app(config=None):
    app = karaffe.App("myapp")
    app.configure(config)
    bp = Blueprint("welcome", __name__)
    bp.add_url_rule("/welcome", "welcome", lambda: "<h1>Welcome</h1>")
    app.register_blueprint(bp)
    return app
"""

VIEW_TEST = """
def test_welcome_view(client):
    rv = client.get("/welcome")
    assert "set-cookie" not in rv.headers
    assert b"Welcome" in rv.data
    assert rv.status_code == 200

def test_app_is_built_in_testing_mode(app):
    assert app.testing
    assert app.config["SECRET_KEY"] == "test-secret-key"
    assert app.config["SQLALCHEMY_DATABASE_URI"].endswith("/test.sqlite")
    assert "pytest" in app.config["SQLALCHEMY_DATABASE_URI"]
"""


def test_view_test_runs_against_the_configured_factory(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(myapp=APP, test_views=VIEW_TEST)
    pytester.makeini("[pytest]\nkaraffe_app = myapp:create_app\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_config_fixture_can_be_overridden(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        myapp=APP,
        conftest="""
import pytest

@pytest.fixture
def karaffe_config():
    return {"TESTING": True, "SECRET_KEY": "mine", "PAGINATION_MAX_LIMIT": 7}
""",
        test_cfg="""
def test_config(app):
    assert app.config["PAGINATION_MAX_LIMIT"] == 7
    assert app.config["SECRET_KEY"] == "mine"
""",
    )
    pytester.makeini("[pytest]\nkaraffe_app = myapp:create_app\n")
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_missing_factory_setting_is_a_clear_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x(app):\n    pass\n")
    pytester.makeini("[pytest]\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        ["*set karaffe_app = *yourpackage:create_app* in the pytest configuration*"]
    )
    assert result.ret != 0
