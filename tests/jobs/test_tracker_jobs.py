"""The tracker's jobs: the daily digest (acting as each user), purging
expired credentials and invitations, trimming live-update history."""

from __future__ import annotations

import datetime as dt
import json
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa
from _jobtools import Clock, at
from click.testing import CliRunner
from flask import Flask
from tracker import jobs as tracker_jobs
from tracker.models import Activity, Comment, Invitation, Issue, Notification, Project

import karaffe
from karaffe.auth import ApiToken, User, UserSession, utcnow
from karaffe.cli import ScriptGroup
from karaffe.db import db as database
from karaffe.events import Events
from karaffe.events.protocol import ZERO
from karaffe.jobs import JobRunner, MemoryBackend, Scheduler, get_job
from karaffe.tenancy import Membership, create_organization, unscoped

TICK = at("2026-01-06 07:00")
BEFORE = TICK - dt.timedelta(hours=30)
DURING = TICK - dt.timedelta(hours=3)


@pytest.fixture
def karaffe_config(tmp_path: Path) -> dict[str, t.Any]:
    return {
        "TESTING": True,
        "SECRET_KEY": "tracker-jobs-secret",
        "DATABASE_URL": f"sqlite:///{tmp_path}/tracker.sqlite",
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
        "MAIL_BACKEND": "locmem",
    }


@pytest.fixture
def outbox(app: Flask) -> list[t.Any]:
    """The tracker's mail: Flask-Mailman's locmem backend keeps it in this list."""
    state = app.extensions["mailman"]
    state.outbox = []
    return t.cast(list[t.Any], state.outbox)


def mails(outbox: list[t.Any]) -> dict[str, t.Any]:
    """The messages sent (Flask-Mailman's ``EmailMessage``), by recipient."""
    found = {}
    for sent in outbox:
        (to,) = sent.to
        found[to] = sent
    return found


@pytest.fixture
def activity(app: Flask, db: t.Any) -> dict[str, t.Any]:
    """Acme (alice, bob) and Globex (carol); erin belongs nowhere. Issues,
    comments and the notifications of their activity, before and during the
    digest's day, read and unread."""
    ids: dict[str, t.Any] = {}
    with app.app_context(), unscoped("test fixture: activity in two organizations"):
        people = {
            n: User(name=n.title(), email=f"{n}@example.com")
            for n in ("alice", "bob", "carol", "erin")
        }
        database.session.add_all(people.values())
        acme = create_organization("Acme", "acme", people["alice"])
        globex = create_organization("Globex", "globex", people["carol"])
        database.session.flush()
        database.session.add(Membership(organization=acme, user=people["bob"], role="member"))
        website = Project(organization_id=acme.id, name="Website")
        vault = Project(organization_id=globex.id, name="Vault")
        database.session.add_all([website, vault])
        database.session.flush()

        def issue(
            project: Project,
            title: str,
            created: dt.datetime,
            updated: dt.datetime,
            status: str = "open",
        ) -> Issue:
            row = Issue(organization_id=project.organization_id, project_id=project.id, title=title,
                        status=status, created_at=created, updated_at=updated)  # fmt: skip
            database.session.add(row)
            return row

        old = issue(website, "Old and quiet", BEFORE, BEFORE)
        closed = issue(website, "Fixed the footer", BEFORE, DURING, status="closed")
        fresh = issue(website, "Logo is blurry", DURING, DURING)
        secret = issue(vault, "Globex secret plan", DURING, DURING)
        database.session.flush()
        database.session.add_all(
            [
                Comment(organization_id=acme.id, issue_id=old.id, author_id=people["bob"].id,
                        body="Still happening\nmore text", created_at=DURING),
                Comment(organization_id=acme.id, issue_id=old.id, author_id=people["alice"].id,
                        body="alice's own remark", created_at=DURING),
                Comment(organization_id=acme.id, issue_id=old.id, author_id=people["bob"].id,
                        body="too old for the digest", created_at=BEFORE),
            ]
        )  # fmt: skip
        database.session.flush()

        def notify(
            issue: Issue,
            actor: User | None,
            kind: str,
            detail: dict[str, t.Any],
            user: User,
            reason: str,
            when: dt.datetime,
            read: bool = False,
        ) -> None:
            row = Activity(
                organization_id=issue.organization_id,
                issue_id=issue.id,
                actor_id=actor.id if actor else None,
                kind=kind,
                detail=detail,
                created_at=when,
            )
            database.session.add(row)
            database.session.flush()
            database.session.add(
                Notification(
                    organization_id=issue.organization_id,
                    user_id=user.id,
                    activity_id=row.id,
                    issue_id=issue.id,
                    reason=reason,
                    created_at=when,
                    read_at=when if read else None,
                )
            )

        alice, bob, carol = people["alice"], people["bob"], people["carol"]
        notify(
            old,
            bob,
            "comment",
            {"comment_id": 1, "mentions": [alice.id]},
            alice,
            "mentioned",
            DURING,
        )
        notify(old, bob, "comment", {"comment_id": 3}, alice, "watching", BEFORE)
        notify(closed, bob, "status", {"from": "open", "to": "closed"}, alice, "watching", DURING)
        notify(
            closed,
            bob,
            "title",
            {"from": "Footer", "to": "Fixed the footer"},
            alice,
            "watching",
            DURING,
            read=True,
        )
        notify(
            fresh,
            alice,
            "assignee",
            {"from": None, "to": {"id": bob.id, "name": "Bob"}},
            bob,
            "assigned",
            DURING,
        )
        notify(secret, None, "created", {}, carol, "watching", DURING)
        database.session.commit()
        ids.update({n: u.id for n, u in people.items()})
        ids.update(closed=closed.id, fresh=fresh.id, secret=secret.id, old=old.id)
        ids.update(
            {
                f"{name}_key": i.key
                for name, i in [("closed", closed), ("fresh", fresh), ("old", old)]
            }
        )
    return ids


