"""The leak sweep: call every route of an app as a member of one
organization on another organization's objects, and fail on any response
that reveals the other's data or any change to it.

Used through the ``leak_sweep`` fixture of :mod:`karaffe.testing`::

    def seed(org, owner):
        project = Project(organization=org, title=f"Secret plans of {org.slug}")
        db.session.add(project)
        db.session.flush()
        return Seeded(secrets=[project.title], url_values={"project_id": project.id})

    def test_no_route_leaks_another_orgs_data(leak_sweep):
        leak_sweep(seed)

What it does: two organizations (A and B) with an owner each; ``seed`` runs
once for each (inside ``unscoped``) and returns the strings that identify
that organization's data and the values of URL variables pointing at its
objects. Then, as A's owner (a bearer token on API routes, the session
cookie on HTML routes, CSRF checks off for the sweep), every rule and method
is called with B's values, and with A's organization but B's objects. A
response whose body or headers contain one of B's strings is a leak; so is
any change to B's rows. As a control, GET routes are also called with A's
own values: at least one must show A's data, or the sweep proved nothing.
"""

from __future__ import annotations

import secrets as _secrets
import typing as t
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import Rule
from werkzeug.test import TestResponse

from .auth import User, create_api_token, session_values_for
from .config import CoreSettings
from .db import Model, db
from .tenancy import Organization, OrgOwned, TenancySettings, create_organization, unscoped

__all__ = ["LeakFound", "LeakReport", "Probe", "Seeded", "sweep_for_leaks"]

#: How much of a response body is searched (streams are cut there).
MAX_BODY = 1 << 20


@dataclass
class Seeded:
    """What a seed function made in one organization.

    :param secrets: strings only this organization's data contains (titles,
        names; not small numbers, which appear everywhere by chance).
    :param url_values: values for URL variables that point at this
        organization's objects, such as ``{"project_id": 3}``.
    """

    secrets: list[str]
    url_values: dict[str, t.Any] = field(default_factory=dict)


SeedFunction = Callable[[Organization, User], "Seeded | Iterable[str]"]


@dataclass
class Probe:
    """One request of the sweep and what it revealed."""

    method: str
    url: str
    status: int
    kind: str
    leaked: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        found = f" revealed {self.leaked}" if self.leaked else ""
        return f"{self.method} {self.url} -> {self.status} ({self.kind}){found}"


class LeakFound(AssertionError):
    """The sweep found a response revealing, or a change to, the other
    organization's data."""


@dataclass
class LeakReport:
    """Everything the sweep did."""

    probes: list[Probe] = field(default_factory=list)
    #: Rules the sweep could not call: a URL variable it has no value for.
    unswept: list[str] = field(default_factory=list)
    #: Tables whose rows of the victim organization changed during the sweep.
    changed_tables: list[str] = field(default_factory=list)
    #: Control requests (A on A's own data) that showed A's data.
    controls_with_own_data: int = 0
    #: The slugs of the caller's organization and of the victim's.
    slugs: tuple[str, str] = ("", "")

    @property
    def server_errors(self) -> list[Probe]:
        """Requests answered with a 5xx: not leaks, but worth a look."""
        return [p for p in self.probes if p.status >= 500]

    @property
    def leaks(self) -> list[Probe]:
        return [p for p in self.probes if p.leaked and p.kind != "control"]

    def assert_clean(self, *, require_control: bool = True) -> None:
        """Raise :class:`LeakFound` on a leak, a change to the victim's rows,
        or (with ``require_control``) when no control request showed the
        caller's own data."""
        problems = [str(p) for p in self.leaks]
        problems += [f"rows of the other organization changed in {n}" for n in self.changed_tables]
        if require_control and self.controls_with_own_data == 0:
            problems.append(
                "no GET route showed the caller's own seeded data: check the seed's secrets "
                "and url_values, or the sweep proves nothing"
            )
        if problems:
            raise LeakFound("tenant isolation broken:\n  " + "\n  ".join(problems))


def _as_seeded(value: Seeded | Iterable[str]) -> Seeded:
    if isinstance(value, Seeded):
        return value
    return Seeded(secrets=list(value))


def _snapshot(org_id: int) -> dict[str, list[str]]:
    tables = sorted(
        {
            table
            for mapper in Model.registry.mappers
            if issubclass(mapper.class_, OrgOwned)
            for table in mapper.tables
        },
        key=lambda table: table.name,
    )
    with unscoped("leak sweep: snapshot of the victim organization's rows"):
        return {
            table.name: sorted(
                repr(tuple(row))
                for row in db.session.execute(
                    sa.select(table).where(table.c.organization_id == org_id)
                )
            )
            for table in tables
            if "organization_id" in table.c
        }


def _read(response: TestResponse) -> str:
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_encoded():
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_BODY:
                break
    finally:
        response.close()
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    return headers + "\n" + b"".join(chunks).decode("utf-8", "replace")


def _is_api_path(app: Flask, path: str) -> bool:
    prefixes = CoreSettings.of(app).api_prefixes
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


