"""Live pages with :mod:`karaffe.events`: who may follow which channel, what
is published when, and the script tag that follows.

Channels: ``project:<id>`` (its issue list), ``issue:<id>`` (its page) and
``user:<id>`` (one user's own: their unread count, see :mod:`tracker.activity`).
A member of an organization may follow the channels of its projects and
issues, and everyone their own user channel and no other; a page renders a
token for exactly the channels it shows, with the cursor of its render time,
so nothing published in between is missed, and renews it at
``/api/v1/live/token`` before it expires.

Events carry ids, never HTML: a page that hears ``issue.updated`` fetches the
fragment it shows (a list row, the issue's head and facts, a comment, another
entry of its activity), which the server renders for that viewer with the
templates of the page itself (``templates/issues/_*.html``). See docs/tracker.md, "Live pages".

Every page of a logged-in viewer follows one stream (one script,
``static/live.js``, on top of ``karaffe-events.js``): its own channels, if
any, and the viewer's ``user:<id>``. The pages work without JavaScript; with
it, ``static/live.js`` swaps the fragments in place, keeps the presence line
("Bob is also viewing") and the header's unread count.
"""

from __future__ import annotations

import typing as t

import sqlalchemy as sa
from flask import current_app, request, url_for
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup

from karaffe.auth import User, get_user
from karaffe.db import db
from karaffe.events import channel_token, cursor, publish, stream_url
from karaffe.events.settings import EventsSettings
from karaffe.htmljson import dumps

if t.TYPE_CHECKING:
    from .models import Activity, Comment, Issue, Label


def enabled() -> bool:
    return "karaffe.events" in current_app.extensions


def project_channel(project_id: int) -> str:
    return f"project:{project_id}"


def issue_channel(issue_id: int) -> str:
    return f"issue:{issue_id}"


def _issue_data(issue: Issue) -> dict[str, t.Any]:
    return {"id": issue.id, "project_id": issue.project_id, "status": issue.status}


def issue_changed(kind: str, issue: Issue, **extra: t.Any) -> None:
    """Announce ``issue.<kind>`` on its project's and its own channel (sent
    after commit by karaffe.events; never for a rolled-back change).
    ``extra`` goes into the data (``comment_id`` of a close with comment)."""
    if not enabled():
        return
    data = {**_issue_data(issue), **extra}
    publish(project_channel(issue.project_id), f"issue.{kind}", data)
    publish(issue_channel(issue.id), f"issue.{kind}", data)


def comment_added(comment: Comment, issue: Issue) -> None:
    """``comment.created`` on the issue's page, and ``issue.updated`` on its
    project's (its list row shows the comment count and the update time)."""
    if enabled():
        data = {"id": comment.id, "issue_id": issue.id}
        publish(issue_channel(issue.id), "comment.created", data)
        publish(project_channel(issue.project_id), "issue.updated", _issue_data(issue))


def _list_args() -> dict[str, list[str]]:
    """The issue list's filters from the page's query string (not its page)."""
    return {k: request.args.getlist(k) for k in request.args if k not in ("cursor", "limit", "id")}


def _page_config(live: dict[str, int]) -> dict[str, t.Any]:
    """The URLs a live page fetches, and how often it says it is there."""
    if "project" in live:
        args: dict[str, t.Any] = _list_args()
        return {"row": url_for("projects.row", project_id=live["project"], **args)}
    issue_id = live["issue"]
    csrf = generate_csrf() if current_app.config.get("WTF_CSRF_ENABLED", True) else None
    return {
        "parts": url_for("issues.parts", issue_id=issue_id),
        "comment": url_for("issues.comment_fragment", issue_id=issue_id),
        "entry": url_for("issues.entry_fragment", issue_id=issue_id),
        "presence": url_for("issues.presence", issue_id=issue_id),
        "heartbeat": EventsSettings.of().events_presence_ttl / 3,
        "csrf": csrf,
    }


def comment_changed(kind: str, comment: Comment, issue: Issue) -> None:
    """Announce ``comment.updated`` or ``comment.deleted`` on its issue's
    channel, and ``issue.updated`` on its project's: the list row shows the
    comment count, and whether the issue still matches a search."""
    if enabled():
        publish(
            issue_channel(comment.issue_id),
            f"comment.{kind}",
            {"id": comment.id, "issue_id": comment.issue_id},
        )
        publish(project_channel(issue.project_id), "issue.updated", _issue_data(issue))


def activity_added(activity: Activity) -> None:
    """``activity.created`` on the issue's channel: its page appends the
    timeline entry (``"Bob closed the issue"``)."""
    if enabled():
        publish(
            issue_channel(activity.issue_id),
            "activity.created",
            {"id": activity.id, "issue_id": activity.issue_id},
        )


def member_renamed(user: User) -> None:
    """``member.updated`` (``{"id"}``) on the channel of every project of
    ``user``'s organizations: list rows show assignees by name."""
    if not enabled():
        return
    from karaffe.tenancy import Membership, unscoped

    from .models import Project

    with unscoped("the projects of the organizations a renamed user belongs to"):
        projects = list(
            db.session.scalars(
                sa.select(Project.id)
                .join(Membership, Membership.organization_id == Project.organization_id)
                .where(Membership.user_id == user.id)
                .order_by(Project.id)
            )
        )
    for project_id in projects:
        publish(project_channel(project_id), "member.updated", {"id": user.id})


def label_changed(kind: str, label: Label) -> None:
    """Announce ``label.updated`` or ``label.deleted`` on the channel of
    every project of its organization: list rows show labels by name (and
    colour, from ``/labels.css``). A page refetches the rows that show it."""
    if not enabled():
        return
    from .models import Project

    projects = db.session.scalars(
        sa.select(Project.id).where(Project.organization_id == label.organization_id)
    )
    for project_id in projects:
        publish(project_channel(project_id), f"label.{kind}", {"id": label.id})


def script(live: dict[str, int] | None) -> Markup:
    """The tags that keep a page live, one stream for all it follows: the
    viewer's own channel ``user:<id>`` (the header's unread count, on every
    page) and the page's channels, ``live`` being ``{"project": 3}`` or
    ``{"issue": 7}``, already checked to be the viewer's (or ``None``)."""
    user = get_user()
    if user is None or not enabled():
        return Markup("")
    channels = [f"{kind}:{ident}" for kind, ident in sorted((live or {}).items())]
    channels.append(f"user:{user.id}")
    config = {
        "url": stream_url(),
        "channels": channels,
        "token": channel_token(user, channels),
        "cursor": cursor(channels),
        "renew": url_for("api_v1.live_token", channel=channels),
        "unread": url_for("api_v1.unread_notifications"),
        "page": _page_config(live) if live else {},
    }
    client = url_for("karaffe_events.static", filename="karaffe-events.js")
    page = url_for("static", filename="live.js")
    return Markup(
        '<script id="live-config" type="application/json">{}</script>\n'
        '<script src="{}"></script>\n<script src="{}"></script>'
    ).format(Markup(dumps(config)), client, page)
