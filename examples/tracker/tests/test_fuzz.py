"""The tracker's API keeps the promises of its own OpenAPI document, as
schemathesis sees it: it generates valid and invalid requests from the
document, for every operation, and chains them along the documented links,
against a real server, signed in with a real API token and then with a real
login session and its CSRF token. Every check runs (``--checks all``): no
server error, only documented statuses, content types, headers and bodies,
invalid input refused, valid input accepted, authentication enforced, and
more. The few things a JSON schema cannot say are in ``schemathesis.toml``.

Each run lasts ``FUZZ_SECONDS`` (20 by default, so ``make test`` spends
under a minute here; ``make fuzz`` runs ten minutes each, where the long
search belongs), with a random seed that a failure prints (``FUZZ_SEED``
replays one).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import typing as t
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis  # a dev dependency: without it this suite fails, never skips
import sqlalchemy as sa
from flask import Flask
from tracker import create_app, seed

import karaffe
from karaffe import auth
from karaffe.auth import User, create_api_token
from karaffe.db import db
from karaffe.testing import serving

pytestmark = pytest.mark.fuzz

SECONDS = int(os.environ.get("FUZZ_SECONDS", "20"))
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.fixture(autouse=True)
def quiet_server() -> Iterator[None]:
    """Thousands of requests: none is logged (a failure prints schemathesis' report)."""
    logger = logging.getLogger("werkzeug")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


@pytest.fixture
def tracker(tmp_path: Path) -> Iterator[tuple[Flask, str]]:
    """The tracker with a little demo data (CSRF on, as in production)."""
    app = create_app(
        {
            "SECRET_KEY": "fuzz-secret-key-of-at-least-32-characters",
            "DATABASE_URL": f"sqlite:///{tmp_path}/fuzz.sqlite",
            "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
        }
    )
    with app.app_context():
        db.create_all()
        seed.seed(orgs=2, issues=30, users_per_org=3)
    with serving(app) as url:
        yield app, url


def token_of(app: Flask, email: str) -> str:
    with app.app_context():
        user = db.session.execute(sa.select(User).where(User.email == email)).scalar_one()
        _, token = create_api_token(user, "fuzz")
        db.session.commit()
    return token


def login(url: str, email: str, password: str) -> tuple[str, str]:
    """Log in as a browser does; the session cookie and the CSRF token of the
    docs page (which sends it on writes)."""
    with httpx.Client(base_url=url) as browser:
        form = browser.get("/login").text
        field = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert field is not None
        browser.post(
            "/login", data={"email": email, "password": password, "csrf_token": field.group(1)}
        )
        docs = browser.get("/api/v1/docs").text
        meta = re.search(r'name="csrf-token" content="([^"]+)"', docs)
        assert meta is not None
        cookie = browser.cookies.get("session")
        assert cookie is not None
        return cookie, meta.group(1)


def fuzz(
    url: str, auth: dict[str, dict[str, str]], tmp_path: Path, seconds: int, *extra: str
) -> subprocess.CompletedProcess[str]:
    """Run schemathesis' CLI on the document at ``url`` with the checked-in
    configuration and ``auth`` (scheme name: its settings)."""
    config = tmp_path / "schemathesis.toml"
    sections = [CONFIG.read_text()]
    for scheme, settings in auth.items():
        lines = "".join(f'{key} = "{value}"\n' for key, value in settings.items())
        sections.append(f"[auth.openapi.{scheme}]\n{lines}")
    config.write_text("\n".join(sections))
    seed_args = ["--seed", os.environ["FUZZ_SEED"]] if "FUZZ_SEED" in os.environ else []
    # The subprocess finds schemathesis where this process did.
    site = str(Path(schemathesis.__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (site, os.environ.get("PYTHONPATH", "")) if p)
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config)]
    command += ["--no-color", "run", f"{url}/api/v1/openapi.json", "--checks", "all"]
    command += ["--workers", "1", "--max-time", str(seconds), *seed_args, *extra]
    return subprocess.run(
        command,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=seconds + 240,
        check=False,
    )


def report(run: subprocess.CompletedProcess[str]) -> str:
    return f"schemathesis exited {run.returncode}:\n{run.stdout[-20_000:]}\n{run.stderr[-5_000:]}"


def test_the_api_keeps_its_document_with_a_token(
    tracker: tuple[Flask, str], tmp_path: Path
) -> None:
    app, url = tracker
    token = token_of(app, seed.DEMO_LOGIN)
    run = fuzz(url, {"bearerAuth": {"bearer": token}}, tmp_path, SECONDS)
    assert run.returncode == 0, report(run)


def test_the_api_keeps_its_document_with_the_session_and_csrf_header(
    tracker: tuple[Flask, str], tmp_path: Path
) -> None:
    _, url = tracker
    cookie, csrf = login(url, seed.DEMO_LOGIN, seed.DEMO_PASSWORD)
    auth = {"sessionCookie": {"api_key": cookie}, "csrfToken": {"api_key": csrf}}
    run = fuzz(url, auth, tmp_path, SECONDS)
    assert run.returncode == 0, report(run)


class ClaimsLogin(karaffe.ApiDocs):
    """Documents ``/secret`` as needing a token, which it does not check."""

    def security(self, app: Flask, rule: t.Any, method: str) -> list[dict[str, list[str]]] | None:
        return [{"bearerAuth": []}] if rule.rule.endswith("/secret") else None


def test_the_fuzz_finds_broken_promises(tmp_path: Path) -> None:
    """The harness can fail: on an app that answers a status it does not
    document, and lets anyone call an operation documented as needing a
    token, the same run reports both."""
    app = karaffe.App("broken")
    app.configure(
        {"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path}/broken.sqlite"}, environ={}
    )
    db.init_app(app)
    auth.init_app(app)

    @app.get("/api/v1/things/<int:thing_id>")
    @karaffe.returns(dict[str, int])
    def thing(thing_id: int) -> t.Any:
        if thing_id > 3:
            raise karaffe.Conflict("A status the document does not list.")
        return {"id": thing_id}

    @app.get("/api/v1/secret")
    @karaffe.returns(dict[str, str])
    def secret() -> t.Any:
        return {"secret": "anyone sees it"}

    ClaimsLogin(url_prefix="/api/v1").init_app(app)
    with app.app_context():
        db.create_all()
        db.session.add(User(email="a@example.com", name="A"))
        db.session.commit()
    token = token_of(app, "a@example.com")
    with serving(app) as url:
        run = fuzz(url, {"bearerAuth": {"bearer": token}}, tmp_path, 10)
    assert run.returncode != 0, report(run)
    assert "Undocumented status code" in run.stdout, report(run)
    assert "API accepts requests without authentication" in run.stdout, report(run)
