"""The leak sweep of karaffe.testing: it passes a well-behaved app, and
catches an app that shows or changes another organization's data."""

from __future__ import annotations

import typing as t
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from datalayer import Bottle, Crate, build_app, dispose
from test_tenancy import add_routes

import karaffe
from karaffe._leaksweep import LeakFound, LeakReport, Seeded
from karaffe.auth import User
from karaffe.db import db
from karaffe.tenancy import Organization, get_or_404, unscoped


@pytest.fixture
def app(tmp_path: Path) -> Iterator[karaffe.App]:
    app = build_app(f"sqlite:///{tmp_path}/sweep.sqlite")
    add_routes(app)
    yield app
    dispose(app)


def seed(org: Organization, owner: User) -> Seeded:
    crate = Crate(label=f"Top secret crate of {org.slug}", organization=org)
    db.session.add(Bottle(label=f"Vintage bottle of {org.slug}", organization=org, crate=crate))
    db.session.flush()
    return Seeded(
        secrets=[crate.label, f"Vintage bottle of {org.slug}"], url_values={"crate_id": crate.id}
    )


def test_a_well_scoped_app_passes(app: karaffe.App, leak_sweep: t.Any) -> None:
    report: LeakReport = leak_sweep(seed)
    assert report.leaks == []
    assert report.changed_tables == []
    assert report.controls_with_own_data >= 2
    mine, theirs = report.slugs
    urls = {(p.method, p.url, p.kind) for p in report.probes}
    assert ("GET", f"/api/orgs/{theirs}/crates", "their org") in urls
    assert ("PATCH", "/api/crates/2", "their org") in urls
    assert ("POST", f"/orgs/{theirs}/danger", "their org") in urls
    assert ("GET", f"/api/orgs/{mine}/crates", "control") in urls
    statuses = {p.url: p.status for p in report.probes if p.kind == "their org"}
    assert statuses["/api/crates/2"] == 404
    assert statuses[f"/orgs/{theirs}/crates"] == 404
    assert app.config["WTF_CSRF_ENABLED"] is True


def test_a_route_showing_another_orgs_object_is_caught(app: karaffe.App, leak_sweep: t.Any) -> None:
    @app.get("/api/careless/<int:crate_id>")
    def careless(crate_id: int) -> karaffe.ApiResult:
        with unscoped("a bug: loads any crate"):
            return karaffe.ApiResult({"label": get_or_404(Crate, crate_id).label})

    with pytest.raises(LeakFound) as caught:
        leak_sweep(seed)
    message = str(caught.value)
    expected = "GET /api/careless/2 -> 200 (their org) revealed ['Top secret crate of leak-sweep-b-"
    assert expected in message
    assert message.count("revealed") == 1


def test_a_route_changing_another_orgs_rows_is_caught(app: karaffe.App, leak_sweep: t.Any) -> None:
    @app.delete("/api/careless/<int:crate_id>")
    def careless_delete(crate_id: int) -> karaffe.ApiResult:
        with unscoped("a bug: relabels any crate"):
            db.session.execute(sa.update(Crate).where(Crate.id == crate_id).values(label="gone"))
            db.session.commit()
        return karaffe.ApiResult(None, status=204)

    with pytest.raises(
        LeakFound, match="rows of the other organization changed in karaffe_test_crate"
    ):
        leak_sweep(seed)


def test_a_sweep_that_sees_nothing_proves_nothing(app: karaffe.App, leak_sweep: t.Any) -> None:
    with pytest.raises(LeakFound, match="no GET route showed the caller's own seeded data"):
        leak_sweep(lambda org, owner: ["a string no route ever shows"])


def test_routes_it_cannot_call_are_reported(app: karaffe.App, leak_sweep: t.Any) -> None:
    @app.get("/api/pages/<name>")
    def page(name: str) -> str:
        return name

    report: LeakReport = leak_sweep(seed)
    assert "/api/pages/<name> (page)" in report.unswept
    report = leak_sweep(seed, url_values={"name": "about"})
    assert "/api/pages/<name> (page)" not in report.unswept
