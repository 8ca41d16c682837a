"""The JSON API under ``/api/v1/``: the whole data model, with the HTML
pages' permissions (both go through :mod:`tracker.services`).

Every route needs a user: ``Authorization: Bearer <token>`` (tokens are made
on the settings page) or the browser's session cookie (then CSRF applies to
writes). Errors are problem+json documents; lists are keyset-paginated with
``Link`` headers; the OpenAPI document is at ``/api/v1/openapi.json``.

A write view builds its whole answer before ``db.session.commit()`` and
touches no model after it: the commit expires the objects it wrote, and
reading one again is a new query, which fails if the database has just gone
away, turning a committed write into an error (and a retry into a
duplicate). ``tests/test_commit_then_answer.py`` holds every write route to it.
"""

from __future__ import annotations

import typing as t

from flask import Blueprint, current_app, request, url_for

from karaffe import ApiResult, Conflict, Page, ValidationFailed, paginate, returns, validate
from karaffe.auth import login_required
from karaffe.db import db
from karaffe.tenancy import current_org, current_role

from .. import finding, keys, services
from ..forms import FieldError
from ..models import Comment, Issue, Label, Project
from ..schemas import (
    CommentIn,
    CommentOut,
    InvitationIn,
    InvitationOut,
    IssueIn,
    IssueOut,
    IssuePatch,
    IssueQuery,
    LabelIn,
    LabelOut,
    MemberOut,
    OrganizationIn,
    OrganizationOut,
    OrgIssueQuery,
    ProjectIn,
    ProjectOut,
    ProjectPatch,
    RoleIn,
    UserRef,
)
from ..web import viewer

blueprint = Blueprint("api_v1", __name__, url_prefix="/api/v1")
keys.key_urls(blueprint)

_NOT_FOUND = {404: "Not found, or not in one of your organizations"}
_WRITE_ERRORS = {**_NOT_FOUND, 403: "Your role does not allow it"}


@blueprint.errorhandler(FieldError)
def field_error(exc: FieldError) -> t.Any:
    """A value refused by a rule (an assignee who is not a member...): a 422
    located at the field, like any other invalid input. A name that is taken
    is a 409: the input is fine, it conflicts with what exists."""
    errors = [(["body", exc.field], exc.message, exc.code)]
    problem = (
        Conflict(exc.message, errors=errors)
        if exc.code == "taken"
        else ValidationFailed(errors=errors)
    )
    return t.cast(t.Any, current_app).handle_api_exception(problem)


@blueprint.before_request
@login_required
def require_login_and_objects() -> None:
    """Every API route needs a user (401 otherwise), and the objects its URL
    names must be the user's to see (404 otherwise), before the body is even
    read: another organization's id answers the same whatever is sent.

    The view gets each object as an argument, in place of its id: a route
    ``/projects/<id:project_id>`` calls ``view(project=Project(...))``.
    """
    args = request.view_args
    if not args:
        return
    for arg, (name, model) in _OBJECTS.items():
        if arg in args:
            args[name] = services.get_visible(model, args.pop(arg))
    if "user_id" in args:
        services.get_membership(current_org.id, args["user_id"])


#: URL arguments naming an object: the view argument it becomes, its model.
_OBJECTS: dict[str, tuple[str, type[Project | Issue | Label | Comment]]] = {
    "project_id": ("project", Project),
    "issue_id": ("issue", Issue),
    "label_id": ("label", Label),
    "comment_id": ("comment", Comment),
}


# -- the caller ----------------------------------------------------------------------


class Me(UserRef):
    email: str


@blueprint.get("/me")
@returns(Me)
def me() -> t.Any:
    """The user the request is authenticated as."""
    return viewer()


# -- organizations -------------------------------------------------------------------


@blueprint.get("/orgs")
@returns(list[OrganizationOut])
def list_orgs() -> t.Any:
    """The caller's organizations, with their role in each."""
    return [
        OrganizationOut(id=org.id, name=org.name, slug=org.slug, role=t.cast(t.Any, role))
        for org, role in services.organizations_of(viewer())
    ]


@blueprint.post("/orgs")
@validate(body=OrganizationIn)
@returns(OrganizationOut, status=201, links={"org_slug": "slug"})
def create_org(body: OrganizationIn) -> t.Any:
    """A new organization, owned by the caller."""
    org = services.create_org(body.name, viewer())
    out = OrganizationOut(id=org.id, name=org.name, slug=org.slug, role="owner")
    db.session.commit()
    return out


@blueprint.get("/orgs/<org_slug>")
@returns(OrganizationOut, errors=_NOT_FOUND)
def get_org() -> t.Any:
    org = current_org
    return OrganizationOut(
        id=org.id, name=org.name, slug=org.slug, role=t.cast(t.Any, current_role())
    )


