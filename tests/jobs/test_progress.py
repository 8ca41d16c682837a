"""Progress of long jobs: a bar on a terminal, log lines otherwise."""

from __future__ import annotations

import io
import logging

import pytest

from karaffe.jobs import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "karaffe.jobs.progress"]


def test_without_a_terminal_progress_is_logged_every_ten_percent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="karaffe.jobs.progress")
    out = Pipe()
    assert list(progress(range(40), label="reindexing", file=out)) == list(range(40))
    assert messages(caplog) == [
        *(f"reindexing: {n}/40 ({n * 100 // 40}%)" for n in range(4, 40, 4)),
        "reindexing: 40/40 done",
    ]
    assert out.getvalue() == ""


def test_an_unknown_total_is_logged_every_n_items(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="karaffe.jobs.progress")
    items = (i for i in range(25))
    assert sum(progress(items, label="mailing", file=Pipe(), log_every_items=10)) == 300
    assert messages(caplog) == ["mailing: 10 done", "mailing: 20 done", "mailing: 25 done"]


def test_a_given_total_wins_over_the_length(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="karaffe.jobs.progress")
    list(progress(iter("abcd"), total=4, label="letters", file=Pipe(), log_every=50))
    assert messages(caplog) == ["letters: 2/4 (50%)", "letters: 4/4 done"]


def test_on_a_terminal_a_bar_is_drawn_and_nothing_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="karaffe.jobs.progress")
    out = Terminal()
    assert list(progress(range(5), label="crunching", file=out)) == list(range(5))
    assert "crunching" in out.getvalue() and "100%" in out.getvalue()
    assert messages(caplog) == []
