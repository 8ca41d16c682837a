"""Ids past what the database holds (2**63 and up), zero, negative or with
leading zeros never reach the database: in a URL they are a 404 like a missing
row, in a body, query or form a 422 naming the field, and never a 500."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from tracker.models import Issue

from karaffe.ids import MAX_ID

OUT_OF_RANGE = [str(2**63), str(2**64), "99999999999999999999", "0", "007", "-1"]
NO_SUCH_ROW = [str(MAX_ID)]


def _routes_with_ids(app: Flask) -> list[tuple[str, str]]:
    found = []
    for rule in app.url_map.iter_rules():
        if any(type(c).__name__ == "IdConverter" for c in rule._converters.values()):
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                found.append((method, rule.rule))
    return sorted(found)


def _fill(rule: str, value: str) -> str:
    rule = rule.replace("<org_slug>", "acme")
    return re.sub(r"<id:[^>]+>", value, rule)


def test_every_route_with_a_row_id_uses_the_bounded_converter(app: Flask) -> None:
    for rule in app.url_map.iter_rules():
        assert "<int:" not in rule.rule, rule.rule
    assert len(_routes_with_ids(app)) >= 30


@pytest.mark.parametrize("value", OUT_OF_RANGE + NO_SUCH_ROW)
def test_out_of_range_or_missing_id_in_any_url_is_a_404(app, world, login, api, value: str) -> None:
    browser = login("alice")
    for method, rule in _routes_with_ids(app):
        url = _fill(rule, value)
        if url.startswith("/api/"):
            rv = api("alice").open(method, url, json={})
            assert rv.status_code == 404, (method, url, rv.status_code)
            assert rv.headers["Content-Type"] == "application/problem+json"
        else:
            rv = browser.open(url, method=method, data={})
            assert rv.status_code == 404, (method, url, rv.status_code)


@pytest.mark.parametrize(
    ("field", "value", "loc"),
    [
        ("assignee", str(2**63), ["query", "assignee"]),
        ("label", "99999999999999999999", ["query", "label", 0]),  # the first label given
        ("assignee", "0", ["query", "assignee"]),
    ],
)
def test_out_of_range_id_filter_is_a_422_naming_it(api, world, field: str, value: str, loc) -> None:
    rv = api("alice").get(f"/api/v1/projects/{world.projects['website']}/issues?{field}={value}")
    assert rv.status_code == 422
    assert [e["loc"] for e in rv.get_json()["errors"]] == [loc]


@pytest.mark.parametrize(
    "body",
    [
        {"assignee_id": 2**63},
        {"label_ids": [2**63]},
        {"assignee_id": 10**30},
        {"label_ids": [1, 0]},
    ],
)
def test_out_of_range_id_in_a_body_is_a_422_and_writes_nothing(api, world, count, body) -> None:
    url = f"/api/v1/projects/{world.projects['website']}/issues"
    before = count(Issue)
    rv = api("alice").post(url, json={"title": "t", **body})
    assert rv.status_code == 422
    assert rv.get_json()["errors"][0]["loc"][:2] == ["body", next(iter(body))]
    assert count(Issue) == before
    rv = api("alice").patch(f"/api/v1/issues/{world.issues['first']}", json=body)
    assert rv.status_code == 422


def test_out_of_range_id_filter_on_the_html_list_is_ignored(login, world) -> None:
    rv = login("alice").get(
        f"/o/acme/projects/{world.projects['website']}?assignee={2**63}&label=-5"
    )
    assert rv.status_code == 200


@pytest.mark.parametrize("field", ["assignee_id", "label_ids"])
def test_out_of_range_id_in_the_html_issue_form_is_a_form_error(login, world, count, field) -> None:
    before = count(Issue)
    rv = login("alice").post(
        f"/o/acme/projects/{world.projects['website']}/issues/new",
        data={"title": "t", field: str(2**63)},
    )
    assert rv.status_code == 422
    assert "Choose a valid option." in rv.text
    assert count(Issue) == before