@blueprint.get("/orgs/<org_slug>/members")
@returns(list[MemberOut], errors=_NOT_FOUND)
def list_members() -> t.Any:
    return services.members_of(current_org.id)


@blueprint.put("/orgs/<org_slug>/members/<id:user_id>/role")
@validate(body=RoleIn)
@returns(MemberOut, errors={**_WRITE_ERRORS, 409: "It would leave the organization without owner"})
def change_role(user_id: int, body: RoleIn) -> t.Any:
    """Change a member's role (admins; only owners make or unmake owners)."""
    membership = services.change_role(current_org.id, viewer(), user_id, body.role)
    out = MemberOut.model_validate(membership)
    db.session.commit()
    return out


@blueprint.delete("/orgs/<org_slug>/members/<id:user_id>")
@returns(None, status=204, errors={**_WRITE_ERRORS, 409: "To leave, use members/me"})
def remove_member(user_id: int) -> t.Any:
    """Remove a member (admins; only owners remove owners): their live
    streams end at once."""
    services.remove_member(current_org.id, viewer(), user_id)
    db.session.commit()
    return ApiResult(None, status=204)


@blueprint.delete("/orgs/<org_slug>/members/me")
@returns(None, status=204, errors={**_NOT_FOUND, 409: "The last owner cannot leave"})
def leave_org() -> t.Any:
    """Leave the organization."""
    services.leave(current_org.id, viewer())
    db.session.commit()
    return ApiResult(None, status=204)


@blueprint.post("/orgs/<org_slug>/invitations")
@validate(body=InvitationIn)
@returns(InvitationOut, status=201, errors=_WRITE_ERRORS)
def create_invitation(body: InvitationIn) -> t.Any:
    """A signed invitation link (admins); whoever opens it may join."""
    invitation, token = services.create_invitation(current_org.id, viewer(), body.role)
    out = InvitationOut(
        url=url_for("orgs.invitation", token=token, _external=True),
        role=t.cast(t.Any, invitation.role),
        expires_at=invitation.expires_at,
    )
    db.session.commit()
    return out


# -- labels ----------------------------------------------------------------------------


@blueprint.get("/orgs/<org_slug>/labels")
@returns(list[LabelOut], errors=_NOT_FOUND)
def list_labels() -> t.Any:
    return services.labels_of(current_org.id)


@blueprint.post("/orgs/<org_slug>/labels")
@validate(body=LabelIn)
@returns(
    LabelOut,
    status=201,
    errors={**_WRITE_ERRORS, 409: "The organization has a label of that name"},
    links={"label_id": "id"},
)
def create_label(body: LabelIn) -> t.Any:
    label = services.create_label(current_org.id, viewer(), body.name)
    out = LabelOut.model_validate(label)
    db.session.commit()
    return out


@blueprint.delete("/labels/<id:label_id>")
@returns(None, status=204, errors=_WRITE_ERRORS)
def delete_label(label: Label) -> t.Any:
    services.delete_label(label, viewer())
    db.session.commit()
    return ApiResult(None, status=204)


# -- projects ----------------------------------------------------------------------------


@blueprint.get("/orgs/<org_slug>/projects")
@returns(list[ProjectOut], errors=_NOT_FOUND)
def list_projects() -> t.Any:
    return services.projects_of(current_org.id)


@blueprint.post("/orgs/<org_slug>/projects")
@validate(body=ProjectIn)
@returns(
    ProjectOut,
    status=201,
    errors={**_WRITE_ERRORS, 409: "Another project of the organization has this key"},
    links={"project_id": "id"},
)
def create_project(body: ProjectIn) -> t.Any:
    project = services.create_project(current_org.id, viewer(), body)
    out = ProjectOut.model_validate(project)
    db.session.commit()
    return out


@blueprint.get("/projects/<id:project_id>")
@returns(ProjectOut, errors=_NOT_FOUND)
def get_project(project: Project) -> t.Any:
    return project


@blueprint.patch("/projects/<id:project_id>")
@validate(body=ProjectPatch)
@returns(ProjectOut, errors=_WRITE_ERRORS)
def update_project(project: Project, body: ProjectPatch) -> t.Any:
    services.update_project(project, viewer(), body)
    out = ProjectOut.model_validate(project)
    db.session.commit()
    return out


@blueprint.delete("/projects/<id:project_id>")
@returns(None, status=204, errors=_WRITE_ERRORS)
def delete_project(project: Project) -> t.Any:
    """Delete a project with its issues (admins)."""
    services.delete_project(project, viewer())
    db.session.commit()
    return ApiResult(None, status=204)


