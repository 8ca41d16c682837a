"""Organizations, memberships and the :class:`OrgOwned` mixin."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, relationship

from ..auth import User, utcnow
from ..db import Model, UTCDateTime, db

__all__ = ["ROLES", "Membership", "OrgOwned", "Organization", "create_organization", "role_rank"]

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
    role: Mapped[str] = mapped_column(sa.String(20), default="member")
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