def run_scheduled(app: Flask, name: str, now: dt.datetime) -> str:
    """Run one tracker job as the scheduler would at ``now``; its status."""
    declared = get_job(getattr(tracker_jobs, name))
    assert declared is not None
    with Scheduler(app, jobs=[declared], backend=MemoryBackend(), clock=Clock(now)) as scheduler:
        (run,) = scheduler.run_pending()
        record = run.result(timeout=30)
    assert record.tick == TICK
    return record.status


def test_the_digest_mails_each_user_their_unread_notifications_of_the_day(
    app: Flask, activity: dict[str, t.Any], outbox: list[t.Any]
) -> None:
    assert run_scheduled(app, "send_daily_digest", TICK + dt.timedelta(seconds=5)) == "succeeded"
    sent = mails(outbox)
    assert sorted(sent) == ["alice@example.com", "bob@example.com", "carol@example.com"]
    alice = sent["alice@example.com"]
    assert alice.subject == "tracker: 2 unread notifications"
    assert alice.from_email == "tracker@localhost"
    assert alice.body == (
        "Hello Alice,\n\n2 unread notifications until 2026-01-06 07:00 UTC:\n\n"
        f"[Website] {activity['old_key']} Old and quiet\n  Bob commented (mentioned you)\n\n"
        f"[Website] {activity['closed_key']} Fixed the footer\n  Bob closed the issue (watching)\n\n"
        "Read them in your inbox: the digest leaves out what you have read.\n"
    )
    assert "Globex" not in alice.body and "secret" not in alice.body
    bob = sent["bob@example.com"]
    assert bob.subject == "tracker: 1 unread notification"
    assert (
        f"{activity['fresh_key']} Logo is blurry\n  Alice assigned Bob (assigned to you)"
        in bob.body
    )
    carol = sent["carol@example.com"].body
    assert "Globex secret plan\n  someone opened the issue (watching)" in carol
    assert "Website" not in carol


