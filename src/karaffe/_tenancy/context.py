"""The security context: whose organizations the code acts for, and the
SQLAlchemy hooks that enforce it on reads, writes and raw SQL."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys
import typing as t
import weakref
from collections.abc import Iterable, Iterator

import sqlalchemy as sa
from flask import Flask, g, has_request_context
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria
from sqlalchemy.sql import visitors

from ..api.errors import Forbidden
from ..auth import (
    User,
    forget_loaded_with_user,
    get_user,
    load_with_user,
    loaded_with_user,
    user_changed,
)
from ..db import Model, db, is_flushing
from .models import Membership, Organization, OrgOwned

__all__ = [
    "CrossOrgWrite",
    "Scope",
    "UnscopedQueryError",
    "acting_as",
    "available_organization_ids",
    "current_scope",
    "for_organization",
    "install_raw_sql_guard",
    "unscoped",
]

log = logging.getLogger("karaffe.tenancy")

#: The ``g`` key of the request's scope (forgotten on login and logout).
REQUEST_SCOPE_KEY = "_karaffe_org_ids"


class CrossOrgWrite(Forbidden):
    """A write into (or out of) an organization the current scope may not
    write: a 403 on API routes."""

    slug = "cross-organization-write"
    title = "Write outside your organizations refused"


class UnscopedQueryError(RuntimeError):
    """SQL that bypasses the ORM touched an org-owned table outside
    :func:`unscoped` (raised in testing and debug; logged otherwise)."""


class Scope:
    """Whose organizations the code acts for.

    ``org_ids`` is ``None`` for an :func:`unscoped` block (everything), else
    the set of visible and writable organization ids. A user's scope is
    computed from their memberships on first use and recomputed after a
    flush that changes memberships.
    """

    __slots__ = ("_org_ids", "label", "organization_id", "reason", "user_id")

    def __init__(
        self,
        *,
        org_ids: frozenset[int] | None = frozenset(),
        user_id: int | None = None,
        organization_id: int | None = None,
        reason: str | None = None,
        label: str = "no context",
    ) -> None:
        self._org_ids = org_ids
        self.user_id = user_id
        self.organization_id = organization_id
        self.reason = reason
        self.label = label

    @property
    def org_ids(self) -> frozenset[int] | None:
        if self.reason is not None:
            return None
        if self._org_ids is None:
            # Only an unscoped() block (it has a reason) sees everything: a
            # scope that cannot say whose it is sees nothing.
            if self.user_id is None:
                return frozenset()
            self._org_ids = _memberships_of(self.user_id)
        return self._org_ids

    @property
    def is_unscoped(self) -> bool:
        return self.reason is not None

    def forget(self) -> None:
        """Recompute a user's organizations on next use."""
        if self.user_id is not None and self.reason is None:
            self._org_ids = None

    def __repr__(self) -> str:
        return f"<Scope {self.label}>"


_NOTHING = Scope(label="no context")
_stack: contextvars.ContextVar[tuple[Scope, ...]] = contextvars.ContextVar(
    "karaffe_tenancy_scope", default=()
)


def _memberships_of(user_id: int) -> frozenset[int]:
    with _bypass():
        rows = db.session.execute(
            sa.select(Membership.organization_id).where(Membership.user_id == user_id)
        )
        return frozenset(rows.scalars())


#: The name under which a request's user is loaded with their organizations.
_ORG_IDS = "karaffe.tenancy.org_ids"
_NOT_LOADED = object()


def _org_ids_column(user_id: sa.ColumnElement[int]) -> sa.ColumnElement[t.Any]:
    """The ids of a user's organizations, comma-separated (NULL for none),
    selected with the user by the query that authenticates a request: a
    request's scope then costs no query. On the membership table, not the
    model: the tenancy filter does not apply to it (there is no scope yet)."""
    table = t.cast(sa.Table, Membership.__table__)
    ids = sa.cast(table.c.organization_id, sa.String)
    return (
        sa.select(sa.func.aggregate_strings(ids, ","))
        .where(table.c.user_id == user_id)
        .scalar_subquery()
    )


load_with_user(_ORG_IDS, _org_ids_column)


def _loaded_org_ids(user: User) -> frozenset[int] | None:
    """The user's organizations as loaded with them, ``None`` if they were not."""
    loaded = loaded_with_user(user, _ORG_IDS, _NOT_LOADED)
    if loaded is _NOT_LOADED:
        return None
    return frozenset(int(i) for i in loaded.split(",")) if loaded else frozenset()


@contextlib.contextmanager
def _push(scope: Scope) -> Iterator[Scope]:
    token = _stack.set((*_stack.get(), scope))
    try:
        yield scope
    finally:
        _stack.reset(token)


