"""karaffe.tenancy: organization-scoped reads and writes, the security
context, current_org, roles, raw SQL detection, the leak sweep."""

from __future__ import annotations

import logging
import typing as t
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from datalayer import BACKENDS, Bottle, Crate, Note, build_app, database_url, dispose
from flask import request
from flask.testing import FlaskClient

import karaffe
from karaffe.auth import User, create_api_token, login_user, logout_user
from karaffe.db import db
from karaffe.signals import membership_changed
from karaffe.tenancy import (
    CrossOrgWrite,
    Membership,
    Organization,
    UnscopedQueryError,
    acting_as,
    add_member,
    available_organization_ids,
    change_role,
    create_organization,
    current_org,
    current_role,
    for_organization,
    get_current_org,
    get_or_404,
    remove_member,
    require_role,
    unscoped,
)

NOT_FOUND = {
    "type": "urn:karaffe:problem:not-found",
    "title": "Not found",
    "status": 404,
    "detail": "The requested resource was not found.",
    "errors": [],
}


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request, tmp_path)


class World(t.NamedTuple):
    """alice owns acme; bob is a member of acme and owns globex; carol is
    a member of globex. Each organization has one crate with one bottle."""

    tokens: dict[str, str]
    users: dict[str, int]
    orgs: dict[str, int]
    crates: dict[str, int]


def add_routes(app: karaffe.App) -> None:
    @app.get("/api/crates")
    def all_crates() -> karaffe.ApiResult:
        return karaffe.ApiResult(sorted(c.label for c in db.session.scalars(sa.select(Crate))))

    @app.get("/api/crates/<int:crate_id>")
    def one_crate(crate_id: int) -> karaffe.ApiResult:
        crate = get_or_404(Crate, crate_id)
        return karaffe.ApiResult(
            {"label": crate.label, "bottles": [b.label for b in crate.bottles]}
        )

    @app.patch("/api/crates/<int:crate_id>")
    def move_crate(crate_id: int) -> karaffe.ApiResult:
        crate = get_or_404(Crate, crate_id)
        crate.organization_id = request.json["organization_id"]  # type: ignore[index]
        db.session.commit()
        return karaffe.ApiResult({"moved": True})

    @app.get("/api/orgs/<org_slug>/crates")
    def org_crates() -> karaffe.ApiResult:
        query = sa.select(Crate).where(Crate.organization_id == current_org.id)
        return karaffe.ApiResult(
            {"org": current_org.slug, "crates": [c.label for c in db.session.scalars(query)]}
        )

    @app.post("/api/orgs/<org_slug>/crates")
    def create_crate() -> karaffe.ApiResult:
        body = request.json or {}
        org_id = body.get("organization_id", current_org.id)
        db.session.add(Crate(label=body["label"], organization_id=org_id))
        db.session.commit()
        return karaffe.ApiResult({"created": body["label"]}, status=201)

    @app.post("/api/orgs/<org_slug>/danger")
    @require_role("admin")
    def danger() -> karaffe.ApiResult:
        return karaffe.ApiResult({"role": current_role()})

    @app.get("/orgs/<org_slug>/crates")
    def html_crates() -> str:
        query = sa.select(Crate).where(Crate.organization_id == current_org.id)
        return ", ".join(c.label for c in db.session.scalars(query))

    @app.post("/orgs/<org_slug>/danger")
    @require_role("owner")
    def html_danger() -> str:
        return "done"

    @app.post("/orgs/<org_slug>/crates")
    def html_create_crate() -> str:
        db.session.add(Crate(label="sneaky", organization_id=int(request.form["org_id"])))
        db.session.commit()
        return "created"


