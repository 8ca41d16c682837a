"""Finding issues across an organization: its issue list ("My issues" is
``assignee=me`` or ``author=me``), the header's search box, and issue keys
in URLs (``/o/acme/issues/BIL-123`` redirects to the issue)."""

from __future__ import annotations

import typing as t

from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ValidationError

from karaffe.auth import login_required
from karaffe.tenancy import current_org

from .. import finding, keys, listing, services
from ..schemas import IssueQuery, OrgIssueQuery
from ..settings import TrackerSettings
from ..web import html_page_of, viewer

blueprint = Blueprint("finding", __name__, url_prefix="/o/<org_slug>")
keys.key_urls(blueprint)

Q = t.TypeVar("Q", bound=IssueQuery)

#: The query arguments of a list page that are filters.
_FILTERS = ("status", "assignee", "author", "label", "q", "sort", "direction", "project")


def list_filters(model: type[Q]) -> Q:
    """A list page's filters from the query string. The page shows open
    issues by default, ``status=all`` every one. A malformed filter
    (``assignee=abc``) is ignored rather than failing the page, and so is
    sorting by relevance without a search."""
    raw: dict[str, t.Any] = {}
    for name in _FILTERS:
        if name == "label":
            values = [v for v in request.args.getlist(name) if v]
            if values:
                raw[name] = values
        elif request.args.get(name):
            raw[name] = request.args[name]
    status = raw.get("status", "open")
    raw["status"] = None if status == "all" else status
    try:
        filters = model.model_validate(raw)
    except ValidationError as exc:
        bad = {str(e["loc"][0]) for e in exc.errors()}
        filters = model.model_validate({k: v for k, v in raw.items() if k not in bad})
    if filters.sort == "relevance" and not filters.q:
        filters = filters.model_copy(update={"sort": None})
    return filters


def template_filters(filters: BaseModel) -> dict[str, t.Any]:
    """The filters as the filter form shows them (``status`` ``all``...)."""
    shown = filters.model_dump()
    shown["status"] = shown["status"] or "all"
    shown["sort"] = finding.sort_of(t.cast(IssueQuery, filters))
    return shown


@blueprint.get("/issues")
@login_required
def issues() -> ResponseReturnValue:
    """The organization's issues; ``assignee=me`` / ``author=me`` are "My issues"."""
    org = current_org
    filters = list_filters(OrgIssueQuery)
    user = viewer()
    page = html_page_of(
        lambda: finding.issue_page(
            filters, user, org_id=org.id, limit=TrackerSettings.of().issues_per_page
        )
    )
    mine = (
        "assigned"
        if filters.assignee in ("me", user.id)
        else "created"
        if filters.author in ("me", user.id)
        else None
    )
    members, all_labels = listing.filter_choices(org.id)
    return render_template(
        "finding/issues.html",
        org=org,
        page=page,
        counts=finding.status_counts(filters, user, org_id=org.id),
        filters=template_filters(filters),
        members=members,
        all_labels=all_labels,
        mine=mine,
        issue_path=url_for("issues.show", issue_id=0).removesuffix("0"),
        projects={p.id: p for p in services.projects_of(org.id)},
    )


@blueprint.get("/search")
@login_required
def search() -> ResponseReturnValue:
    """The header's search box: an issue key jumps to its issue, anything
    else searches the organization's issues (open and closed)."""
    q = request.args.get("q", "").strip()[:200]
    if q:
        found = keys.find_by_key(q, current_org.id)
        if found:
            return redirect(url_for("issues.show", issue_id=found[0].id))
    return redirect(url_for("finding.issues", q=q or None, status="all"))


@blueprint.get("/issues/<issue_key:issue_key>")
@login_required
def by_key(issue_key: str) -> ResponseReturnValue:
    """``/o/acme/issues/BIL-123``: the issue's page (its URL has its id)."""
    issue = keys.get_by_key(issue_key, current_org.id)
    return redirect(url_for("issues.show", issue_id=issue.id))
