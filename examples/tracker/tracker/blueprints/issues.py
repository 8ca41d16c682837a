"""Issues: create, view, edit, close and reopen, delete; comments: add
(optionally closing or reopening the issue), edit, delete.

The Markdown fields have a Preview button: with JavaScript it asks
``/api/v1/markdown`` and shows the result in place; without, it submits the
form with ``preview=1`` and the page comes back with the preview, nothing
saved."""

from __future__ import annotations

import typing as t

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import Forbidden

from karaffe.auth import login_required
from karaffe.db import db
from karaffe.events.presence import gone as presence_gone
from karaffe.events.presence import here as presence_here
from karaffe.ids import MAX_ID
from karaffe.tenancy import current_org, current_role

from .. import activity, live, mentions, services
from ..forms import FieldError, Form
from ..models import Comment, Issue, Project
from ..schemas import CommentIn, CommentPatch, IssueIn, IssueOut, IssuePatch
from ..web import in_current_org, viewer

blueprint = Blueprint("issues", __name__, url_prefix="/o/<org_slug>")

# Every write reads what its answer needs (ids, names) before the commit and
# no model after it: see tracker.blueprints.api_v1.

#: Fields of the issue form; ``label_ids`` is a group of checkboxes.
_MULTI = {"label_ids"}


def _issue(issue_id: int) -> Issue:
    issue = services.get_visible(Issue, issue_id)
    in_current_org(issue.organization_id)
    return issue


def _preview(form: Form, name: str) -> None:
    """Fill ``form.preview`` when the Preview button (not Save) submitted it."""
    if request.form.get("preview"):
        form.preview = mentions.render(str(form.data.get(name) or ""), current_org.id)


def _form_page(
    form: Form, project: Project, issue: Issue | None, status: int = 200
) -> ResponseReturnValue:
    members = services.members_of(project.organization_id)
    labels = services.labels_of(project.organization_id)
    page = render_template(
        "issues/form.html",
        form=form,
        org=current_org,
        project=project,
        issue=issue,
        assignee_options=[(m.user_id, m.user.name) for m in members],
        label_options=labels,
    )
    return page, status


def _submitted() -> tuple[Form, IssueIn | None]:
    form = Form.from_request(IssueIn, multi=_MULTI)
    return form, form.validate(IssueIn, blank_is_none={"assignee_id"})


@blueprint.route("/projects/<id:project_id>/issues/new", methods=["GET", "POST"])
@login_required
def new(project_id: int) -> ResponseReturnValue:
    project = services.get_visible(Project, project_id)
    in_current_org(project.organization_id)
    if request.method == "GET":
        return _form_page(Form(), project, None)
    form, data = _submitted()
    _preview(form, "description")
    if form.preview is not None:
        return _form_page(form, project, None)
    if data is None:
        return _form_page(form, project, None, 422)
    try:
        issue = services.create_issue(project, viewer(), data)
    except FieldError as exc:
        form.add_error(exc)
        return _form_page(form, project, None, 422)
    issue_id, key = issue.id, issue.key
    db.session.commit()
    flash(f"Issue {key} created.", "success")
    return redirect(url_for("issues.show", issue_id=issue_id))


@blueprint.get("/issues/<id:issue_id>")
@login_required
def show(issue_id: int) -> ResponseReturnValue:
    issue = _issue(issue_id)
    return _show_page(issue, Form())


def _timeline(issue: Issue) -> tuple[list[Comment], list[tuple[str, t.Any]]]:
    """The issue's comments, and its comments and other activity interleaved
    oldest first (two queries): ``("comment", Comment)`` or ``("event",
    Activity)``. A comment's own activity row is the comment itself."""
    comments = services.comments_of(issue)
    events = [a for a in activity.timeline(issue) if a.kind != "comment"]
    merged: list[tuple[str, t.Any]] = [("comment", c) for c in comments]
    merged += [("event", a) for a in events]
    merged.sort(key=lambda entry: activity.timeline_key(entry[1]))
    return comments, merged


def _show_page(issue: Issue, form: Form, status: int = 200) -> ResponseReturnValue:
    comments, timeline = _timeline(issue)
    page = render_template(
        "issues/show.html",
        project=issue.project,
        issue=issue,
        issue_json=IssueOut.model_validate(issue).model_dump(mode="json"),
        comments=comments,
        timeline=timeline,
        describe=activity.describe,
        form=form,
        **_parts_context(issue),
        others=[],
        live={"issue": issue.id},
    )
    return page, status