def seed_world() -> World:
    with unscoped("test seed"):
        users = {n: User(email=f"{n}@example.org", name=n) for n in ("alice", "bob", "carol")}
        acme = create_organization("Acme", "acme", users["alice"])
        globex = create_organization("Globex", "globex", users["bob"])
        db.session.add_all(
            [
                Membership(organization=acme, user=users["bob"], role="member"),
                Membership(organization=globex, user=users["carol"], role="member"),
            ]
        )
        crates = {}
        for org in (acme, globex):
            crate = Crate(label=f"{org.slug}-crate", organization=org)
            db.session.add(Bottle(label=f"{org.slug}-bottle", organization=org, crate=crate))
            crates[org.slug] = crate
        tokens = {n: create_api_token(u, "test")[1] for n, u in users.items()}
        db.session.commit()
        return World(
            tokens,
            {n: u.id for n, u in users.items()},
            {"acme": acme.id, "globex": globex.id},
            {n: c.id for n, c in crates.items()},
        )


@pytest.fixture
def app(url: str) -> Iterator[karaffe.App]:
    app = build_app(url, {"WTF_CSRF_ENABLED": False})
    add_routes(app)
    with app.app_context():
        db.create_all()
    yield app
    with app.app_context():
        db.session.remove()
        db.drop_all()
    dispose(app)


@pytest.fixture
def world(app: karaffe.App) -> World:
    with app.app_context():
        return seed_world()


@pytest.fixture
def client(app: karaffe.App) -> FlaskClient:
    return app.test_client()


def bearer(world: World, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.tokens[name]}"}


def crate_labels() -> list[str]:
    return sorted(c.label for c in db.session.scalars(sa.select(Crate)))


# -- the context -----------------------------------------------------------------------


def test_without_a_context_org_owned_rows_are_invisible(app: karaffe.App, world: World) -> None:
    with app.app_context():
        assert crate_labels() == []
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Crate)) == 0
        assert db.session.get(Crate, world.crates["acme"]) is None
        assert db.session.scalars(sa.select(Organization)).all() == []
        assert available_organization_ids() == frozenset()


def test_without_a_context_org_owned_rows_cannot_be_written(app: karaffe.App, world: World) -> None:
    with app.app_context():
        db.session.add(Crate(label="orphan", organization_id=world.orgs["acme"]))
        with pytest.raises(CrossOrgWrite, match="outside no context"):
            db.session.flush()


def test_acting_as_sees_exactly_the_users_organizations(app: karaffe.App, world: World) -> None:
    with app.app_context():
        bob = db.session.get(User, world.users["bob"])
        carol = db.session.get(User, world.users["carol"])
        assert bob is not None and carol is not None
        with acting_as(bob):
            assert crate_labels() == ["acme-crate", "globex-crate"]
            assert available_organization_ids() == set(world.orgs.values())
        with acting_as(carol):
            assert crate_labels() == ["globex-crate"]
            with for_organization(world.orgs["acme"]):
                assert crate_labels() == ["acme-crate"]
                assert get_current_org() is not None and current_org.slug == "acme"
            assert crate_labels() == ["globex-crate"]
        assert crate_labels() == []


def test_unscoped_sees_everything_and_logs_its_reason(
    app: karaffe.App, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        app.app_context(),
        caplog.at_level(logging.INFO, logger="karaffe.tenancy"),
        unscoped("monthly invoice run"),
    ):
        assert crate_labels() == ["acme-crate", "globex-crate"]
        assert available_organization_ids() == set(world.orgs.values())
    (record,) = [r for r in caplog.records if r.name == "karaffe.tenancy"]
    assert record.getMessage().startswith("unscoped access: monthly invoice run (at ")
    assert "test_tenancy.py:" in record.getMessage()


@pytest.mark.parametrize("reason", ["", "   "])
def test_unscoped_needs_a_reason(reason: str) -> None:
    with pytest.raises(ValueError, match="unscoped\\(\\) needs a reason"), unscoped(reason):
        pass


def test_acting_as_needs_a_flushed_user() -> None:
    with pytest.raises(ValueError, match="flush it first"), acting_as(User(email="x@y.z")):
        pass


def test_a_scope_without_user_or_organization_sees_nothing(app: karaffe.App, world: World) -> None:
    from karaffe._tenancy.context import Scope, _push

    with app.app_context(), _push(Scope(org_ids=None, label="nobody")):
        assert crate_labels() == []


def test_for_organization_needs_a_flushed_organization() -> None:
    with pytest.raises(ValueError, match="flush it first"), for_organization(Organization()):
        pass


