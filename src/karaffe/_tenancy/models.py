"""Organizations, memberships and the :class:`OrgOwned` mixin, and the
:data:`karaffe.signals.membership_changed` signal of every membership change."""

from __future__ import annotations

import datetime as dt
import typing as t

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Mapped, Session, declared_attr, mapped_column, relationship

from ..auth import User, utcnow
from ..db import Model, UTCDateTime, after_commit, db
from ..signals import membership_changed

__all__ = [
    "ROLES",
    "Membership",
    "OrgOwned",
    "Organization",
    "add_member",
    "change_role",
    "create_organization",
    "remove_member",
    "role_rank",
]

#: Roles in a membership, from least to most powerful; each includes the ones
#: before it (an owner may do what an admin may).
ROLES: tuple[str, ...] = ("member", "admin", "owner")


def role_rank(role: str) -> int:
    """The position of ``role`` in :data:`ROLES`; ``ValueError`` if unknown."""
    try:
        return ROLES.index(role)
    except ValueError:
        raise ValueError(f"unknown role {role!r}; expected one of {ROLES}") from None


class Organization(Model):
    """A tenant: the unit that owns data and that users are members of."""

    __tablename__ = "organization"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    slug: Mapped[str] = mapped_column(sa.String(100), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="organization", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<Organization {self.id} {self.slug!r}>"


class OrgOwned:
    """Mixin for models whose rows belong to one organization: adds an
    indexed, non-null ``organization_id`` and the ``organization``
    relationship, and puts the model under the tenancy filter."""

    @declared_attr
    def organization_id(cls) -> Mapped[int]:
        return mapped_column(
            sa.ForeignKey("organization.id", ondelete="CASCADE"), index=True, nullable=False
        )

    @declared_attr
    def organization(cls) -> Mapped[Organization]:
        return relationship(Organization)


class Membership(OrgOwned, Model):
    """A user's membership of an organization, with a role from :data:`ROLES`.
    Memberships are org-owned themselves: nobody sees who belongs to an
    organization they are not in."""

    __tablename__ = "membership"
    __table_args__ = (
        sa.UniqueConstraint("user_id", "organization_id"),
        sa.CheckConstraint("role IN ('member', 'admin', 'owner')", name="role"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    # The role before a change is loaded, so that a change can say what it was.
    role: Mapped[str] = mapped_column(sa.String(20), default="member", active_history=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    user: Mapped[User] = relationship()
    organization: Mapped[Organization] = relationship(back_populates="memberships")

    def __repr__(self) -> str:
        return f"<Membership user={self.user_id} org={self.organization_id} {self.role}>"


def create_organization(name: str, slug: str, owner: User | None = None) -> Organization:
    """A new organization (with ``owner`` as its owner), added to the
    session. Allowed in any scope: a new organization holds nobody's data
    yet, and rows created with it in the same flush may go into it."""
    org = Organization(name=name, slug=slug)
    db.session.add(org)
    if owner is not None:
        db.session.add(Membership(organization=org, user=owner, role="owner"))
    return org


def add_member(org: Organization, user: User, role: str = "member") -> Membership:
    """Make ``user`` a member of ``org`` with ``role``, added to the session
    (commit to keep it)."""
    role_rank(role)
    membership = Membership(organization=org, user=user, role=role)
    db.session.add(membership)
    return membership


def change_role(membership: Membership, role: str) -> None:
    """Give ``membership`` the ``role`` (commit to keep it). Once committed,
    :data:`~karaffe.signals.membership_changed` says so, and a lower role
    cuts the member's live streams (:mod:`karaffe.events`)."""
    role_rank(role)
    membership.role = role


def remove_member(membership: Membership) -> None:
    """End ``membership`` (commit to keep it). Once committed,
    :data:`~karaffe.signals.membership_changed` says so, and the former
    member's live streams are cut on every relay (:mod:`karaffe.events`)."""
    db.session.delete(membership)


# -- membership_changed --------------------------------------------------------------

#: (user id, organization id, old role, new role) noted before a flush.
_Change = tuple[int, int, str | None, str | None]
_NOTED = "karaffe.tenancy.membership-changes"


@event.listens_for(Session, "before_flush")
def _note_changes(session: Session, flush_context: t.Any, instances: t.Any) -> None:
    """Note removed memberships and changed roles while their rows still
    exist (a deleted organization's memberships go with it, in the database)."""
    removed: dict[tuple[int, int], str] = {}
    for obj in session.deleted:
        if isinstance(obj, Membership):
            removed[obj.user_id, obj.organization_id] = obj.role
        elif isinstance(obj, Organization) and obj.id is not None:
            table = t.cast(sa.Table, Membership.__table__)
            rows = session.execute(
                sa.select(table.c.user_id, table.c.role).where(table.c.organization_id == obj.id)
            )
            for user_id, role in rows:
                removed.setdefault((user_id, obj.id), role)
    noted: list[_Change] = [(user, org, role, None) for (user, org), role in removed.items()]
    for obj in session.dirty:
        if isinstance(obj, Membership) and obj not in session.deleted:
            history = sa.inspect(obj).attrs.role.history
            if history.added and history.deleted and history.added[0] != history.deleted[0]:
                noted.append((obj.user_id, obj.organization_id, history.deleted[0], obj.role))
    if noted:
        session.info.setdefault(_NOTED, []).extend(noted)


@event.listens_for(Session, "after_soft_rollback")
def _forget_changes(session: Session, previous_transaction: t.Any) -> None:
    """A flush that failed after its changes were noted changed nothing."""
    session.info.pop(_NOTED, None)


@event.listens_for(Session, "after_flush")
def _send_changes(session: Session, flush_context: t.Any) -> None:
    """Announce the flush's membership changes when its transaction commits."""
    changes: list[_Change] = session.info.pop(_NOTED, [])
    changes.extend(
        (obj.user_id, obj.organization_id, None, obj.role)
        for obj in session.new
        if isinstance(obj, Membership)
    )
    if not changes or not has_app_context():
        return
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def announce() -> None:
        for user_id, org_id, old, new in changes:
            membership_changed.send(
                app, user_id=user_id, organization_id=org_id, old_role=old, new_role=new
            )

    after_commit(announce, session)
