"""What a user can do, once, for both the HTML pages and the JSON API.

Views parse input (forms or JSON, with the models of :mod:`tracker.schemas`)
and render output; everything in between lives here: permission checks,
cross-object rules (an assignee must be a member, a label must be the
organization's), and the writes. Refusals are exceptions the app already
renders both ways:

- :class:`~tracker.forms.FieldError` for a value a rule refuses: a form error
  next to the field, or a 422 with ``loc: ["body", field]``;
- Werkzeug's ``NotFound`` / ``Forbidden`` / ``Conflict``: an HTML error page,
  or a problem+json document on API routes.

Nothing here commits: the caller commits once the whole action succeeded.
"""

from __future__ import annotations

import datetime as dt
import re
import typing as t
import unicodedata

import sqlalchemy as sa
from flask import current_app
from itsdangerous import BadSignature, SignatureExpired
from sqlalchemy.orm import contains_eager
from werkzeug.exceptions import Conflict, Forbidden, NotFound

from karaffe import tenancy
from karaffe.auth import User, utcnow
from karaffe.db import db
from karaffe.signing import signer_for
from karaffe.tenancy import (
    ROLES,
    Membership,
    Organization,
    OrgOwned,
    available_organization_ids,
    create_organization,
    get_or_404,
    unscoped,
)

from . import activity, keys, live, mentions
from .forms import FieldError
from .labels import DEFAULT_LABELS, color_for
from .models import Comment, Invitation, Issue, Label, Project
from .schemas import IssueIn, IssuePatch, LabelPatch, ProjectIn, ProjectPatch, Status
from .settings import TrackerSettings

#: What invitation links are signed for (see karaffe.signing).
INVITATION_SALT = "tracker.invitation"

M = t.TypeVar("M", bound=OrgOwned)


def _rank(role: str | None) -> int:
    return -1 if role is None else ROLES.index(role)


# -- organizations and roles --------------------------------------------------------


def role_in(org_id: int, user_id: int) -> str | None:
    """The role of user ``user_id`` in organization ``org_id``, ``None`` if
    not a member."""
    return db.session.execute(
        sa.select(Membership.role).where(
            Membership.organization_id == org_id, Membership.user_id == user_id
        )
    ).scalar_one_or_none()


def require_member(org_id: int, user: User) -> str:
    """The role of ``user`` in ``org_id``; 404 if they are not a member, so
    another organization's objects look exactly like missing ones."""
    role = role_in(org_id, user.id)
    if role is None:
        raise NotFound("The requested resource was not found.")
    return role


def require_visible(org_id: int) -> None:
    """404 unless ``org_id`` is one of the organizations the current scope
    (the request's user) may see: a second check behind the tenancy filter,
    answered from the memberships the scope has loaded already."""
    if org_id not in available_organization_ids():
        raise NotFound("The requested resource was not found.")


def require_role(org_id: int, user: User, needed: str) -> str:
    """Like :func:`require_member`, and 403 when the role is below ``needed``."""
    role = require_member(org_id, user)
    if _rank(role) < _rank(needed):
        raise Forbidden(f"Only an organization {needed} can do this.")
    return role


def get_visible(model: type[M], ident: int) -> M:
    """The ``model`` row (a project, label, issue, comment...) with primary
    key ``ident``, if the current scope may see it; else 404, the same for a
    row that does not exist and for another organization's."""
    row = get_or_404(model, ident)
    require_visible(row.organization_id)
    return row


def organizations_of(user: User) -> list[tuple[Organization, str]]:
    """``user``'s organizations with their role, by name."""
    rows = db.session.execute(
        sa.select(Organization, Membership.role)
        .join(Membership, Membership.organization_id == Organization.id)
        .where(Membership.user_id == user.id)
        .order_by(Organization.name)
    )
    return [(org, role) for org, role in rows]


def organization_links(user: User) -> list[dict[str, t.Any]]:
    """``user``'s organizations by name as ``{"id", "name", "slug", "role"}``
    (what every page's menu shows: columns, no ORM object)."""
    rows = db.session.execute(_ORGANIZATION_LINKS, {"user_id": user.id})
    return [row._asdict() for row in rows]


