"""A real headless Chromium runs karaffe-events.js: events published from
Python show up in the page within a second, and tabs share one connection."""

from __future__ import annotations

import shutil
import time
import typing as t
import uuid
from collections.abc import Iterator

import pytest
from flask import redirect, render_template_string

import karaffe
from karaffe._servers import free_port
from karaffe.events import Events, channel_token, cursor, publish
from karaffe.events.protocol import START, Cursor
from karaffe.events.relay import RelayConfig
from karaffe.testing import serving

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
PAGE = """<!doctype html>
<script src="{{ url_for('karaffe_events.static', filename='karaffe-events.js') }}"></script>
<ul id="log"></ul>
<script nonce="{{ csp_nonce() }}">
  window.received = [];
  window.stream = KaraffeEvents.connect({
    url: {{ stream_url|htmljson }},
    channels: ["project:1"],
    token: {{ channel_token("u1", ["project:1"], max_age=max_age)|htmljson }},
    renew: {% if renew %}function () {
      window.renewals = (window.renewals || 0) + 1;
      return fetch("/token").then(function (r) { return r.json(); }).then(function (j) { return j.token; });
    }{% else %}null{% endif %},
    cursor: {{ events_cursor(["project:1"])|htmljson }},
    share: {{ share|htmljson }},
  });
  window.stream.on("issue.created", function (event) {
    window.received.push(event.data.title);
    var li = document.createElement("li");
    li.textContent = event.data.title;
    document.getElementById("log").appendChild(li);
  });
</script>
"""


def make_page_app(config: dict[str, object]) -> karaffe.App:
    app = karaffe.App("karaffe_browser_test")
    Events(app)
    app.configure({"TESTING": True, "SECRET_KEY": "browser-secret", **config}, environ={})

    @app.get("/")
    def page() -> str:
        from flask import request

        from karaffe.events import stream_url

        return render_template_string(
            PAGE,
            stream_url=stream_url(),
            share=request.args.get("share") == "1",
            renew=request.args.get("renew") != "0",
            max_age=app.config["EVENTS_TOKEN_MAX_AGE"],
        )

    @app.get("/token")
    def token() -> dict[str, str]:
        return {"token": channel_token("u1", ["project:1"])}

    return app


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not shutil.which(CHROMIUM):
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


def wait_received(page: object, title: str, within: float = 1.0) -> float:
    started = time.monotonic()
    page.wait_for_function(  # type: ignore[attr-defined]
        f"() => window.received.includes({title!r})", timeout=within * 1000
    )
    return time.monotonic() - started


def test_page_sees_an_event_from_python_with_the_embedded_broker(browser: object) -> None:
    app = make_page_app({})
    with serving(app) as url:
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(url + "/")
        page.wait_for_function("() => window.stream.status === 'open'", timeout=5000)
        with app.app_context():
            publish("project:1", "issue.created", {"title": "Broken build"})
        wait_received(page, "Broken build", within=1.0)
        assert page.inner_text("#log") == "Broken build"
        page.close()


def test_a_stream_url_that_answers_404_turns_live_updates_off(browser: object) -> None:
    """No stream served (here: EVENTS_SERVE_STREAM off, as with a Redis broker
    and no relay): the client stops after one probe instead of retrying."""
    app = make_page_app({"EVENTS_SERVE_STREAM": False})
    with serving(app) as url:
        page = browser.new_page()  # type: ignore[attr-defined]
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url) if "/events/stream" in r.url else None)
        page.goto(url + "/")
        page.wait_for_function("window.stream.status === 'off'", timeout=5000)
        time.sleep(2.5)  # longer than the first back-off: nothing more is asked
        assert len(asked) <= 2  # the EventSource and the probe
        page.close()


@pytest.mark.redis
@pytest.mark.parametrize("election", ["web-locks", "localstorage-lease"])
def test_two_tabs_share_one_relay_connection_and_both_update(
    browser: object, redis_url: str, election: str
) -> None:
    from relay_harness import running_relay

    prefix = f"t{uuid.uuid4().hex[:6]}:"
    relay_port = free_port()
    app = make_page_app(
        {
            "REDIS_URL": redis_url,
            "EVENTS_REDIS_PREFIX": prefix,
            "EVENTS_RELAY_URL": f"http://127.0.0.1:{relay_port}/events/stream",
        }
    )
    with serving(app) as url:
        config = RelayConfig(
            secret_key="browser-secret",
            redis_url=redis_url,
            prefix=prefix,
            cors_origins=[url],
        )
        with running_relay(config, port=relay_port) as relay:
            context = browser.new_context()  # type: ignore[attr-defined]
            if election == "localstorage-lease":
                context.add_init_script("delete Navigator.prototype.locks;")
            first, second = context.new_page(), context.new_page()
            for page in (first, second):
                page.goto(url + "/?share=1")
            first.wait_for_function("() => window.stream.status === 'open'", timeout=5000)
            second.wait_for_function("() => window.stream.status === 'open'", timeout=5000)
            assert first.evaluate("!!navigator.locks") == (election == "web-locks")
            with app.app_context():
                publish("project:1", "issue.created", {"title": "Shared"})
            wait_received(first, "Shared")
            wait_received(second, "Shared")
            assert len(relay.relay.connections) == 1, "one EventSource for both tabs"
            # The leader tab goes away: the other takes over and misses nothing.
            first.close()
            with app.app_context():
                publish("project:1", "issue.created", {"title": "Gap"})
            deadline = time.monotonic() + 10
            while relay.relay.metrics.connections_total < 2:
                assert time.monotonic() < deadline, "no tab took over"
                time.sleep(0.05)
            with app.app_context():
                publish("project:1", "issue.created", {"title": "After"})
            wait_received(second, "After")
            assert second.evaluate("window.received") == ["Shared", "Gap", "After"]
            context.close()


