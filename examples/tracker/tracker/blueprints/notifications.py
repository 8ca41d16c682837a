"""The inbox: the viewer's notifications in all their organizations (see
:mod:`tracker.activity`), mark read one or all; watch and unwatch an issue.
The header's unread count is live on every page: see :mod:`tracker.live`."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import NotFound

from karaffe.auth import login_required
from karaffe.db import db
from karaffe.tenancy import current_org

from .. import activity, services
from ..models import Issue
from ..web import html_page, in_current_org, viewer

blueprint = Blueprint("notifications", __name__)

PAGE_SIZE = 30


@blueprint.get("/notifications")
@login_required
def inbox() -> ResponseReturnValue:
    unread_only = request.args.get("show") == "unread"
    user = viewer()
    page = html_page(activity.inbox(user, unread_only), activity.INBOX_ORDER, PAGE_SIZE)
    return render_template(
        "notifications/inbox.html",
        page=page,
        unread_only=unread_only,
        describe=activity.describe,
        reasons=activity.REASONS,
    )


@blueprint.post("/notifications/read")
@login_required
def mark_all_read() -> ResponseReturnValue:
    marked = activity.mark_read(viewer())
    db.session.commit()
    flash(f"{marked} notification{'s' if marked != 1 else ''} marked read.", "success")
    return redirect(url_for("notifications.inbox"), 303)


@blueprint.post("/notifications/<id:notification_id>/read")
@login_required
def mark_read(notification_id: int) -> ResponseReturnValue:
    """Mark one read; with ``open=1``, go on to its issue (the inbox's links)."""
    user = viewer()
    notification = activity.get_notification(user, notification_id)
    if notification is None:
        raise NotFound("No such notification.")
    target = url_for(
        "issues.show", org_slug=notification.organization.slug, issue_id=notification.issue_id
    )
    activity.mark_read(user, notification_id)
    db.session.commit()
    if request.form.get("open"):
        return redirect(target, 303)
    back = request.form.get("next", "")
    if not back.startswith("/") or back.startswith("//"):
        back = url_for("notifications.inbox")  # never another site
    return redirect(back, 303)


@blueprint.post("/o/<org_slug>/issues/<id:issue_id>/watch")
@login_required
def watch(issue_id: int) -> ResponseReturnValue:
    issue = services.get_visible(Issue, issue_id)
    in_current_org(issue.organization_id)
    on = request.form.get("watching") == "1"
    activity.set_watching(issue, viewer(), on)
    back = url_for("issues.show", org_slug=current_org.slug, issue_id=issue_id)
    db.session.commit()
    flash("You are watching this issue." if on else "You no longer watch this issue.", "success")
    return redirect(back, 303)
