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
from flask.blueprints import BlueprintSetupState
from pydantic import Field

from karaffe import (
    ApiResult,
    Conflict,
    NotFound,
    ValidationFailed,
    auth,
    paginate,
    returns,
    validate,
)
from karaffe.auth import User, login_required
from karaffe.db import db
from karaffe.events import channel_token, stream_url
from karaffe.events.presence import TabConverter
from karaffe.events.presence import gone as presence_gone
from karaffe.events.presence import here as presence_here
from karaffe.events.settings import EventsSettings
from karaffe.tenancy import current_org, current_role

from .. import (
    accounts,
    activity,
    finding,
    keys,
    listing,
    live,
    mailqueue,
    markdown,
    mentions,
    services,
)
from ..forms import FieldError
from ..models import Activity, Comment, Issue, Label, Project
from ..schemas import (
    Accepted,
    ActivityOut,
    CommentIn,
    CommentOut,
    CommentPatch,
    EmailChangeIn,
    InvitationIn,
    InvitationOut,
    IssueIn,
    IssueOut,
    IssuePatch,
    IssueQuery,
    LabelIn,
    LabelOut,
    LabelPatch,
    LiveTokenOut,
    LiveTokenQuery,
    MarkdownIn,
    MarkdownOut,
    MarkedOut,
    MemberOut,
    MentionableOut,
    MentionQuery,
    NotificationOut,
    NotificationQuery,
    OrganizationIn,
    OrganizationOut,
    OrgIssueQuery,
    PasswordChangeIn,
    PresenceOut,
    ProfileIn,
    ProjectIn,
    ProjectOut,
    ProjectPatch,
    RoleIn,
    UnreadOut,
    UserRef,
    WatchOut,
)
from ..web import viewer

blueprint = Blueprint("api_v1", __name__, url_prefix="/api/v1")
keys.key_urls(blueprint)


@blueprint.record_once
def _tab_converter(state: BlueprintSetupState) -> None:
    """``<tab:tab>`` of the presence routes: recorded before them, so the
    converter exists when they are added to the app."""
    state.app.url_map.converters.setdefault("tab", TabConverter)


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
    email_verified: bool = Field(
        description="Whether the user followed the link mailed to `email`."
    )

    @classmethod
    def of(cls, user: User) -> Me:
        return cls(
            id=user.id,
            name=user.name,
            email=user.email,
            email_verified=user.email_verified_at is not None,
        )


@blueprint.get("/me")
@returns(Me)
def me() -> t.Any:
    """The user the request is authenticated as."""
    return Me.of(viewer())


@blueprint.patch("/me")
@validate(body=ProfileIn)
@returns(Me)
def update_me(body: ProfileIn) -> t.Any:
    """Change the caller's name."""
    user = viewer()
    services.rename(user, body.name)
    out = Me.of(user)
    db.session.commit()
    return out


@blueprint.post("/me/email")
@validate(body=EmailChangeIn)
@returns(
    Accepted,
    status=202,
    errors={409: "Another account has this email", 422: "Wrong current password"},
)
def change_email(body: EmailChangeIn) -> t.Any:
    """Start changing the caller's email: a link goes to the new address,
    which becomes the login once it is followed (the old one until then)."""
    user = viewer()
    accounts.check_current_password(user, body.current_password)
    mailqueue.queue(accounts.change_email(user, body.email))  # sent once committed
    db.session.commit()
    return Accepted(
        detail=f"A link went to {body.email}: it becomes the login once it is followed."
    )


@blueprint.post("/me/email/verification")
@returns(Accepted, status=202, errors={409: "The email is verified already", 429: ""})
def resend_verification() -> t.Any:
    """Mail a new verification link to the caller's address."""
    user = viewer()
    if user.email_verified_at is not None:
        raise Conflict(f"{user.email} is verified already.")
    accounts.check_reset_rate("verify", user.email, request.remote_addr or "unknown")
    out = Accepted(detail=f"A link went to {user.email}.")
    mailqueue.queue(accounts.verification_mail(user))  # sent once committed
    db.session.commit()
    return out


@blueprint.put("/me/password")
@validate(body=PasswordChangeIn)
@returns(None, status=204, errors={422: "Wrong current password"})
def change_password(body: PasswordChangeIn) -> t.Any:
    """Change the caller's password: every login session ends, but the
    request's own (API tokens stay valid: revoke them on their page)."""
    user = viewer()
    accounts.check_current_password(user, body.current_password)
    user.set_password(body.password)
    if auth.current_session() is not None:
        auth.rotate_session()
    db.session.commit()
    return ApiResult(None, status=204)


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
@returns(
    OrganizationOut,
    status=201,
    errors={409: "The caller belongs to an organization of that name already"},
    links={"org_slug": "slug"},
)
def create_org(body: OrganizationIn) -> t.Any:
    """A new organization, owned by the caller. Names are not unique across
    the site (the slug is), but nobody gets two organizations of one name."""
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
    """A new label (admins), with a colour (one from a palette when left out)."""
    label = services.create_label(current_org.id, viewer(), body.name, body.color)
    out = LabelOut.model_validate(label)
    db.session.commit()
    return out