def test_a_new_membership_widens_the_scope_at_once(app: karaffe.App, world: World) -> None:
    with app.app_context():
        carol = db.session.get(User, world.users["carol"])
        assert carol is not None
        with acting_as(carol):
            assert crate_labels() == ["globex-crate"]
            with unscoped("test: invite carol to acme"):
                db.session.add(Membership(organization_id=world.orgs["acme"], user=carol))
                db.session.flush()
            assert crate_labels() == ["acme-crate", "globex-crate"]


#: A statement built once and run in every scope, as apps keep their hot ones.
CRATE_LABELS = sa.select(Crate.label).order_by(Crate.label)


def test_a_statement_built_once_is_scoped_by_each_scope_it_runs_in(
    app: karaffe.App, world: World
) -> None:
    """The scoped form of a statement is remembered per scope: running the
    same statement object for another user, another organization, nobody,
    or after a membership changed never answers with an earlier scope's rows."""

    def labels() -> list[str]:
        return list(db.session.scalars(CRATE_LABELS))

    with app.app_context():
        bob = db.session.get(User, world.users["bob"])
        carol = db.session.get(User, world.users["carol"])
        assert bob is not None and carol is not None
        for _ in range(2):
            with acting_as(bob):
                assert labels() == ["acme-crate", "globex-crate"]
            with acting_as(carol):
                assert labels() == ["globex-crate"]
                with for_organization(world.orgs["acme"]):
                    assert labels() == ["acme-crate"]
            assert labels() == []
        with acting_as(carol):
            with unscoped("test: invite carol to acme"):
                db.session.add(Membership(organization_id=world.orgs["acme"], user=carol))
                db.session.flush()
            assert labels() == ["acme-crate", "globex-crate"]
            with unscoped("test: carol leaves globex"):
                db.session.execute(
                    sa.delete(Membership).where(
                        Membership.user_id == carol.id,
                        Membership.organization_id == world.orgs["globex"],
                    )
                )
                db.session.flush()
        with acting_as(carol):
            assert labels() == ["acme-crate"]


def test_a_new_organization_can_be_filled_in_the_same_flush(app: karaffe.App, world: World) -> None:
    with app.app_context():
        carol = db.session.get(User, world.users["carol"])
        assert carol is not None
        with acting_as(carol):
            org = create_organization("Initech", "initech", carol)
            db.session.add(Crate(label="initech-crate", organization=org))
            db.session.commit()
            assert crate_labels() == ["globex-crate", "initech-crate"]


# -- writes ------------------------------------------------------------------------------


def test_cross_org_insert_is_refused(app: karaffe.App, world: World) -> None:
    with app.app_context(), for_organization(world.orgs["globex"]):
        db.session.add(Crate(label="intruder", organization_id=world.orgs["acme"]))
        with pytest.raises(CrossOrgWrite) as caught:
            db.session.flush()
        assert caught.value.status == 403
        assert str(caught.value) == (
            f"refused: Crate in organization {world.orgs['acme']} is outside "
            f"organization {world.orgs['globex']}"
        )


def test_moving_a_row_into_another_org_is_refused(app: karaffe.App, world: World) -> None:
    with app.app_context(), for_organization(world.orgs["globex"]):
        crate = db.session.get(Crate, world.crates["globex"])
        assert crate is not None
        crate.organization_id = world.orgs["acme"]
        with pytest.raises(CrossOrgWrite):
            db.session.flush()


def test_moving_a_row_between_own_orgs_is_allowed(app: karaffe.App, world: World) -> None:
    with app.app_context():
        bob = db.session.get(User, world.users["bob"])
        assert bob is not None
        with acting_as(bob):
            crate = db.session.get(Crate, world.crates["globex"])
            assert crate is not None
            crate.organization_id = world.orgs["acme"]
            db.session.flush()


def test_orm_bulk_insert_into_another_org_is_refused(app: karaffe.App, world: World) -> None:
    with app.app_context(), for_organization(world.orgs["globex"]):
        rows = [{"label": "ok", "organization_id": world.orgs["globex"]},
                {"label": "bad", "organization_id": world.orgs["acme"]}]  # fmt: skip
        with pytest.raises(CrossOrgWrite, match="writing into organization"):
            db.session.execute(sa.insert(Crate), rows)
        with pytest.raises(CrossOrgWrite, match="INSERT without organization_id"):
            db.session.execute(sa.insert(Crate).values(label="none"))