#: Built once, for every page's menu: a statement built anew costs more
#: than running it (its cache key is computed again).
_ORGANIZATION_LINKS = (
    sa.select(Organization.id, Organization.name, Organization.slug, Membership.role)
    .join(Membership, Membership.organization_id == Organization.id)
    .where(Membership.user_id == sa.bindparam("user_id"))
    .order_by(Organization.name)
)


def header_links(user: User) -> tuple[list[dict[str, t.Any]], int]:
    """What every page's header shows, in one statement: ``user``'s
    organizations as :func:`organization_links` gives them, and their
    unread notifications as :func:`tracker.activity.unread_count` counts
    them (a column of each row, the same on every one). With no
    organization the count is 0: every notification belongs to an
    organization, and the scope sees only the user's."""
    rows = db.session.execute(_HEADER, {"user_id": user.id}).all()
    orgs = [{"id": i, "name": name, "slug": slug, "role": role} for i, name, slug, role, _ in rows]
    return orgs, int(rows[0].unread) if rows else 0


_HEADER = _ORGANIZATION_LINKS.add_columns(activity.UNREAD_COUNT_COLUMN)


def slugify(name: str) -> str:
    """A URL-safe slug for ``name``: ``"Acme Corp."`` -> ``"acme-corp"``."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:60] or "org"


def unique_slug(name: str) -> str:
    """A slug for ``name`` no organization has yet (``acme``, ``acme-2``...)."""
    base = slugify(name)
    with unscoped("organization slugs are unique across all organizations"):
        taken = set(
            db.session.execute(
                sa.select(Organization.slug).where(
                    sa.or_(Organization.slug == base, Organization.slug.like(f"{base}-%"))
                )
            ).scalars()
        )
    slug, n = base, 1
    while slug in taken:
        n += 1
        slug = f"{base}-{n}"
    return slug


def _same_name(name: str) -> str:
    return " ".join(name.casefold().split())


def create_org(name: str, owner: User) -> Organization:
    """A new organization owned by ``owner``, with the default labels. Names
    need not be unique across the site (two companies may both be "Acme"; the
    slug tells them apart),
    but one person is refused a second organization of a name they already
    belong to (letter case and spacing aside): that is a double submit or a
    mix-up, and would put two identical entries in their top bar."""
    for org, _role in organizations_of(owner):
        if _same_name(org.name) == _same_name(name):
            raise FieldError(
                "name",
                f"You already belong to an organization named “{org.name}”: choose another name.",
                "taken",
            )
    org = create_organization(name, unique_slug(name), owner=owner)
    db.session.flush()
    add_default_labels(org.id)
    return org


def members_of(org_id: int) -> list[Membership]:
    """The memberships of an organization, by name, with their users."""
    return list(
        db.session.execute(
            sa.select(Membership)
            .join(User, User.id == Membership.user_id)
            .options(contains_eager(Membership.user))
            .where(Membership.organization_id == org_id)
            .order_by(User.name, User.id)
        ).scalars()
    )


def get_membership(org_id: int, user_id: int) -> Membership:
    """The membership of ``user_id`` in ``org_id``; 404 if there is none."""
    membership = db.session.execute(
        sa.select(Membership).where(
            Membership.organization_id == org_id, Membership.user_id == user_id
        )
    ).scalar_one_or_none()
    if membership is None:
        raise NotFound("That user is not a member of this organization.")
    return membership


def rename(user: User, name: str) -> None:
    """Change ``user``'s name; the issue lists that show them as an assignee
    hear of it."""
    if name != user.name:
        user.name = name
        live.member_renamed(user)
    db.session.flush()


def _owners(org_id: int) -> int:
    return db.session.execute(
        sa.select(sa.func.count())
        .select_from(Membership)
        .where(Membership.organization_id == org_id, Membership.role == "owner")
    ).scalar_one()


# Memberships change through karaffe.tenancy, which announces each change once
# committed: whoever loses access loses their live streams too.


def change_role(org_id: int, actor: User, user_id: int, role: str) -> Membership:
    """Give member ``user_id`` the ``role``. Admins manage members and admins;
    only owners make or unmake owners; the last owner stays an owner."""
    actor_role = require_role(org_id, actor, "admin")
    membership = get_membership(org_id, user_id)
    if role not in ROLES:
        raise FieldError("role", f"Role must be one of {', '.join(ROLES)}.")
    if "owner" in (role, membership.role) and actor_role != "owner":
        raise Forbidden("Only an owner can make or unmake owners.")
    if membership.role == "owner" and role != "owner" and _owners(org_id) <= 1:
        raise Conflict("An organization needs an owner: make someone else owner first.")
    tenancy.change_role(membership, role)
    return membership


def remove_member(org_id: int, actor: User, user_id: int) -> Membership:
    """Remove member ``user_id`` (admins; only owners remove owners). Leaving
    is :func:`leave`."""
    actor_role = require_role(org_id, actor, "admin")
    if user_id == actor.id:
        raise Conflict("To leave the organization, use Leave.")
    membership = get_membership(org_id, user_id)
    if membership.role == "owner" and actor_role != "owner":
        raise Forbidden("Only an owner can remove an owner.")
    tenancy.remove_member(membership)
    _recount_unread(user_id)
    return membership


def _recount_unread(user_id: int) -> None:
    """The unread count of someone who just lost access to an organization
    (its notifications no longer count) goes to their header, live."""
    db.session.flush()
    activity.announce_unread([user_id])


def leave(org_id: int, user: User) -> None:
    """``user`` leaves the organization; its last owner cannot."""
    role = require_member(org_id, user)
    if role == "owner" and _owners(org_id) <= 1:
        raise Conflict("You are the last owner: make someone else owner before leaving.")
    tenancy.remove_member(get_membership(org_id, user.id))
    _recount_unread(user.id)


# -- invitations ----------------------------------------------------------------------


def invitation_days() -> int:
    return TrackerSettings.of().invitation_days


def create_invitation(org_id: int, actor: User, role: str) -> tuple[Invitation, str]:
    """A new invitation into ``org_id`` and its signed token (for the link)."""
    require_role(org_id, actor, "admin")
    invitation = Invitation(
        organization_id=org_id,
        role=role,
        created_by_id=actor.id,
        expires_at=utcnow() + dt.timedelta(days=invitation_days()),
    )
    db.session.add(invitation)
    db.session.flush()
    token = signer_for(current_app, INVITATION_SALT).dumps({"i": invitation.id, "o": org_id})
    return invitation, token


def read_invitation(token: str) -> Invitation:
    """The invitation a link's token names: 404 when the signature is wrong
    or it was used, 410 (Gone) when it expired."""
    try:
        signer = signer_for(current_app, INVITATION_SALT)
        data = signer.loads(token, max_age=invitation_days() * 86400)
        invitation_id, org_id = int(data["i"]), int(data["o"])
    except SignatureExpired:
        raise _Gone() from None
    except (BadSignature, KeyError, TypeError, ValueError):
        raise NotFound("This invitation link is not valid.") from None
    with unscoped("reading the invitation a signed link names"):
        invitation = db.session.execute(
            sa.select(Invitation).where(
                Invitation.id == invitation_id, Invitation.organization_id == org_id
            )
        ).scalar_one_or_none()
        if invitation is None or invitation.accepted_at is not None:
            raise NotFound("This invitation link was already used or withdrawn.")
        if invitation.expires_at <= utcnow():
            raise _Gone()
        # Load what the page shows while still allowed to see it.
        _ = invitation.organization.name, invitation.created_by
    return invitation


class _Gone(NotFound):
    code = 410
    description = "This invitation link has expired: ask for a new one."


def accept_invitation(token: str, user: User) -> Organization:
    """``user`` joins the organization of the invitation (once)."""
    invitation = read_invitation(token)
    with unscoped("joining the organization of a signed invitation"):
        org = invitation.organization
        if role_in(org.id, user.id) is None:
            tenancy.add_member(org, user, invitation.role)
        invitation.accepted_by_id = user.id
        invitation.accepted_at = utcnow()
        db.session.flush()
    return org


# -- projects ----------------------------------------------------------------------------


def projects_of(org_id: int) -> list[Project]:
    return list(
        db.session.execute(
            sa.select(Project).where(Project.organization_id == org_id).order_by(Project.name)
        ).scalars()
    )


def open_issue_counts(org_id: int) -> dict[int, int]:
    rows = db.session.execute(
        sa.select(Issue.project_id, sa.func.count())
        .where(Issue.organization_id == org_id, Issue.status == "open")
        .group_by(Issue.project_id)
    )
    return {project_id: count for project_id, count in rows}


def create_project(org_id: int, actor: User, data: ProjectIn) -> Project:
    """A new project; its key is the one asked for (409 when the
    organization has it already) or one made from its name."""
    require_member(org_id, actor)
    taken = set(
        db.session.execute(
            sa.select(Project.key).where(Project.organization_id == org_id)
        ).scalars()
    )
    if data.key is not None and data.key in taken:
        raise FieldError("key", "Another project of this organization has this key.", "taken")
    key = data.key or keys.project_key_for(data.name, taken)
    project = Project(organization_id=org_id, name=data.name, key=key, description=data.description)
    db.session.add(project)
    db.session.flush()
    return project


def update_project(project: Project, actor: User, data: ProjectPatch | ProjectIn) -> Project:
    """Change its name and description. The key stays: keys once shared
    keep naming the same issues."""
    require_member(project.organization_id, actor)
    for name in data.model_fields_set - {"key"}:
        value = getattr(data, name)
        if value is not None:
            setattr(project, name, value)
    db.session.flush()
    return project


def delete_project(project: Project, actor: User) -> None:
    require_role(project.organization_id, actor, "admin")
    unread = activity.unread_readers(project_id=project.id)
    db.session.delete(project)
    db.session.flush()
    activity.announce_unread(unread)


# -- labels ------------------------------------------------------------------------------


def labels_of(org_id: int) -> list[Label]:
    return list(
        db.session.execute(
            sa.select(Label).where(Label.organization_id == org_id).order_by(Label.name)
        ).scalars()
    )


def all_labels() -> list[Label]:
    """The labels of every organization the current scope may see."""
    return list(db.session.execute(sa.select(Label).order_by(Label.id)).scalars())


def _check_label_name(org_id: int, name: str, label_id: int | None = None) -> None:
    stmt = sa.select(Label.id).where(Label.organization_id == org_id, Label.name == name)
    if label_id is not None:
        stmt = stmt.where(Label.id != label_id)
    if db.session.execute(stmt).first():
        raise FieldError("name", "This organization already has a label with that name.", "taken")


def create_label(org_id: int, actor: User, name: str, color: str | None = None) -> Label:
    """A new label (admins); without ``color``, one of the palette's."""
    require_role(org_id, actor, "admin")
    _check_label_name(org_id, name)
    label = Label(organization_id=org_id, name=name, color=color or color_for(name))
    db.session.add(label)
    db.session.flush()
    return label


