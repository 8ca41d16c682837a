"""Labels have colours: a validated ``#rrggbb`` background and a text colour
computed by the server that always reads (WCAG AA); a new organization
starts with a default set; pages colour them from one stylesheet."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tracker.labels import DEFAULT_LABELS, PALETTE, contrast_ratio, normalize_color, text_color
from tracker.models import Label

from .test_api import problem

colors = st.integers(0, 0xFFFFFF).map(lambda n: f"#{n:06x}")


@given(colors)
def test_the_text_colour_reads_on_every_background(background: str) -> None:
    assert text_color(background) in ("#000000", "#ffffff")
    assert contrast_ratio(background, text_color(background)) >= 4.5


@pytest.mark.parametrize(
    ("background", "text"),
    [("#ffffff", "#000000"), ("#000000", "#ffffff"), ("#fbca04", "#000000"),
     ("#5319e7", "#ffffff"), ("#777777", "#000000"), ("#595959", "#ffffff")],
)  # fmt: skip
def test_the_text_colour_is_the_one_that_contrasts_more(background: str, text: str) -> None:
    assert text_color(background) == text


def test_contrast_ratio_is_wcags() -> None:
    assert contrast_ratio("#000000", "#ffffff") == pytest.approx(21)
    assert contrast_ratio("#ffffff", "#ffffff") == pytest.approx(1)
    assert contrast_ratio("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)


@pytest.mark.parametrize("bad", ["red", "#fff", "#12345g", "123456", "#1234567", "", "# 12345"])
def test_a_colour_is_hash_and_six_hex_digits(bad: str) -> None:
    with pytest.raises(ValueError, match="six hex digits"):
        normalize_color(bad)


def test_colours_are_stored_lower_case() -> None:
    assert normalize_color(" #D73A4A ") == "#d73a4a"
    assert all(normalize_color(c) == c for _, c in DEFAULT_LABELS)
    assert all(normalize_color(c) == c for c in PALETTE)


# -- the API ------------------------------------------------------------------------------


def test_a_label_is_created_with_its_colour(api, world):
    rv = api("bob").post("/api/v1/orgs/acme/labels", json={"name": "urgent", "color": "#5319E7"})
    assert rv.status_code == 201
    body = rv.get_json()
    assert (body["name"], body["color"], body["text_color"]) == ("urgent", "#5319e7", "#ffffff")
    listed = api("dave").get("/api/v1/orgs/acme/labels").get_json()
    assert {
        "id": body["id"],
        "name": "urgent",
        "color": "#5319e7",
        "text_color": "#ffffff",
    } in listed


def test_a_label_without_a_colour_gets_one_from_the_palette(api, world):
    body = api("bob").post("/api/v1/orgs/acme/labels", json={"name": "later"}).get_json()
    assert body["color"] in PALETTE
    again = api("carol").post("/api/v1/orgs/globex/labels", json={"name": "later"}).get_json()
    assert again["color"] == body["color"]  # the same name, the same colour


@pytest.mark.parametrize("bad", ["red", "#fff", "#12345g", "", 123])
def test_a_bad_colour_is_refused_with_the_field_and_nothing_written(api, world, count, bad):
    before = count(Label)
    rv = api("bob").post("/api/v1/orgs/acme/labels", json={"name": "x", "color": bad})
    body = problem(rv, 422, "validation-failed")
    if isinstance(bad, str):
        assert body["errors"] == [
            {
                "loc": ["body", "color"],
                "msg": "Enter a colour as # and six hex digits, such as #d73a4a.",
                "code": "color",
            }
        ]
    else:
        assert [e["loc"] for e in body["errors"]] == [["body", "color"]] * len(body["errors"])
    assert count(Label) == before


def test_a_label_is_renamed_and_recoloured(api, world):
    url = f"/api/v1/labels/{world.labels['ux']}"
    rv = api("bob").patch(url, json={"color": "#FBCA04"})
    assert rv.status_code == 200
    assert rv.get_json() == {
        "id": world.labels["ux"],
        "name": "ux",
        "color": "#fbca04",
        "text_color": "#000000",
    }
    rv = api("bob").patch(url, json={"name": "design"})
    assert (rv.get_json()["name"], rv.get_json()["color"]) == ("design", "#fbca04")
    issue = api("dave").get(f"/api/v1/issues/{world.issues['second']}").get_json()
    assert issue["labels"] == [rv.get_json()]


@pytest.mark.parametrize(
    ("body", "status", "slug", "loc", "code"),
    [
        ({"name": "bug"}, 409, "conflict", ["body", "name"], "taken"),
        ({"name": None}, 422, "validation-failed", ["body", "name"], "null"),
        ({"color": None}, 422, "validation-failed", ["body", "color"], "null"),
        ({"color": "blue"}, 422, "validation-failed", ["body", "color"], "color"),
        ({"name": "   "}, 422, "validation-failed", ["body", "name"], "string_too_short"),
        ({"colour": "#000000"}, 422, "validation-failed", ["body", "colour"], "extra_forbidden"),
    ],
)
def test_a_bad_label_patch_changes_nothing(api, world, body, status, slug, loc, code):
    url = f"/api/v1/labels/{world.labels['ux']}"
    errors = problem(api("bob").patch(url, json=body), status, slug)["errors"]
    assert [(e["loc"], e["code"]) for e in errors] == [(loc, code)]
    assert api("bob").get("/api/v1/orgs/acme/labels").get_json()[1]["name"] == "ux"
    assert api("bob").get("/api/v1/orgs/acme/labels").get_json()[1]["color"] == "#bfdadc"


def test_only_admins_change_labels_and_only_their_organizations(api, world):
    url = f"/api/v1/labels/{world.labels['ux']}"
    problem(api("dave").patch(url, json={"color": "#000000"}), 403, "forbidden")
    problem(api("carol").patch(url, json={"color": "#000000"}), 404, "not-found")
    other = f"/api/v1/labels/{world.labels['globex-only']}"
    problem(api("alice").patch(other, json={"color": "#000000"}), 404, "not-found")


def test_a_new_organization_starts_with_the_default_labels(api, world):
    slug = api("erin").post("/api/v1/orgs", json={"name": "Erin's Shop"}).get_json()["slug"]
    labels = api("erin").get(f"/api/v1/orgs/{slug}/labels").get_json()
    assert sorted((label["name"], label["color"]) for label in labels) == sorted(DEFAULT_LABELS)
    assert {"bug", "feature", "docs"} <= {label["name"] for label in labels}
    assert all(contrast_ratio(x["color"], x["text_color"]) >= 4.5 for x in labels)


def test_the_openapi_document_describes_label_colours(client, world):
    spec = client.get("/api/v1/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    assert schemas["LabelOut"]["required"] == ["id", "name", "color", "text_color"]
    color = schemas["LabelIn"]["properties"]["color"]
    assert {"type": "string", "pattern": "^#[0-9a-fA-F]{6}$"}.items() <= color["anyOf"][0].items()
    assert "patch" in spec["paths"]["/api/v1/labels/{label_id}"]


# -- the pages ------------------------------------------------------------------------------


def test_the_labels_page_adds_a_label_with_its_colour(login, world, count):
    client = login("bob")
    page = client.get("/o/acme/labels")
    assert b'<input id="f-color" name="color" type="color"' in page.data
    rv = client.post("/o/acme/labels", data={"name": "urgent", "color": "#b60205"})
    assert rv.status_code == 302
    assert count(Label, Label.name == "urgent", Label.color == "#b60205") == 1


def test_the_labels_page_refuses_a_bad_colour_next_to_the_field(login, world, count):
    rv = login("bob").post("/o/acme/labels", data={"name": "urgent", "color": "crimson"})
    assert rv.status_code == 422
    assert b'<div class="error" id="e-color">Enter a colour as # and six hex digits' in rv.data
    assert count(Label, Label.name == "urgent") == 0


def test_the_labels_page_edits_a_label(login, world, count):
    client = login("bob")
    url = f"/o/acme/labels/{world.labels['ux']}/edit"
    assert client.post(url, data={"name": "design", "color": "#0e8a16"}).status_code == 302
    assert count(Label, Label.name == "design", Label.color == "#0e8a16") == 1
    taken = client.post(url, data={"name": "bug", "color": "#0e8a16"})
    assert taken.status_code == 422
    label_id = world.labels["ux"]
    assert f'id="e-name-{label_id}">This organization already has a label'.encode() in taken.data
    assert count(Label, Label.name == "design") == 1
    assert login("dave").post(url, data={"name": "x", "color": "#000000"}).status_code == 403


def test_a_new_organization_made_on_its_page_has_the_default_labels(login, world, count):
    login("erin").post("/orgs/new", data={"name": "Erin's Shop"})
    assert count(Label) == 3 + len(DEFAULT_LABELS)


def test_the_label_stylesheet_colours_the_viewers_labels_only(login, client, world):
    rv = login("alice").get("/labels.css")
    assert rv.mimetype == "text/css"
    css = rv.get_data(as_text=True)
    assert f".label-{world.labels['bug']}{{background:#d73a4a;color:#000000}}" in css
    assert f".label-{world.labels['ux']}{{background:#bfdadc;color:#000000}}" in css
    assert f".label-{world.labels['globex-only']}{{" not in css
    again = login("alice").get("/labels.css", headers={"If-None-Match": rv.headers["ETag"]})
    assert again.status_code == 304
    assert client.get("/labels.css").get_data(as_text=True) == ""


def test_pages_link_the_label_stylesheet(login, world):
    page = login("dave").get(f"/o/acme/projects/{world.projects['website']}")
    assert b'<link rel="stylesheet" href="/labels.css">' in page.data