def test_orm_bulk_update_into_another_org_is_refused(app: karaffe.App, world: World) -> None:
    with app.app_context(), for_organization(world.orgs["globex"]):
        with pytest.raises(CrossOrgWrite):
            db.session.execute(sa.update(Crate).values(organization_id=world.orgs["acme"]))
        result = db.session.execute(sa.update(Crate).values(label="relabelled"))
        assert t.cast(t.Any, result).rowcount == 1


def test_api_cross_org_write_is_a_403_problem(client: FlaskClient, world: World) -> None:
    rv = client.post(
        "/api/orgs/globex/crates",
        json={"label": "intruder", "organization_id": world.orgs["acme"]},
        headers=bearer(world, "carol"),
    )
    assert rv.status_code == 403
    assert rv.json == {
        "type": "urn:karaffe:problem:cross-organization-write",
        "title": "Write outside your organizations refused",
        "status": 403,
        "detail": f"refused: Crate in organization {world.orgs['acme']} is outside "
        f"request of user {world.users['carol']}",
        "errors": [],
    }


def test_api_move_into_another_org_is_a_403(client: FlaskClient, world: World) -> None:
    rv = client.patch(
        f"/api/crates/{world.crates['globex']}",
        json={"organization_id": world.orgs["acme"]},
        headers=bearer(world, "carol"),
    )
    assert rv.status_code == 403
    assert rv.json is not None and rv.json["type"].endswith("cross-organization-write")


def test_html_cross_org_write_is_a_403_page(
    client: FlaskClient, world: World, login_as: t.Any
) -> None:
    login_as(world.users["carol"], client)
    rv = client.post("/orgs/globex/crates", data={"org_id": str(world.orgs["acme"])})
    assert rv.status_code == 403
    assert rv.mimetype == "text/html"
    assert "sneaky" not in rv.text


def test_api_create_in_own_org_works(client: FlaskClient, world: World) -> None:
    rv = client.post(
        "/api/orgs/globex/crates", json={"label": "fresh"}, headers=bearer(world, "carol")
    )
    assert rv.status_code == 201
    assert client.get("/api/crates", headers=bearer(world, "carol")).json == [
        "fresh",
        "globex-crate",
    ]


# -- requests: current_org, get_or_404, roles ----------------------------------------------


def test_request_sees_the_logged_in_users_rows(client: FlaskClient, world: World) -> None:
    assert client.get("/api/crates", headers=bearer(world, "alice")).json == ["acme-crate"]
    assert client.get("/api/crates", headers=bearer(world, "bob")).json == [
        "acme-crate",
        "globex-crate",
    ]
    assert client.get("/api/crates").json == []


def test_logging_in_and_out_rescopes_the_request_at_once(app: karaffe.App, world: World) -> None:
    with app.test_request_context("/"):
        assert crate_labels() == []
        alice = db.session.get(User, world.users["alice"])
        login_user(alice)  # type: ignore[arg-type]
        assert crate_labels() == ["acme-crate"]
        logout_user()
        assert crate_labels() == []


def test_current_org_of_the_url(client: FlaskClient, world: World) -> None:
    rv = client.get("/api/orgs/acme/crates", headers=bearer(world, "alice"))
    assert rv.json == {"org": "acme", "crates": ["acme-crate"]}


def test_foreign_org_is_a_404_exactly_like_a_missing_one(client: FlaskClient, world: World) -> None:
    foreign = client.get("/api/orgs/globex/crates", headers=bearer(world, "alice"))
    missing = client.get("/api/orgs/nope/crates", headers=bearer(world, "alice"))
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json == missing.json == NOT_FOUND
    assert foreign.headers == missing.headers


