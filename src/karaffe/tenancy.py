"""Organizations, memberships, and the security context (slides 49-50).

Every row of a model that mixes in :class:`OrgOwned` belongs to one
organization, and the ORM only ever shows the rows of the organizations
available to whoever the code acts for::

    class Project(OrgOwned, db.Model):
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str]

    @blueprint.get("/api/projects")
    @login_required
    def list_projects():
        # Only the current user's organizations' projects: no WHERE needed.
        return ApiResult([p.title for p in db.session.scalars(select(Project))])

Who the code acts for (its *scope*), innermost first:

- ``with unscoped("nightly export of every org"):`` everything, logged with
  the reason (``git grep unscoped(`` lists every opt-out);
- ``with for_organization(org):`` one organization (jobs, CLI);
- ``with acting_as(user):`` the organizations of ``user``;
- in a request: the organizations of :data:`karaffe.auth.current_user`;
- otherwise nothing: org-owned rows are invisible and cannot be written.

Reads are filtered by a ``do_orm_execute`` hook adding
``with_loader_criteria`` to every ORM statement (selects, ``get``, lazy and
eager loads, joins, counts, bulk UPDATE and DELETE); writes are checked in
``before_flush`` and for ORM bulk INSERT/UPDATE; SQL that bypasses the ORM on
org-owned tables is refused (tests, debug) or logged (production).

Memberships change through :func:`add_member`, :func:`change_role` and
:func:`remove_member` (or the ORM's unit of work): once a change commits,
:data:`karaffe.signals.membership_changed` announces it, and
:mod:`karaffe.events` cuts the live streams of whoever lost access.
"""

from __future__ import annotations

from ._tenancy.context import (
    CrossOrgWrite,
    Scope,
    UnscopedQueryError,
    acting_as,
    available_organization_ids,
    current_scope,
    for_organization,
    unscoped,
)
from ._tenancy.models import (
    ROLES,
    Membership,
    Organization,
    OrgOwned,
    add_member,
    change_role,
    create_organization,
    remove_member,
)
from ._tenancy.web import (
    Tenancy,
    TenancySettings,
    current_org,
    current_role,
    get_current_org,
    get_or_404,
    init_app,
    require_role,
)

__all__ = [
    "ROLES",
    "CrossOrgWrite",
    "Membership",
    "OrgOwned",
    "Organization",
    "Scope",
    "Tenancy",
    "TenancySettings",
    "UnscopedQueryError",
    "acting_as",
    "add_member",
    "available_organization_ids",
    "change_role",
    "create_organization",
    "current_org",
    "current_role",
    "current_scope",
    "for_organization",
    "get_current_org",
    "get_or_404",
    "init_app",
    "remove_member",
    "require_role",
    "unscoped",
]