def _parts_context(issue: Issue) -> dict[str, t.Any]:
    """What the issue page's parts read besides the issue: the page and the
    fragments that live pages fetch render them with the same."""
    return {
        "org": current_org,
        "watching": activity.watching(issue, viewer()),
        "may_change": _may_change,
    }


def _may_change(author_id: int | None) -> bool:
    """Whether the viewer may edit or delete what ``author_id`` wrote: the
    page offers only what the services would allow."""
    return services.may_change(author_id, viewer(), current_role())


@blueprint.route("/issues/<id:issue_id>/edit", methods=["GET", "POST"])
@login_required
def edit(issue_id: int) -> ResponseReturnValue:
    issue = _issue(issue_id)
    if request.method == "GET":
        form = Form(
            data={
                "title": issue.title,
                "description": issue.description,
                "assignee_id": issue.assignee_id,
                "label_ids": [str(label.id) for label in issue.labels],
            }
        )
        return _form_page(form, issue.project, issue)
    form, data = _submitted()
    _preview(form, "description")
    if form.preview is not None:
        return _form_page(form, issue.project, issue)
    if data is None:
        return _form_page(form, issue.project, issue, 422)
    patch = IssuePatch.model_validate(data.model_dump())
    try:
        services.update_issue(issue, viewer(), patch)
    except FieldError as exc:
        form.add_error(exc)
        return _form_page(form, issue.project, issue, 422)
    db.session.commit()
    flash("Issue saved.", "success")
    return redirect(url_for("issues.show", issue_id=issue_id))


@blueprint.post("/issues/<id:issue_id>/status")
@login_required
def set_status(issue_id: int) -> ResponseReturnValue:
    issue = _issue(issue_id)
    status = request.form.get("status")
    if status not in ("open", "closed"):
        flash("Choose open or closed.", "error")
        return redirect(url_for("issues.show", issue_id=issue.id)), 303
    services.update_issue(issue, viewer(), IssuePatch(status=status))
    key = issue.key
    db.session.commit()
    flash(f"Issue {key} {'closed' if status == 'closed' else 'reopened'}.", "success")
    return redirect(url_for("issues.show", issue_id=issue_id))


@blueprint.route("/issues/<id:issue_id>/delete", methods=["GET", "POST"])
@login_required
def delete(issue_id: int) -> ResponseReturnValue:
    issue = _issue(issue_id)
    project_id, key = issue.project_id, issue.key
    if not _may_change(issue.author_id):
        raise Forbidden("Only the issue's author or an organization admin can delete it.")
    if request.method == "GET":
        return render_template(
            "confirm.html",
            heading=f"Delete issue {key}?",
            message=f"“{issue.title}” and its comments will be deleted. This cannot be undone.",
            button="Delete issue",
            cancel_url=url_for("issues.show", issue_id=issue.id),
        )
    services.delete_issue(issue, viewer())
    db.session.commit()
    flash(f"Issue {key} deleted.", "success")
    return redirect(url_for("projects.show", project_id=project_id))


@blueprint.post("/issues/<id:issue_id>/comments")
@login_required
def comment(issue_id: int) -> ResponseReturnValue:
    issue = _issue(issue_id)
    form = Form.from_request(CommentIn)
    _preview(form, "body")
    if form.preview is not None:
        return _show_page(issue, form)
    status = form.data.get("status") or None
    if status is not None and not str(form.data.get("body", "")).strip():
        # "Close issue" with nothing written: only the status changes.
        form.data.pop("body", None)
        return set_status(issue_id)
    data = form.validate(CommentIn, blank_is_none={"status"})
    if data is None:
        return _show_page(issue, form, 422)
    closes = data.status is not None and data.status != issue.status
    comment = services.add_comment(issue, viewer(), data.body, data.status)
    comment_id = comment.id
    db.session.commit()
    if closes:
        verb = "closed" if data.status == "closed" else "reopened"
        flash(f"Comment added; issue #{issue_id} {verb}.", "success")
    else:
        flash("Comment added.", "success")
    return redirect(url_for("issues.show", issue_id=issue_id) + f"#comment-{comment_id}")


def _comment(comment_id: int) -> Comment:
    comment = services.get_visible(Comment, comment_id)
    in_current_org(comment.organization_id)
    if not _may_change(comment.author_id):
        raise Forbidden("Only the comment's author or an organization admin can change it.")
    return comment