def test_html_foreign_org_is_a_404_page_like_a_missing_one(
    client: FlaskClient, world: World, login_as: t.Any
) -> None:
    login_as(world.users["alice"], client)
    foreign = client.get("/orgs/globex/crates")
    missing = client.get("/orgs/nope/crates")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.data == missing.data
    assert client.get("/orgs/acme/crates").text == "acme-crate"


def test_foreign_object_is_a_404_exactly_like_a_missing_one(
    client: FlaskClient, world: World
) -> None:
    foreign = client.get(f"/api/crates/{world.crates['globex']}", headers=bearer(world, "alice"))
    missing = client.get("/api/crates/999999", headers=bearer(world, "alice"))
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json == missing.json == NOT_FOUND
    own = client.get(f"/api/crates/{world.crates['acme']}", headers=bearer(world, "alice"))
    assert own.json == {"label": "acme-crate", "bottles": ["acme-bottle"]}


def test_get_or_404_ignores_objects_already_in_the_session(app: karaffe.App, world: World) -> None:
    with app.app_context():
        with unscoped("test: load every crate"):
            assert db.session.get(Crate, world.crates["acme"]) is not None
        with (
            for_organization(world.orgs["globex"]),
            app.test_request_context("/api/x"),
            pytest.raises(karaffe.NotFound),
        ):
            get_or_404(Crate, world.crates["acme"])


def test_role_too_low_is_a_403_problem(client: FlaskClient, world: World) -> None:
    rv = client.post("/api/orgs/acme/danger", headers=bearer(world, "bob"))
    assert rv.status_code == 403
    assert rv.json == {
        "type": "urn:karaffe:problem:forbidden",
        "title": "Forbidden",
        "status": 403,
        "detail": "This needs the admin role in organization acme.",
        "errors": [],
    }


def test_role_high_enough_passes(client: FlaskClient, world: World) -> None:
    rv = client.post("/api/orgs/acme/danger", headers=bearer(world, "alice"))
    assert rv.status_code == 200
    assert rv.json == {"role": "owner"}


def test_role_check_on_a_foreign_org_is_a_404(client: FlaskClient, world: World) -> None:
    rv = client.post("/api/orgs/globex/danger", headers=bearer(world, "alice"))
    assert rv.status_code == 404
    assert rv.json == NOT_FOUND


def test_role_check_without_a_user_is_a_401(client: FlaskClient, world: World) -> None:
    rv = client.post("/api/orgs/acme/danger")
    assert rv.status_code == 401
    assert rv.json is not None and rv.json["type"] == "urn:karaffe:problem:unauthorized"


def test_html_role_too_low_is_a_403_page(
    client: FlaskClient, world: World, login_as: t.Any
) -> None:
    login_as(world.users["bob"], client)
    rv = client.post("/orgs/acme/danger")
    assert rv.status_code == 403
    assert rv.mimetype == "text/html"
    login_as(world.users["alice"], client)
    assert client.post("/orgs/acme/danger").text == "done"


def test_url_for_fills_in_the_current_org(app: karaffe.App, world: World) -> None:
    @app.get("/api/orgs/<org_slug>/link")
    def link() -> karaffe.ApiResult:
        from flask import url_for

        return karaffe.ApiResult({"url": url_for("org_crates")})

    rv = app.test_client().get("/api/orgs/acme/link", headers=bearer(world, "alice"))
    assert rv.json == {"url": "/api/orgs/acme/crates"}


def test_a_cursor_is_bound_to_the_organization_of_the_url(app: karaffe.App, world: World) -> None:
    """Tenancy takes ``org_slug`` out of the view's arguments; the cursor is
    bound to the organization all the same."""

    @app.get("/api/orgs/<org_slug>/numbers")
    def numbers() -> karaffe.ApiResult:
        return karaffe.ApiResult(
            page=karaffe.paginate(list(range(10)), key=lambda n: (n,), limit=3)
        )

    client = app.test_client()
    first = client.get("/api/orgs/acme/numbers", headers=bearer(world, "bob"))
    link = first.headers["Link"].split(">")[0].lstrip("<")
    cursor = link.split("cursor=")[1]
    other = client.get(f"/api/orgs/globex/numbers?cursor={cursor}", headers=bearer(world, "bob"))
    assert other.status_code == 400
    assert other.json is not None
    assert other.json["type"] == "urn:karaffe:problem:invalid-cursor"
    own = client.get(f"/api/orgs/acme/numbers?cursor={cursor}", headers=bearer(world, "bob"))
    assert own.json == [3, 4, 5]