def update_label(label: Label, actor: User, data: LabelPatch) -> Label:
    """Rename or recolour a label (admins)."""
    require_role(label.organization_id, actor, "admin")
    for name in ("name", "color"):
        if name in data.model_fields_set and getattr(data, name) is None:
            raise FieldError(name, "This field cannot be null.", "null")
    if data.name is not None:
        _check_label_name(label.organization_id, data.name, label.id)
        label.name = data.name
    if data.color is not None:
        label.color = data.color
    if db.session.is_modified(label):
        live.label_changed("updated", label)
    db.session.flush()
    return label


def add_default_labels(org_id: int) -> list[Label]:
    """The labels a new organization starts with (:data:`tracker.labels.DEFAULT_LABELS`)."""
    labels = [Label(organization_id=org_id, name=n, color=c) for n, c in DEFAULT_LABELS]
    db.session.add_all(labels)
    db.session.flush()
    return labels


def delete_label(label: Label, actor: User) -> None:
    require_role(label.organization_id, actor, "admin")
    live.label_changed("deleted", label)
    db.session.delete(label)
    db.session.flush()


# -- issues ------------------------------------------------------------------------------


def _check_assignee(org_id: int, assignee_id: int | None) -> None:
    if assignee_id is not None and role_in(org_id, assignee_id) is None:
        raise FieldError(
            "assignee_id", f"No member of this organization has the id {assignee_id}.", "unknown"
        )


