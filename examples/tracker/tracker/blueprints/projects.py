"""Projects of an organization, and a project's issue list (filtered,
searched, keyset-paginated)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from karaffe.auth import login_required
from karaffe.db import db
from karaffe.ids import MAX_ID
from karaffe.tenancy import current_org

from .. import finding, listing, services
from ..forms import FieldError, Form
from ..models import Issue, Project
from ..schemas import IssueQuery, ProjectIn
from ..settings import TrackerSettings
from ..web import html_page_of, in_current_org, viewer, viewer_role
from .finding import list_filters, template_filters

blueprint = Blueprint("projects", __name__, url_prefix="/o/<org_slug>/projects")

# Every write reads what its answer needs (ids, names) before the commit and
# no model after it: see tracker.blueprints.api_v1.


def _project(project_id: int) -> Project:
    project = services.get_visible(Project, project_id)
    in_current_org(project.organization_id)
    return project


@blueprint.route("/new", methods=["GET", "POST"])
@login_required
def new() -> ResponseReturnValue:
    form = Form()
    if request.method == "POST":
        form = Form.from_request(ProjectIn)
        data = form.validate(ProjectIn, blank_is_none={"key"})
        if data is None:
            return render_template("projects/form.html", form=form, org=current_org), 422
        try:
            project = services.create_project(current_org.id, viewer(), data)
        except FieldError as exc:
            form.add_error(exc)
            return render_template("projects/form.html", form=form, org=current_org), 422
        name, project_id = project.name, project.id
        db.session.commit()
        flash(f"Project “{name}” created.", "success")
        return redirect(url_for("projects.show", project_id=project_id))
    return render_template("projects/form.html", form=form, org=current_org, project=None)


@blueprint.get("/<id:project_id>")
@login_required
def show(project_id: int) -> ResponseReturnValue:
    project = _project(project_id)
    filters = list_filters(IssueQuery)
    user = viewer()
    page = html_page_of(
        lambda: finding.issue_page(
            filters, user, project=project, limit=TrackerSettings.of().issues_per_page
        )
    )
    members, all_labels = listing.filter_choices(current_org.id)
    return render_template(
        "projects/show.html",
        org=current_org,
        project=project,
        page=page,
        counts=finding.status_counts(filters, user, project=project),
        filters=template_filters(filters),
        members=members,
        all_labels=all_labels,
        # Every row links to its issue: the URL is made once.
        issue_path=url_for("issues.show", issue_id=0).removesuffix("0"),
        can_manage=viewer_role(current_org.id) in ("admin", "owner"),
        live={"project": project.id},
    )


@blueprint.get("/<id:project_id>/row")
@login_required
def row(project_id: int) -> ResponseReturnValue:
    """One row of the issue list, ``?id=<issue id>`` plus the list's own
    filters: live pages fetch it when an event names the issue. The row says
    ``data-match="0"`` when the issue no longer matches the filters (a closed
    issue in the list of open ones); a 404 when it is gone or not in this
    project; a 400 without a valid ``id``."""
    project = _project(project_id)
    raw = request.args.get("id", "")
    if not raw.isdigit() or raw.startswith("0") or int(raw) > MAX_ID:
        abort(400, description="The id parameter must be an issue id.")
    issue = listing.issue_document(int(raw))
    if issue is None or issue["project_id"] != project.id:
        abort(404)
    filters = list_filters(IssueQuery)
    matching = finding.issue_select(filters, viewer(), project=project)
    matches = db.session.execute(
        sa.select(matching.where(Issue.id == issue["id"]).exists())
    ).scalar_one()
    return render_template(
        "issues/_row.html",
        rows=[issue],
        matches=matches,
        filters=template_filters(filters),
        issue_path=url_for("issues.show", issue_id=0).removesuffix("0"),
    )


@blueprint.route("/<id:project_id>/edit", methods=["GET", "POST"])
@login_required
def edit(project_id: int) -> ResponseReturnValue:
    project = _project(project_id)
    form = Form(data={"name": project.name, "description": project.description})
    if request.method == "POST":
        form = Form.from_request(ProjectIn)
        data = form.validate(ProjectIn)
        if data is None:
            page = render_template(
                "projects/form.html", form=form, org=current_org, project=project
            )
            return page, 422
        services.update_project(project, viewer(), data)
        db.session.commit()
        flash("Project saved.", "success")
        return redirect(url_for("projects.show", project_id=project_id))
    return render_template("projects/form.html", form=form, org=current_org, project=project)


@blueprint.route("/<id:project_id>/delete", methods=["GET", "POST"])
@login_required
def delete(project_id: int) -> ResponseReturnValue:
    project = _project(project_id)
    if request.method == "GET":
        return render_template(
            "confirm.html",
            heading=f"Delete project “{project.name}”?",
            message="Its issues and their comments are deleted with it. This cannot be undone.",
            button="Delete project",
            cancel_url=url_for("projects.show", project_id=project.id),
        )
    name = project.name
    services.delete_project(project, viewer())
    db.session.commit()
    flash(f"Project “{name}” deleted.", "success")
    return redirect(url_for("orgs.show"))