# -- issues ----------------------------------------------------------------------------


def _listed(page: Page[Issue], counts: finding.Counts) -> ApiResult:
    return ApiResult(
        page=page,
        headers={"X-Open-Count": str(counts.open), "X-Closed-Count": str(counts.closed)},
    )


@blueprint.get("/projects/<id:project_id>/issues")
@validate(query=IssueQuery)
@returns(list[IssueOut], paginated=True, errors=_NOT_FOUND)
def list_issues(project: Project, query: IssueQuery) -> t.Any:
    """A project's issues, newest first, filtered by ``status``, ``assignee``
    (``me``), ``author``, every ``label`` given, and a search ``q`` (title,
    description, comments); ``sort`` and ``direction`` order them. ``Link``
    headers page through; ``X-Open-Count`` and ``X-Closed-Count`` count the
    open and closed issues the other filters select."""
    page = finding.issue_page(query, viewer(), project=project)
    return _listed(page, finding.status_counts(query, viewer(), project=project))


@blueprint.get("/orgs/<org_slug>/issues")
@validate(query=OrgIssueQuery)
@returns(list[IssueOut], paginated=True, errors=_NOT_FOUND)
def list_org_issues(query: OrgIssueQuery) -> t.Any:
    """The issues of every project of the organization, with the filters and
    sort orders of a project's list, and ``project``. ``assignee=me`` and
    ``author=me`` are the caller's issues."""
    org_id = current_org.id
    page = finding.issue_page(query, viewer(), org_id=org_id)
    return _listed(page, finding.status_counts(query, viewer(), org_id=org_id))


@blueprint.get("/orgs/<org_slug>/issues/<issue_key:issue_key>")
@returns(IssueOut, errors={404: "No issue of the organization has this key"})
def get_issue_by_key(issue_key: str) -> t.Any:
    """The issue with this key (``BIL-123``, any case) in the organization."""
    return keys.get_by_key(issue_key, current_org.id)


@blueprint.post("/projects/<id:project_id>/issues")
@validate(body=IssueIn)
@returns(IssueOut, status=201, errors=_WRITE_ERRORS, links={"issue_id": "id"})
def create_issue(project: Project, body: IssueIn) -> t.Any:
    issue = services.create_issue(project, viewer(), body)
    out = IssueOut.model_validate(issue)
    location = url_for("api_v1.get_issue", issue_id=out.id)
    db.session.commit()
    return ApiResult(out, status=201, headers={"Location": location})


@blueprint.get("/issues/<id:issue_id>")
@returns(IssueOut, errors=_NOT_FOUND)
def get_issue(issue: Issue) -> t.Any:
    return issue


@blueprint.patch("/issues/<id:issue_id>")
@validate(body=IssuePatch)
@returns(IssueOut, errors=_WRITE_ERRORS)
def update_issue(issue: Issue, body: IssuePatch) -> t.Any:
    """Change some fields: ``{"status": "closed"}`` closes the issue,
    ``{"assignee_id": null}`` unassigns it."""
    services.update_issue(issue, viewer(), body)
    out = IssueOut.model_validate(issue)
    db.session.commit()
    return out


@blueprint.delete("/issues/<id:issue_id>")
@returns(None, status=204, errors=_WRITE_ERRORS)
def delete_issue(issue: Issue) -> t.Any:
    """Delete an issue (its author or an admin)."""
    services.delete_issue(issue, viewer())
    db.session.commit()
    return ApiResult(None, status=204)


# -- comments ----------------------------------------------------------------------------


@blueprint.get("/issues/<id:issue_id>/comments")
@returns(list[CommentOut], paginated=True, errors=_NOT_FOUND)
def list_comments(issue: Issue) -> t.Any:
    """An issue's comments, oldest first."""
    import sqlalchemy as sa

    stmt = sa.select(Comment).where(Comment.issue_id == issue.id)
    return ApiResult(page=paginate(stmt, order_by=[Comment.id.asc()]))


@blueprint.post("/issues/<id:issue_id>/comments")
@validate(body=CommentIn)
@returns(CommentOut, status=201, errors=_WRITE_ERRORS, links={"comment_id": "id"})
def create_comment(issue: Issue, body: CommentIn) -> t.Any:
    comment = services.add_comment(issue, viewer(), body.body)
    out = CommentOut.model_validate(comment)
    db.session.commit()
    return out


@blueprint.delete("/comments/<id:comment_id>")
@returns(None, status=204, errors=_WRITE_ERRORS)
def delete_comment(comment: Comment) -> t.Any:
    """Delete a comment (its author or an admin)."""
    services.delete_comment(comment, viewer())
    db.session.commit()
    return ApiResult(None, status=204)
