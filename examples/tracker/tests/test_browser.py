"""End to end in a real headless Chromium (Playwright driving Debian's
``chromium``): log in, create a project and an issue, find it in the list,
close it. With ``SCREENSHOT_DIR=<dir>`` the main pages are saved there
as PNG (``docs/screenshots`` holds the ones the README shows)."""

from __future__ import annotations

import os
import sqlite3
import typing as t
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
import sqlalchemy as sa
from tracker import create_app, seed

from karaffe.auth import User, create_api_token
from karaffe.db import db
from karaffe.testing import serving

from .conftest import Outbox

pytestmark = pytest.mark.browser

SEEDED = "browser-seeded.sqlite"


@pytest.fixture(scope="module")
def seeded_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo data (2 organizations, 2,000 issues), seeded once for the
    module into a SQLite file that each test gets a copy of."""
    path = tmp_path_factory.mktemp("seeded") / SEEDED
    app = create_app(
        {
            "SECRET_KEY": "browser-test-secret-key-of-32-characters",
            "DATABASE_URL": f"sqlite:///{path}",
            "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
        }
    )
    with app.app_context():
        db.create_all()
        seed.seed(orgs=2, issues=2_000, users_per_org=4)
        db.session.remove()
        db.engine.dispose()
    return path


@pytest.fixture
def live_url(tmp_path: Path, seeded_database: Path) -> Iterator[str]:
    """The tracker with demo data (a fresh copy of the seeded database),
    served by a real HTTP server in a thread."""
    copy = tmp_path / "browser.sqlite"
    with (
        closing(sqlite3.connect(seeded_database)) as source,
        closing(sqlite3.connect(copy)) as target,
    ):
        source.backup(target)  # whole and consistent, whatever the journal mode
    app = create_app(
        {
            "SECRET_KEY": "browser-test-secret-key-of-32-characters",
            "DATABASE_URL": f"sqlite:///{copy}",
            "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
        }
    )
    with serving(app) as url:
        yield url


@pytest.fixture
def page(chromium: t.Any) -> Iterator[t.Any]:
    """A page in a fresh context of the module's Chromium; every context the
    test opens is closed after it."""
    before = set(chromium.contexts)
    context = chromium.new_context(viewport={"width": 1280, "height": 860})
    new = context.new_page()
    new.set_default_timeout(10_000)
    try:
        yield new
    finally:
        for opened in chromium.contexts:
            if opened not in before:
                opened.close()


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
    page.locator(".label-option", has_text="bug").locator("input").check()
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
    watcher.wait_for_function(  # in place, without a reload
        "() => document.querySelector('aside .badge').innerText === 'Closed'"
    )
    watcher.close()
    page.fill("#f-body", "Fixed by the new release.")
    page.click("button:text-is('Comment')")
    assert "Fixed by the new release." in page.locator(".comment .text").inner_text()
    shoot(page, "issue", full=True)

    page.click(".crumbs >> text=Browser test")
    assert page.locator(".issues li").count() == 0  # open issues only
    page.select_option("#status", "closed")
    page.click("button:text-is('Filter')")
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
    page.click("button:text-is('Filter')")
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
    page.click("button:text-is('Filter')")
    metas = page.locator(".issues .meta").all_inner_texts()
    assert "comment" in metas[0]  # the most commented first

    page.click("text=My issues")
    assert page.locator("h1").inner_text() == "Assigned to me"
    page.check("text=bug")
    page.check("text=docs")
    page.select_option("#status", "all")
    page.click("button:text-is('Filter')")
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

    page.click(".topbar .me a[title=Settings]")
    assert page.locator("h1").inner_text() == "Profile"
    page.click("main nav >> text=Sessions")
    page.wait_for_url("**/settings/sessions")
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

    page.click("main nav >> text=Profile")
    page.fill("#f-current_password", seed.DEMO_PASSWORD)
    page.fill("#f-password", "a brand new password")
    page.click("#password button[type=submit]")
    assert "Password changed" in page.locator(".flashes").inner_text()
    page.click("main nav >> text=Sessions")
    page.wait_for_url("**/settings/sessions")
    page.locator("#sessions tbody tr").first.wait_for()
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


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[tuple[str, t.Any]]:
    """A small tracker (CSRF on, as in production; mail kept in memory) and its app."""
    app = create_app(
        {
            "SECRET_KEY": "browser-test-secret-key-of-32-characters",
            "DATABASE_URL": f"sqlite:///{tmp_path}/small.sqlite",
            "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
            "MAIL_BACKEND": "locmem",
        }
    )
    with app.app_context():
        db.create_all()
        seed.seed(orgs=1, issues=5, users_per_org=2)
    app.extensions["mailman"].outbox = Outbox(app)  # reading it sends the queued mail
    with serving(app) as url:
        yield url, app


def _new_issue_page(page: t.Any, url: str) -> None:
    _log_in(page, url)
    page.click(".topbar nav >> text=Acme Robotics")
    page.click(".card h2 a >> nth=0")
    page.click("text=New issue")


def _active(page: t.Any) -> str:
    """What has the keyboard focus: a checkbox's label name, or the element's class."""
    return str(
        page.evaluate(
            "() => { const e = document.activeElement;"
            " const option = e.closest('.label-option');"
            " return option ? option.dataset.name : e.className; }"
        )
    )


def _shown(page: t.Any) -> list[str]:
    return [
        str(name)
        for name in page.locator(".label-option:not([hidden])").evaluate_all(
            "items => items.map(li => li.dataset.name)"
        )
    ]


def test_the_label_picker_works_with_the_keyboard(
    small_server: tuple[str, t.Any], page: t.Any
) -> None:
    url, _ = small_server
    _new_issue_page(page, url)
    page.fill("#f-title", "Picked with the keyboard")
    everything = _shown(page)
    assert everything == sorted(everything) and "bug" in everything and len(everything) == 8
    assert page.locator(".label-count").inner_text() == "None selected"
    assert page.locator(".label-clear").is_disabled()

    page.focus("#f-assignee_id")
    page.keyboard.press("Tab")
    assert _active(page) == "label-filter"
    page.keyboard.type("fe")
    assert _shown(page) == ["feature"]
    assert page.locator(".label-picker [role=status]").inner_text() == "1 label matches"
    page.keyboard.press("Enter")  # ticks the one shown, does not send the form
    assert page.locator(".label-option[data-name=feature] input").is_checked()
    assert "/issues/new" in page.url
    page.keyboard.press("Escape")  # empties the filter
    assert _shown(page) == everything

    page.keyboard.press("ArrowDown")
    assert _active(page) == "bug"
    page.keyboard.press("Space")
    page.keyboard.press("ArrowDown")
    assert _active(page) == "docs"
    page.keyboard.press("Space")
    page.keyboard.press("End")
    assert _active(page) == everything[-1]
    page.keyboard.press("Home")
    assert _active(page) == "bug"
    page.keyboard.press("ArrowUp")  # from the first label back to the filter
    assert _active(page) == "label-filter"
    assert page.locator(".label-count").inner_text() == "3 selected"
    shoot(page, "label-picker")

    page.keyboard.press("Tab")
    assert _active(page) == "link label-clear"
    page.keyboard.press("Enter")
    assert page.locator(".label-count").inner_text() == "None selected"
    assert page.locator(".label-option input:checked").count() == 0
    assert _active(page) == "label-filter"

    page.keyboard.type("doc")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Space")
    page.keyboard.press("Escape")  # back to the filter
    page.keyboard.press("Escape")  # which empties
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Space")  # bug
    page.click("main button[type=submit]")
    assert "created." in page.locator(".flashes").inner_text()
    chips = page.locator("aside .chip")
    assert chips.all_inner_texts() == ["bug", "docs"]
    bug = chips.first.evaluate(
        "e => [getComputedStyle(e).backgroundColor, getComputedStyle(e).color]"
    )
    assert bug == ["rgb(215, 58, 74)", "rgb(0, 0, 0)"]  # #d73a4a, and the black that reads on it


def test_without_javascript_the_labels_are_checkboxes(
    small_server: tuple[str, t.Any], page: t.Any
) -> None:
    url, _ = small_server
    context = page.context.browser.new_context(java_script_enabled=False)
    plain = context.new_page()
    plain.set_default_timeout(10_000)
    try:
        _new_issue_page(plain, url)
        assert plain.locator(".label-filter").count() == 0
        assert plain.locator(".label-option input[type=checkbox]").count() == 8
        plain.fill("#f-title", "Picked without JavaScript")
        plain.locator(".label-option", has_text="security").locator("input").check()
        plain.locator(".label-option", has_text="question").locator("input").check()
        plain.click("main button[type=submit]")
        assert plain.locator("aside .chip").all_inner_texts() == ["question", "security"]
    finally:
        context.close()


def test_forgotten_password_by_the_mailed_link(
    small_server: tuple[str, t.Any], page: t.Any
) -> None:
    url, app = small_server
    outbox = app.extensions["mailman"].outbox
    page.goto(url + "/login")
    page.click("text=Forgot your password?")
    page.fill("#f-email", seed.DEMO_LOGIN)
    page.click("main button[type=submit]")
    assert "If an account uses" in page.locator("#reset-sent").inner_text()
    shoot(page, "reset-sent")
    (mail,) = outbox
    link = next(word for word in mail.body.split() if word.startswith("http"))
    assert link.startswith(url + "/password/reset/")
    page.goto(link)
    page.fill("#f-password", "my new demo password")
    page.click("main button[type=submit]")
    assert "every browser is logged out" in page.locator(".flashes").inner_text()
    assert page.locator("#f-email").input_value() == seed.DEMO_LOGIN
    page.fill("#f-password", "my new demo password")
    page.click("main button[type=submit]")
    assert "Welcome back" in page.locator(".flashes").inner_text()
    page.goto(link)
    assert "not valid" in page.locator("main").inner_text()


def test_a_new_account_sees_the_verification_banner_until_it_verifies(
    small_server: tuple[str, t.Any], page: t.Any
) -> None:
    url, app = small_server
    page.goto(url + "/signup")
    page.fill("#f-name", "Vera Fied")
    page.fill("#f-email", "vera@example.com")
    page.fill("#f-password", "a long enough password")
    page.click("main button[type=submit]")
    assert "Please verify your email" in page.locator(".verify-banner").inner_text()
    shoot(page, "verify-banner")
    (mail,) = app.extensions["mailman"].outbox
    link = next(word for word in mail.body.split() if word.startswith("http"))
    page.goto(link)
    assert "vera@example.com is verified" in page.locator(".flashes").inner_text()
    assert page.locator(".verify-banner").count() == 0


def test_markdown_preview_close_with_comment_edit_and_delete(live_url: str, page: t.Any) -> None:
    _log_in(page, live_url)
    page.click(".topbar nav >> text=Acme Robotics")
    page.click(".card h2 a >> nth=0")
    page.click(".issues .title >> nth=0")
    issue_url = page.url
    assert page.locator("link[rel=icon]").get_attribute("href").endswith("/favicon.svg")
    icon = page.request.get(live_url + page.locator("link[rel=icon]").get_attribute("href"))
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg+xml")

    # Preview in place: rendered by the server, sanitized, nothing submitted.
    text = "**Fixed** in [the release](https://example.com/r) <script>window.pwned = 1</script>"
    page.fill("#f-body", text)
    page.click("button:text-is('Preview')")
    preview = page.locator(".md-preview")
    preview.locator("strong").wait_for()
    assert preview.locator("strong").inner_text() == "Fixed"
    link = preview.locator("a")
    assert link.get_attribute("rel") == "nofollow noopener"
    assert link.get_attribute("target") == "_blank"
    assert "<script>window.pwned = 1</script>" in preview.inner_text()  # shown as text
    assert page.evaluate("window.pwned") is None
    assert page.url == issue_url and page.locator(".flashes").count() == 0
    shoot(page, "comment-preview")

    # Close with the comment: one submit.
    page.click("button:text-is('Close with comment')")
    assert "closed." in page.locator(".flashes").inner_text()
    assert page.locator("aside .badge").inner_text() == "Closed"
    mine = page.locator(".comment").last
    assert mine.locator(".text strong").inner_text() == "Fixed"
    assert page.locator("button:text-is('Reopen with comment')").count() == 1

    mine.locator("text=Edit").click()
    page.fill("#f-body", "Fixed in _2.1_")
    page.click("main button:text-is('Save')")
    mine = page.locator(".comment").last
    assert mine.locator(".text em").inner_text() == "2.1"
    assert "edited" in mine.inner_text()
    relative = mine.locator("time").first
    assert relative.inner_text() == "just now"
    assert relative.get_attribute("title").endswith(" UTC")
    # A reader in another time zone also sees their own time in the tooltip.
    elsewhere = page.context.browser.new_context(timezone_id="America/New_York")
    elsewhere.add_cookies(page.context.cookies())
    reader = elsewhere.new_page()
    reader.goto(issue_url)
    title = reader.locator(".comment time").last.get_attribute("title")
    assert "EST" in title.split(" · ")[0] and title.endswith(" UTC"), title
    elsewhere.close()

    count = page.locator(".comment").count()
    mine.locator("text=Delete…").click()
    page.click("main button.danger")
    assert "Comment deleted." in page.locator(".flashes").inner_text()
    assert page.locator(".comment").count() == count - 1


def test_phone_header_is_one_row_and_filters_start_folded(live_url: str, page: t.Any) -> None:
    _log_in(page, live_url)
    page.click(".topbar nav >> text=Acme Robotics")
    page.click(".card h2 a >> nth=0")
    project_url = page.url
    # Desktop: navigation and filters shown as they are, no menu button.
    assert page.locator(".menu > summary").is_hidden()
    assert page.locator("#q").is_visible()
    assert "opened" in page.locator(".issues .meta").first.inner_text()

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(project_url)
    header = page.locator(".topbar").bounding_box()
    brand = page.locator(".brand").bounding_box()
    menu = page.locator(".menu > summary").bounding_box()
    assert header["height"] < 64, header  # one row
    assert abs((brand["y"] + brand["height"] / 2) - (menu["y"] + menu["height"] / 2)) < 4
    assert page.locator(".topbar nav").is_hidden()
    assert page.locator("#q").is_hidden()  # the filter card is folded
    assert page.locator(".issues li").first.bounding_box()["y"] < 844  # issues on screen one
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shoot(page, "phone-issue-list")
    page.click(".filter-card > summary")
    assert page.locator("#q").is_visible()
    page.click(".menu > summary")
    assert page.locator(".topbar nav >> text=Acme Robotics").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shoot(page, "phone-menu")


def test_mention_with_the_keyboard_and_the_mentioned_count_goes_up_live(
    live_url: str, page: t.Any
) -> None:
    # Bob reads his inbox in a browser of his own.
    bob = page.context.browser.new_context().new_page()
    bob.set_default_timeout(10_000)
    bob.goto(live_url + "/login")
    bob.fill("#f-email", "bob@example.com")
    bob.fill("#f-password", seed.DEMO_PASSWORD)
    bob.click("main button[type=submit]")
    bob.goto(live_url + "/notifications")
    badge = bob.locator("#unread-count")
    before = int(badge.inner_text() or 0)
    bob.wait_for_timeout(500)  # let its stream connect (it resumes from the cursor anyway)

    _log_in(page, live_url)
    page.click(".topbar nav >> text=Acme Robotics")
    page.click(".card h2 a >> nth=0")
    page.click(".issues .title >> nth=0")
    box = page.locator("#f-body")
    box.click()
    box.press_sequentially("Thanks @bo")
    options = page.locator(".mention-list [role=option]")
    options.first.wait_for()
    assert box.get_attribute("aria-expanded") == "true"
    assert options.first.get_attribute("aria-selected") == "true"
    assert "@bob" in options.first.inner_text()
    shoot(page, "mention-autocomplete")
    box.press("Enter")  # inserts the handle; the form is not submitted
    assert box.input_value() == "Thanks @bob "
    assert page.locator(".mention-list").is_hidden()
    box.press_sequentially("and @")  # every member, by when they joined
    options.nth(1).wait_for()
    box.press("ArrowDown")
    assert options.nth(1).get_attribute("aria-selected") == "true"
    assert box.get_attribute("aria-activedescendant") == options.nth(1).get_attribute("id")
    box.press("Escape")  # closes the list, leaves the text as typed
    assert page.locator(".mention-list").is_hidden()
    assert box.input_value() == "Thanks @bob and @"
    page.click("button:text-is('Comment')")
    mention = page.locator(".comment .text a.mention").last
    assert mention.inner_text() == "@bob"
    assert "/members#member-" in mention.get_attribute("href")
    shoot(page, "issue-timeline", full=True)

    # Bob's header counts it without a reload.
    bob.wait_for_function(
        "n => document.getElementById('unread-count').textContent === String(n)", arg=before + 1
    )
    assert badge.is_visible()
    bob.reload()
    assert "commented" in bob.locator(".notification").first.inner_text()
    shoot(bob, "inbox")
    bob.click("text=Mark all read")
    assert bob.locator("#unread-count").is_hidden()
    bob.context.close()