def test_the_digest_leaves_out_notifications_of_an_organization_left(
    app: Flask, activity: dict[str, t.Any], outbox: list[t.Any]
) -> None:
    with app.app_context(), unscoped("test: bob leaves Acme"):
        database.session.execute(sa.delete(Membership).where(Membership.user_id == activity["bob"]))
        database.session.commit()
    assert run_scheduled(app, "send_daily_digest", TICK + dt.timedelta(seconds=5)) == "succeeded"
    assert sorted(mails(outbox)) == ["alice@example.com", "carol@example.com"]


def test_the_digest_runs_acting_as_each_user(app: Flask) -> None:
    declared = get_job(tracker_jobs.send_daily_digest)
    assert declared is not None
    assert declared.context.describe() == "once per user, acting as them"
    assert (declared.cron, declared.missed.value) == ("0 7 * * *", "catch_up")


def test_a_quiet_day_sends_no_digest(
    app: Flask, activity: dict[str, t.Any], outbox: list[t.Any]
) -> None:
    quiet = TICK + dt.timedelta(days=2)
    with Scheduler(app, jobs=[get_job(tracker_jobs.send_daily_digest)], backend=MemoryBackend(),  # type: ignore[list-item]
                   clock=Clock(quiet)) as scheduler:  # fmt: skip
        (run,) = scheduler.run_pending()
        assert run.result(timeout=30).status == "succeeded"
    assert mails(outbox) == {}


def test_purging_deletes_tokens_expired_or_revoked_long_enough_ago(
    app: Flask, activity: dict[str, t.Any]
) -> None:
    now = utcnow()
    with app.app_context():
        for name, expires, revoked in [
            ("expired-long-ago", now - dt.timedelta(days=8), None),
            ("revoked-long-ago", None, now - dt.timedelta(days=30)),
            ("expired-yesterday", now - dt.timedelta(days=1), None),
            ("valid", now + dt.timedelta(days=30), None),
            ("forever", None, None),
        ]:
            database.session.add(ApiToken(user_id=activity["alice"], name=name, token_hash=name,
                                          prefix=name[:8], expires_at=expires, revoked_at=revoked))  # fmt: skip
        database.session.commit()
    result = JobRunner(app).run(get_job(tracker_jobs.purge_expired_tokens))  # type: ignore[arg-type]
    assert result.ok and result.value == 2
    with app.app_context():
        left = sorted(database.session.scalars(sa.select(ApiToken.name)))
    assert left == ["expired-yesterday", "forever", "valid"]


def test_purging_deletes_sessions_ended_or_idle_long_enough_ago(
    app: Flask, activity: dict[str, t.Any]
) -> None:
    now = utcnow()
    with app.app_context():
        for name, seen, ended in [
            ("ended-long-ago", now - dt.timedelta(days=9), now - dt.timedelta(days=8)),
            ("idle-long-ago", now - dt.timedelta(days=38), None),
            ("ended-yesterday", now - dt.timedelta(days=1), now - dt.timedelta(days=1)),
            ("idle-for-a-while", now - dt.timedelta(days=31), None),
            ("in-use", now, None),
        ]:
            database.session.add(UserSession(user_id=activity["alice"], token_hash=name,
                                             user_agent=name, last_seen_at=seen, ended_at=ended))  # fmt: skip
        database.session.commit()
    result = JobRunner(app).run(get_job(tracker_jobs.purge_ended_sessions))  # type: ignore[arg-type]
    assert result.ok and result.value == 2
    with app.app_context():
        left = sorted(database.session.scalars(sa.select(UserSession.user_agent)))
    assert left == ["ended-yesterday", "idle-for-a-while", "in-use"]


