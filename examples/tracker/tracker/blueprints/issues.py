"""Issues: create, view, edit, close and reopen, delete, comment."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from karaffe.auth import login_required
from karaffe.db import db
from karaffe.tenancy import current_org

from .. import services
from ..forms import FieldError, Form
from ..models import Issue, Project
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
    issue_id, key = issue.id, issue.key
    db.session.commit()
    flash(f"Issue {key} created.", "success")
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
    key = issue.key
    db.session.commit()
    flash(f"Issue {key} {'closed' if status == 'closed' else 'reopened'}.", "success")
    return redirect(url_for("issues.show", issue_id=issue_id))


@blueprint.route("/issues/<id:issue_id>/delete", methods=["GET", "POST"])
@login_required
def delete(issue_id: int) -> ResponseReturnValue:
    issue = _issue(issue_id)
    project_id, key = issue.project_id, issue.key
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
    data = form.validate(CommentIn)
    if data is None:
        return _show_page(issue, form, 422)
    services.add_comment(issue, viewer(), data.body)
    db.session.commit()
    flash("Comment added.", "success")
    return redirect(url_for("issues.show", issue_id=issue_id) + "#comments")