def test_unknown_role_is_refused_at_decoration() -> None:
    with pytest.raises(ValueError, match="unknown role 'boss'"):
        require_role("boss")


# -- raw SQL ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "run",
    [
        lambda: db.session.execute(sa.text("SELECT label FROM karaffe_test_crate")),
        lambda: db.session.execute(sa.select(Crate.__table__)),
        lambda: db.session.execute(
            sa.text('UPDATE "karaffe_test_crate" SET label = :l'), {"l": "x"}
        ),
        lambda: db.session.connection().exec_driver_sql("DELETE FROM karaffe_test_bottle"),
        lambda: db.session.execute(sa.text("select * from membership")),
        lambda: db.session.execute(sa.text("SELECT slug FROM organization")),
        lambda: db.session.scalars(
            sa.select(Crate).from_statement(sa.text("SELECT * FROM karaffe_test_crate"))
        ).all(),
        lambda: db.session.execute(
            sa.select(sa.literal_column("label")).select_from(sa.text("karaffe_test_crate"))
        ),
    ],
    ids=[
        "text-select",
        "core-select",
        "text-update",
        "driver-sql",
        "membership",
        "organization",
        "orm-from-statement",
        "core-with-text-from",
    ],
)
def test_raw_sql_on_org_owned_tables_raises_in_tests(
    app: karaffe.App, world: World, run: t.Callable[[], t.Any]
) -> None:
    with (
        app.app_context(),
        for_organization(world.orgs["acme"]),
        pytest.raises(UnscopedQueryError, match="bypassing the ORM"),
    ):
        run()


def test_raw_sql_inside_unscoped_is_allowed(app: karaffe.App, world: World) -> None:
    with app.app_context(), unscoped("test: raw count"):
        count = db.session.execute(sa.text("SELECT count(*) FROM karaffe_test_crate")).scalar()
        assert count == 2


def test_raw_sql_on_other_tables_is_allowed(app: karaffe.App, world: World) -> None:
    with app.app_context():
        db.session.execute(sa.text("SELECT count(*) FROM karaffe_test_note")).scalar()
        db.session.execute(sa.insert(Note).values(text="crate karaffe_test_crate_x"))
        db.session.execute(sa.text("SELECT count(*) FROM user_account")).scalar()
        # A Core statement is judged by its tables, not by its labels.
        note = t.cast(sa.Table, Note.__table__)
        db.session.execute(sa.select(note.c.text.label("karaffe_test_crate"))).all()


@pytest.mark.parametrize(
    "config",
    [{"TENANCY_RAW_SQL": "warn"}, {"TESTING": False, "DEBUG": False, "SECRET_KEY": "x" * 32}],
    ids=["warn", "production"],
)
def test_raw_sql_is_logged_when_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, config: dict[str, t.Any]
) -> None:
    app = build_app(f"sqlite:///{tmp_path}/w.sqlite", config)
    with app.app_context():
        db.create_all()
        with caplog.at_level(logging.WARNING, logger="karaffe.tenancy"):
            db.session.execute(sa.text("SELECT * FROM karaffe_test_crate")).all()
        db.session.remove()
    dispose(app)
    (record,) = [r for r in caplog.records if r.name == "karaffe.tenancy"]
    assert "org-owned table 'karaffe_test_crate'" in record.getMessage()


def test_raw_sql_policy_off_says_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = build_app(f"sqlite:///{tmp_path}/o.sqlite", {"TENANCY_RAW_SQL": "off"})
    with app.app_context():
        db.create_all()
        db.session.execute(sa.text("SELECT * FROM karaffe_test_crate")).all()
        db.session.remove()
    dispose(app)
    assert not [r for r in caplog.records if r.name == "karaffe.tenancy"]


