"""The table: medians over rounds, ratios against the references, verdicts.

Two throughputs are reported. ``req/s`` is what wrk saw. ``req/CPU-s`` is
requests per CPU-second the server used: on a machine shared with other work
(two cores, other engineers' test runs) a competing process lowers req/s but
barely changes req/CPU-s, so when the two disagree, trust the second.
"""

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
    rps_per_cpu: float
    rounds: int
    socket_errors: int
    vs_fastapi: float | None = None
    vs_flask: float | None = None
    cpu_vs_fastapi: float | None = None
    cpu_vs_flask: float | None = None


def _ratio(ours: float, theirs: float | None) -> float | None:
    return ours / theirs if theirs else None


def summarize(measurements: t.Iterable[Measurement]) -> list[Row]:
    """One row per (app, server, endpoint): the medians of its rounds, and
    their ratios to FastAPI async on uvicorn and to Flask + pydantic on the
    same server."""
    groups: dict[tuple[str, str, str], list[Measurement]] = defaultdict(list)
    for m in measurements:
        groups[(m.app, m.server, m.endpoint)].append(m)
    rps = {k: statistics.median(m.result.rps for m in g) for k, g in groups.items()}
    per_cpu = {k: statistics.median(m.rps_per_cpu for m in g) for k, g in groups.items()}
    rows = []
    for key, group in groups.items():
        app, server, endpoint = key
        each = [m.result.rps for m in group]
        fastapi, flask = (*FASTAPI, endpoint), (FLASK, server, endpoint)
        rows.append(
            Row(
                app=app,
                server=server,
                endpoint=endpoint,
                rps=rps[key],
                p99_ms=statistics.median(m.result.p99_ms for m in group),
                spread=(max(each) - min(each)) / rps[key] if rps[key] else 0.0,
                rps_per_cpu=per_cpu[key],
                rounds=len(group),
                socket_errors=sum(m.result.socket_errors + m.result.timeouts for m in group),
                vs_fastapi=_ratio(rps[key], rps.get(fastapi)),
                vs_flask=_ratio(rps[key], rps.get(flask)),
                cpu_vs_fastapi=_ratio(per_cpu[key], per_cpu.get(fastapi)),
                cpu_vs_flask=_ratio(per_cpu[key], per_cpu.get(flask)),
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
    """One line per target and server karaffe ran on: met / NOT met on req/s,
    with the numbers, and the same ratio per CPU-second."""
    by_key = {(r.app, r.server, r.endpoint): r for r in rows}
    servers = sorted({r.server for r in rows if r.app == subject})
    lines = []
    for target in TARGETS:
        for server in servers:
            peer_server = server if target.same_server else t.cast(str, target.peer_server)
            parts, met, missing = [], True, False
            for endpoint in target.endpoints:
                ours = by_key.get((subject, server, endpoint))
                theirs = by_key.get((target.peer, peer_server, endpoint))
                if ours is None or theirs is None:
                    parts.append(f"{endpoint} not measured")
                    missing = True
                    continue
                ratio = ours.rps / theirs.rps
                met = met and ratio >= target.ratio
                cpu_ratio = ours.rps_per_cpu / theirs.rps_per_cpu if theirs.rps_per_cpu else 0
                parts.append(
                    f"{endpoint} {ratio:.2f}x ({ours.rps:,.0f} vs {theirs.rps:,.0f} req/s;"
                    f" per CPU-second {cpu_ratio:.2f}x)"
                )
            verdict = "not measured" if missing else "met" if met else "NOT met"
            lines.append(f"{subject} on {server} {target.text}: {verdict}: {'; '.join(parts)}")
    return lines


_HEADERS = (
    "app", "server", "endpoint", "req/s", "p99 ms", "spread", "x FastAPI async",
    "x Flask+pydantic", "req/CPU-s", "x FastAPI (CPU)", "x Flask (CPU)", "sock err",
)  # fmt: skip
_NUMERIC = frozenset(range(3, len(_HEADERS)))


def _x(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def _cells(row: Row) -> list[str]:
    return [
        row.app,
        row.server,
        row.endpoint,
        f"{row.rps:,.0f}",
        f"{row.p99_ms:.1f}",
        f"{row.spread:.0%}",
        _x(row.vs_fastapi),
        _x(row.vs_flask),
        f"{row.rps_per_cpu:,.0f}",
        _x(row.cpu_vs_fastapi),
        _x(row.cpu_vs_flask),
        str(row.socket_errors),
    ]


def text_table(rows: t.Sequence[Row]) -> str:
    cells = [list(_HEADERS), *(_cells(r) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(_HEADERS))]
    lines = []
    for n, row_cells in enumerate(cells):
        lines.append(
            "  ".join(
                c.rjust(w) if i in _NUMERIC else c.ljust(w)
                for i, (c, w) in enumerate(zip(row_cells, widths, strict=True))
            ).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows: t.Sequence[Row], verdict_lines: t.Sequence[str], preamble: str) -> str:
    out = [preamble, "", "| " + " | ".join(_HEADERS) + " |"]
    out.append(
        "|" + "|".join("---:" if i in _NUMERIC else "---" for i in range(len(_HEADERS))) + "|"
    )
    out += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    out += ["", "Targets (verdicts on req/s):", ""] + [f"- {line}" for line in verdict_lines]
    return "\n".join(out) + "\n"
