"""Whose data a job acts on (slides 49-50 applied to cron).

Outside a request there is no current user, and :mod:`karaffe.tenancy` keeps
organization-owned rows invisible until code names its security context. A job
names it once, in its declaration, and the runner enters it around every call:

* :class:`NoContext` (the default): no tenant is named, and any ORM statement
  on organization data (an :class:`~karaffe.tenancy.OrgOwned` model or
  ``Organization``) raises :class:`MissingJobContext` instead of silently
  finding nothing; writes are refused by tenancy as everywhere. A job may
  still enter ``for_organization``/``acting_as``/``unscoped`` itself.
* :class:`Unscoped`: the job runs inside ``tenancy.unscoped(reason)``, for
  maintenance across all organizations; the reason is logged and greppable.
* :class:`PerOrganization`: the job runs once per organization inside
  ``tenancy.for_organization(org)``; one organization failing does not stop
  the others, and the run fails naming the ones that failed.
* :class:`ActingAs`: the job runs once per user inside
  ``tenancy.acting_as(user)``, seeing exactly what that user may see.
"""

from __future__ import annotations

import contextlib
import contextvars
import typing as t
from collections.abc import Callable, Iterable, Iterator

__all__ = [
    "ActingAs",
    "ForOrganization",
    "JobContext",
    "MissingJobContext",
    "NoContext",
    "PerOrganization",
    "Scope",
    "Unscoped",
    "refuse_organization_data",
]

#: The name of the job running without a context in this thread, if any.
_refusing: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "karaffe_job_without_context", default=None
)


class MissingJobContext(RuntimeError):
    """A job declared without a security context touched organization data."""


def _refuse_orm_statement(state: t.Any) -> None:
    """``do_orm_execute`` hook: refuse organization data to a job that did
    not name whose data it acts on (and has not entered a scope since)."""
    job_name = _refusing.get()
    if job_name is None or not state.is_orm_statement:
        return
    from .. import tenancy

    scope = tenancy.current_scope()
    if scope.is_unscoped or scope.user_id is not None or scope.organization_id is not None:
        return
    for mapper in state.all_mappers:
        if issubclass(mapper.class_, (tenancy.OrgOwned, tenancy.Organization)):
            raise MissingJobContext(
                f"job {job_name} read {mapper.class_.__name__} rows without naming whose data "
                "it acts on: declare @job(per_organization=True), @job(unscoped='why') or "
                "@job(context=...), or enter tenancy.for_organization(...) in the job"
            )


@contextlib.contextmanager
def refuse_organization_data(job_name: str) -> Iterator[None]:
    """Within this block, ORM statements on organization data raise
    :class:`MissingJobContext` unless a tenancy scope is entered."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    if not event.contains(Session, "do_orm_execute", _refuse_orm_statement):
        event.listen(Session, "do_orm_execute", _refuse_orm_statement)
    token = _refusing.set(job_name)
    try:
        yield
    finally:
        _refusing.reset(token)


class Scope(t.NamedTuple):
    """One call of a job: a label for the logs (``""`` for a single call)
    and the context manager the call runs in."""

    label: str
    enter: t.ContextManager[t.Any]


class JobContext:
    """Base class: how many times a job is called, and inside what."""

    def describe(self) -> str:
        """A short description for ``flask karaffe jobs`` and the logs."""
        raise NotImplementedError

    def scopes(self, job_name: str) -> Iterator[Scope]:
        """The calls to make, each with its context. Called inside the app
        context, so it may query the database."""
        raise NotImplementedError


class NoContext(JobContext):
    """Run once naming no tenant: organization data is refused."""

    def describe(self) -> str:
        return "no tenant context"

    def scopes(self, job_name: str) -> Iterator[Scope]:
        yield Scope("", refuse_organization_data(job_name))


class Unscoped(JobContext):
    """Run once inside ``tenancy.unscoped(reason)``: every organization's data."""

    def __init__(self, reason: str) -> None:
        if not reason or not reason.strip():
            raise ValueError("an unscoped job must say why it needs every organization's data")
        self.reason = reason

    def describe(self) -> str:
        return f"unscoped: {self.reason}"

    def scopes(self, job_name: str) -> Iterator[Scope]:
        from .. import tenancy

        yield Scope("", tenancy.unscoped(f"job {job_name}: {self.reason}"))


class PerOrganization(JobContext):
    """Run once per organization inside ``tenancy.for_organization(org)``.

    :param organizations: returns the organizations to visit; it is called
        inside ``tenancy.unscoped`` (listing them is itself cross-tenant).
        By default every ``Organization``, by id.
    """

    def __init__(self, organizations: Callable[[], Iterable[t.Any]] | None = None) -> None:
        self.organizations = organizations

    def describe(self) -> str:
        return "once per organization"

    def list_organizations(self, job_name: str) -> list[t.Any]:
        from .. import tenancy

        with tenancy.unscoped(f"job {job_name}: list organizations to run for"):
            if self.organizations is not None:
                return list(self.organizations())
            from sqlalchemy import select

            from ..db import db

            query = select(tenancy.Organization).order_by(tenancy.Organization.id)
            return list(db.session.scalars(query))

    def scopes(self, job_name: str) -> Iterator[Scope]:
        from .. import tenancy

        for org in self.list_organizations(job_name):
            label = f"organization {getattr(org, 'slug', None) or getattr(org, 'id', org)}"
            yield Scope(label, tenancy.for_organization(getattr(org, "id", org)))


class ForOrganization(JobContext):
    """Run once inside ``tenancy.for_organization`` of one organization,
    named by id or slug (``flask karaffe run-job --organization acme``)."""

    def __init__(self, organization: int | str) -> None:
        self.organization = organization

    def describe(self) -> str:
        return f"organization {self.organization}"

    def resolve(self) -> int:
        """The organization's id; ``LookupError`` when there is none such.
        Needs an app context."""
        from sqlalchemy import select

        from .. import tenancy
        from ..db import db

        org = tenancy.Organization
        key = self.organization
        by_id = isinstance(key, int) or key.isdigit()
        where = org.id == int(key) if by_id else org.slug == key
        with tenancy.unscoped(f"find organization {self.organization} to run a job in"):
            found = db.session.scalar(select(org.id).where(where))
        if found is None:
            raise LookupError(f"no organization {self.organization!r}")
        return found

    def scopes(self, job_name: str) -> Iterator[Scope]:
        from .. import tenancy

        yield Scope(f"organization {self.organization}", tenancy.for_organization(self.resolve()))


class ActingAs(JobContext):
    """Run once per user inside ``tenancy.acting_as(user)``: a per-user job
    (a digest) sees exactly what each user may see in the web app.

    :param users: returns the users to act as; called inside
        ``tenancy.unscoped``, since listing users crosses organizations.
    """

    def __init__(self, users: Callable[[], Iterable[t.Any]]) -> None:
        self.users = users

    def describe(self) -> str:
        return "once per user, acting as them"

    def scopes(self, job_name: str) -> Iterator[Scope]:
        from .. import tenancy

        with tenancy.unscoped(f"job {job_name}: list users to act as"):
            users = list(self.users())
        for user in users:
            label = f"user {getattr(user, 'email', None) or getattr(user, 'id', user)}"
            yield Scope(label, tenancy.acting_as(user))
