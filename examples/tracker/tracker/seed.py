"""Demo and load-test data, inserted in bulk.

Users, organizations, projects and labels are few and go through the ORM.
Issues (and their labels and a few comments) are many: they are inserted
with executemany in batches of :data:`BATCH` rows, their ids taken first
(see :func:`_insert_issues`), inside one transaction. ``docs/tracker.md``
says how long 100,000 issues take.

Every demo account has the password :data:`DEMO_PASSWORD`, hashed once.
"""

from __future__ import annotations

import datetime as dt
import random
import typing as t
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from karaffe.auth import User, hash_password, utcnow
from karaffe.db import db
from karaffe.tenancy import Membership, Organization, unscoped

from . import search
from .labels import DEFAULT_LABELS
from .models import Activity, Comment, Issue, Label, Project, issue_labels
from .services import unique_slug

__all__ = ["BATCH", "DEMO_LOGIN", "DEMO_PASSWORD", "SeedReport", "has_data", "seed"]

#: Rows per INSERT batch.
BATCH = 5_000
#: The account printed by ``make demo``.
DEMO_LOGIN = "alice@example.com"
#: The password of every seeded account.
DEMO_PASSWORD = "tracker-demo"

_PEOPLE = [
    "Alice Martin", "Bob Okafor", "Chloé Dubois", "Dmitri Ivanov", "Emma Schmidt",
    "Farid Haddad", "Grace Liu", "Hiro Tanaka", "Inés García", "Jonas Berg",
    "Kavya Rao", "Liam O'Brien", "Maya Cohen", "Nils Eriksson", "Olga Petrova",
]  # fmt: skip
_ORGS = ["Acme Robotics", "Globex", "Initech", "Umbrella Labs", "Hooli", "Stark Industries"]
_PROJECTS = ["Website", "Mobile app", "Billing", "Data platform", "Design system", "Infra"]
_VERBS = ["Fix", "Add", "Remove", "Improve", "Document", "Refactor", "Speed up", "Test", "Review"]
_THINGS = [
    "login form", "CSV export", "search results", "invoice PDF", "dark mode", "password reset",
    "API pagination", "image upload", "onboarding emails", "cache invalidation", "audit log",
    "webhook retries", "time zone handling", "empty states", "keyboard shortcuts", "rate limits",
]  # fmt: skip
_WHERE = [
    "on Safari", "for admins", "on small screens", "after logout", "in the nightly job",
    "with long names", "for new users", "under load", "in the settings page", "",
]  # fmt: skip
_COMMENTS = [
    "I can reproduce this on main.",
    "Looks good to me, merging.",
    "Could we add a test for this?",
    "This is blocked on the API change.",
    "Fixed in the latest deploy, please check.",
]


@dataclass
class SeedReport:
    """What :func:`seed` created."""

    users: list[str] = field(default_factory=list)
    organizations: list[str] = field(default_factory=list)
    projects: int = 0
    issues: int = 0
    comments: int = 0


def has_data() -> bool:
    """Whether the database holds any organization already."""
    with unscoped("checking whether demo data exists"):
        return db.session.execute(sa.select(Organization.id).limit(1)).first() is not None


def _email(name: str, n: int) -> str:
    first = name.split()[0].lower().replace("é", "e").replace("è", "e")
    return f"{first}@example.com" if n < len(_PEOPLE) else f"{first}{n}@example.com"