@contextlib.contextmanager
def _bypass() -> Iterator[None]:
    """karaffe's own internal lookups (memberships): not an app opt-out."""
    with _push(Scope(org_ids=None, reason="karaffe internal", label="internal")):
        yield


def current_scope() -> Scope:
    """The scope in force: the innermost ``acting_as`` / ``for_organization``
    / ``unscoped`` block, else the request's user, else nothing."""
    stack = _stack.get()
    if stack:
        return stack[-1]
    if has_request_context():
        scope = g.get(REQUEST_SCOPE_KEY)
        if scope is None:
            if g.get("_karaffe_scope_loading"):
                # The queries loading the user run with no organization.
                return _NOTHING
            g._karaffe_scope_loading = True
            try:
                user = get_user()
            finally:
                g._karaffe_scope_loading = False
            if user is None:
                scope = Scope(label="anonymous request")
            else:
                scope = Scope(
                    org_ids=_loaded_org_ids(user),
                    user_id=user.id,
                    label=f"request of user {user.id}",
                )
            setattr(g, REQUEST_SCOPE_KEY, scope)
        return t.cast(Scope, scope)
    return _NOTHING


@user_changed.connect
def _forget_request_scope(sender: Flask, user: User | None = None, **extra: t.Any) -> None:
    """A login or a logout in a request: from now on the request acts for
    the new user (or for nobody), not for the one its scope was made for."""
    g.pop(REQUEST_SCOPE_KEY, None)


def available_organization_ids() -> frozenset[int]:
    """The ids of the organizations the current scope may read and write
    (every organization's, inside :func:`unscoped`)."""
    ids = current_scope().org_ids
    if ids is None:
        return frozenset(db.session.execute(sa.select(Organization.id)).scalars())
    return ids


@contextlib.contextmanager
def acting_as(user: User) -> Iterator[Scope]:
    """Act for ``user`` in this block: see and write their organizations'
    rows (for jobs and commands working on a user's behalf)."""
    if user.id is None:
        raise ValueError("acting_as() needs a user with an id: flush it first")
    with _push(Scope(org_ids=None, user_id=user.id, label=f"acting as user {user.id}")) as s:
        yield s


@contextlib.contextmanager
def for_organization(org: Organization | int) -> Iterator[Scope]:
    """Act inside one organization in this block (``org`` or its id)."""
    org_id = org if isinstance(org, int) else org.id
    if org_id is None:
        raise ValueError("for_organization() needs an organization with an id: flush it first")
    scope = Scope(
        org_ids=frozenset({org_id}), organization_id=org_id, label=f"organization {org_id}"
    )
    with _push(scope) as s:
        yield s


