"""Live in place, in two real Chromium sessions: what Alice does shows up on
Bob's issue list and issue page without a reload, through Redis, the outbox
and a real relay; the relay is restarted in the middle, and the streams
resume with what happened meanwhile. Channel tokens live 4 seconds here, so
the pages renew them several times during the test."""

from __future__ import annotations

import os
import threading
import time
import typing as t
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from tracker import create_app, seed
from tracker.models import Issue, Project

from karaffe._servers import free_port
from karaffe.db import db
from karaffe.events.relay import Relay, RelayConfig, make_server
from karaffe.tenancy import unscoped
from karaffe.testing import serving

pytestmark = [pytest.mark.browser, pytest.mark.redis]

BOB = "bob@example.com"


class RelayThread:
    """The relay, served by uvicorn in a thread, stopped and started again
    on the same port."""

    def __init__(self, config: RelayConfig, port: int) -> None:
        self.config, self.port = config, port
        self.server: t.Any = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.server = make_server(
            Relay(self.config), "127.0.0.1", self.port, loop="asyncio", log_level="warning"
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "relay did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(15)
            self.server = None


@pytest.fixture
def tracker(tmp_path: Path, redis_url: str) -> Iterator[tuple[str, t.Any, RelayThread]]:
    """The tracker on Redis with a relay of its own; yields its URL, the app
    and the relay."""
    relay_port = free_port()
    app = create_app(
        {
            "SECRET_KEY": "browser-test-secret-key-of-32-characters",
            "DATABASE_URL": f"sqlite:///{tmp_path}/live.sqlite",
            "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
            "REDIS_URL": redis_url,
            "EVENTS_REDIS_PREFIX": f"live{uuid.uuid4().hex[:6]}:",
            "EVENTS_RELAY_URL": f"http://127.0.0.1:{relay_port}/events/stream",
            "EVENTS_TOKEN_MAX_AGE": 4,
            "EVENTS_TOKEN_NOTICE": 2.0,
            # Long enough that only a goodbye can take Bob off Alice's page
            # within the test's waits (expiry is tested in tests/events).
            "EVENTS_PRESENCE_TTL": 60.0,
        }
    )
    with app.app_context():
        db.create_all()
        seed.seed(orgs=1, issues=240, users_per_org=3)
    with serving(app) as url:
        config = RelayConfig.from_app(app)
        config.cors_origins = [url]
        relay = RelayThread(config, relay_port)
        relay.start()
        try:
            yield url, app, relay
        finally:
            relay.stop()


@pytest.fixture
def browser(chromium: t.Any) -> Iterator[t.Any]:
    """The module's Chromium; the contexts a test opens in it are closed after it."""
    before = set(chromium.contexts)
    try:
        yield chromium
    finally:
        for context in chromium.contexts:
            if context not in before:
                context.close()


def shoot(page: t.Any, name: str) -> None:
    """With ``SCREENSHOT_DIR=<dir>``, save what the page shows there."""
    target = os.environ.get("SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / f"{name}.png"))


def logged_in(browser: t.Any, url: str, email: str) -> t.Any:
    context = browser.new_context(viewport={"width": 1280, "height": 700})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(url + "/login")
    page.fill("#f-email", email)
    page.fill("#f-password", seed.DEMO_PASSWORD)
    page.click("main button[type=submit]")
    assert "Welcome back" in page.locator(".flashes").inner_text()
    return page


def open_live(page: t.Any, url: str) -> None:
    """Open ``url`` and wait until its stream is open; marks the document,
    so that a reload would show (the mark would be gone)."""
    page.goto(url)
    page.wait_for_function("() => window.liveStream && window.liveStream.status === 'open'")
    page.evaluate("window.notReloaded = true")


def still_the_same_document(page: t.Any) -> bool:
    return bool(page.evaluate("window.notReloaded === true"))


def text_is(page: t.Any, selector: str, text: str, timeout: float = 10_000) -> None:
    page.wait_for_function(
        "([s, text]) => { const e = document.querySelector(s); return e && e.innerText.trim() === text; }",
        arg=[selector, text],
        timeout=timeout,
    )


def test_changes_in_one_browser_show_in_place_in_the_other(
    tracker: tuple[str, t.Any, RelayThread], browser: t.Any
) -> None:
    url, app, relay = tracker
    with app.app_context(), unscoped("test: the project and its newest open issue"):
        project = db.session.execute(sa.select(Project).order_by(Project.id)).scalars().first()
        assert project is not None
        project_id, slug = project.id, "acme-robotics"
        issue_id = db.session.execute(
            sa.select(sa.func.max(Issue.id)).where(
                Issue.project_id == project_id, Issue.status == "open"
            )
        ).scalar_one()
    list_url = f"{url}/o/{slug}/projects/{project_id}"
    issue_url = f"{url}/o/{slug}/issues/{issue_id}"

    alice = logged_in(browser, url, seed.DEMO_LOGIN)
    bob_list = logged_in(browser, url, BOB)
    bob_issue = bob_list.context.new_page()
    bob_issue.set_default_timeout(10_000)
    open_live(bob_list, list_url)
    open_live(bob_issue, issue_url)
    open_live(alice, issue_url)

    # Presence: each sees the other on the issue.
    text_is(alice, "#issue-presence", "Bob Okafor is also viewing this issue.")
    text_is(bob_issue, "#issue-presence", "Alice Martin is also viewing this issue.")

    # Alice closes the issue: Bob's page and list row change in place.
    alice.click("text=Close issue")
    text_is(bob_issue, "#issue-facts .badge", "Closed")
    text_is(bob_issue, "#issue-head button[type=submit]", "Reopen issue")
    row = f"#issue-{issue_id}"
    text_is(bob_list, f"{row} .badge", "Closed")
    assert bob_list.get_attribute(row, "data-match") == "0"  # kept in place, dimmed

    # She renames it and assigns it: title, assignee, the row's title.
    alice.click("#issue-head >> text=Edit")
    alice.fill("#f-title", "Checkout fails on Safari")
    alice.select_option("#f-assignee_id", label="Chloé Dubois")
    alice.click("main button[type=submit]")
    text_is(bob_issue, "#issue-head h1", "Checkout fails on Safari")
    text_is(bob_issue, "#issue-facts dd:nth-of-type(2)", "Chloé Dubois")
    text_is(bob_list, f"{row} .title", "Checkout fails on Safari")

    # She comments: the comment is appended.
    alice.fill("#f-body", "Reproduced on Safari 17.")
    alice.click("button:text-is('Comment')")
    bob_issue.wait_for_function(
        "() => [...document.querySelectorAll('#comments .comment .text')]"
        ".some(e => e.innerText === 'Reproduced on Safari 17.')"
    )
    shoot(bob_issue, "live-issue")

    # A new issue: at the top of Bob's list, read from its top.
    new_issue = f"{url}/o/{slug}/projects/{project_id}/issues/new"
    alice.goto(new_issue)
    alice.fill("#f-title", "Live: a brand new issue")
    alice.click("main button[type=submit]")
    text_is(bob_list, "#issue-list .issues li:first-child .title", "Live: a brand new issue")

    # Bob scrolls down: the next one waits behind "1 new issue".
    bob_list.evaluate("window.scrollTo(0, 600)")
    alice.goto(new_issue)
    alice.fill("#f-title", "Live: another one")
    alice.click("main button[type=submit]")
    text_is(bob_list, ".live-new", "1 new issue")
    shoot(bob_list, "live-new-issue")
    assert "Live: another one" not in bob_list.locator("#issue-list .issues").inner_text()
    bob_list.click(".live-new")
    text_is(bob_list, "#issue-list .issues li:first-child .title", "Live: another one")
    assert bob_list.locator(".live-new").count() == 0
    another_id = int(alice.url.rsplit("/", 1)[1])

    # The relay goes away; Alice goes on; the relay comes back: Bob's pages
    # resume from their cursors and get everything, in place.
    relay.stop()
    alice.goto(issue_url)
    alice.click("text=Reopen issue")
    alice.fill("#f-body", "Written while the relay was down.")
    alice.click("button:text-is('Comment')")
    alice.goto(f"{url}/o/{slug}/issues/{another_id}/delete")
    alice.click("main button[type=submit]")
    time.sleep(1)
    relay.start()
    # While the relay was down the pages retried with a growing back-off
    # (up to 30 s), so their first reconnection may take that long.
    text_is(bob_issue, "#issue-facts .badge", "Open", timeout=45_000)
    text_is(bob_list, f"{row} .badge", "Open", timeout=45_000)
    bob_issue.wait_for_function(
        "() => [...document.querySelectorAll('#comments .comment .text')]"
        ".some(e => e.innerText === 'Written while the relay was down.')"
    )
    bob_list.wait_for_selector(f"#issue-{another_id}", state="detached")

    # All of it without a reload, and with tokens renewed along the way.
    for page in (bob_list, bob_issue):
        assert still_the_same_document(page)
        assert page.evaluate("window.liveRenewals") >= 1
        # (it reconnects for a moment at each renewal)
        page.wait_for_function("() => window.liveStream.status === 'open'")
    assert bob_issue.locator(".live-banner").count() == 0

    # Bob closes his tab: Alice sees him go (his goodbye: his entry would
    # expire only in a minute).
    open_live(alice, issue_url)
    text_is(alice, "#issue-presence", "Bob Okafor is also viewing this issue.")
    bob_issue.close(run_before_unload=True)
    text_is(alice, "#issue-presence", "")
    alice.context.close()
    bob_list.context.close()


def test_a_deleted_issue_says_so_on_its_page(
    tracker: tuple[str, t.Any, RelayThread], browser: t.Any
) -> None:
    url, app, _ = tracker
    with app.app_context(), unscoped("test: an issue"):
        issue = db.session.execute(sa.select(Issue).order_by(Issue.id.desc())).scalars().first()
        assert issue is not None
        issue_url = f"{url}/o/acme-robotics/issues/{issue.id}"
    alice = logged_in(browser, url, seed.DEMO_LOGIN)
    bob = logged_in(browser, url, BOB)
    open_live(bob, issue_url)
    alice.goto(issue_url + "/delete")
    alice.click("main button[type=submit]")
    text_is(bob, ".live-deleted", "This issue was deleted.")
    assert bob.locator("#issue-head button[type=submit]").is_disabled()
    assert still_the_same_document(bob)
    alice.context.close()
    bob.context.close()


def test_a_list_not_sorted_newest_first_shows_new_issues_behind_a_reload_button(
    tracker: tuple[str, t.Any, RelayThread], browser: t.Any
) -> None:
    url, app, _ = tracker
    with app.app_context(), unscoped("test: a project"):
        project = db.session.execute(sa.select(Project).order_by(Project.id)).scalars().first()
        assert project is not None
        project_id = project.id
    list_url = f"{url}/o/acme-robotics/projects/{project_id}?sort=updated"
    alice = logged_in(browser, url, seed.DEMO_LOGIN)
    bob = logged_in(browser, url, BOB)
    open_live(bob, list_url)
    alice.goto(f"{url}/o/acme-robotics/projects/{project_id}/issues/new")
    alice.fill("#f-title", "Live: sorted elsewhere")
    alice.click("main button[type=submit]")
    text_is(bob, ".live-new", "1 new issue")
    assert "Live: sorted elsewhere" not in bob.locator("#issue-list .issues").inner_text()
    bob.click(".live-new")
    text_is(bob, "#issue-list .issues li:first-child .title", "Live: sorted elsewhere")
    assert not still_the_same_document(bob)  # the list was loaded again
    alice.context.close()
    bob.context.close()


def unread_of(app: t.Any, email: str) -> int:
    """What the header should say for ``email``: their unread count, read
    in the organizations they belong to (as the page's own count is)."""
    from tracker import activity

    from karaffe.auth import User

    with app.app_context(), unscoped("test: an unread count"):
        user = db.session.execute(sa.select(User).where(User.email == email)).scalar_one()
        return activity.unread_counts([user.id])[user.id]


def api_call(page: t.Any, method: str, path: str, body: t.Any = None) -> int:
    """Call the API from ``page`` with its login session, as its scripts do
    (the CSRF token of a form of the page); the status."""
    return int(
        page.evaluate(
            """async ([method, path, body]) => {
                const csrf = document.querySelector("input[name=csrf_token]").value;
                const response = await fetch(path, {
                    method, credentials: "same-origin",
                    headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
                    body: body === null ? undefined : JSON.stringify(body),
                });
                return response.status;
            }""",
            [method, path, body],
        )
    )


def test_the_timeline_list_rows_and_unread_count_follow_every_change_with_one_stream(
    tracker: tuple[str, t.Any, RelayThread], browser: t.Any
) -> None:
    from tracker.models import Label

    url, app, _ = tracker
    with app.app_context(), unscoped("test: a project, an open issue, a label"):
        project = db.session.execute(sa.select(Project).order_by(Project.id)).scalars().first()
        assert project is not None
        project_id = project.id
        issue = (
            db.session.execute(
                sa.select(Issue)
                .where(Issue.project_id == project_id, Issue.status == "open")
                .order_by(Issue.id.desc())
            )
            .scalars()
            .first()
        )
        assert issue is not None
        issue_id, comments = issue.id, issue.comment_count
        label = (
            db.session.execute(
                sa.select(Label)
                .where(Label.organization_id == issue.organization_id)
                .where(Label.id.not_in([label.id for label in issue.labels]))
                .order_by(Label.id)
            )
            .scalars()
            .first()
        )
        assert label is not None
        label_id, label_name = label.id, label.name
    slug = "acme-robotics"
    list_url = f"{url}/o/{slug}/projects/{project_id}?status=all"
    issue_url = f"{url}/o/{slug}/issues/{issue_id}"
    row = f"#issue-{issue_id}"

    alice = logged_in(browser, url, seed.DEMO_LOGIN)
    bob_list = logged_in(browser, url, BOB)
    bob_issue = bob_list.context.new_page()
    bob_issue.set_default_timeout(10_000)
    # Count the page's EventSources that are not closed.
    bob_list.context.add_init_script(
        """(() => {
            const Real = window.EventSource, made = [];
            window.EventSource = function (url, options) {
                const source = new Real(url, options);
                made.push(source);
                return source;
            };
            Object.assign(window.EventSource, {CONNECTING: 0, OPEN: 1, CLOSED: 2});
            window.openStreams = () => made.filter(s => s.readyState !== 2).length;
        })()"""
    )
    refused: list[str] = []
    for page in (bob_list, bob_issue):
        page.on(
            "console",
            lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
        )
    open_live(bob_list, list_url)
    open_live(bob_issue, issue_url)
    open_live(alice, issue_url)

    # One client script and one stream per page, the header's count included.
    # (Each would also have held the shared stream of the count before.)
    for _ in range(5):
        for page in (bob_list, bob_issue):
            assert page.locator("script[src*='karaffe-events.js']").count() == 1
            assert page.evaluate("window.openStreams()") <= 1
            channels = page.evaluate("window.liveStream.channels")
            assert len(channels) == 2 and channels[-1].startswith("user:"), channels
        time.sleep(0.2)

    # Alice mentions Bob: his count, on both pages; the row counts the comment.
    before = unread_of(app, BOB)
    alice.fill("#f-body", "@bob have a look")
    alice.click("button:text-is('Comment')")
    comment_id = int(alice.url.rsplit("#comment-", 1)[1])
    assert unread_of(app, BOB) == before + 1
    for page in (bob_list, bob_issue):
        text_is(page, "#unread-count", str(before + 1))
    plural = "s" if comments + 1 != 1 else ""
    bob_list.wait_for_function(
        "([s, text]) => document.querySelector(s).innerText.includes(text)",
        arg=[f"{row} .meta", f"{comments + 1} comment{plural}"],
    )

    # She deletes it: gone from Bob's timeline, and from the row's count.
    alice.goto(f"{url}/o/{slug}/comments/{comment_id}/delete")
    alice.click("main button[type=submit]")
    bob_issue.wait_for_selector(f"#comment-{comment_id}", state="detached")
    bob_list.wait_for_function(
        "([s, text]) => !document.querySelector(s).innerText.includes(text)",
        arg=[f"{row} .meta", f"{comments + 1} comment"],
    )

    # Title, assignee, labels, then close with a comment: each an entry of
    # Bob's timeline, in place and in order (the comment before the close).
    alice.goto(issue_url)
    assert api_call(alice, "PATCH", f"/api/v1/issues/{issue_id}", {"title": "Live titles"}) == 200
    with app.app_context(), unscoped("test: Chloé"):
        from karaffe.auth import User

        chloe = db.session.execute(sa.select(User.id).where(User.name == "Chloé Dubois")).scalar()
    assert api_call(alice, "PATCH", f"/api/v1/issues/{issue_id}", {"assignee_id": chloe}) == 200
    patch = {"label_ids": [label_id]}
    assert api_call(alice, "PATCH", f"/api/v1/issues/{issue_id}", patch) == 200
    alice.fill("#f-body", "Fixed in the live build.")
    alice.click("button:text-is('Close with comment')")
    bob_issue.wait_for_function(
        "() => [...document.querySelectorAll('#comments > *')].slice(-5)"
        ".some(e => e.innerText.includes('closed the issue'))"
    )
    bob_issue.wait_for_function("() => document.querySelectorAll('#comments > *').length > 0")
    last = bob_issue.evaluate(
        "[...document.querySelectorAll('#comments > *')].slice(-5).map(e => e.innerText)"
    )
    assert "Alice Martin changed the title" in last[0] and "Live titles" in last[0]
    assert "Alice Martin assigned Chloé Dubois" in last[1]
    assert f"Alice Martin added {label_name}" in last[2]
    assert "Fixed in the live build." in last[3]
    assert "Alice Martin closed the issue" in last[4]
    text_is(bob_issue, "#issue-facts .badge", "Closed")
    shoot(bob_issue, "live-timeline")

    # A label renamed: the rows that show it.
    assert api_call(alice, "PATCH", f"/api/v1/labels/{label_id}", {"name": "renamed-live"}) == 200
    bob_list.wait_for_function(
        "([s, text]) => document.querySelector(s).innerText.includes(text)",
        arg=[row, "renamed-live"],
    )

    # The assignee renamed: the row says so.
    me = alice.evaluate("fetch('/api/v1/me').then(r => r.json())")
    assert api_call(alice, "PATCH", f"/api/v1/issues/{issue_id}", {"assignee_id": me["id"]}) == 200
    bob_list.wait_for_function(
        "([s, text]) => document.querySelector(s).innerText.includes(text)",
        arg=[row, "assigned to Alice Martin"],
    )
    assert api_call(alice, "PATCH", "/api/v1/me", {"name": "Alice Renamed"}) == 200
    bob_list.wait_for_function(
        "([s, text]) => document.querySelector(s).innerText.includes(text)",
        arg=[row, "assigned to Alice Renamed"],
    )

    # Alice deletes the issue: the notification goes, and Bob's count with it.
    unread = unread_of(app, BOB)
    alice.goto(f"{issue_url}/delete")
    alice.click("main button[type=submit]")
    assert unread_of(app, BOB) < unread
    text_is(bob_list, "#unread-count", str(unread_of(app, BOB)))
    bob_list.wait_for_selector(row, state="detached")

    for page in (bob_list, bob_issue):
        assert still_the_same_document(page)
    assert refused == []
    alice.context.close()
    bob_list.context.close()