def test_unknown_raw_sql_policy_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(karaffe.ConfigError, match="TENANCY_RAW_SQL"):
        build_app(f"sqlite:///{tmp_path}/x.sqlite", {"TENANCY_RAW_SQL": "sometimes"})


# -- membership changes ---------------------------------------------------------------


@pytest.fixture
def changes(app: karaffe.App) -> Iterator[list[tuple[int, int, str | None, str | None]]]:
    """(user, organization, old role, new role) of each membership_changed."""
    seen: list[tuple[int, int, str | None, str | None]] = []

    def record(sender: karaffe.App, **kw: t.Any) -> None:
        seen.append((kw["user_id"], kw["organization_id"], kw["old_role"], kw["new_role"]))

    with membership_changed.connected_to(record, sender=app):
        yield seen


def membership(world: World, user: str, org: str) -> Membership:
    return db.session.execute(
        sa.select(Membership).where(
            Membership.user_id == world.users[user], Membership.organization_id == world.orgs[org]
        )
    ).scalar_one()


def test_removing_a_member_is_announced_once_committed(
    app: karaffe.App, world: World, changes: list[t.Any]
) -> None:
    with app.app_context(), for_organization(world.orgs["acme"]):
        remove_member(membership(world, "bob", "acme"))
        db.session.flush()
        assert changes == []
        db.session.commit()
    assert changes == [(world.users["bob"], world.orgs["acme"], "member", None)]


def test_a_role_change_is_announced_with_the_role_before(
    app: karaffe.App, world: World, changes: list[t.Any]
) -> None:
    with app.app_context(), for_organization(world.orgs["acme"]):
        change_role(membership(world, "bob", "acme"), "admin")
        db.session.commit()
        # Set while expired by the commit: the role before is still known.
        change_role(membership(world, "bob", "acme"), "member")
        db.session.commit()
    bob, acme = world.users["bob"], world.orgs["acme"]
    assert changes == [(bob, acme, "member", "admin"), (bob, acme, "admin", "member")]


def test_an_unknown_role_is_refused(app: karaffe.App, world: World) -> None:
    with (
        app.app_context(),
        for_organization(world.orgs["acme"]),
        pytest.raises(ValueError, match="unknown role 'boss'"),
    ):
        change_role(membership(world, "bob", "acme"), "boss")


def test_adding_a_member_is_announced(app: karaffe.App, world: World, changes: list[t.Any]) -> None:
    with app.app_context(), for_organization(world.orgs["globex"]):
        alice = db.session.get(User, world.users["alice"])
        org = db.session.get(Organization, world.orgs["globex"])
        assert alice is not None and org is not None
        add_member(org, alice, "admin")
        db.session.commit()
    assert changes == [(world.users["alice"], world.orgs["globex"], None, "admin")]


def test_a_change_rolled_back_is_not_announced(
    app: karaffe.App, world: World, changes: list[t.Any]
) -> None:
    with app.app_context(), for_organization(world.orgs["acme"]):
        remove_member(membership(world, "bob", "acme"))
        db.session.flush()
        db.session.rollback()
    assert changes == []


def test_a_change_whose_flush_failed_is_not_announced_later(
    app: karaffe.App, world: World, changes: list[t.Any]
) -> None:
    with app.app_context(), for_organization(world.orgs["acme"]):
        remove_member(membership(world, "bob", "acme"))
        db.session.add(Membership(user_id=world.users["alice"], organization_id=world.orgs["acme"]))
        with pytest.raises(sa.exc.IntegrityError):
            db.session.flush()
        db.session.rollback()
        db.session.add(Crate(label="unrelated", organization_id=world.orgs["acme"]))
        db.session.commit()
    assert changes == []


def test_deleting_an_organization_announces_every_membership_it_ends(
    app: karaffe.App, world: World, changes: list[t.Any]
) -> None:
    with app.app_context(), for_organization(world.orgs["globex"]):
        org = db.session.get(Organization, world.orgs["globex"])
        db.session.delete(org)
        db.session.commit()
    globex = world.orgs["globex"]
    assert sorted(changes) == sorted(
        [
            (world.users["bob"], globex, "owner", None),
            (world.users["carol"], globex, "member", None),
        ]
    )