def test_purging_deletes_unaccepted_invitations_of_every_organization(
    app: Flask, activity: dict[str, t.Any]
) -> None:
    now = utcnow()
    with app.app_context(), unscoped("test: invitations in both organizations"):
        orgs = {
            o.slug: o.id for o in database.session.scalars(sa.select(karaffe.tenancy.Organization))
        }
        database.session.add_all(
            [
                Invitation(organization_id=orgs["acme"], expires_at=now - dt.timedelta(days=9)),
                Invitation(organization_id=orgs["globex"], expires_at=now - dt.timedelta(days=9)),
                Invitation(organization_id=orgs["acme"], expires_at=now - dt.timedelta(days=9),
                           accepted_at=now - dt.timedelta(days=12), accepted_by_id=activity["bob"]),
                Invitation(organization_id=orgs["acme"], expires_at=now - dt.timedelta(days=1)),
                Invitation(organization_id=orgs["globex"], expires_at=now + dt.timedelta(days=6)),
            ]
        )  # fmt: skip
        database.session.commit()
    declared = get_job(tracker_jobs.purge_expired_invitations)
    assert declared is not None
    assert (
        declared.context.describe() == "unscoped: purge expired invitations of every organization"
    )
    result = JobRunner(app).run(declared)
    assert result.ok and result.value == 2
    with app.app_context(), unscoped("test: count what is left"):
        assert database.session.scalar(sa.select(sa.func.count()).select_from(Invitation)) == 3


@pytest.mark.redis
def test_trimming_drops_old_events_but_the_newest_and_tells_the_relay_what_is_gone(
    redis_url: str, unique: str
) -> None:
    app = karaffe.App("tracker_trim_test")
    Events(app)
    app.configure(
        {"TESTING": True, "SECRET_KEY": "s", "REDIS_URL": redis_url, "EVENTS_REDIS_PREFIX": f"{unique}:",
         "EVENT_HISTORY_DAYS": 0},
        environ={},
    )  # fmt: skip
    broker = app.extensions["karaffe.events"].broker
    published = broker.publish_many(
        [("project:1", "issue.created", b"{}"), ("project:1", "issue.updated", b"{}"),
         ("project:2", "issue.created", b"{}")]
    )  # fmt: skip
    # Everything published is strictly older than the cutoff once the clock
    # has moved past the millisecond of the last event.
    last_ms = int(published[-1].id.split("-")[0])
    while utcnow().timestamp() * 1000 <= last_ms + 1:
        pass
    result = JobRunner(app).run(get_job(tracker_jobs.trim_event_history))  # type: ignore[arg-type]
    # Each channel keeps its newest event: the relay reads its position there.
    assert result.ok and result.value == 1
    history = broker.history("project:1", ZERO, 10)
    assert [entry[0] for entry in history.entries] == [published[1].id]
    assert str(history.max_deleted) == published[0].id
    other = broker.history("project:2", ZERO, 10)
    assert [entry[0] for entry in other.entries] == [published[2].id]
    assert str(other.max_deleted) == "0-0"
    broker.close()


def test_trimming_without_a_redis_broker_does_nothing(app: Flask) -> None:
    result = JobRunner(app).run(get_job(tracker_jobs.trim_event_history))  # type: ignore[arg-type]
    assert result.ok and result.value == 0


def test_karaffe_jobs_lists_the_tracker_jobs(
    tmp_path: Path, karaffe_config: dict[str, t.Any]
) -> None:
    config = tmp_path / "tracker.json"
    config.write_text(json.dumps(karaffe_config))
    # The karaffe script's group, as karaffe.cli.main builds it: the command
    # is the one the app built with --config added, so the environment alone
    # need not be enough to start the tracker (it has no SECRET_KEY).
    group = ScriptGroup()
    result = CliRunner().invoke(group, ["--app", "tracker", "jobs", "--config", str(config)])
    assert result.exit_code == 0, result.output
    names = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert names == [
        "tracker.jobs.deliver_mail",
        "tracker.jobs.purge_ended_sessions",
        "tracker.jobs.purge_expired_invitations",
        "tracker.jobs.purge_expired_tokens",
        "tracker.jobs.send_daily_digest",
        "tracker.jobs.trim_event_history",
    ]