def _labels(org_id: int, label_ids: list[int]) -> list[Label]:
    wanted = list(dict.fromkeys(label_ids))
    if not wanted:
        return []
    found = list(
        db.session.execute(
            sa.select(Label).where(Label.id.in_(wanted), Label.organization_id == org_id)
        ).scalars()
    )
    missing = sorted(set(wanted) - {label.id for label in found})
    if missing:
        raise FieldError(
            "label_ids",
            f"No label of this organization has the id {', '.join(map(str, missing))}.",
            "unknown",
        )
    return found


def create_issue(project: Project, actor: User, data: IssueIn) -> Issue:
    require_member(project.organization_id, actor)
    _check_assignee(project.organization_id, data.assignee_id)
    labels = _labels(project.organization_id, data.label_ids)
    issue = Issue(  # its number and key are given on insert: tracker.keys
        organization_id=project.organization_id,
        project_id=project.id,
        title=data.title,
        description=data.description,
        assignee_id=data.assignee_id,
        author_id=actor.id,
        labels=labels,
    )
    db.session.add(issue)
    db.session.flush()
    activity.record(
        issue,
        actor,
        "created",
        mentions=mentions.mentioned(issue.description, mentions.ids(issue.organization_id)),
        assigned=issue.assignee_id,
        watchers=[actor.id],
    )
    live.issue_changed("created", issue)
    return issue