@blueprint.route("/comments/<id:comment_id>/edit", methods=["GET", "POST"])
@login_required
def edit_comment(comment_id: int) -> ResponseReturnValue:
    comment = _comment(comment_id)
    issue_id = comment.issue_id
    if request.method == "GET":
        form = Form(data={"body": comment.body})
    else:
        form = Form.from_request(CommentPatch)
        _preview(form, "body")
        data = None if form.preview is not None else form.validate(CommentPatch)
        if data is not None:
            services.edit_comment(comment, viewer(), data.body)
            db.session.commit()
            flash("Comment saved.", "success")
            return redirect(url_for("issues.show", issue_id=issue_id) + f"#comment-{comment_id}")
    issue_key = db.session.scalar(sa.select(Issue.key).where(Issue.id == comment.issue_id))
    page = render_template(
        "issues/comment_form.html", form=form, org=current_org, comment=comment, issue_key=issue_key
    )
    return page, 422 if form.errors else 200


@blueprint.route("/comments/<id:comment_id>/delete", methods=["GET", "POST"])
@login_required
def delete_comment(comment_id: int) -> ResponseReturnValue:
    comment = _comment(comment_id)
    issue_id = comment.issue_id
    if request.method == "GET":
        author = comment.author.name if comment.author else "someone"
        return render_template(
            "confirm.html",
            heading="Delete this comment?",
            message=f"The comment by {author} will be deleted. This cannot be undone.",
            button="Delete comment",
            cancel_url=url_for("issues.show", issue_id=issue_id) + f"#comment-{comment_id}",
        )
    services.delete_comment(comment, viewer())
    db.session.commit()
    flash("Comment deleted.", "success")
    return redirect(url_for("issues.show", issue_id=issue_id) + "#comments")


# -- fragments of the issue page, fetched by live pages (tracker.live) ---------------------


@blueprint.get("/issues/<id:issue_id>/parts")
@login_required
def parts(issue_id: int) -> ResponseReturnValue:
    """The parts of the issue page that change with the issue: its head
    (title, close or reopen), description and facts (status, assignee,
    labels), each the page's own template, each with its element id."""
    issue = _issue(issue_id)
    return render_template("issues/_parts.html", issue=issue, **_parts_context(issue))


@blueprint.get("/issues/<id:issue_id>/comment")
@login_required
def comment_fragment(issue_id: int) -> ResponseReturnValue:
    """One comment of the issue, ``?id=<comment id>``, as the page shows it;
    404 when it is gone or on another issue, 400 without a valid ``id``."""
    issue = _issue(issue_id)
    raw = request.args.get("id", "")
    if not raw.isdigit() or raw.startswith("0") or int(raw) > MAX_ID:
        abort(400, description="The id parameter must be a comment id.")
    comment = services.get_visible(Comment, int(raw))
    if comment.issue_id != issue.id:
        abort(404)
    return render_template(
        "issues/_comment.html",
        comment=comment,
        may_change=_may_change,
    )


@blueprint.get("/issues/<id:issue_id>/entry")
@login_required
def entry_fragment(issue_id: int) -> ResponseReturnValue:
    """One entry of the issue's timeline other than a comment, ``?id=<its
    activity id>`` ("Bob closed the issue"), as the page shows it; 404 when
    it is not one of this issue's, 400 without a valid ``id``."""
    issue = _issue(issue_id)
    raw = request.args.get("id", "")
    if not raw.isdigit() or raw.startswith("0") or int(raw) > MAX_ID:
        abort(400, description="The id parameter must be an activity id.")
    row = activity.get_entry(issue, int(raw))
    if row is None:
        abort(404)
    return render_template("issues/_entry.html", row=row, describe=activity.describe)


@blueprint.post("/issues/<id:issue_id>/presence")
@login_required
def presence(issue_id: int) -> ResponseReturnValue:
    """A live page says it has the issue open (form field ``tab``, a random
    id of the page) or, with ``leave=1``, that it closed; the answer is the
    presence line: who else has it open. A malformed ``tab`` is a 422."""
    issue = _issue(issue_id)
    if not live.enabled():
        abort(404)
    tab = request.form.get("tab", "")
    update = presence_gone if request.form.get("leave") == "1" else presence_here
    try:
        found = update(live.issue_channel(issue.id), viewer(), tab)
    except ValueError as exc:
        abort(422, description=str(exc))
    except Exception:
        current_app.logger.exception("presence of issue %s could not be recorded", issue.id)
        abort(503, description="Presence is not available right now.")
    names = {str(m.user_id): m.user.name for m in services.members_of(issue.organization_id)}
    me = str(viewer().id)
    others = [names[u] for u in found.users if u != me and u in names]
    return render_template("issues/_presence.html", others=others)