def seed(
    *,
    orgs: int = 3,
    issues: int = 3_000,
    users_per_org: int = 5,
    projects_per_org: int = 3,
    seed_value: int = 38,
    progress: Callable[[int], None] | None = None,
) -> SeedReport:
    """Create ``orgs`` organizations with members, projects and labels, and
    ``issues`` issues spread over their projects; commit. ``progress(n)`` is
    called after each batch of ``n`` issues."""
    rnd = random.Random(seed_value)
    report = SeedReport()
    password_hash = hash_password(DEMO_PASSWORD)
    now = utcnow()
    with unscoped("seeding demo data"):
        people = _users(orgs * users_per_org, password_hash)
        report.users = [u.email for u in people]
        org_rows: list[Organization] = []
        projects: list[Project] = []
        labels: dict[int, list[Label]] = {}
        members: dict[int, list[int]] = {}
        for i in range(orgs):
            name = _ORGS[i % len(_ORGS)] + ("" if i < len(_ORGS) else f" {i // len(_ORGS) + 1}")
            org = Organization(name=name, slug=unique_slug(name))
            db.session.add(org)
            db.session.flush()
            org_rows.append(org)
            # Alice is in every organization so the demo login sees them all.
            team = [
                people[0],
                *people[1 + i * (users_per_org - 1) : 1 + (i + 1) * (users_per_org - 1)],
            ]
            team = [u for u in dict.fromkeys(team)][:users_per_org]
            for n, user in enumerate(team):
                role = "owner" if n == 0 else ("admin" if n == 1 else "member")
                db.session.add(Membership(organization_id=org.id, user_id=user.id, role=role))
            members[org.id] = [u.id for u in team]
            labels[org.id] = []
            for label_name, color in DEFAULT_LABELS:
                label = Label(organization_id=org.id, name=label_name, color=color)
                db.session.add(label)
                labels[org.id].append(label)
            for p in range(projects_per_org):
                project = Project(
                    organization_id=org.id,
                    name=_PROJECTS[p % len(_PROJECTS)],
                    description=f"Everything about the {_PROJECTS[p % len(_PROJECTS)].lower()}.",
                )
                db.session.add(project)
                projects.append(project)
        db.session.flush()
        report.organizations = [o.slug for o in org_rows]
        report.projects = len(projects)
        label_ids = {org_id: [label.id for label in ls] for org_id, ls in labels.items()}
        start = now - dt.timedelta(days=365)
        step = dt.timedelta(days=365) / max(issues, 1)
        table = t.cast(sa.Table, Issue.__table__)
        activity_table = t.cast(sa.Table, Activity.__table__)
        numbers = {project.id: 0 for project in projects}
        done = 0
        indexed = search.defer_indexing()
        while done < issues:
            count = min(BATCH, issues - done)
            rows: list[dict[str, t.Any]] = []
            for k in range(done, done + count):
                project = projects[rnd.randrange(len(projects))]
                org_id = project.organization_id
                created = start + step * k
                numbers[project.id] += 1
                rows.append(
                    {
                        "organization_id": org_id,
                        "project_id": project.id,
                        "number": numbers[project.id],
                        "key": f"{project.key}-{numbers[project.id]}",
                        "title": _title(rnd),
                        "description": "Steps to reproduce, what was expected and what happened.",
                        "status": "open" if rnd.random() < 0.35 else "closed",
                        "assignee_id": rnd.choice([None, *members[org_id]]),
                        "author_id": rnd.choice(members[org_id]),
                        "created_at": created,
                        "updated_at": min(now, created + dt.timedelta(hours=rnd.randrange(72))),
                    }
                )
            ids = _insert_issues(table, rows)
            links = []
            for issue_id, row in zip(ids, rows, strict=True):
                for label_id in rnd.sample(label_ids[row["organization_id"]], rnd.randrange(0, 3)):
                    links.append({"issue_id": issue_id, "label_id": label_id})
            if links:
                db.session.execute(issue_labels.insert(), links)
            comments = [
                {
                    "organization_id": row["organization_id"],
                    "issue_id": issue_id,
                    "author_id": rnd.choice(members[row["organization_id"]]),
                    "body": rnd.choice(_COMMENTS),
                    "created_at": row["updated_at"],
                }
                for issue_id, row in zip(ids, rows, strict=True)
                if rnd.random() < 0.1
            ]
            if comments:
                db.session.execute(t.cast(sa.Table, Comment.__table__).insert(), comments)
                report.comments += len(comments)
            db.session.execute(activity_table.insert(), list(_history(ids, rows)))
            done += count
            if progress is not None:
                progress(count)
        search.index_deferred(indexed)
        report.issues = done
        # Issue numbers go on from the last one; the database's triggers
        # counted the open and closed issues, and indexed them for search.
        for project in projects:
            project.last_issue_number = numbers[project.id]
        db.session.commit()
    return report


def _history(ids: list[int], rows: list[dict[str, t.Any]]) -> t.Iterator[dict[str, t.Any]]:
    """The timeline a seeded issue would have had: opened by its author and,
    when closed, closed when it was last updated (by its assignee, or its
    author)."""
    for issue_id, row in zip(ids, rows, strict=True):
        common = {"organization_id": row["organization_id"], "issue_id": issue_id}
        yield {
            **common,
            "actor_id": row["author_id"],
            "kind": "created",
            "detail": {},
            "created_at": row["created_at"],
        }
        if row["status"] == "closed":
            yield {
                **common,
                "actor_id": row["assignee_id"] or row["author_id"],
                "kind": "status",
                "detail": {"from": "open", "to": "closed"},
                "created_at": row["updated_at"],
            }


def _insert_issues(table: sa.Table, rows: list[dict[str, t.Any]]) -> list[int]:
    """Insert ``rows`` into the issue table; their ids, in order.

    The ids are taken first, as the database would give them (from the
    column's sequence on PostgreSQL; after the largest ever used on SQLite,
    whose write lock the seed's transaction holds), so that the rows go in
    with a plain executemany: asking for the ids back in order with
    RETURNING makes SQLite insert one row per statement."""
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        sequence = sa.func.pg_get_serial_sequence(table.name, "id")
        ids = list(
            db.session.execute(
                sa.select(sa.func.nextval(sequence)).select_from(
                    sa.func.generate_series(1, len(rows))
                )
            ).scalars()
        )
    elif dialect == "sqlite":
        last = db.session.execute(sa.select(sa.func.max(table.c.id))).scalar_one() or 0
        if db.session.execute(
            sa.text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")
        ).first():
            used = db.session.execute(
                sa.text("SELECT seq FROM sqlite_sequence WHERE name = :table"),
                {"table": table.name},
            ).scalar_one_or_none()
            last = max(last, used or 0)
        ids = list(range(last + 1, last + 1 + len(rows)))
    else:
        insert = table.insert().returning(table.c.id, sort_by_parameter_order=True)
        return list(db.session.execute(insert, rows).scalars())
    for issue_id, row in zip(ids, rows, strict=True):
        row["id"] = issue_id
    db.session.execute(table.insert(), rows)
    return ids


def _users(count: int, password_hash: str) -> list[User]:
    """``count`` demo users (reusing those that exist already)."""
    wanted = [
        (_PEOPLE[n % len(_PEOPLE)] + ("" if n < len(_PEOPLE) else f" {n}"), n) for n in range(count)
    ]
    emails = [_email(name, n) for name, n in wanted]
    existing = {
        u.email: u
        for u in db.session.execute(sa.select(User).where(User.email.in_(emails))).scalars()
    }
    users = []
    for (name, _), email in zip(wanted, emails, strict=True):
        user = existing.get(email)
        if user is None:
            # Demo addresses are verified: nobody can follow a link mailed to them.
            user = User(
                name=name, email=email, password_hash=password_hash, email_verified_at=utcnow()
            )
            db.session.add(user)
        users.append(user)
    db.session.flush()
    return users


def _title(rnd: random.Random) -> str:
    where = rnd.choice(_WHERE)
    return f"{rnd.choice(_VERBS)} {rnd.choice(_THINGS)}{' ' + where if where else ''}"
