"""The table: medians over rounds, ratios against the references, verdicts."""

from __future__ import annotations

import statistics
import typing as t
from collections import defaultdict
from dataclasses import dataclass

from .runner import ENDPOINTS, Measurement

__all__ = ["TARGETS", "Row", "Target", "markdown", "summarize", "text_table", "verdicts"]

#: The references of the ratio columns.
FASTAPI = ("fastapi-async", "uvicorn")
FLASK = "flask-pydantic"


@dataclass(frozen=True)
class Row:
    app: str
    server: str
    endpoint: str
    rps: float
    p99_ms: float
    spread: float
    rounds: int
    socket_errors: int
    vs_fastapi: float | None = None
    vs_flask: float | None = None


def summarize(measurements: t.Iterable[Measurement]) -> list[Row]:
    """One row per (app, server, endpoint): the medians of its rounds, and its
    req/s as a ratio of FastAPI async on uvicorn and of Flask + pydantic on the
    same server."""
    groups: dict[tuple[str, str, str], list[Measurement]] = defaultdict(list)
    for m in measurements:
        groups[(m.app, m.server, m.endpoint)].append(m)
    medians = {key: statistics.median(m.result.rps for m in group) for key, group in groups.items()}
    rows = []
    for (app, server, endpoint), group in groups.items():
        rps = medians[(app, server, endpoint)]
        each = [m.result.rps for m in group]
        fastapi = medians.get((*FASTAPI, endpoint))
        flask = medians.get((FLASK, server, endpoint))
        rows.append(
            Row(
                app=app,
                server=server,
                endpoint=endpoint,
                rps=rps,
                p99_ms=statistics.median(m.result.p99_ms for m in group),
                spread=(max(each) - min(each)) / rps if rps else 0.0,
                rounds=len(group),
                socket_errors=sum(m.result.socket_errors + m.result.timeouts for m in group),
                vs_fastapi=rps / fastapi if fastapi else None,
                vs_flask=rps / flask if flask else None,
            )
        )
    order = {name: i for i, name in enumerate(ENDPOINTS)}
    return sorted(rows, key=lambda r: (order.get(r.endpoint, 99), -r.rps))


@dataclass(frozen=True)
class Target:
    """``karaffe >= ratio x peer`` on ``endpoints``; ``same_server`` compares on
    the same server, otherwise against the peer on ``peer_server``."""

    text: str
    peer: str
    ratio: float
    same_server: bool
    peer_server: str | None = None
    endpoints: tuple[str, ...] = ("post", "page")


TARGETS = (
    Target(">= 1.3x FastAPI async (uvicorn)", "fastapi-async", 1.3, False, "uvicorn"),
    Target(">= 0.9x hand-written Flask + pydantic, same server", FLASK, 0.9, True),
    Target(">= 2x APIFlask, same server", "apiflask", 2.0, True),
    Target(">= 2x flask-smorest, same server", "flask-smorest", 2.0, True),
)


def verdicts(rows: t.Sequence[Row], subject: str = "karaffe") -> list[str]:
    """One line per target and server karaffe ran on: met / NOT met, with numbers."""
    rps = {(r.app, r.server, r.endpoint): r.rps for r in rows}
    servers = sorted({r.server for r in rows if r.app == subject})
    lines = []
    for target in TARGETS:
        for server in servers:
            peer_server = server if target.same_server else t.cast(str, target.peer_server)
            parts, met, missing = [], True, False
            for endpoint in target.endpoints:
                ours, theirs = (
                    rps.get((subject, server, endpoint)),
                    rps.get((target.peer, peer_server, endpoint)),
                )
                if ours is None or theirs is None:
                    parts.append(f"{endpoint} not measured")
                    missing = True
                    continue
                ratio = ours / theirs
                met = met and ratio >= target.ratio
                parts.append(f"{endpoint} {ratio:.2f}x ({ours:,.0f} vs {theirs:,.0f} req/s)")
            verdict = "not measured" if missing else "met" if met else "NOT met"
            lines.append(f"{subject} on {server} {target.text}: {verdict}: {'; '.join(parts)}")
    return lines


_HEADERS = (
    "app",
    "server",
    "endpoint",
    "req/s",
    "p99 ms",
    "spread",
    "vs FastAPI async",
    "vs Flask+pydantic",
    "sock err",
)


def _cells(row: Row) -> list[str]:
    return [
        row.app,
        row.server,
        row.endpoint,
        f"{row.rps:,.0f}",
        f"{row.p99_ms:.1f}",
        f"{row.spread:.0%}",
        "" if row.vs_fastapi is None else f"{row.vs_fastapi:.2f}x",
        "" if row.vs_flask is None else f"{row.vs_flask:.2f}x",
        str(row.socket_errors),
    ]


def text_table(rows: t.Sequence[Row]) -> str:
    cells = [list(_HEADERS), *(_cells(r) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(_HEADERS))]
    numeric = {3, 4, 5, 6, 7, 8}
    lines = []
    for n, row_cells in enumerate(cells):
        lines.append(
            "  ".join(
                c.rjust(w) if i in numeric else c.ljust(w)
                for i, (c, w) in enumerate(zip(row_cells, widths, strict=True))
            ).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows: t.Sequence[Row], verdict_lines: t.Sequence[str], preamble: str) -> str:
    out = [preamble, "", "| " + " | ".join(_HEADERS) + " |"]
    out.append("|" + "|".join("---:" if i >= 3 else "---" for i in range(len(_HEADERS))) + "|")
    out += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    out += ["", "Targets:", ""] + [f"- {line}" for line in verdict_lines]
    return "\n".join(out) + "\n"
