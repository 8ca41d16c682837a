"""``python -m bench.charts [FILE.md ...]``: the benchmarks' tables as PNG charts.

Every Markdown table in a results file (by default each ``bench/results/*.md``)
is drawn next to it: ``NAME.png`` for the file's first table, ``NAME-2.png``
for the second, and so on. The table's text columns name the bars; each of
its numeric columns (up to four, leaving out those that hold one value on
every row) is a panel of horizontal bars. A cell's number is read as
printed: ``1,234``, ``12.5``, ``0.79x``, ``35%``, ``100,000 / 100,000 (100.0%)``
(the number it starts with; a cell such as ``<= 3 queries: met`` is text).
The line of text above a table is the chart's title.

``make bench`` runs it after the benchmarks.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
MAX_PANELS = 4

#: Cells that say a value is missing: no bar, and not text either.
_MISSING = frozenset({"", "n/a", "-", "—"})
_SEPARATOR = re.compile(r"^\|(\s*:?-+:?\s*\|)+\s*$")
_NUMBER = re.compile(r"-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)")


@dataclass
class Table:
    """A Markdown table: its caption (the text line above it), header and rows."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)


def _cells(line: str) -> list[str]:
    return [cell.strip().strip("*").strip() for cell in line.strip().strip("|").split("|")]


def parse_tables(text: str) -> list[Table]:
    """The Markdown tables of ``text``, in order, each with its caption: the
    heading above it if there is one since the previous table, else the line
    of text right above it."""
    lines = text.splitlines()
    tables: list[Table] = []
    caption, heading = "", False
    i = 0
    while i < len(lines):
        line = lines[i]
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if line.lstrip().startswith("|") and _SEPARATOR.match(following.strip()):
            table = Table(caption, _cells(line))
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                row = _cells(lines[i])
                table.rows.append((row + [""] * len(table.headers))[: len(table.headers)])
                i += 1
            tables.append(table)
            caption, heading = "", False
            continue
        stripped = line.strip()
        if stripped.startswith("#"):
            caption, heading = stripped.lstrip("#").strip(), True
        elif stripped and not stripped.startswith("|") and not heading:
            caption = stripped
        i += 1
    return tables


def number(cell: str) -> float | None:
    """The number ``cell`` starts with, ``None`` if it does not start with one."""
    found = _NUMBER.match(cell)
    return float(found.group().replace(",", "")) if found else None


#: The columns to draw of a results file's tables (by file name), when the
#: first numeric ones are not those that tell the story.
COLUMNS: dict[str, tuple[str, ...]] = {
    "foundation": ("req/s", "req/CPU-s", "x Flask (CPU)", "x FastAPI (CPU)"),
}


def _columns(table: Table, wanted: t.Sequence[str] = ()) -> tuple[list[int], list[int]]:
    """(text columns, numeric columns to draw) of ``table``: those named in
    ``wanted`` if any is there, else the first numeric ones."""
    text, numeric = [], []
    for i in range(len(table.headers)):
        cells = [row[i] for row in table.rows if row[i] not in _MISSING]
        values = [number(cell) for cell in cells]
        if cells and all(v is not None for v in values):
            if len(set(values)) > 1 or len(table.rows) == 1:
                numeric.append(i)
        else:
            text.append(i)
    chosen = [table.headers.index(h) for h in wanted if h in table.headers]
    chosen = [i for i in chosen if i in numeric]
    return text, (chosen or numeric)[:MAX_PANELS]


def draw(table: Table, path: Path, columns: t.Sequence[str] = ()) -> Path | None:
    """Draw ``table`` as a PNG at ``path`` (its ``columns``, if given and
    numeric, else its first numeric ones); ``None`` when it has no rows or no
    numeric column."""
    text, numeric = _columns(table, columns)
    if not table.rows or not numeric:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [
        " · ".join(row[i] for i in text if row[i]) or str(n + 1) for n, row in enumerate(table.rows)
    ]
    height = 1.2 + 0.32 * len(names)
    fig, axes = plt.subplots(
        1, len(numeric), figsize=(3.6 * len(numeric) + 2.4, height), sharey=True, squeeze=False
    )
    positions = list(range(len(names)))
    for axis, column in zip(axes[0], numeric, strict=True):
        values = [number(row[column]) for row in table.rows]
        bars = [math.nan if v is None else v for v in values]
        axis.barh(positions, bars, color="#4c72b0")
        axis.set_title(table.headers[column], fontsize=9)
        axis.tick_params(labelsize=8)
        axis.grid(axis="x", alpha=0.3)
        for y, (value, cell) in enumerate(
            zip(values, (r[column] for r in table.rows), strict=True)
        ):
            if value is not None:
                axis.annotate(cell, (value, y), xytext=(3, 0), textcoords="offset points",
                              va="center", fontsize=7)  # fmt: skip
        axis.margins(x=0.25)
    axes[0][0].set_yticks(positions, names)
    axes[0][0].invert_yaxis()
    if table.title:
        fig.suptitle(table.title if len(table.title) <= 140 else table.title[:137] + "...",
                     fontsize=9)  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def chart_file(markdown: Path) -> list[Path]:
    """Draw every table of the Markdown file ``markdown`` next to it; the
    PNGs written."""
    written = []
    for n, table in enumerate(parse_tables(markdown.read_text(errors="replace")), start=1):
        name = markdown.stem + ("" if n == 1 else f"-{n}") + ".png"
        done = draw(table, markdown.with_name(name), COLUMNS.get(markdown.stem, ()))
        if done is not None:
            written.append(done)
    return written


def main(argv: t.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.charts", description=__doc__)
    parser.add_argument("files", nargs="*", type=Path, help="Markdown files (bench/results/*.md)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    files = args.files or sorted(RESULTS.glob("*.md"))
    if not files:
        print(f"no results to chart in {RESULTS}", file=sys.stderr)
        return 1
    for markdown in files:
        for path in chart_file(markdown):
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