@blueprint.patch("/labels/<id:label_id>")
@validate(body=LabelPatch)
@returns(LabelOut, errors={**_WRITE_ERRORS, 409: "The organization has another label of that name"})
def update_label(label: Label, body: LabelPatch) -> t.Any:
    """Rename or recolour a label (admins)."""
    services.update_label(label, viewer(), body)
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


def _issues(
    query: IssueQuery, *, project: Project | None = None, org_id: int | None = None
) -> ApiResult:
    """A page of the issues ``query`` selects in a project (``project=``) or
    an organization (``org_id=``), with the open and closed counts."""
    user = viewer()
    page = finding.issue_page(query, user, project=project, org_id=org_id, description_html=True)
    counts = finding.status_counts(query, user, project=project, org_id=org_id)
    return ApiResult(
        listing.issues_json(page.items),
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
    return _issues(query, project=project)


@blueprint.get("/orgs/<org_slug>/issues")
@validate(query=OrgIssueQuery)
@returns(list[IssueOut], paginated=True, errors=_NOT_FOUND)
def list_org_issues(query: OrgIssueQuery) -> t.Any:
    """The issues of every project of the organization, with the filters and
    sort orders of a project's list, and ``project``. ``assignee=me`` and
    ``author=me`` are the caller's issues."""
    return _issues(query, org_id=current_org.id)


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
    """Comment on an issue; ``"status": "closed"`` (or ``"open"``) also
    closes (or reopens) it, in the same write."""
    comment = services.add_comment(issue, viewer(), body.body, body.status)
    out = CommentOut.model_validate(comment)
    db.session.commit()
    return out


@blueprint.get("/comments/<id:comment_id>")
@returns(CommentOut, errors=_NOT_FOUND)
def get_comment(comment: Comment) -> t.Any:
    return comment


@blueprint.patch("/comments/<id:comment_id>")
@validate(body=CommentPatch)
@returns(CommentOut, errors=_WRITE_ERRORS)
def update_comment(comment: Comment, body: CommentPatch) -> t.Any:
    """Change a comment's text (its author or an admin)."""
    services.edit_comment(comment, viewer(), body.body)
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


# -- live updates ---------------------------------------------------------------------------


@blueprint.get("/live/token")
@validate(query=LiveTokenQuery)
@returns(LiveTokenOut, errors=_NOT_FOUND)
def live_token(query: LiveTokenQuery) -> t.Any:
    """A channel token to follow live updates of projects (``project:<id>``:
    its issue list) and issues (``issue:<id>``: its page) you can see, and
    of yourself (``user:<your id>``: your unread count), on the event stream
    (``stream``). Pages call it to renew their token before it expires; see
    docs/events.md for the stream."""
    channels = list(dict.fromkeys(query.channel))
    for channel in channels:
        kind, _, ident = channel.partition(":")
        if kind == "user":
            if int(ident) != viewer().id:
                raise NotFound("You can follow only your own user channel.")
        else:
            services.get_visible(Project if kind == "project" else Issue, int(ident))
    if not live.enabled():
        raise NotFound("Live updates are not set up on this server.")
    return LiveTokenOut(
        token=channel_token(viewer(), channels),
        channels=channels,
        expires_in=EventsSettings.of().events_token_max_age,
        stream=stream_url(),
    )


def _presence(issue: Issue, tab: str, *, leave: bool) -> list[int]:
    """The ids of the users who have ``issue`` open after this heartbeat or
    goodbye (``tab`` matched :class:`~karaffe.events.presence.TabConverter`)."""
    if not live.enabled():
        raise NotFound("Live updates are not set up on this server.")
    update = presence_gone if leave else presence_here
    found = update(live.issue_channel(issue.id), viewer(), tab)
    return [int(u) for u in found.users if u.isdigit()]


@blueprint.put("/issues/<id:issue_id>/presence/<tab:tab>")
@returns(PresenceOut, errors=_NOT_FOUND)
def issue_presence(issue: Issue, tab: str) -> t.Any:
    """A heartbeat: the caller has the issue open in ``tab`` (an id the
    client picks once: 1-64 letters, digits, ``_`` or ``-``; anything else is
    a 404, as for an unknown path). Send one every
    third of ``ttl``; answers who has the issue open (the caller included).
    When that changes, a ``presence`` event goes to the issue's channel."""
    ids = set(_presence(issue, tab, leave=False))
    users = [
        UserRef(id=m.user_id, name=m.user.name)
        for m in services.members_of(issue.organization_id)
        if m.user_id in ids
    ]
    return PresenceOut(users=users, ttl=EventsSettings.of().events_presence_ttl)


@blueprint.delete("/issues/<id:issue_id>/presence/<tab:tab>")
@returns(None, status=204, errors=_NOT_FOUND)
def leave_issue_presence(issue: Issue, tab: str) -> t.Any:
    """A goodbye: ``tab`` closed the issue."""
    _presence(issue, tab, leave=True)
    return ApiResult(None, status=204)


# -- Markdown ------------------------------------------------------------------------------


@blueprint.post("/markdown")
@validate(body=MarkdownIn)
@returns(MarkdownOut, errors={404: "No organization of yours has the slug `org`"})
def render_markdown(body: MarkdownIn) -> t.Any:
    """Render Markdown as descriptions and comments are shown (the forms'
    Preview). With ``org`` (one of the caller's organizations), ``@handle``
    of its members links to them as on its pages. Nothing is stored."""
    if body.org is None:
        return MarkdownOut(html=markdown.render(body.text))
    org_id = next(
        (org.id for org, _ in services.organizations_of(viewer()) if org.slug == body.org), None
    )
    if org_id is None:  # another's is as missing as one that does not exist
        raise NotFound("No organization of yours has this slug.")
    return MarkdownOut(html=mentions.render(body.text, org_id))


# -- activity, watching, notifications, mentions ----------------------------------------


@blueprint.get("/issues/<id:issue_id>/activity")
@returns(list[ActivityOut], paginated=True, errors=_NOT_FOUND)
def list_activity(issue: Issue) -> t.Any:
    """An issue's activity (created, title, description, status, assignee,
    labels, comment), oldest first."""
    page = paginate(activity.activity_of(issue), order_by=[Activity.id.asc()])
    return ApiResult(page=page)


@blueprint.get("/issues/<id:issue_id>/watch")
@returns(WatchOut, errors=_NOT_FOUND)
def get_watch(issue: Issue) -> t.Any:
    """Whether the caller watches the issue (is notified of its comments and
    status changes)."""
    return WatchOut(watching=activity.watching(issue, viewer()))


@blueprint.put("/issues/<id:issue_id>/watch")
@returns(WatchOut, errors=_NOT_FOUND)
def watch(issue: Issue) -> t.Any:
    """Watch the issue."""
    activity.set_watching(issue, viewer(), True)
    db.session.commit()
    return WatchOut(watching=True)


@blueprint.delete("/issues/<id:issue_id>/watch")
@returns(WatchOut, errors=_NOT_FOUND)
def unwatch(issue: Issue) -> t.Any:
    """Stop watching the issue; commenting on it or being mentioned later
    does not start watching it again (use PUT)."""
    activity.set_watching(issue, viewer(), False)
    db.session.commit()
    return WatchOut(watching=False)


@blueprint.get("/notifications")
@validate(query=NotificationQuery)
@returns(list[NotificationOut], paginated=True)
def list_notifications(query: NotificationQuery) -> t.Any:
    """The caller's notifications in all their organizations, newest first."""
    stmt = activity.inbox(viewer(), unread_only=query.unread)
    return ApiResult(page=paginate(stmt, order_by=activity.INBOX_ORDER))


@blueprint.get("/notifications/unread")
@returns(UnreadOut)
def unread_notifications() -> t.Any:
    """How many notifications the caller has not read (the header's count)."""
    return UnreadOut(unread=activity.unread_count(viewer()))


@blueprint.post("/notifications/read")
@returns(MarkedOut)
def mark_all_read() -> t.Any:
    """Mark all of the caller's notifications read."""
    marked = activity.mark_read(viewer())
    db.session.commit()
    return MarkedOut(marked=marked)


@blueprint.post("/notifications/<id:notification_id>/read")
@returns(MarkedOut, errors={404: "Not found, or not the caller's"})
def mark_read(notification_id: int) -> t.Any:
    """Mark one of the caller's notifications read (`marked` is 0 when it
    was read already)."""
    user = viewer()
    if activity.get_notification(user, notification_id) is None:
        raise NotFound("The requested resource was not found.")
    marked = activity.mark_read(user, notification_id)
    db.session.commit()
    return MarkedOut(marked=marked)


@blueprint.get("/orgs/<org_slug>/mentionable")
@validate(query=MentionQuery)
@returns(list[MentionableOut], errors=_NOT_FOUND)
def mentionable(query: MentionQuery) -> t.Any:
    """Members of the organization whose handle or name starts with ``q``
    (at most 8): what ``@`` offers in the text boxes."""
    wanted = query.q.strip().lstrip("@").casefold()
    found = [
        MentionableOut(id=m.user_id, name=m.name, handle=m.handle)
        for m in mentions.members(current_org.id)
        if m.handle.startswith(wanted)
        or any(part.startswith(wanted) for part in m.name.casefold().split())
    ]
    return found[:8]
