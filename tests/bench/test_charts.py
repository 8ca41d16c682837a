"""``bench.charts`` draws the benchmarks' Markdown tables as PNG charts. What
is checked is the drawing (a file, a real PNG, one per table), not figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.charts import chart_file, draw, main, number, parse_tables

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

RESULTS = """\
tracker pages in-process on SQLite, 10,000 issues; load average (1 min): 3.2

| page | queries | CPU ms per request | target |
|---|---:|---:|---|
| api | 3 | 1.42 | <= 3 queries: met |
| html | 8 | **3.90** | <= 4 ms: met |

Relay, 20 events/s per client

| server | clients | delivered / expected | p99 ms |
|---|---:|---|---:|
| karaffe | 2,000 | 100,000 / 100,000 (100.0%) | 116.0 |
| naive | 2,000 | 99,000 / 100,000 (99.0%) | 918.5 |

| only | text |
|---|---|
| a | b |
"""


def test_the_tables_of_a_results_file_are_read_with_their_titles() -> None:
    tables = parse_tables(RESULTS)
    assert [t.title for t in tables] == [
        "tracker pages in-process on SQLite, 10,000 issues; load average (1 min): 3.2",
        "Relay, 20 events/s per client",
        "",
    ]
    assert tables[0].headers == ["page", "queries", "CPU ms per request", "target"]
    assert tables[0].rows[1] == ["html", "8", "3.90", "<= 4 ms: met"]
    assert len(tables[1].rows) == 2


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("1,234", 1234.0),
        ("0.79x", 0.79),
        ("35%", 35.0),
        ("100,000 / 100,000 (100.0%)", 100000.0),
        ("-2.5", -2.5),
        ("<= 3 queries: met", None),
        ("n/a", None),
    ],
)
def test_a_cell_is_read_as_the_number_it_starts_with(cell: str, expected: float | None) -> None:
    assert number(cell) == expected


def test_a_small_table_is_drawn_as_a_png(tmp_path: Path) -> None:
    table = parse_tables(RESULTS)[0]
    path = draw(table, tmp_path / "chart.png")
    assert path == tmp_path / "chart.png"
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 2000


def test_each_table_of_a_file_gets_its_chart_next_to_it(tmp_path: Path) -> None:
    results = tmp_path / "results" / "tracker-pages.md"
    results.parent.mkdir()
    results.write_text(RESULTS)
    written = chart_file(results)
    # The third table has no number to draw: no chart.
    assert written == [
        results.with_name("tracker-pages.png"),
        results.with_name("tracker-pages-2.png"),
    ]
    for path in written:
        assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_the_command_charts_the_files_it_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "foundation.md"
    results.write_text(RESULTS)
    assert main([str(results)]) == 0
    assert capsys.readouterr().out.split() == [
        str(tmp_path / "foundation.png"),
        str(tmp_path / "foundation-2.png"),
    ]


def test_a_heading_above_a_table_is_its_title() -> None:
    text = "# Foundation benchmark\n\nVersions: a, b.\n\n| app | req/s |\n|---|---:|\n| x | 3 |\n"
    assert [t.title for t in parse_tables(text)] == ["Foundation benchmark"]


def test_the_columns_asked_for_are_drawn(tmp_path: Path) -> None:
    table = parse_tables(RESULTS)[0]
    assert draw(table, tmp_path / "a.png", columns=["CPU ms per request"]) is not None
    assert draw(table, tmp_path / "b.png", columns=["no such column"]) is not None