def _variants(
    rule: Rule,
    org_args: list[str],
    mine: tuple[str, Seeded],
    theirs: tuple[str, Seeded],
    extra: Mapping[str, t.Any],
) -> list[tuple[str, dict[str, t.Any]]] | None:
    """(kind, URL values) to call ``rule`` with; ``None`` if it cannot be."""
    args = set(rule.arguments) - set(rule.defaults or {})
    org_arg = next((a for a in org_args if a in args), None)
    object_args = args - {org_arg} if org_arg else args

    def values(slug: str, object_org: Seeded) -> dict[str, t.Any] | None:
        out: dict[str, t.Any] = {}
        if org_arg:
            out[org_arg] = slug
        for arg in object_args:
            if arg in object_org.url_values:
                out[arg] = object_org.url_values[arg]
            elif arg in extra:
                out[arg] = extra[arg]
            else:
                return None
        return out

    attack = values(theirs[0], theirs[1])
    if attack is None:
        return None
    found: list[tuple[str, dict[str, t.Any]]] = [("their org", attack)]
    if org_arg and object_args:
        mixed = values(mine[0], theirs[1])
        if mixed is not None:
            found.append(("my org, their objects", mixed))
    control = values(mine[0], mine[1])
    if control is not None:
        found.append(("control", control))
    return found


def sweep_for_leaks(
    app: Flask,
    seed: SeedFunction,
    *,
    json_body: Mapping[str, t.Any] | None = None,
    form_body: Mapping[str, str] | None = None,
    url_values: Mapping[str, t.Any] | None = None,
    skip_endpoints: Iterable[str] = ("static",),
    check: bool = True,
) -> LeakReport:
    """Run the sweep on ``app`` (its schema must exist) and return the report;
    with ``check`` (the default), raise :class:`LeakFound` on a leak.

    :param seed: ``seed(org, owner)`` creates an organization's objects and
        returns a :class:`Seeded` (or just the secret strings).
    :param json_body: body of POST/PUT/PATCH calls on API routes (``{}``).
    :param form_body: body of POST/PUT/PATCH calls on HTML routes (empty).
    :param url_values: values for URL variables that are not object ids
        (a page name...), the same for both organizations.
    :param skip_endpoints: endpoints not to call.
    """
    with app.app_context():
        with unscoped("leak sweep: seeding two organizations"):
            run = _secrets.token_hex(3)
            users = [
                User(email=f"leak-sweep-{n}-{run}@example.invalid", name=f"Leak sweep {n}")
                for n in "ab"
            ]
            orgs = [
                create_organization(f"Leak sweep {n}", f"leak-sweep-{n}-{run}", user)
                for n, user in zip("ab", users, strict=True)
            ]
            db.session.flush()
            seeded = [_as_seeded(seed(org, user)) for org, user in zip(orgs, users, strict=True)]
            token = create_api_token(users[0], "leak sweep")[1]
            db.session.commit()
            session_values = session_values_for(users[0])
            mine, theirs = (orgs[0].slug, seeded[0]), (orgs[1].slug, seeded[1])
            victim_id = orgs[1].id
        before = _snapshot(victim_id)
        org_args = TenancySettings.of(app).tenancy_org_view_args
        secrets_theirs = [s for s in seeded[1].secrets if s]
        secrets_mine = [s for s in seeded[0].secrets if s]

    report = LeakReport(slugs=(mine[0], theirs[0]))
    client: FlaskClient = app.test_client()
    with client.session_transaction() as session:
        session.update(session_values)
    saved = {key: app.config.get(key) for key in ("WTF_CSRF_ENABLED", "PROPAGATE_EXCEPTIONS")}
    # Forms are posted without CSRF tokens, and a view crashing on the
    # sweep's dummy input is a 500 in the report, not the end of the sweep.
    app.config.update(WTF_CSRF_ENABLED=False, PROPAGATE_EXCEPTIONS=False)
    skip = set(skip_endpoints)
    try:
        for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
            if rule.endpoint in skip:
                continue
            variants = _variants(rule, org_args, mine, theirs, url_values or {})
            if variants is None:
                report.unswept.append(f"{rule.rule} ({rule.endpoint})")
                continue
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                for kind, values in variants:
                    if kind == "control" and method != "GET":
                        continue
                    built = rule.build(values, append_unknown=False)
                    if built is None:
                        continue
                    path = built[1]
                    api = _is_api_path(app, path)
                    options: dict[str, t.Any] = {"method": method, "buffered": False}
                    if api:
                        options["headers"] = {"Authorization": f"Bearer {token}"}
                    if method in ("POST", "PUT", "PATCH"):
                        if api:
                            options["json"] = dict(json_body or {})
                        else:
                            options["data"] = dict(form_body or {})
                    response = client.open(path, **options)
                    status = response.status_code
                    text = _read(response)
                    secrets = secrets_mine if kind == "control" else secrets_theirs
                    probe = Probe(method, path, status, kind, [s for s in secrets if s in text])
                    report.probes.append(probe)
                    if kind == "control" and probe.leaked:
                        report.controls_with_own_data += 1
    finally:
        app.config.update(saved)
    with app.app_context():
        after = _snapshot(victim_id)
    report.changed_tables = [name for name in before if before[name] != after.get(name)]
    if check:
        report.assert_clean()
    return report
