"""End to end in a real headless Chromium (Playwright driving Debian's
``chromium``): log in, create a project and an issue, find it in the list,
close it. With ``SCREENSHOT_DIR=<dir>`` the main pages are saved there
as PNG (``docs/screenshots`` holds the ones the README shows)."""

from __future__ import annotations

import os
import shutil
import typing as t
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from tracker import create_app, seed

from karaffe.auth import User, create_api_token
from karaffe.db import db
from karaffe.testing import serving

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
def live_url(tmp_path: Path) -> Iterator[str]:
    """The tracker with demo data, served by a real HTTP server in a thread."""
    app = create_app(
        {
            "SECRET_KEY": "browser-test-secret-key-of-32-characters",
            "DATABASE_URL": f"sqlite:///{tmp_path}/browser.sqlite",
            "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
        }
    )
    with app.app_context():
        db.create_all()
        seed.seed(orgs=2, issues=2_000, users_per_org=4)
    with serving(app) as url:
        yield url


@pytest.fixture
def page(tmp_path: Path) -> Iterator[t.Any]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        try:
            new = context.new_page()
            new.set_default_timeout(10_000)
            yield new
        finally:
            context.close()
            browser.close()


def shoot(page: t.Any, name: str, *, full: bool = False) -> None:
    target = os.environ.get("SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / f"{name}.png"), full_page=full)


def test_log_in_create_project_and_issue_then_close_it(live_url: str, page: t.Any) -> None:
    page.goto(live_url + "/")
    shoot(page, "welcome")
    page.click("text=Log in")
    page.fill("#f-email", seed.DEMO_LOGIN)
    page.fill("#f-password", "wrong password")
    page.click("button[type=submit]")
    assert page.locator(".flash.error").inner_text() == "Wrong email or password."
    page.fill("#f-password", seed.DEMO_PASSWORD)
    page.click("main button[type=submit]")
    assert "Welcome back" in page.locator(".flashes").inner_text()
    shoot(page, "dashboard")

    page.click(".topbar nav >> text=Acme Robotics")
    shoot(page, "organization")
    page.click("text=New project")
    page.click("main button[type=submit]")  # empty: refused next to the field
    assert page.locator("#e-name").inner_text() == "This field is required."
    page.fill("#f-name", "Browser test")
    page.fill("#f-description", "Made by Playwright in a real Chromium.")
    page.click("main button[type=submit]")
    assert page.locator("h1").inner_text() == "Browser test"

    page.click("text=New issue")
    page.fill("#f-title", "Checkout button does nothing on mobile")
    page.fill("#f-description", "Tap it: nothing happens.\nExpected: the payment page.")
    page.select_option("#f-assignee_id", label="Bob Okafor")
    page.select_option("#f-label_ids", label="bug")
    shoot(page, "new-issue")
    page.click("main button[type=submit]")
    assert "created." in page.locator(".flashes").inner_text()
    assert page.locator("h1").inner_text() == "Checkout button does nothing on mobile"

    # A second tab on the same issue learns of changes made in the first.
    watcher = page.context.new_page()
    watcher.set_default_timeout(10_000)
    watcher.goto(page.url)
    watcher.wait_for_timeout(500)  # let its stream connect (it resumes from the cursor anyway)

    page.click(".crumbs >> text=Browser test")
    rows = page.locator(".issues .title")
    assert rows.all_inner_texts() == ["Checkout button does nothing on mobile"]
    rows.first.click()
    page.click("text=Close issue")
    assert "closed." in page.locator(".flashes").inner_text()
    assert page.locator("aside .badge").inner_text() == "Closed"
    assert "This page changed." in watcher.locator(".live-banner").inner_text()
    watcher.close()
    page.fill("#f-body", "Fixed by the new release.")
    page.click("button:text-is('Comment')")
    assert "Fixed by the new release." in page.locator(".comment .text").inner_text()
    shoot(page, "issue", full=True)

    page.click(".crumbs >> text=Browser test")
    assert page.locator(".issues li").count() == 0  # open issues only
    page.select_option("#status", "closed")
    page.click("text=Filter")
    assert page.locator(".issues .title").all_inner_texts() == [
        "Checkout button does nothing on mobile"
    ]


def test_issue_list_and_phone_layout(live_url: str, page: t.Any) -> None:
    page.goto(live_url + "/login")
    page.fill("#f-email", seed.DEMO_LOGIN)
    page.fill("#f-password", seed.DEMO_PASSWORD)
    page.click("main button[type=submit]")
    page.click(".topbar nav >> text=Acme Robotics")
    page.click(".card h2 a >> nth=0")
    assert page.locator(".issues li").count() == 50
    shoot(page, "issue-list")
    page.click("a[rel=next]")
    assert page.locator(".issues li").count() > 0
    page.fill("#q", "login")
    page.select_option("#status", "all")
    page.click("text=Filter")
    titles = page.locator(".issues .title").all_inner_texts()
    assert titles and all("login" in title.lower() for title in titles)

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(live_url + page.url.split(live_url)[1].split("?")[0])
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing overflows sideways on a phone
    shoot(page, "phone-issue-list")


def test_header_search_jumps_to_a_key_and_lists_sort_and_filter(live_url: str, page: t.Any) -> None:
    page.goto(live_url + "/login")
    page.fill("#f-email", seed.DEMO_LOGIN)
    page.fill("#f-password", seed.DEMO_PASSWORD)
    page.click("main button[type=submit]")
    page.click(".topbar nav >> text=Acme Robotics")

    search = page.locator(".header-search input")
    search.fill("web-3")
    search.press("Enter")
    assert page.locator(".crumbs").inner_text().endswith("WEB-3")
    assert page.title().startswith("WEB-3 ")

    search = page.locator(".header-search input")
    search.fill("csv export")
    search.press("Enter")
    assert page.locator("h1").inner_text() == "Search: csv export"
    titles = page.locator(".issues .title").all_inner_texts()
    assert titles and all("CSV export" in title for title in titles)
    assert page.locator("#sort").input_value() == "relevance"
    shoot(page, "search")

    page.select_option("#sort", "comments")
    page.click("text=Filter")
    metas = page.locator(".issues .meta").all_inner_texts()
    assert "comment" in metas[0]  # the most commented first

    page.click("text=My issues")
    assert page.locator("h1").inner_text() == "Assigned to me"
    page.check("text=bug")
    page.check("text=docs")
    page.select_option("#status", "all")
    page.click("text=Filter")
    assert "label=" in page.url
    for row in page.locator(".issues li").all():
        chips = row.locator(".chip").all_inner_texts()
        assert "bug" in chips and "docs" in chips
    open_count = int(page.locator("[data-count=open]").inner_text().replace(",", ""))
    closed_count = int(page.locator("[data-count=closed]").inner_text().replace(",", ""))
    assert (
        open_count + closed_count == page.locator(".issues li").count()
        or page.locator("a[rel=next]").count()
    )


def test_api_token_shown_once_survives_a_reload_and_is_revoked_after_confirming(
    live_url: str, page: t.Any
) -> None:
    page.goto(live_url + "/login")
    page.fill("#f-email", seed.DEMO_LOGIN)
    page.fill("#f-password", seed.DEMO_PASSWORD)
    page.click("main button[type=submit]")
    page.goto(live_url + "/settings/tokens")
    page.fill("#f-name", "Browser dashboard")
    page.select_option("#f-expires", "30")
    page.select_option("#f-access", "read")
    page.click("main button[type=submit]")
    assert page.url == live_url + "/settings/tokens"  # redirected: the secret is not in it
    token = page.locator("#new-token").inner_text()
    assert token.startswith("kf_")
    row = page.locator("tr", has_text="Browser dashboard")
    assert row.count() == 1
    assert "Read only" in row.inner_text()
    assert row.locator(".prefix").inner_text() == token[:11] + "…"

    page.reload()  # a GET: nothing is created twice, the secret is gone
    assert page.locator("#new-token").count() == 0
    assert row.count() == 1

    headers = {"Authorization": f"Bearer {token}"}
    assert page.request.get(live_url + "/api/v1/me", headers=headers).status == 200
    refused = page.request.post(live_url + "/api/v1/orgs", headers=headers, data={"name": "X"})
    assert refused.status == 403
    assert "read-only" in refused.json()["detail"]
    page.reload()  # its use is listed
    assert row.locator(".last-used").inner_text() != "Never"

    row.locator("text=Revoke…").click()
    assert "Revoke token “Browser dashboard”" in page.locator("h1").inner_text()
    page.click("text=Cancel")
    assert row.count() == 1
    row.locator("text=Revoke…").click()
    page.click("main button.danger")
    assert "revoked" in page.locator(".flashes").inner_text()
    assert row.count() == 0
    assert page.request.get(live_url + "/api/v1/me", headers=headers).status == 401


def _log_in(page: t.Any, live_url: str, password: str = seed.DEMO_PASSWORD) -> None:
    page.goto(live_url + "/login")
    page.fill("#f-email", seed.DEMO_LOGIN)
    page.fill("#f-password", password)
    page.click("main button[type=submit]")


def test_end_a_session_from_the_settings_page_then_change_the_password(
    live_url: str, page: t.Any
) -> None:
    phone = page.context.browser.new_context(
        user_agent="Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/129.0 Mobile"
    ).new_page()
    phone.set_default_timeout(10_000)
    tablet = page.context.browser.new_context().new_page()
    tablet.set_default_timeout(10_000)
    for device in (phone, tablet, page):
        _log_in(device, live_url)

    page.click(".topbar .me a")
    page.click("main >> text=Sessions and password")
    rows = page.locator("#sessions tbody tr")
    assert rows.count() == 3
    assert "this session" in rows.nth(0).inner_text()
    assert "Chrome on Android" in page.locator("#sessions").inner_text()
    shoot(page, "sessions")
    page.locator("#sessions tr", has_text="Chrome on Android").locator("button").click()
    assert "Session ended" in page.locator(".flashes").inner_text()
    assert page.locator("#sessions tbody tr").count() == 2
    phone.goto(live_url + "/settings/sessions")
    assert "/login?next=" in phone.url

    page.fill("#f-current_password", seed.DEMO_PASSWORD)
    page.fill("#f-password", "a brand new password")
    page.click("#password button[type=submit]")
    assert "Password changed" in page.locator(".flashes").inner_text()
    assert page.locator("#sessions tbody tr").count() == 1
    tablet.goto(live_url + "/settings/sessions")
    assert "/login?next=" in tablet.url
    _log_in(tablet, live_url, "a brand new password")
    assert "Welcome back" in tablet.locator(".flashes").inner_text()
    phone.context.close()
    tablet.context.close()


@pytest.fixture
def docs_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A small tracker (CSRF on, as in production) and an API token of the demo user."""
    app = create_app(
        {
            "SECRET_KEY": "browser-test-secret-key-of-32-characters",
            "DATABASE_URL": f"sqlite:///{tmp_path}/docs.sqlite",
            "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
        }
    )
    with app.app_context():
        db.create_all()
        seed.seed(orgs=1, issues=5, users_per_org=2)
        user = db.session.execute(sa.select(User).where(User.email == seed.DEMO_LOGIN)).scalar_one()
        _, token = create_api_token(user, "docs browser test")
        db.session.commit()
    with serving(app) as url:
        yield url, token


def csp_violations(page: t.Any) -> list[str]:
    """Every message Chromium logs about something the policy blocked."""
    found: list[str] = []
    page.on(
        "console",
        lambda message: (
            found.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return found


def try_it(page: t.Any, operation: str, body: str | None = None) -> str:
    """Open an operation of the docs page, run it, and return the status."""
    block = page.locator(f"#operations-api_v1-{operation}")
    block.locator(".opblock-summary").first.click()
    block.locator("button.try-out__btn").click()
    if body is not None:
        block.locator("textarea.body-param__text").fill(body)
    block.locator("button.execute").click()
    status = block.locator(".live-responses-table tr.response .response-col_status").first
    status.wait_for()
    return str(status.inner_text()).strip()


def test_api_docs_run_under_the_csp_with_a_token_and_with_the_session(
    docs_server: tuple[str, str], page: t.Any
) -> None:
    url, token = docs_server
    blocked = csp_violations(page)
    response = page.goto(url + "/api/v1/docs")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.locator(".opblock").first.wait_for()
    assert page.locator(".opblock").count() >= 20  # every operation is rendered
    shoot(page, "api-docs")

    # Not logged in: "Authorize" with a bearer token, then a call succeeds.
    page.click("button.authorize")
    dialog = page.locator(".dialog-ux")
    dialog.locator("input").first.fill(token)
    dialog.locator("button.authorize").first.click()
    dialog.locator("button.btn-done").first.click()
    assert try_it(page, "api_v1_me_get") == "200"
    assert seed.DEMO_LOGIN in page.locator(".live-responses-table .microlight").first.inner_text()

    # Logged in with the session, no token: a POST carries the CSRF header.
    page.goto(url + "/login")
    page.fill("#f-email", seed.DEMO_LOGIN)
    page.fill("#f-password", seed.DEMO_PASSWORD)
    page.click("main button[type=submit]")
    page.goto(url + "/api/v1/docs")
    page.locator(".opblock").first.wait_for()
    assert try_it(page, "api_v1_create_org_post", '{"name": "Made in the docs"}') == "201"
    assert not blocked, blocked


def test_without_a_stream_the_project_page_says_live_updates_are_off(
    tmp_path: Path, page: t.Any
) -> None:
    """No stream served (as with a Redis broker and no relay wired in): the
    client stops at the 404 and the page shows a small notice."""
    app = create_app(
        {
            "SECRET_KEY": "browser-test-secret-key-of-32-characters",
            "DATABASE_URL": f"sqlite:///{tmp_path}/off.sqlite",
            "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
            "EVENTS_SERVE_STREAM": False,
        }
    )
    with app.app_context():
        db.create_all()
        seed.seed(orgs=1, issues=5, users_per_org=2)
    with serving(app) as url:
        page.goto(url + "/login")
        page.fill("#f-email", seed.DEMO_LOGIN)
        page.fill("#f-password", seed.DEMO_PASSWORD)
        page.click("main button[type=submit]")
        page.click(".topbar nav >> text=Acme Robotics")
        page.locator("main a[href*='/projects/']:not([href$='/new'])").first.click()
        assert "Live updates are off" in page.locator(".live-off").inner_text()
