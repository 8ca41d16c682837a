"""The API's authentication as a client sees it: a write with no credentials
is a 401 that says how to authenticate (never a CSRF error); a browser writes
with its session cookie and the CSRF token in the ``X-CSRFToken`` header; the
OpenAPI document says all of this, operation by operation."""

from __future__ import annotations

import re
import typing as t

import pytest
from flask.testing import FlaskClient
from openapi_spec_validator import validate as validate_openapi
from tracker.schemas import NOT_BLANK

from .conftest import World


@pytest.fixture
def karaffe_config(karaffe_config: dict[str, t.Any]) -> dict[str, t.Any]:
    return {**karaffe_config, "WTF_CSRF_ENABLED": True}


def csrf_token(client: FlaskClient) -> str:
    """The token the docs page gives a logged-in browser."""
    html = client.get("/api/v1/docs").get_data(as_text=True)
    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match, html
    return match.group(1)


WRITES = [
    ("POST", "/api/v1/orgs", {"name": "Initech"}),
    ("POST", "/api/v1/orgs/acme/labels", {"name": "p1"}),
    ("PATCH", "/api/v1/issues/{first}", {"status": "closed"}),
    ("DELETE", "/api/v1/issues/{first}", None),
    ("PUT", "/api/v1/orgs/acme/members/{dave}/role", {"role": "admin"}),
]


def url(path: str, world: World) -> str:
    return path.format(first=world.issues["first"], dave=world.users["dave"])


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_write_without_credentials_is_401_with_a_bearer_challenge(
    client: FlaskClient, world: World, method: str, path: str, body: t.Any
) -> None:
    client.get("/login")  # a browser that has a session, but no login
    rv = client.open(url(path, world), method=method, json=body)
    assert rv.status_code == 401
    assert rv.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert rv.mimetype == "application/problem+json"
    assert rv.get_json()["type"] == "urn:karaffe:problem:unauthorized"


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_session_write_needs_the_csrf_header(
    login: t.Callable[[str], FlaskClient], world: World, method: str, path: str, body: t.Any
) -> None:
    browser = login("alice")
    rv = browser.open(url(path, world), method=method, json=body)
    assert rv.status_code == 400
    assert rv.get_json()["detail"] == "The CSRF token is missing."
    rv = browser.open(
        url(path, world), method=method, json=body, headers={"X-CSRFToken": csrf_token(browser)}
    )
    assert rv.status_code in (200, 201, 204), rv.get_json()


def test_token_write_needs_no_csrf_token(api: t.Any, world: World) -> None:
    assert api("alice").post("/api/v1/orgs", json={"name": "Initech"}).status_code == 201


def test_the_document_says_how_each_operation_authenticates(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    validate_openapi(document)
    assert set(document["components"]["securitySchemes"]) == {
        "bearerAuth",
        "sessionCookie",
        "csrfToken",
    }
    operations = [
        (method, operation)
        for item in document["paths"].values()
        for method, operation in item.items()
    ]
    assert len(operations) >= 20
    # Asking for and following account links needs no login (tracker.blueprints.api_accounts).
    public = {
        "api_accounts_request_password_reset_post",
        "api_accounts_confirm_password_reset_post",
        "api_accounts_confirm_email_post",
    }
    assert {op["operationId"] for _, op in operations if "security" not in op} == public
    for method, operation in operations:
        if operation["operationId"] in public:
            assert "401" not in operation["responses"]
            assert "403" not in operation["responses"]
            continue
        session = {"sessionCookie": []}
        token = {"bearerAuth": ["read"]}
        if method != "get":
            session["csrfToken"] = []
            token = {"bearerAuth": ["write"]}  # a read-only token gets 403
            assert "403" in operation["responses"], operation["operationId"]
        assert operation["security"] == [token, session], operation["operationId"]
        assert "401" in operation["responses"]
        assert "default" not in operation["responses"]
    text = client.get("/api/v1/openapi.json").get_data(as_text=True)
    assert not re.findall(
        r'"(gt|ge|lt|le|multiple_of)":', text
    )  # pydantic's names, not JSON Schema's


def test_the_not_blank_pattern_is_what_python_strips() -> None:
    """The documented pattern and the server's ``str.strip()`` agree on every
    character, so a client validating with the document is never surprised."""
    blank = re.compile(NOT_BLANK)
    disagree = [
        hex(code)
        for code in range(0x110000)
        if bool(blank.fullmatch(chr(code))) == chr(code).isspace()
    ]
    assert not disagree


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": " \u00a0\u2028\x1c "}, 422),  # blank: refused, as the pattern says
        ({"name": "  ok  "}, 201),  # stripped to "ok"
        ({"name": "x" * 100}, 201),
        ({"name": "x" * 99 + " "}, 201),  # as sent, within maxLength
        ({"name": "x" * 100 + " "}, 422),  # as sent, over maxLength
    ],
)
def test_names_are_checked_as_documented(api: t.Any, body: t.Any, status: int) -> None:
    rv = api("alice").post("/api/v1/orgs", json=body)
    assert rv.status_code == status, rv.get_json()


def test_a_taken_name_is_a_conflict(api: t.Any, world: World) -> None:
    rv = api("alice").post("/api/v1/orgs/acme/labels", json={"name": "bug"})
    assert rv.status_code == 409
    assert rv.get_json()["errors"][0]["loc"] == ["body", "name"]


def test_a_patch_field_that_may_not_be_null_is_documented_so(
    api: t.Any, client: FlaskClient, world: World
) -> None:
    schema = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]["IssuePatch"]
    for name in ("title", "description", "status", "label_ids"):
        assert "anyOf" not in schema["properties"][name], name
    assert {"type": "null"} in schema["properties"]["assignee_id"]["anyOf"]
    rv = api("alice").patch(f"/api/v1/issues/{world.issues['first']}", json={"title": None})
    assert rv.status_code == 422