def test_page_helpers_render_a_token_and_cursor() -> None:
    app = make_page_app({})
    with app.test_request_context():
        token = channel_token("u1", ["project:1"])
        stamped = cursor(["project:1"])
        grant = app.extensions["karaffe.events"].signer.verify(token)
    assert Cursor.parse(stamped).get("project:1") == START
    assert (grant.user, grant.channels) == ("u1", ("project:1",))


def test_token_renewal_keeps_the_stream_without_loss_or_duplicates(browser: object) -> None:
    app = make_page_app({"EVENTS_TOKEN_MAX_AGE": 3, "EVENTS_TOKEN_NOTICE": 2.0})
    with serving(app) as url:
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(url + "/")
        page.wait_for_function("() => window.stream.status === 'open'", timeout=5000)
        titles = [f"e{n}" for n in range(12)]
        for title in titles:
            with app.app_context():
                publish("project:1", "issue.created", {"title": title})
            time.sleep(0.25)
        wait_received(page, titles[-1], within=3.0)
        assert page.evaluate("window.received") == titles
        assert page.evaluate("window.renewals") >= 1
        page.close()


def test_without_renew_the_stream_closes_at_expiry(browser: object) -> None:
    app = make_page_app({"EVENTS_TOKEN_MAX_AGE": 2, "EVENTS_TOKEN_NOTICE": 1.0})
    with serving(app) as url:
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(url + "/?renew=0")
        page.wait_for_function("() => window.stream.status === 'open'", timeout=5000)
        page.wait_for_function("() => window.stream.status === 'closed'", timeout=5000)
        page.close()


FRAGMENT_PAGE = """<!doctype html>
<script src="{{ url_for('karaffe_events.static', filename='karaffe-events.js') }}"></script>
<ul id="list"><li id="row-1">old</li><li id="row-2">two</li></ul><p id="note">note</p>
"""


def make_fragment_app() -> tuple[karaffe.App, list[str]]:
    """A page, and fragments that count how often they are fetched."""
    app = karaffe.App("karaffe_fragment_test")
    Events(app)
    app.configure({"TESTING": True, "SECRET_KEY": "browser-secret"}, environ={})
    hits: list[str] = []
    version = {"n": 0}

    @app.get("/")
    def page() -> str:
        return render_template_string(FRAGMENT_PAGE)

    @app.get("/row/<int:n>")
    def row(n: int) -> t.Any:
        hits.append(f"row/{n}")
        time.sleep(0.2)  # a slow fragment: events keep coming meanwhile
        version["n"] += 1
        return f'<li id="row-{n}">version {version["n"]}</li>'

    @app.get("/both")
    def both() -> str:
        return '<li id="row-2">two, swapped</li>\n<p id="note">note, swapped</p><p>no id</p>'

    @app.get("/gone")
    def gone() -> tuple[str, int]:
        return "", 404

    @app.get("/moved")
    def moved() -> t.Any:
        return redirect("/both")

    return app, hits


def test_fragment_helpers_fetch_swap_and_coalesce(browser: object) -> None:
    app, hits = make_fragment_app()
    with serving(app) as url:
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(url + "/")
        # Ten refreshes of one key while its fetch runs: two fetches, and the
        # page ends with what the last one answered.
        page.evaluate(
            """() => {
              const refresh = KaraffeEvents.refresher((n) =>
                KaraffeEvents.fetchFragment('/row/' + n).then((got) =>
                  KaraffeEvents.swap(document.getElementById('row-' + n), got.fragment)));
              const runs = [];
              for (let i = 0; i < 10; i++) runs.push(refresh('1'));
              return Promise.all(runs);
            }"""
        )
        page.wait_for_function("() => document.getElementById('row-1').innerText === 'version 2'")
        assert hits == ["row/1", "row/1"]
        # swapById: each top-level element with an id replaces its namesake.
        swapped = page.evaluate(
            """() => KaraffeEvents.fetchFragment('/both').then((got) =>
                 KaraffeEvents.swapById(got.fragment).map((e) => e.id))"""
        )
        assert swapped == ["row-2", "note"]
        assert page.inner_text("#note") == "note, swapped"
        # A 404 is "gone" (null: swap removes); a redirect is refused.
        page.evaluate(
            """() => KaraffeEvents.fetchFragment('/gone').then((got) =>
                 KaraffeEvents.swap(document.getElementById('row-2'), got.fragment))"""
        )
        assert page.locator("#row-2").count() == 0
        refused = page.evaluate(
            "() => KaraffeEvents.fetchFragment('/moved').then(() => 'taken', (e) => e.message)"
        )
        assert "redirected" in refused
        # The other places a fragment can go.
        page.evaluate(
            """() => {
              const list = document.getElementById('list');
              KaraffeEvents.swap(list, '<li id="first">first</li>', 'prepend');
              KaraffeEvents.swap(list, '<li id="last">last</li>', 'append');
              KaraffeEvents.swap(document.getElementById('note'), '<p id="after">after</p>', 'after');
            }"""
        )
        assert page.locator("#list li").all_inner_texts() == ["first", "version 2", "last"]
        assert page.evaluate("document.getElementById('note').nextElementSibling.id") == "after"
        page.close()