def _person(user_id: int | None) -> dict[str, t.Any] | None:
    if user_id is None:
        return None
    user = db.session.get(User, user_id)
    return {"id": user_id, "name": user.name if user else ""}


def _record_changes(
    issue: Issue, actor: User, before: dict[str, t.Any], labels_before: list[str] | None
) -> None:
    """One activity row per field ``update_issue`` changed."""
    for field in ("title", "status"):
        if before[field] != getattr(issue, field):
            activity.record(
                issue, actor, field, {"from": before[field], "to": getattr(issue, field)}
            )
    if before["description"] != issue.description:
        handles = mentions.ids(issue.organization_id)
        new = set(mentions.mentioned(issue.description, handles))
        old = set(mentions.mentioned(before["description"], handles))
        activity.record(issue, actor, "description", mentions=sorted(new - old))
    if before["assignee_id"] != issue.assignee_id:
        activity.record(
            issue,
            actor,
            "assignee",
            {"from": _person(before["assignee_id"]), "to": _person(issue.assignee_id)},
            assigned=issue.assignee_id,
        )
    if labels_before is not None:
        after = [label.name for label in issue.labels]
        added = [n for n in after if n not in labels_before]
        removed = [n for n in labels_before if n not in after]
        if added or removed:
            activity.record(issue, actor, "labels", {"added": added, "removed": removed})


def update_issue(issue: Issue, actor: User, data: IssuePatch) -> Issue:
    """Change the fields ``data`` was given (``assignee_id: null`` unassigns)."""
    require_member(issue.organization_id, actor)
    fields = data.model_fields_set
    before = {
        name: getattr(issue, name) for name in ("title", "description", "status", "assignee_id")
    }
    labels_before = [label.name for label in issue.labels] if "label_ids" in fields else None
    for name in ("title", "description", "status"):
        value = getattr(data, name)
        if name in fields and value is None:
            raise FieldError(name, "This field cannot be null.", "null")
        if value is not None:
            setattr(issue, name, value)
    if "assignee_id" in fields:
        _check_assignee(issue.organization_id, data.assignee_id)
        issue.assignee_id = data.assignee_id
    if "label_ids" in fields:
        if data.label_ids is None:
            raise FieldError("label_ids", "This field cannot be null.", "null")
        issue.labels = _labels(issue.organization_id, data.label_ids)
    if db.session.is_modified(issue) or "label_ids" in fields:
        issue.updated_at = utcnow()
    db.session.flush()
    db.session.refresh(issue)
    _record_changes(issue, actor, before, labels_before)
    live.issue_changed("updated", issue)
    return issue


