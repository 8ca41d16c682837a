"""`make prod` (deploy/prod.py) serves the site and the event streams through
one nginx port, and SIGTERM leaves no process behind."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

import karaffe
from karaffe._servers import free_port
from karaffe.events import Events, channel_token, cursor
from karaffe.events.publish import state_for

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


def descendants(pid: int) -> set[int]:
    """Every process under ``pid``, from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose (its parent has not reaped it yet).
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize(
    "chromium",
    [
        pytest.param(False, id="http"),
        # With a real browser the run takes over 30 s: in `make chaos`.
        pytest.param(True, id="chromium", marks=[pytest.mark.chaos, pytest.mark.browser]),
    ],
)
def test_make_prod_serves_pages_api_docs_and_streams_then_stops_every_process(
    chromium: bool,
) -> None:
    for binary in ("nginx", "redis-server"):
        if not shutil.which(binary):
            # As the real-server fixtures: skipped on a developer machine, never in CI.
            (pytest.fail if os.environ.get("CI") else pytest.skip)(
                f"{binary} is not installed (make prod and .ci/run install it)"
            )
    port = free_port()
    env = dict(os.environ, PORT=str(port), TRACKER_DEMO_ISSUES="20", RELAYS="2",
               WEB_CONCURRENCY="1")  # fmt: skip
    for key in ("DATABASE_URL", "REDIS_URL", "KARAFFE_SECRET_KEY"):
        env.pop(key, None)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "deploy" / "prod.py")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    pids: set[int] = set()
    try:
        ready = threading.Event()

        def drain() -> None:  # keep reading: a full pipe would block the children
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if line.startswith("prod | ready"):
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        ready.wait(120)
        log = "".join(lines)
        assert "prod | ready" in log, log[-3000:]
        assert re.findall(r"prod \| (relay\.\d) started", log) == ["relay.1", "relay.2"]
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(base + "/", timeout=10) as rv:
            assert rv.status == 200
        with urllib.request.urlopen(base + "/api/v1/docs", timeout=10) as rv:
            assert rv.status == 200

        # A stream through nginx to a relay, signed with the key prod wrote.
        run_dir = Path(re.search(r"settings in (\S+)/env", log).group(1))  # type: ignore[union-attr]
        settings = dict(line.split("=", 1) for line in (run_dir / "env").read_text().splitlines())
        app = karaffe.App("prod_test")
        Events(app)
        app.configure(
            {
                "SECRET_KEY": settings["KARAFFE_SECRET_KEY"].strip("'"),
                "REDIS_URL": settings["REDIS_URL"].strip("'"),
                "EVENTS_RELAY_URL": "/events/stream",
            },
            environ={},
        )
        with app.app_context():
            token = channel_token("1", ["project:1"])
            # From the current position, as a page does: an event published
            # while the relay is still subscribing comes from the history.
            position = cursor(["project:1"])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request(
            "GET",
            f"/events/stream?channel=project:1&token={quote(token)}&cursor={quote(position)}",
        )
        rv = conn.getresponse()
        assert rv.status == 200, rv.read()
        assert rv.getheader("Content-Type", "").startswith("text/event-stream")
        assert rv.getheader("Server") == "nginx"
        first = rv.read1(256)  # unbuffered: the relay's first frame arrives at once
        assert first.startswith((b"retry:", b":", b"id:", b"event:")), first
        # An event published to Redis comes through the relay and nginx at once.
        state_for(app).broker.publish("project:1", "issue.created", b'{"title": "via nginx"}')
        received = b""
        deadline = time.monotonic() + 5
        while b"via nginx" not in received and time.monotonic() < deadline:
            received += rv.read1(4096)
        assert b"via nginx" in received, received
        conn.close()

        if chromium:
            if not Path(CHROMIUM).exists():
                pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
            # A real browser through the proxy: the tracker's own page, on
            # the relays' stream, shows that the page changed.
            from playwright.sync_api import sync_playwright

            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=CHROMIUM,
                    args=["--headless", "--no-sandbox", "--disable-gpu"],
                )
                page = browser.new_page()
                page.set_default_timeout(10_000)
                seen: list[str] = []
                page.on("console", lambda m: seen.append(m.text))
                page.on(
                    "response",
                    lambda r: seen.append(f"{r.status} {r.url}") if "/events/" in r.url else None,
                )
                page.goto(base + "/login")
                page.fill("#f-email", "alice@example.com")
                page.fill("#f-password", "tracker-demo")
                page.click("main button[type=submit]")
                page.goto(
                    base + page.locator(".topbar nav a[href^='/o/']").first.get_attribute("href")
                )
                page.locator("main a[href*='/projects/']:not([href$='/new'])").first.click()
                config = json.loads(page.locator("#live-config").text_content())
                assert config["url"] == "/events/stream"
                page.wait_for_function("document.readyState === 'complete'")
                page.wait_for_timeout(1000)  # the stream connects (it resumes anyway)
                broker = state_for(app).broker
                broker.publish(config["channels"][0], "issue.created", b'{"id": 1}')
                banner = page.locator(".live-banner")
                try:
                    banner.wait_for(timeout=5000)
                except Exception:
                    raise AssertionError((config, seen)) from None
                assert "This page changed." in banner.inner_text()
                browser.close()
        state_for(app).broker.close()

        pids = descendants(proc.pid)
        assert len(pids) >= 7  # redis, postgres, granian, 2 relays, scheduler, dispatcher, nginx
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        assert proc.returncode == 0
        left = {pid for pid in pids if alive(pid)}
        assert not left, left
    finally:
        if proc.poll() is None:  # the test failed: let the supervisor stop its children
            pids |= descendants(proc.pid)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in pids:  # only if the test failed: never leave them running
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
