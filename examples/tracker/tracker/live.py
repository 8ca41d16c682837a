"""Live pages with :mod:`karaffe.events`: who may follow which channel, what
is published when, and the script tag that follows.

Channels: ``project:<id>`` (its issue list), ``issue:<id>`` (its page) and
``user:<id>`` (one user's own: their unread count, see :mod:`tracker.activity`).
A member of an organization may follow the channels of its projects and
issues, and everyone their own user channel and no other; a page renders a
token for exactly the channels it shows, with the cursor of its render time,
so nothing published in between is missed.

The pages work without JavaScript; with it, a banner offers to reload when
something changed (``static/live.js``).
"""

from __future__ import annotations

import typing as t

from flask import current_app, url_for
from markupsafe import Markup

from karaffe.auth import get_user
from karaffe.events import channel_token, cursor, publish, stream_url
from karaffe.htmljson import dumps

if t.TYPE_CHECKING:
    from .models import Comment, Issue


def enabled() -> bool:
    return "karaffe.events" in current_app.extensions


def _issue_data(issue: Issue) -> dict[str, t.Any]:
    return {"id": issue.id, "project_id": issue.project_id, "status": issue.status}


def issue_changed(kind: str, issue: Issue, **extra: t.Any) -> None:
    """Announce ``issue.<kind>`` on its project's and its own channel (sent
    after commit by karaffe.events; never for a rolled-back change).
    ``extra`` goes into the data (``comment_id`` of a close with comment)."""
    if not enabled():
        return
    data = {**_issue_data(issue), **extra}
    publish(f"project:{issue.project_id}", f"issue.{kind}", data)
    publish(f"issue:{issue.id}", f"issue.{kind}", data)


def comment_added(comment: Comment, issue: Issue) -> None:
    if enabled():
        publish(f"issue:{issue.id}", "comment.created", {"id": comment.id, "issue_id": issue.id})


def comment_changed(kind: str, comment: Comment) -> None:
    """Announce ``comment.updated`` or ``comment.deleted`` on its issue's channel."""
    if enabled():
        publish(
            f"issue:{comment.issue_id}",
            f"comment.{kind}",
            {"id": comment.id, "issue_id": comment.issue_id},
        )


def script(live: dict[str, int] | None) -> Markup:
    """The tags that keep a page live; ``live`` is ``{"project": 3}`` or
    ``{"issue": 7}``, already checked to be the viewer's."""
    user = get_user()
    if not live or user is None or not enabled():
        return Markup("")
    channels = [f"{kind}:{ident}" for kind, ident in sorted(live.items())]
    config = {
        "url": stream_url(),
        "channels": channels,
        "token": channel_token(user, channels),
        "cursor": cursor(channels),
    }
    client = url_for("karaffe_events.static", filename="karaffe-events.js")
    page = url_for("static", filename="live.js")
    return Markup(
        '<script id="live-config" type="application/json">{}</script>\n'
        '<script src="{}"></script>\n<script src="{}"></script>'
    ).format(Markup(dumps(config)), client, page)


def inbox_script() -> Markup:
    """The tags that keep the header's unread count live: the viewer's own
    channel ``user:<id>``, renewed from ``/notifications/token``."""
    user = get_user()
    if user is None or not enabled():
        return Markup("")
    channels = [f"user:{user.id}"]
    config = {
        "url": stream_url(),
        "channels": channels,
        "token": channel_token(user, channels),
        "cursor": cursor(channels),
        "renew": url_for("notifications.token"),
    }
    page = url_for("static", filename="inbox.js")
    return Markup(
        '<script id="inbox-config" type="application/json">{}</script>\n'
        '<script src="{}"></script>\n<script src="{}"></script>'
    ).format(
        Markup(dumps(config)), url_for("karaffe_events.static", filename="karaffe-events.js"), page
    )