def delete_issue(issue: Issue, actor: User) -> None:
    """Its author or an admin may delete an issue."""
    role = require_member(issue.organization_id, actor)
    if not may_change(issue.author_id, actor, role):
        raise Forbidden("Only the issue's author or an organization admin can delete it.")
    live.issue_changed("deleted", issue)
    unread = activity.unread_readers(issue_id=issue.id)
    db.session.delete(issue)
    db.session.flush()
    activity.announce_unread(unread)


# Lists of issues (filters, sort orders, counts, search, keys): tracker.finding.


def assigned_to(user: User, limit: int = 10) -> list[Issue]:
    return list(
        db.session.execute(
            sa.select(Issue)
            .where(Issue.assignee_id == user.id, Issue.status == "open")
            .order_by(Issue.id.desc())
            .limit(limit)
        ).scalars()
    )


# -- comments ----------------------------------------------------------------------------


def comments_of(issue: Issue) -> list[Comment]:
    return list(
        db.session.execute(
            sa.select(Comment).where(Comment.issue_id == issue.id).order_by(Comment.id)
        ).scalars()
    )


def add_comment(issue: Issue, actor: User, body: str, status: Status | None = None) -> Comment:
    """A comment on ``issue``; with ``status``, the issue is closed or
    reopened by the same write, announced as one ``issue.updated`` event
    that names the comment (a status it has already is left as it is)."""
    require_member(issue.organization_id, actor)
    comment = Comment(
        organization_id=issue.organization_id, issue_id=issue.id, author_id=actor.id, body=body
    )
    db.session.add(comment)
    issue.updated_at = utcnow()
    changes_status = status is not None and status != issue.status
    old_status = issue.status
    if changes_status:
        issue.status = t.cast(str, status)
    db.session.flush()
    activity.record(
        issue,
        actor,
        "comment",
        {"comment_id": comment.id},
        mentions=mentions.mentioned(body, mentions.ids(issue.organization_id)),
        watchers=[actor.id],
    )
    if changes_status:
        activity.record(issue, actor, "status", {"from": old_status, "to": issue.status})
    if changes_status:
        live.issue_changed("updated", issue, comment_id=comment.id)
    else:
        live.comment_added(comment, issue)
    return comment


def may_change(author_id: int | None, actor: User, role: str | None) -> bool:
    """Whether ``actor`` (with ``role`` in the organization) may edit or
    delete what ``author_id`` wrote: their own, or anything as an admin. The
    pages offer only what this allows; the services enforce it."""
    return author_id == actor.id or _rank(role) >= _rank("admin")


def _require_change(comment: Comment, actor: User, verb: str) -> None:
    role = require_member(comment.organization_id, actor)
    if not may_change(comment.author_id, actor, role):
        raise Forbidden(f"Only the comment's author or an organization admin can {verb} it.")


def edit_comment(comment: Comment, actor: User, body: str) -> Comment:
    """Replace the text of a comment (its author or an admin)."""
    _require_change(comment, actor, "edit")
    if body != comment.body:
        handles = mentions.ids(comment.organization_id)
        added = set(mentions.mentioned(body, handles)) - set(
            mentions.mentioned(comment.body, handles)
        )
        comment.body = body
        comment.edited_at = utcnow()
        db.session.flush()
        if added:
            # Only the newly mentioned hear of an edit, not the watchers.
            issue = get_or_404(Issue, comment.issue_id)
            activity.record(
                issue,
                actor,
                "comment",
                {"comment_id": comment.id, "edited": True},
                mentions=sorted(added),
            )
        live.comment_changed("updated", comment, get_or_404(Issue, comment.issue_id))
    return comment


def delete_comment(comment: Comment, actor: User) -> None:
    _require_change(comment, actor, "delete")
    live.comment_changed("deleted", comment, get_or_404(Issue, comment.issue_id))
    db.session.delete(comment)
    db.session.flush()
