"""``python -m bench.relay``: SSE relays under many clients.

karaffe's relay against flask-sse (gunicorn, gevent worker) and a naive relay
(uvicorn, one Redis subscription fanned out to per-connection queues), one
process each pinned to core 0; an asyncio load client pinned to core 1 ramps
the clients on one channel (500, 2,000, 5,000, 10,000 by default) and, at each
step, a publisher sends ``--events`` events at ``--rate`` per second, each
stamped with its publish time. Reported per step: connections held, events
delivered vs expected, publish-to-receive latency p50/p99/max, resident memory
per connection, server CPU (and its kernel share), the load client's CPU,
deliveries per second (first publish to last delivery) and per CPU-second of
the server. A server that holds less than 90% of the clients or delivers less
than 90% of the events stops the ramp.

``--processes 1,2`` runs each server as that many processes in turn (process
k pinned to core k, all following the channel through the same Redis), with
one load client process per core, unpinned, spreading the clients over the
processes in turn as a proxy's round robin would, and prints deliveries per
second side by side for each number of processes.

Every process is started here and stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import multiprocessing as mp
import os
import pstats
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import typing as t
from array import array
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SECRET = "bench-secret"
CHANNEL = "bench"
TS_RE = re.compile(rb'"ts": ?([0-9.]+)')


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pin(core: int) -> t.Callable[[], None]:
    def preexec() -> None:
        raise_fd_limit()
        os.sched_setaffinity(0, {core % os.cpu_count()})  # type: ignore[operator]
        os.setsid()

    return preexec


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port}")


def stop(proc: subprocess.Popen[bytes] | mp.Process) -> None:
    """Stop one process by its PID: SIGTERM, then SIGKILL for it and the
    children it had (gunicorn's worker), each by PID."""
    pid = proc.pid
    if pid is None:
        return

    def alive() -> bool:
        return proc.poll() is None if isinstance(proc, subprocess.Popen) else proc.is_alive()

    if not alive():
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and alive():
        time.sleep(0.05)
    if alive():
        # Children first, read while they are still this process's children.
        for member in reversed(process_tree(pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, signal.SIGKILL)
    if isinstance(proc, subprocess.Popen):
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (gunicorn serves from a forked worker)."""
    out = [pid]
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            out.extend(process_tree(int(child)))
    return out


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def cpu_times(pids: list[int]) -> tuple[float, float]:
    """User and system CPU seconds of ``pids``."""
    ticks = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            user += int(fields[11]) / ticks
            system += int(fields[12]) / ticks
    return user, system


def cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_times(pids))


# -- servers ---------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    path: str
    proc: subprocess.Popen[bytes]
    publish: t.Callable[[int], None]

    def pids(self) -> list[int]:
        return process_tree(self.proc.pid)


def start_server(
    name: str,
    redis_url: str,
    port: int,
    prefix: str,
    profile: Path | None = None,
    core: int = 0,
    write_interval: float | None = None,
) -> Server:
    import redis

    client = redis.Redis.from_url(redis_url)
    # The checkout's own src first: an editable install of another checkout
    # (a shared .venv) must not be what is measured.
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "REDIS_URL": redis_url}
    if name == "karaffe":
        from karaffe.events import RedisBroker, TokenSigner
        from karaffe.events.protocol import dump_data

        cmd = [PYTHON, "-m", "bench.relay", "serve-karaffe", "--port", str(port),
               "--redis-url", redis_url, "--prefix", prefix]  # fmt: skip
        if profile is not None:
            cmd += ["--profile", str(profile)]
        if write_interval is not None:
            cmd += ["--write-interval", str(write_interval)]
        token = TokenSigner(SECRET).sign("bench", [CHANNEL], max_age=3600)
        path = f"/events/stream?channel={CHANNEL}&token={token}"
        broker = RedisBroker(redis_url, history_size=1000, prefix=prefix)

        def publish(n: int) -> None:
            broker.publish(CHANNEL, "tick", dump_data({"ts": time.time(), "n": n}))

    elif name == "naive":
        cmd = [PYTHON, "-m", "bench.naive_relay", "--port", str(port), "--redis-url", redis_url]
        path = "/"

        def publish(n: int) -> None:
            client.publish(CHANNEL, json.dumps({"ts": time.time(), "n": n}))

    elif name == "flask-sse":
        cmd = [PYTHON, "-m", "gunicorn", "-k", "gevent", "-w", "1", "-b", f"127.0.0.1:{port}",
               "--worker-connections", "100000", "--backlog", "4096", "--log-level", "warning",
               "bench.flask_sse_app:app"]  # fmt: skip
        path = f"/stream?channel={CHANNEL}"

        def publish(n: int) -> None:
            message = {"data": {"ts": time.time(), "n": n}, "type": "tick"}
            client.publish(CHANNEL, json.dumps(message))

    else:
        raise SystemExit(f"unknown server {name}")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, preexec_fn=pin(core))
    wait_port(port, proc)
    return Server(name, path, proc, publish)


def serve_karaffe(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.relay serve-karaffe")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--profile", type=Path, help="write cProfile stats here at exit")
    parser.add_argument("--write-interval", type=float, help="RelayConfig.write_interval")
    args = parser.parse_args(argv)
    from karaffe.events.relay import Relay, RelayConfig, serve

    config = RelayConfig(secret_key=SECRET, redis_url=args.redis_url, prefix=args.prefix)
    if args.write_interval is not None:
        config.write_interval = args.write_interval
    if args.profile:
        # Written on SIGUSR1, while serving: a slow shutdown may end in SIGKILL.
        profiler = cProfile.Profile()
        signal.signal(signal.SIGUSR1, lambda *_: profiler.dump_stats(args.profile))
        profiler.enable()
    serve(Relay(config), "127.0.0.1", args.port, loop="uvloop", http="httptools",
          log_level="warning")  # fmt: skip


# -- the load client (its own process, on core 1) ------------------------------------------


class SSEClient(asyncio.Protocol):
    """Counts events and records publish-to-receive latency, cheaply."""

    __slots__ = ("ok", "open", "rest", "stats", "transport")

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.rest = b""
        self.ok: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self.ok.done():
            self.ok.set_result(data.startswith(b"HTTP/1.1 200"))
            self.open = True
        data = self.rest + data
        cut = data.rfind(b"\n\n")
        if cut < 0:
            self.rest = data
            return
        self.rest = data[cut + 2 :]
        for ts in TS_RE.findall(data, 0, cut):
            self.stats.latencies.append(now - float(ts))
        self.stats.last = now

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.stats.lost += 1
        if not self.ok.done():
            self.ok.set_result(False)


class Stats:
    def __init__(self) -> None:
        self.latencies = array("d")
        self.lost = 0
        #: When the last event arrived (``time.time()``).
        self.last = 0.0


async def load_client(pipe: Connection, ports: list[int], path: str, offset: int) -> None:
    """Holds the clients, spread over ``ports`` in turn from ``offset`` (as a
    proxy's round robin spreads them over relay processes)."""
    loop = asyncio.get_running_loop()
    stats = Stats()
    clients: list[SSEClient] = []
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    raw = request.encode()

    async def one(port: int) -> SSEClient | None:
        try:
            transport, proto = await loop.create_connection(
                lambda: SSEClient(stats), "127.0.0.1", port
            )
        except OSError:
            return None
        transport.write(raw)  # type: ignore[attr-defined]
        try:
            ok = await asyncio.wait_for(asyncio.shield(proto.ok), 1.0)
        except TimeoutError:
            # WSGI streams (flask-sse) send their headers with the first event.
            ok = not transport.is_closing()
            proto.open = ok
        if not ok:
            transport.close()
            return None
        return proto

    while True:
        command, arg = await loop.run_in_executor(None, pipe.recv)
        if command == "connect":
            failed = 0
            while len(clients) < arg and failed < arg:
                batch = min(500, arg - len(clients))
                first = len(clients) + failed + offset
                made = await asyncio.gather(
                    *(one(ports[(first + i) % len(ports)]) for i in range(batch))
                )
                for proto in made:
                    if proto is None:
                        failed += 1
                    else:
                        clients.append(proto)
                if failed > arg // 10:
                    break
            clients = [c for c in clients if c.open]
            pipe.send(len(clients))
        elif command == "reset":
            stats.latencies = array("d")
            stats.lost = 0
            stats.last = 0.0
            pipe.send(True)
        elif command == "stats":
            held = sum(1 for c in clients if c.open)
            lat = sorted(stats.latencies)
            pipe.send({"held": held, "latencies": array("d", lat).tobytes(), "last": stats.last})
        elif command == "count":
            pipe.send(len(stats.latencies))
        elif command == "quit":
            for c in clients:
                if c.open:
                    c.transport.close()
            pipe.send(True)
            return


def _summary(lat: list[float]) -> dict[str, float]:
    if not lat:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {
        "p50": lat[len(lat) // 2],
        "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "max": lat[-1],
    }


def client_main(
    pipe: Connection, ports: list[int], path: str, core: int | None, offset: int
) -> None:
    raise_fd_limit()
    if core is not None:
        os.sched_setaffinity(0, {core % (os.cpu_count() or 1)})
    try:
        import uvloop

        uvloop.run(load_client(pipe, ports, path, offset))
    except ImportError:
        asyncio.run(load_client(pipe, ports, path, offset))


class LoadClients:
    """``count`` load client processes (on ``core``, or unpinned), each
    holding its share of the clients; asked together, answers summed."""

    def __init__(self, count: int, ports: list[int], path: str, core: int | None) -> None:
        self.pipes: list[Connection] = []
        self.procs: list[mp.Process] = []
        for k in range(count):
            parent, child = mp.Pipe()
            proc = mp.get_context("fork").Process(
                target=client_main, args=(child, ports, path, core, k)
            )
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def ask(self, command: str, args: list[t.Any] | None = None) -> list[t.Any]:
        for k, pipe in enumerate(self.pipes):
            pipe.send((command, args[k] if args else None))
        return [pipe.recv() for pipe in self.pipes]

    def connect(self, total: int) -> int:
        n = len(self.pipes)
        return sum(self.ask("connect", [total // n + (k < total % n) for k in range(n)]))

    def count(self) -> int:
        return sum(self.ask("count"))

    def stats(self) -> dict[str, t.Any]:
        answers = self.ask("stats")
        lat = array("d")
        for answer in answers:
            lat.frombytes(answer["latencies"])
        ordered = sorted(lat)
        return {
            "held": sum(a["held"] for a in answers),
            "delivered": len(ordered),
            "latencies": _summary(ordered),
            "last": max(a["last"] for a in answers),
        }

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(Exception):
                pipe.send(("quit", None))
        for pipe in self.pipes:
            with contextlib.suppress(Exception):
                pipe.poll(10) and pipe.recv()
        for proc in self.procs:
            stop(proc)
            proc.join(5)


# -- the run -------------------------------------------------------------------------------


@dataclass
class Row:
    server: str
    processes: int
    clients: int
    held: int
    delivered: int
    expected: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    rss_per_conn_kib: float
    cpu_pct: float
    #: CPU of the load client processes (100 = one core).
    client_cpu_pct: float
    #: Deliveries per second, from the first publish to the last delivery.
    per_s: float
    #: Deliveries per CPU-second of the server's processes: on a shared
    #: machine, compare these rather than latencies.
    per_cpu_s: float
    #: The share of the server's CPU spent in the kernel (sending, mostly).
    kernel_pct: float


def run_server(
    name: str,
    redis_url: str,
    args: argparse.Namespace,
    processes: int = 1,
    write_interval: float | None = None,
) -> Iterator[Row]:
    """Ramp the clients on ``processes`` processes of server ``name``, the
    k-th pinned to core k (mod the cores), all following the same channel;
    karaffe's relay with ``write_interval`` when given (then named after it)."""
    label = name if write_interval is None else f"{name} (write_interval {write_interval:g})"
    ports = [free_port() for _ in range(processes)]
    profile = args.profile if name == "karaffe" else None
    servers: list[Server] = []
    # The client on core 1, away from a single server; unpinned when
    # servers are on every core (``--processes``), in every run alike.
    client_core = None if args.processes else 1
    clients: LoadClients | None = None
    try:
        for k, port in enumerate(ports):
            servers.append(
                start_server(
                    name,
                    redis_url,
                    port,
                    prefix=f"bench{ports[0]}:",
                    profile=profile if k == 0 else None,
                    core=k,
                    write_interval=write_interval,
                )
            )
        server = servers[0]
        clients = LoadClients(args.client_processes, ports, server.path, client_core)

        def pids() -> list[int]:
            return [pid for each in servers for pid in each.pids()]

        time.sleep(0.5)
        base_rss = rss_bytes(pids())
        for step in args.steps:
            held = clients.connect(step)
            time.sleep(1.0)
            clients.ask("reset")
            (user0, sys0), wall0 = cpu_times(pids()), time.monotonic()
            client0 = cpu_seconds(clients.pids())
            interval = 1.0 / args.rate
            start, start_wall = time.monotonic(), time.time()
            for n in range(args.events):
                target = start + n * interval
                delay = target - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                server.publish(n)
            expected = args.events * held
            deadline = time.monotonic() + args.drain
            while time.monotonic() < deadline:
                if clients.count() >= expected:
                    break
                time.sleep(0.2)
            user1, sys1 = cpu_times(pids())
            cpu_used = user1 - user0 + sys1 - sys0
            wall = time.monotonic() - wall0
            cpu = cpu_used / wall * 100
            client_cpu = (cpu_seconds(clients.pids()) - client0) / wall * 100
            stats = clients.stats()
            rss = rss_bytes(pids())
            span = stats["last"] - start_wall
            row = Row(
                server=label,
                processes=processes,
                clients=step,
                held=stats["held"],
                delivered=stats["delivered"],
                expected=expected,
                p50_ms=stats["latencies"]["p50"] * 1000,
                p99_ms=stats["latencies"]["p99"] * 1000,
                max_ms=stats["latencies"]["max"] * 1000,
                rss_per_conn_kib=(rss - base_rss) / max(1, held) / 1024,
                cpu_pct=cpu,
                client_cpu_pct=client_cpu,
                per_s=stats["delivered"] / span if span > 0 else 0.0,
                per_cpu_s=stats["delivered"] / cpu_used if cpu_used > 0 else float("nan"),
                kernel_pct=(sys1 - sys0) / cpu_used * 100 if cpu_used > 0 else float("nan"),
            )
            yield row
            if held < 0.9 * step or stats["delivered"] < 0.9 * expected:
                break
    finally:
        if profile is not None and servers:
            dump_profile(servers[0].proc, profile)
        if clients is not None:
            clients.close()
        for each in servers:
            stop(each.proc)


def dump_profile(proc: subprocess.Popen[bytes], path: Path) -> None:
    """Have the relay write its cProfile stats to ``path`` (SIGUSR1)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not path.exists():
        time.sleep(0.1)
    time.sleep(0.5)


def table(rows: list[Row]) -> str:
    head = ("| server | processes | clients | held | delivered / expected | p50 ms | p99 ms "
            "| max ms | RSS/conn KiB | server CPU % | kernel % | client CPU % | deliveries/s "
            "| deliveries/CPU-s |")  # fmt: skip
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        lines.append(
            f"| {r.server} | {r.processes} | {r.clients:,} | {r.held:,} "
            f"| {r.delivered:,} / {r.expected:,} "
            f"({100 * r.delivered / max(1, r.expected):.1f}%) | {r.p50_ms:.1f} | {r.p99_ms:.1f} "
            f"| {r.max_ms:.1f} | {r.rss_per_conn_kib:.1f} | {r.cpu_pct:.0f} | {r.kernel_pct:.0f} "
            f"| {r.client_cpu_pct:.0f} | {r.per_s:,.0f} | {r.per_cpu_s:,.0f} |"
        )
    return "\n".join(lines)


def scaling(rows: list[Row], counts: list[int]) -> str:
    """Deliveries per second of each server and client count, side by side
    for each number of processes."""
    cols = " | ".join(f"{n} process{'es' if n > 1 else ''}" for n in counts)
    lines = [f"| server | clients | deliveries/s: {cols} | {counts[-1]} vs {counts[0]} |"]
    lines.append("|" + "---|" * (len(counts) + 3))
    by_key = {(r.server, r.clients, r.processes): r for r in rows}
    for server, clients in dict.fromkeys((r.server, r.clients) for r in rows):
        found = [by_key.get((server, clients, n)) for n in counts]
        cells = " | ".join(f"{r.per_s:,.0f}" if r else "-" for r in found)
        first, last = found[0], found[-1]
        ratio = f"{last.per_s / first.per_s:.2f}x" if first and last and first.per_s else "-"
        lines.append(f"| {server} | {clients:,} | {cells} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve-karaffe"]:
        serve_karaffe(argv[1:])
        return
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__)
    parser.add_argument("--servers", default="karaffe,naive,flask-sse")
    parser.add_argument("--steps", default="500,2000,5000,10000",
                        help="client counts to ramp through (comma-separated)")  # fmt: skip
    parser.add_argument("--events", type=int, default=200, help="events per step (200)")
    parser.add_argument("--rate", type=float, default=10.0, help="events per second (10)")
    parser.add_argument("--drain", type=float, default=10.0,
                        help="seconds to wait for late deliveries")  # fmt: skip
    parser.add_argument("--beyond", type=int, default=0,
                        help="after the steps, keep adding this many clients while the "
                        "server holds up and file descriptors last (0: stop)")  # fmt: skip
    parser.add_argument("--processes",
                        help="run each server as this many processes in turn (comma-separated, "
                        "e.g. 1,2), one per core, the clients spread over them in turn, and "
                        "compare deliveries per second")  # fmt: skip
    parser.add_argument(
        "--client-processes",
        type=int,
        help="load client processes (1, or one per core with --processes)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--write-interval",
                        help="karaffe's least seconds between two writes of events to a "
                        "stream (RelayConfig.write_interval; default: the relay's); several, "
                        "comma-separated, run karaffe once with each (e.g. 0,0.1)")  # fmt: skip
    parser.add_argument("--profile", type=Path,
                        help="run karaffe's relay under cProfile, write its stats here and "
                        "print where its Python time goes")  # fmt: skip
    args = parser.parse_args(argv)
    args.steps = [int(s) for s in args.steps.split(",")]
    counts = [int(n) for n in args.processes.split(",")] if args.processes else [1]
    intervals: list[float | None] = [None]
    if args.write_interval:
        intervals = [float(x) for x in args.write_interval.split(",")]
    if args.client_processes is None:
        args.client_processes = (os.cpu_count() or 1) if args.processes else 1
    raise_fd_limit()
    if args.beyond > 0:
        ceiling = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 1000
        while args.steps[-1] + args.beyond <= ceiling:
            args.steps.append(args.steps[-1] + args.beyond)
    sys.path.insert(0, str(ROOT / "src"))
    from karaffe import _servers

    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, redis_url = _servers.start_redis(Path(tmp))
        try:
            import redis

            with redis.Redis.from_url(redis_url) as r, contextlib.suppress(redis.ResponseError):
                r.config_set("maxclients", 19000)
            for name in args.servers.split(","):
                for processes in counts:
                    for write_interval in intervals if name == "karaffe" else [None]:
                        for row in run_server(name, redis_url, args, processes, write_interval):
                            rows.append(row)
                            print(table([row]).splitlines()[-1], flush=True)
        finally:
            _servers.stop(proc)
    print()
    if args.processes:
        where = f"server process k on core k, {args.client_processes} client process(es) unpinned"
    else:
        where = "server on core 0, client on 1"
    print(f"{args.events} events per step at {args.rate:g}/s; {where}")
    print(table(rows))
    if len(counts) > 1:
        print()
        print(scaling(rows, counts))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average (1, 5, 15 min): {load}")
    if args.profile and args.profile.exists():
        print()
        pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(25)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))


if __name__ == "__main__":
    main()
