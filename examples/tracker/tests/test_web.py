"""What every HTML page shares (tracker/web.py): here, the error pages, which
the tracker renders through ``App.html_errorhandler``."""

from __future__ import annotations


def test_unknown_page_gets_the_trackers_error_page(client):
    rv = client.get("/no-such-page")
    assert rv.status_code == 404
    assert rv.mimetype == "text/html"
    assert "404 · Not Found" in rv.get_data(as_text=True)
    assert b"Go to the start page" in rv.data


def test_another_organizations_issue_gets_the_error_page(login, world):
    rv = login("carol").get(f"/o/acme/issues/{world.issues['first']}")
    assert rv.status_code == 404
    assert b"Go to the start page" in rv.data


def test_unknown_api_url_keeps_its_problem_document(client):
    rv = client.get("/api/v1/no-such-thing")
    assert rv.status_code == 404
    assert rv.mimetype == "application/problem+json"
    assert rv.get_json()["type"] == "urn:karaffe:problem:not-found"


def test_an_error_page_that_fails_to_render_falls_back_to_werkzeugs(app, client, caplog):
    app.jinja_env.globals["url_for"] = None  # the template's link cannot be built
    rv = client.get("/no-such-page")
    assert rv.status_code == 404
    assert b"The requested URL was not found on the server." in rv.data
    assert "error page failed to render" in caplog.text


def test_a_database_outage_gets_the_503_page_with_retry_after(karaffe_config, caplog):
    """The page of an outage renders without the database: the layout's
    viewer and organizations would need it (and fail again)."""
    import secrets

    from tracker import create_app

    from karaffe import auth
    from karaffe._servers import free_port

    down = f"postgresql://postgres@127.0.0.1:{free_port()}/tracker"
    app = create_app({**karaffe_config, "DATABASE_URL": down, "PROPAGATE_EXCEPTIONS": False})
    client = app.test_client()
    # A login session's cookie (no record can be written: the database is down).
    values = {auth._SESSION_TOKEN: secrets.token_urlsafe(32)}
    with client.session_transaction() as session:
        session.update(values)
    rv = client.get("/")
    assert rv.status_code == 503
    assert rv.headers["Retry-After"] == "5"
    page = rv.get_data(as_text=True)
    assert "503 · Service Unavailable" in page
    assert "Log in" in page  # nobody is shown as logged in: that needs the database
    assert "error page failed to render" not in caplog.text
    api = client.get("/api/v1/me", headers={"Authorization": "Bearer kf_" + "x" * 43})
    assert (api.status_code, api.mimetype) == (503, "application/problem+json")
    assert api.headers["Retry-After"] == "5"