@contextlib.contextmanager
def unscoped(reason: str) -> Iterator[Scope]:
    """Opt out of organization scoping for this block, naming why. Every
    use is logged (logger ``karaffe.tenancy``, INFO) with the reason and
    the caller, and is found by ``git grep "unscoped("``."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("unscoped() needs a reason, e.g. unscoped('nightly billing export')")
    caller = sys._getframe(2)
    where = f"{caller.f_code.co_filename}:{caller.f_lineno}"
    log.info("unscoped access: %s (at %s)", reason, where)
    with _push(Scope(org_ids=None, reason=reason, label=f"unscoped: {reason}")) as s:
        yield s


def _forget_user_scopes() -> None:
    for scope in _stack.get():
        scope.forget()
    forget_loaded_with_user(_ORG_IDS)
    if has_request_context():
        scope = g.get(REQUEST_SCOPE_KEY)
        if scope is not None:
            scope.forget()


# -- reads -----------------------------------------------------------------------


def _criteria_for(ids: frozenset[int]) -> tuple[t.Any, ...]:
    """The loader criteria limiting reads to ``ids``. One organization
    compares with ``=`` (no IN list to expand at every execution); several
    use ``IN``. The lambdas are cached by SQLAlchemy per code location, with
    the ids as bound parameters, so every scope shares one compiled SQL."""
    if len(ids) == 1:
        (only,) = ids
        return (
            with_loader_criteria(
                OrgOwned, lambda cls: cls.organization_id == only, include_aliases=True
            ),
            with_loader_criteria(Organization, lambda cls: cls.id == only, include_aliases=True),
        )
    many = sorted(ids)
    return (
        with_loader_criteria(
            OrgOwned, lambda cls: cls.organization_id.in_(many), include_aliases=True
        ),
        with_loader_criteria(Organization, lambda cls: cls.id.in_(many), include_aliases=True),
    )


_criteria_cache: dict[frozenset[int], tuple[t.Any, ...]] = {}
_CRITERIA_CACHE_SIZE = 10_000


def _criteria(ids: frozenset[int]) -> tuple[t.Any, ...]:
    """:func:`_criteria_for`, memoized: building the options is most of the
    cost of scoping a statement."""
    found = _criteria_cache.get(ids)
    if found is None:
        if len(_criteria_cache) >= _CRITERIA_CACHE_SIZE:
            _criteria_cache.clear()
        found = _criteria_cache[ids] = _criteria_for(ids)
    return found


#: Per statement and scope, the statement with the scope's criteria: the
#: statements an app builds once (by key, by slug, the credential's) are then
#: scoped once per scope, not at every execution. SQLAlchemy memoizes a
#: statement's cache key on the statement object, so the one returned here
#: costs no new key; a fresh ``.options()`` every time would (walking the
#: whole statement, the criteria's lambdas with it), most of the cost of
#: running a small select. Weak on the statement: one built per request is
#: dropped with it.
_scoped: weakref.WeakKeyDictionary[t.Any, dict[frozenset[int], t.Any]] = weakref.WeakKeyDictionary()
#: How many scopes one statement keeps (users of different organizations).
_SCOPED_PER_STATEMENT = 64


def _scoped_select(statement: t.Any, ids: frozenset[int]) -> t.Any:
    """``statement`` with the criteria of ``ids``, the same object every
    time for the same statement and scope."""
    per_scope = _scoped.get(statement)
    if per_scope is None:
        per_scope = _scoped[statement] = {}
    found = per_scope.get(ids)
    if found is None:
        if len(per_scope) >= _SCOPED_PER_STATEMENT:
            per_scope.clear()
        found = per_scope[ids] = statement.options(*_criteria(ids))
    return found


@event.listens_for(Session, "do_orm_execute")
def _scope_orm_execute(state: ORMExecuteState) -> None:
    if not state.is_orm_statement:
        return
    if state.statement.is_from_statement:
        # ``select(Model).from_statement(text(...))``: the SQL is the
        # caller's, loader criteria cannot reach into it. The raw SQL guard
        # judges it like any other hand-written SQL.
        state.update_execution_options(**{_HAND_WRITTEN: True})
        return
    scope = current_scope()
    ids = scope.org_ids
    if ids is None:
        return
    if state.is_insert or state.is_update:
        _check_dml_values(state, ids, scope)
    if state.is_select:
        state.statement = _scoped_select(state.statement, ids)
    elif state.is_update or state.is_delete:
        state.statement = state.statement.options(*_criteria(ids))


# -- writes ----------------------------------------------------------------------


def _entity_is_org_owned(state: ORMExecuteState) -> bool:
    return any(issubclass(mapper.class_, OrgOwned) for mapper in state.all_mappers)


def _dml_org_ids(state: ORMExecuteState) -> Iterable[t.Any]:
    """The organization ids an ORM INSERT or UPDATE writes (values and
    parameters); a value that is not a plain literal is yielded as is."""
    statement = state.statement
    values = getattr(statement, "_values", None) or {}
    for key, value in values.items():
        if getattr(key, "key", key) == "organization_id":
            yield getattr(value, "value", value)
    for row in getattr(statement, "_multi_values", ()) or ():
        for entry in row:
            if isinstance(entry, dict):
                for key, value in entry.items():
                    if getattr(key, "key", key) == "organization_id":
                        yield getattr(value, "value", value)
    params: t.Any = state.parameters
    rows = params if isinstance(params, list) else [params] if params else []
    for row in rows:
        if "organization_id" in row:
            yield row["organization_id"]


def _check_dml_values(state: ORMExecuteState, ids: frozenset[int], scope: Scope) -> None:
    if not _entity_is_org_owned(state):
        return
    written = list(_dml_org_ids(state))
    if state.is_insert and not written:
        raise CrossOrgWrite(f"refused: an INSERT without organization_id ({scope.label})")
    for org_id in written:
        if not isinstance(org_id, int) or org_id not in ids:
            raise CrossOrgWrite(
                f"refused: writing into organization {org_id!r} is outside {scope.label}"
            )


def _target_org(session: Session, obj: OrgOwned) -> tuple[int | None, bool]:
    """The organization ``obj`` goes into: (id, whether that organization
    is new in this very flush)."""
    related = obj.__dict__.get("organization")
    if isinstance(related, Organization) and (related in session.new or related.id is None):
        return related.id, True
    if isinstance(related, Organization):
        return related.id, False
    return obj.organization_id, False


@event.listens_for(Session, "before_flush")
def _check_flush(session: Session, flush_context: t.Any, instances: t.Any) -> None:
    scope = current_scope()
    ids = scope.org_ids
    if ids is None:
        return
    for obj in session.new:
        if isinstance(obj, OrgOwned):
            org_id, is_new_org = _target_org(session, obj)
            if not is_new_org and (org_id is None or org_id not in ids):
                _refuse(obj, org_id, scope)
    for obj in session.dirty:
        if isinstance(obj, OrgOwned) and session.is_modified(obj):
            org_id, is_new_org = _target_org(session, obj)
            history = sa.inspect(obj).attrs.organization_id.history
            before = [v for v in history.deleted if v is not None]
            if not is_new_org and (org_id is None or org_id not in ids):
                _refuse(obj, org_id, scope)
            for old in before:
                if old not in ids:
                    _refuse(obj, old, scope)
    for obj in session.deleted:
        if isinstance(obj, OrgOwned) and obj.organization_id not in ids:
            _refuse(obj, obj.organization_id, scope)


def _refuse(obj: object, org_id: int | None, scope: Scope) -> t.NoReturn:
    raise CrossOrgWrite(
        f"refused: {type(obj).__name__} in organization {org_id} is outside {scope.label}"
    )


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, flush_context: t.Any) -> None:
    changed = (*session.new, *session.dirty, *session.deleted)
    if any(isinstance(obj, Membership) for obj in changed):
        _forget_user_scopes()


# -- raw SQL ---------------------------------------------------------------------

_HAND_WRITTEN = "karaffe_hand_written_sql"
_DML = re.compile(r"^\s*(\(\s*)*(select|insert|update|delete|with|replace|merge|copy)\b", re.I)
_tables_cache: dict[int, re.Pattern[str] | None] = {}


def org_owned_tables() -> list[str]:
    """The names of the tables the tenancy filter covers."""
    names = {"organization"}
    for mapper in Model.registry.mappers:
        if issubclass(mapper.class_, OrgOwned):
            names.update(t.name for t in mapper.tables)
    return sorted(names)


def _tables_pattern() -> re.Pattern[str] | None:
    count = len(Model.registry.mappers)
    if count not in _tables_cache:
        names = org_owned_tables()
        _tables_cache.clear()
        _tables_cache[count] = re.compile(
            r"(?<![\w$])[\"`\[]?(" + "|".join(re.escape(n) for n in names) + r")[\"`\]]?(?![\w$])",
            re.I,
        )
    return _tables_cache[count]


def _is_orm(context: t.Any) -> bool:
    options = getattr(context, "execution_options", None) or {}
    if options.get(_HAND_WRITTEN):
        return False
    compiled = getattr(context, "compiled", None)
    statement = getattr(compiled, "statement", None)
    attrs = getattr(statement, "_propagate_attrs", None) or {}
    return attrs.get("compile_state_plugin") == "orm"


def raw_sql_offence(statement: str, context: t.Any) -> str | None:
    """The org-owned table ``statement`` reaches around the ORM, if any."""
    if is_flushing() or _is_orm(context):
        return None
    stack = _stack.get()
    if stack and stack[-1].is_unscoped:
        return None
    if not _DML.match(statement):
        return None
    pattern = _tables_pattern()
    if pattern is None:
        return None
    element = getattr(getattr(context, "compiled", None), "statement", None)
    if isinstance(element, sa.ClauseElement) and not isinstance(element, sa.TextClause):
        # A Core statement names its tables exactly (a catalog query with a
        # column labelled ``comment`` is not about a ``comment`` table); only
        # the text() fragments inside it are searched by name.
        parts = list(visitors.iterate(element))
        owned = set(org_owned_tables())
        names = sorted({p.name for p in parts if isinstance(p, sa.TableClause)} & owned)
        if names:
            return names[0]
        texts = " ".join(p.text for p in parts if isinstance(p, sa.TextClause))
        found = pattern.search(texts)
    else:
        found = pattern.search(statement)
    return found.group(1) if found else None


def install_raw_sql_guard(app: Flask, engine: sa.Engine, policy: str) -> None:
    """Watch ``engine`` for SQL on org-owned tables that bypasses the ORM:
    ``policy`` ``"raise"`` raises :class:`UnscopedQueryError`, ``"warn"``
    logs a warning, ``"off"`` does nothing."""
    if policy == "off":
        return

    def before_cursor_execute(
        conn: t.Any, cursor: t.Any, statement: str, parameters: t.Any, context: t.Any, many: bool
    ) -> None:
        table = raw_sql_offence(statement, context)
        if table is None:
            return
        message = (
            f"SQL bypassing the ORM reads or writes the org-owned table {table!r} outside "
            f'unscoped(...): wrap it in `with unscoped("why"):` or use the ORM. '
            f"Statement: {statement[:200]}"
        )
        if policy == "raise":
            raise UnscopedQueryError(message)
        log.warning(message)

    key = f"_karaffe_raw_sql_guard_{id(engine)}"
    if not app.extensions.get(key):
        event.listen(engine, "before_cursor_execute", before_cursor_execute)
        app.extensions[key] = before_cursor_execute
