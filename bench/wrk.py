"""Load with wrk, checking the status (and ``Link`` header) of every response.

A Lua script counts the responses that are not what the endpoint promises;
the run is refused (:class:`WrongAnswers`) if there is a single one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import typing as t
from dataclasses import dataclass

__all__ = ["Load", "LoadResult", "WrongAnswers", "run_wrk", "wrk_script"]

WRK = shutil.which("wrk") or "/usr/bin/wrk"
_MARK = "KARAFFE_BENCH "


class WrongAnswers(RuntimeError):
    """Some responses under load had the wrong status or lacked a header."""


@dataclass(frozen=True)
class Load:
    """One request, repeated: what wrk sends and what every answer must be."""

    method: str
    path: str
    expected_status: int
    body: str | None = None
    require_link: bool = False


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    timeouts: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _lua_string(value: str) -> str:
    return "[==[" + value + "]==]"


def wrk_script(load: Load) -> str:
    """The Lua script for ``load``: the request, the check, the summary line."""
    lines = [f"wrk.method = {_lua_string(load.method)}"]
    if load.body is not None:
        lines += [
            f"wrk.body = {_lua_string(load.body)}",
            'wrk.headers["Content-Type"] = "application/json"',
        ]
    lines += [
        f"expected = {load.expected_status}",
        f"require_link = {'true' if load.require_link else 'false'}",
        """
bad = 0
first_bad = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function response(status, headers, body)
  if status ~= expected or (require_link and headers["Link"] == nil and headers["link"] == nil) then
    bad = bad + 1
    if first_bad == 0 then first_bad = status end
  end
end

function done(summary, latency, requests)
  local total_bad, first = 0, 0
  for _, thread in ipairs(threads) do
    total_bad = total_bad + thread:get("bad")
    if first == 0 then first = thread:get("first_bad") end
  end
  local e = summary.errors
  io.write(string.format(
    '%s{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"bad": %d, "first_bad": %d, "socket_errors": %d, "timeouts": %d}\\n',
    "MARK", summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), total_bad, first, e.connect + e.read + e.write, e.timeout))
end
""".replace("MARK", _MARK),
    ]
    return "\n".join(lines)


def run_wrk(
    base_url: str,
    load: Load,
    *,
    duration: float,
    connections: int,
    threads: int = 1,
    cpu: str | None = "1",
    headers: t.Mapping[str, str] | None = None,
) -> LoadResult:
    """Run wrk pinned to ``cpu`` (anywhere when ``None``) against
    ``base_url + load.path``, sending ``headers`` with every request."""
    extra = "".join(
        f"\nwrk.headers[ {_lua_string(name)} ] = {_lua_string(value)}"
        for name, value in (headers or {}).items()
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(wrk_script(load) + extra + "\n")
        script.flush()
        pin = ["taskset", "-c", cpu] if cpu is not None else []
        argv = [
            *pin, WRK, f"-t{threads}", f"-c{connections}",
            f"-d{max(1, round(duration))}s", "--timeout", "5s", "-s", script.name,
            base_url + load.path,
        ]  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(_MARK)), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    data = json.loads(line[len(_MARK) :])
    if data["bad"]:
        raise WrongAnswers(
            f"{data['bad']} of {data['requests']} responses to {load.method} {load.path} were"
            f" wrong (expected {load.expected_status}"
            f"{' with a Link header' if load.require_link else ''}; first wrong status:"
            f" {data['first_bad']})"
        )
    return LoadResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        socket_errors=data["socket_errors"],
        timeouts=data["timeouts"],
    )
