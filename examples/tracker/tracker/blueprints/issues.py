"""Issues: create, view, edit, close and reopen, delete, comment."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from karaffe.auth import login_required
from karaffe.db import db
from karaffe.events.presence import gone as presence_gone
from karaffe.events.presence import here as presence_here
from karaffe.ids import MAX_ID
from karaffe.tenancy import current_org

from .. import live, services
from ..forms import FieldError, Form
from ..models import Comment, Issue, Project
from ..schemas import CommentIn, IssueIn, IssueOut, IssuePatch
from ..web import in_current_org, viewer

blueprint = Blueprint("issues", __name__, url_prefix="/o/<org_slug>")

# Every write reads what its answer needs (ids, names) before the commit and
# no model after it: see tracker.blueprints.api_v1.

#: Fields of the issue form; ``label_ids`` is a multiple select.
_MULTI = {"label_ids"}


def _issue(issue_id: int) -> Issue:
    issue = services.get_visible(Issue, issue_id)
    in_current_org(issue.organization_id)
    return issue


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
        label_options=[(label.id, label.name) for label in labels],
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
    if data is None:
        return _form_page(form, project, None, 422)
    try:
        issue = services.create_issue(project, viewer(), data)
    except FieldError as exc:
        form.add_error(exc)
        return _form_page(form, project, None, 422)
    issue_id = issue.id
    db.session.commit()
    flash(f"Issue #{issue_id} created.", "success")
    return redirect(url_for("issues.show", issue_id=issue_id))


@blueprint.get("/issues/<id:issue_id>")
@login_required
def show(issue_id: int) -> ResponseReturnValue:
    issue = _issue(issue_id)
    return _show_page(issue, Form())


def _show_page(issue: Issue, form: Form, status: int = 200) -> ResponseReturnValue:
    page = render_template(
        "issues/show.html",
        org=current_org,
        project=issue.project,
        issue=issue,
        issue_json=IssueOut.model_validate(issue).model_dump(mode="json"),
        comments=services.comments_of(issue),
        form=form,
        others=[],
        live={"issue": issue.id},
    )
    return page, status


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
    db.session.commit()
    flash(f"Issue #{issue_id} {'closed' if status == 'closed' else 'reopened'}.", "success")
    return redirect(url_for("issues.show", issue_id=issue_id))


@blueprint.route("/issues/<id:issue_id>/delete", methods=["GET", "POST"])
@login_required
def delete(issue_id: int) -> ResponseReturnValue:
    issue = _issue(issue_id)
    project_id = issue.project_id
    if request.method == "GET":
        return render_template(
            "confirm.html",
            heading=f"Delete issue #{issue.id}?",
            message=f"“{issue.title}” and its comments will be deleted. This cannot be undone.",
            button="Delete issue",
            cancel_url=url_for("issues.show", issue_id=issue.id),
        )
    services.delete_issue(issue, viewer())
    db.session.commit()
    flash(f"Issue #{issue_id} deleted.", "success")
    return redirect(url_for("projects.show", project_id=project_id))


@blueprint.post("/issues/<id:issue_id>/comments")
@login_required
def comment(issue_id: int) -> ResponseReturnValue:
    issue = _issue(issue_id)
    form = Form.from_request(CommentIn)
    data = form.validate(CommentIn)
    if data is None:
        return _show_page(issue, form, 422)
    services.add_comment(issue, viewer(), data.body)
    db.session.commit()
    flash("Comment added.", "success")
    return redirect(url_for("issues.show", issue_id=issue_id) + "#comments")


# -- fragments of the issue page, fetched by live pages (tracker.live) ---------------------


@blueprint.get("/issues/<id:issue_id>/parts")
@login_required
def parts(issue_id: int) -> ResponseReturnValue:
    """The parts of the issue page that change with the issue: its head
    (title, close or reopen), description and facts (status, assignee,
    labels), each the page's own template, each with its element id."""
    return render_template("issues/_parts.html", issue=_issue(issue_id))


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
    return render_template("issues/_comment.html", comment=comment)


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
