"""The tenancy filter, as a property: for random organizations, users,
memberships and objects, every query shape returns exactly the rows of the
organizations of the user the code acts for, on SQLite and PostgreSQL."""

from __future__ import annotations

import typing as t
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from datalayer import BACKENDS, Bottle, Crate, build_app, database_url, dispose
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import aliased, joinedload, selectinload, subqueryload

import karaffe
from karaffe.auth import User
from karaffe.db import db
from karaffe.tenancy import Membership, Organization, acting_as, for_organization, unscoped


@pytest.fixture(scope="module", params=BACKENDS)
def app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[karaffe.App]:
    url = database_url(request, tmp_path_factory.mktemp("properties"))
    app = build_app(url)
    with app.app_context():
        db.create_all()
    yield app
    with app.app_context():
        db.session.remove()
        db.drop_all()
    dispose(app)


class World(t.NamedTuple):
    orgs: int
    users: int
    members: frozenset[tuple[int, int]]  # (user, org)
    crates: list[tuple[int, int]]  # (org, number of bottles)
    actor: int


@st.composite
def worlds(draw: st.DrawFn) -> World:
    orgs = draw(st.integers(1, 4))
    users = draw(st.integers(1, 4))
    members = draw(
        st.frozensets(st.tuples(st.integers(0, users - 1), st.integers(0, orgs - 1)), max_size=10)
    )
    crates = draw(st.lists(st.tuples(st.integers(0, orgs - 1), st.integers(0, 3)), max_size=8))
    actor = draw(st.integers(0, users - 1))
    return World(orgs, users, members, crates, actor)


def build(world: World) -> tuple[list[int], list[int]]:
    """Store ``world``; returns the ids of its organizations and users."""
    with unscoped("property test: reset and seed"):
        for model in (Bottle, Crate, Membership, Organization, User):
            db.session.execute(sa.delete(model))
        orgs = [Organization(name=f"Org {n}", slug=f"org-{n}") for n in range(world.orgs)]
        users = [User(email=f"user{n}@example.org") for n in range(world.users)]
        db.session.add_all([*orgs, *users])
        for user, org in world.members:
            db.session.add(Membership(user=users[user], organization=orgs[org]))
        for n, (org, bottles) in enumerate(world.crates):
            crate = Crate(label=f"crate {n} of org {org}", organization=orgs[org])
            db.session.add(crate)
            for b in range(bottles):
                db.session.add(Bottle(label=f"bottle {b} of crate {n}", crate=crate,
                                      organization=orgs[org]))  # fmt: skip
        db.session.commit()
        return [o.id for o in orgs], [u.id for u in users]


def check_every_query_shape(visible_orgs: set[int], org_ids: list[int], world: World) -> None:
    """Assert that each query shape shows exactly the rows of the organizations
    numbered ``visible_orgs`` (indexes into ``org_ids``)."""
    crates = {
        f"crate {n} of org {org}" for n, (org, _) in enumerate(world.crates) if org in visible_orgs
    }
    bottles = {f"bottle {b} of crate {n}" for n, (org, count) in enumerate(world.crates)
               if org in visible_orgs for b in range(count)}  # fmt: skip
    session = db.session

    def labels(rows: t.Iterable[t.Any]) -> set[str]:
        return {row.label for row in rows}

    # select, where, order by, limit
    assert labels(session.scalars(sa.select(Crate))) == crates
    assert labels(session.scalars(sa.select(Crate).order_by(Crate.id).limit(100))) == crates
    assert labels(session.scalars(sa.select(Crate).where(Crate.label.like("crate%")))) == crates
    # columns only, and counts through the ORM
    assert set(session.scalars(sa.select(Crate.label))) == crates
    assert session.scalar(sa.select(sa.func.count()).select_from(Crate)) == len(crates)
    assert session.scalar(sa.select(sa.func.count(Bottle.id))) == len(bottles)
    # joins, aliased joins, subqueries
    joined = session.scalars(sa.select(Bottle).join(Bottle.crate))
    assert labels(joined) == bottles
    other = aliased(Crate)
    assert labels(session.scalars(sa.select(Bottle).join(other, Bottle.crate))) == bottles
    with_bottles = session.scalars(sa.select(Crate).where(Crate.id.in_(sa.select(Bottle.crate_id))))
    expected_with_bottles = {f"crate {n} of org {org}" for n, (org, count) in
                             enumerate(world.crates) if org in visible_orgs and count}  # fmt: skip
    assert labels(with_bottles) == expected_with_bottles
    # eager loads of every kind, and lazy loads
    for loader in (selectinload, joinedload, subqueryload):
        session.expunge_all()
        loaded = session.scalars(sa.select(Crate).options(loader(Crate.bottles))).unique()
        assert {b.label for c in loaded for b in c.bottles} == bottles
    session.expunge_all()
    assert {b.label for c in session.scalars(sa.select(Crate)) for b in c.bottles} == bottles
    # get by primary key, on a fresh identity map
    session.expunge_all()
    with unscoped("property test: every id"):
        all_ids = list(session.scalars(sa.select(Crate.id)))
    session.expunge_all()
    assert labels(c for c in (session.get(Crate, i) for i in all_ids) if c is not None) == crates
    # lazy loads of objects loaded outside the scope stay scoped
    session.expunge_all()
    with unscoped("property test: load everything"):
        everything = list(session.scalars(sa.select(Crate)))
    assert {b.label for c in everything for b in c.bottles} == bottles
    session.expunge_all()
    # organizations and memberships
    visible_ids = {org_ids[n] for n in visible_orgs}
    assert set(session.scalars(sa.select(Organization.id))) == visible_ids
    members = {org_ids[org] for _, org in world.members if org in visible_orgs}
    assert set(session.scalars(sa.select(Membership.organization_id))) == members
    # bulk UPDATE and DELETE through the ORM touch only visible rows
    updated = session.execute(
        sa.update(Crate).values(label=Crate.label + "!"),
        execution_options={"synchronize_session": False},
    )
    assert t.cast(t.Any, updated).rowcount == len(crates)
    deleted = session.execute(sa.delete(Bottle), execution_options={"synchronize_session": False})
    assert t.cast(t.Any, deleted).rowcount == len(bottles)
    session.rollback()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(world=worlds())
def test_every_query_shape_returns_exactly_the_callers_rows(app: karaffe.App, world: World) -> None:
    with app.app_context():
        org_ids, user_ids = build(world)
        visible = {org for user, org in world.members if user == world.actor}
        actor = db.session.get(User, user_ids[world.actor])
        assert actor is not None
        with acting_as(actor):
            check_every_query_shape(visible, org_ids, world)
        chosen = world.actor % world.orgs
        with for_organization(org_ids[chosen]):
            check_every_query_shape({chosen}, org_ids, world)
        check_every_query_shape(set(), org_ids, world)
        db.session.remove()
