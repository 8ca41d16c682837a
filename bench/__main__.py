"""``python -m bench``: the foundation benchmark; ``python -m bench json``: the
JSON-encoder micro-benchmark. ``--help`` on either for the options."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import shutil
import signal
import sys
import typing as t
from pathlib import Path

from .apps import APPS, by_name
from .check import BadAnswer
from .report import markdown, summarize, text_table, verdicts
from .runner import ENDPOINTS, Measurement, Options, run
from .servers import DEFAULT_SERVERS, SERVERS, ServerFailed
from .wrk import WrongAnswers

RESULTS = Path(__file__).resolve().parent / "results"
_VERSIONS = ("flask", "pydantic", "apiflask", "flask-smorest", "fastapi", "starlette",
             "gunicorn", "granian", "uvicorn", "orjson")  # fmt: skip


def parse_args(argv: t.Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="karaffe against its peers: one worker on one core, wrk on the other.",
        epilog="`python -m bench json --help`: the JSON-encoder micro-benchmark;"
        " `python -m bench inprocess --help`: the apps timed (and profiled) in-process.",
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (5)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (3)")
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds of unmeasured load first (1; 0 for none)"
    )
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument(
        "--only",
        help="comma-separated apps among " + ", ".join(a.name for a in APPS) + " (default: all)",
    )
    parser.add_argument(
        "--servers",
        default=",".join(DEFAULT_SERVERS),
        help=f"comma-separated servers among {', '.join(SERVERS)} (default: %(default)s)",
    )
    parser.add_argument(
        "--endpoints", default=",".join(ENDPOINTS), help="comma-separated: post,page,invalid"
    )
    parser.add_argument(
        "--page-depth",
        type=int,
        default=250,
        help="load the page this many rel=next links from the first (250: items 5001-5020)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="one round of 2 s: a smoke run, not a measurement"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS / "foundation.md",
        help="markdown table (%(default)s)",
    )
    return parser.parse_args(argv)  # fmt: skip


def _pairs(args: argparse.Namespace) -> list[t.Any]:
    apps = by_name(args.only)
    servers = [SERVERS[s] for s in args.servers.split(",") if s]
    pairs = [
        (app, server) for app in apps for server in servers if server.interface == app.interface
    ]
    if not pairs:
        raise SystemExit("nothing to run: no chosen app speaks a chosen server's interface")
    return pairs


def _preamble(options: Options, measurements: t.Sequence[Measurement]) -> str:
    loads = [m.load_average for m in measurements] or [0.0]
    versions = []
    for name in _VERSIONS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{name} {importlib.metadata.version(name)}")
    return "\n".join(
        [
            "# Foundation benchmark",
            "",
            f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()},"
            f" {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}).",
            f"One worker process pinned to CPU {options.server_cpu}; wrk (1 thread,"
            f" {options.connections} connections) pinned to CPU {options.wrk_cpu}.",
            f"{options.rounds} alternating round(s) of {options.duration:g} s (after"
            f" {options.warmup:g} s of warm-up) per app, server and endpoint; medians shown,"
            " spread = (max - min) / median.",
            f"The page endpoint loads the page {options.page_depth} rel=next links from the first,"
            " reached by following Link headers.",
            "Every response's status was checked (and the Link header on pages).",
            "req/CPU-s: requests per CPU-second used by the server's processes, which other"
            " processes on a shared machine skew far less than req/s.",
            f"Load average (1 min) after each measurement: {min(loads):.1f} to {max(loads):.1f}"
            " (2 or more: something else competed for the two cores).",
            "",
            "Versions: " + ", ".join(versions) + ".",
        ]
    )


def main(argv: t.Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["json"]:
        from .json_encoding import main as json_main

        return json_main(argv[1:])
    if argv[:1] == ["inprocess"]:
        from .inprocess import main as inprocess_main

        return inprocess_main(argv[1:])
    args = parse_args(argv)
    options = Options(duration=args.duration, rounds=args.rounds, connections=args.connections,
                      warmup=args.warmup, page_depth=args.page_depth)  # fmt: skip
    if args.quick:
        options = Options(
            duration=2, rounds=1, connections=args.connections, warmup=1, page_depth=50
        )
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            package = "wrk" if tool == "wrk" else "util-linux"
            raise SystemExit(f"{tool} is not installed (apt-get install {package})")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("the bench needs 2 CPUs: one for the server, one for wrk")
    endpoints = [e for e in args.endpoints.split(",") if e]
    unknown = set(endpoints) - set(ENDPOINTS)
    if unknown:
        raise SystemExit(f"unknown endpoint(s): {', '.join(sorted(unknown))}")

    # SIGTERM unwinds like Ctrl-C, so that every server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        measurements = run(_pairs(args), options, endpoints)
    except (WrongAnswers, BadAnswer, ServerFailed) as exc:
        print(f"\nbench FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; every server was stopped", file=sys.stderr)
        return 130

    rows = summarize(measurements)
    verdict_lines = verdicts(rows)
    print()
    print(text_table(rows))
    print()
    for line in verdict_lines:
        print(line)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(markdown(rows, verdict_lines, _preamble(options, measurements)))
    print(f"\n(written to {args.output})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
