"""Backend API benchmark: create-task and list-tasks throughput and p95 at 32 concurrent clients.

Compares, in one run on one machine:
  floor    bare FastAPI + asyncpg doing the same insert/select (bench/backend/floor_app.py)
  backend  the real backend (validation, JWT, outbox event in the same transaction, logging, metrics)
  backend (instrumentation off)  the same without the request-context middleware (request id, trace
                                 context, access log and HTTP metrics)
  backend, default pool of 10    the first one with the service's default connection pool
and prints ratios against the floor, each server's CPU time per request (read from /proc around
each window, so it holds on a busy machine better than throughput does) and the idle RSS of the
backend process. Every other server gets ``--pool-size`` connections (default: one per client), so
the figures measure request handling rather than waiting for a pooled connection.

The servers run side by side but are loaded one at a time, in short windows that take turns
(``--rounds`` rounds, the order rotating each round), so a slow spell of this shared machine falls
on all of them alike instead of on whichever server happened to run then. Each backend row runs as
``--instances`` processes that take the row's windows in turn: two processes of the same code
differ by a few per cent here (docs/performance.md), so one process per row makes a ratio of
two rows partly a draw.

Usage (from the repo root, takes about three and a half minutes):
  .venv/bin/python bench/backend/run.py [--seconds 12] [--rounds 6] [--instances 2] [--clients 32]
      [--pool-size N] [--compare NAME=SRC ...] [--write-docs]
``--compare`` adds a server running the services' source in SRC (a directory holding ``todo``, e.g.
an export of another commit's ``services/src``) to the same rotation, and prints its throughput
against the others': two versions of the code measured side by side in one run.
PostgreSQL comes from the test bed (a running `scripts/testbed up` is reused, otherwise one is started).
Not part of the test suite: numbers depend on the machine; only the ratios are meaningful.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

PY = sys.executable
#: The service's own default (todo.common.settings.ServiceSettings.db_pool_size), measured as well.
DEFAULT_POOL_SIZE = 10
DEFAULT_POOL_ROW = f"backend, default pool of {DEFAULT_POOL_SIZE}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def backend_env(dsn: str) -> dict[str, str]:
    """The settings every benchmarked backend runs with: no relay (no sidecar), INFO logs."""
    return {
        "DATABASE_URL": dsn,
        "JWT_SECRET": "bench-secret-" + "x" * 32,
        "OUTBOX_RELAY": "false",
        "LOG_LEVEL": "INFO",
        "DAPR_HTTP_PORT": "9",
        "APP_API_TOKEN": "bench-app-token-" + "x" * 16,
    }


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024


class Server:
    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        port: int,
        cwd: Path,
        stderr: Any = subprocess.DEVNULL,
        start_seconds: float = 180,  # a loaded machine starts a server slowly
    ) -> None:
        self.name, self.port = name, port
        self.proc = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
        deadline = time.monotonic() + start_seconds
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {self.proc.returncode}") from None
                time.sleep(0.2)
        raise RuntimeError(f"{name} did not start")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def _request(reader, writer, raw: bytes) -> int:
    writer.write(raw)
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("the server closed the connection")
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return int(status_line.split()[1])


def _raw(method: str, path: str, port: int, token: str | None, body: bytes | None) -> bytes:
    head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")


async def load(
    port: int,
    method: str,
    path: str,
    token: str | None,
    body: bytes | None,
    clients: int,
    seconds: float,
    expect: int,
) -> dict:
    """``clients`` keep-alive connections sending requests back to back; a tiny raw HTTP/1.1 client so
    the load generator costs as little CPU as possible."""
    raw = _raw(method, path, port, token, body)
    latencies: list[float] = []
    errors = 0
    stop_at = time.monotonic() + seconds

    async def client() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                try:
                    status = await _request(reader, writer, raw)
                except (ConnectionError, asyncio.IncompleteReadError):
                    # the server closed the connection (an idle keep-alive timing out on a
                    # loaded machine): an error, then a new connection
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                latencies.append(time.perf_counter() - t0)
                if status != expect:
                    errors += 1
        finally:
            writer.close()

    t0 = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    return {"latencies": latencies, "elapsed": time.monotonic() - t0, "errors": errors}


async def _json(port: int, method: str, path: str, body: dict) -> dict:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    raw = orjson.dumps(body)
    writer.write(_raw(method, path, port, None, raw))
    status_line = await reader.readline()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    data = await reader.readexactly(length)
    writer.close()
    if int(status_line.split()[1]) >= 300:
        raise RuntimeError(f"{path}: {status_line!r} {data[:200]!r}")
    return orjson.loads(data)


def _pooled(parts: list[dict]) -> dict:
    """One measurement from several windows: requests over total time, percentiles of all latencies,
    the server's CPU time per request."""
    latencies = sorted(x for p in parts for x in p["latencies"])
    elapsed = sum(p["elapsed"] for p in parts)
    return {
        "rps": len(latencies) / elapsed,
        "cpu_ms": sum(p["cpu"] for p in parts) / len(latencies) * 1000,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[int(len(latencies) * 0.95) - 1] * 1000,
        "errors": sum(p["errors"] for p in parts),
        "n": len(latencies),
    }


OPERATIONS = {
    "create": (
        "POST",
        "/api/tasks",
        orjson.dumps({"title": "benchmark task", "tags": ["bench"], "priority": "high"}),
        201,
    ),
    "list": ("GET", "/api/tasks?limit=20", None, 200),
}


async def interleaved(
    servers: dict[str, list[tuple[int, str | None, int]]], clients: int, seconds: float, rounds: int
) -> dict[str, dict]:
    """Each operation on each row for ``seconds`` in all, as ``rounds`` windows taking turns; a row's
    windows go to its server processes (port, token, pid) in turn, and each process's CPU time is
    read around each of its windows."""
    from testbed.core import process_cpu_seconds

    results: dict[str, dict] = {name: {} for name in servers}
    names = list(servers)
    for op, (method, path, body, expect) in OPERATIONS.items():
        for port, token, _ in (instance for instances in servers.values() for instance in instances):
            await load(port, method, path, token, body, clients, 1.0, expect)  # warm-up
        parts: dict[str, list[dict]] = {name: [] for name in names}
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                port, token, pid = servers[name][r % len(servers[name])]
                cpu_before = process_cpu_seconds(pid)
                part = await load(port, method, path, token, body, clients, seconds / rounds, expect)
                part["cpu"] = process_cpu_seconds(pid) - cpu_before
                parts[name].append(part)
        for name in names:
            results[name][op] = _pooled(parts[name])
    return results


def _check_connection_budget(dsn: str, args: argparse.Namespace, pool_size: int) -> None:
    """Stop before starting servers if their pools would together pass PostgreSQL's connection limit
    (the last rows would fail their requests and the table would show errors, not throughput)."""
    import psycopg

    with psycopg.connect(dsn, connect_timeout=10) as conn:
        limit = int(conn.execute("SHOW max_connections").fetchone()[0])
        reserved = int(conn.execute("SHOW superuser_reserved_connections").fetchone()[0])
    backends_at_pool_size = 2 + len(args.compare)  # instrumented, off, each compared tree
    needed = args.instances * (backends_at_pool_size * pool_size + DEFAULT_POOL_SIZE) + pool_size  # + floor
    available = limit - reserved - 2  # this check's and the migration's own connections
    if needed > available:
        raise SystemExit(
            f"bench/backend/run.py: the servers would open {needed} database connections and PostgreSQL "
            f"allows {available} here (max_connections {limit}); lower --instances, --pool-size or the "
            "number of --compare trees"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=12.0, help="per server and operation, in all")
    parser.add_argument("--rounds", type=int, default=6, help="windows per server and operation")
    parser.add_argument(
        "--instances",
        type=int,
        default=2,
        help="processes per backend row, taking its windows in turn (one process's layout moves its figures)",
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument(
        "--pool-size",
        type=int,
        default=None,
        help="database connections of every server but the default-pool one (default: one per client)",
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=SRC",
        help="also measure the backend from the source directory SRC (holding todo/) as 'backend (NAME)'",
    )
    parser.add_argument("--write-docs", action="store_true", help="update docs/performance.md")
    args = parser.parse_args()
    if not 1 <= args.instances <= args.rounds:
        parser.error(
            f"--instances must be between 1 and --rounds ({args.rounds}): each process needs a window"
        )
    pool_size = args.pool_size or args.clients

    from testbed.core import Run, acquire
    from testbed.postgres import Postgres
    from todo.common.migrations import upgrade

    pg, owned = acquire("postgres", Postgres, Run("bench-backend"))
    servers: list[Server] = []
    try:
        dsn = pg.create_database("bench_backend")
        _check_connection_budget(dsn, args, pool_size)
        upgrade("backend", dsn)
        common_env = backend_env(dsn)

        def backend(name: str, instrumentation: bool, pool: int, source: str | None = None) -> list[Server]:
            """``--instances`` processes of one row (started one by one, so no two share a port)."""
            started = []
            for instance in range(args.instances):
                port = free_port()
                env = {
                    **common_env,
                    "PORT": str(port),
                    "INSTRUMENTATION": str(instrumentation).lower(),
                    "DB_POOL_SIZE": str(pool),
                    **({"PYTHONPATH": str(Path(source).resolve())} if source else {}),
                }
                argv = [str(Path(PY).parent / "todo-service"), "backend"]
                started.append(Server(f"{name}-{instance}", argv, env, port, ROOT))
                servers.append(started[-1])
            return started

        instrumented = backend("backend", True, pool_size)
        account = {"email": "bench@example.com", "password": "bench-password"}
        asyncio.run(_json(instrumented[0].port, "POST", "/api/auth/register", account))
        login = asyncio.run(_json(instrumented[0].port, "POST", "/api/auth/login", account))
        token, user_id = login["access_token"], login["user_id"]
        time.sleep(2.0)
        idle_rss = rss_mb(instrumented[0].proc.pid)

        plain = backend("backend-noinstr", False, pool_size)
        default_pool = backend("backend-default-pool", True, DEFAULT_POOL_SIZE)
        port = free_port()
        floor = Server(
            "floor",
            [PY, "-m", "uvicorn", "--factory", "floor_app:create_app", "--port", str(port)]
            + ["--no-access-log", "--log-level", "warning"],
            {"DATABASE_URL": dsn, "FLOOR_USER_ID": user_id, "FLOOR_POOL_SIZE": str(pool_size)},
            port,
            Path(__file__).parent,
        )
        servers.append(floor)
        compared = {}
        for spec in args.compare:
            name, _, source = spec.partition("=")
            compared[f"backend ({name})"] = backend(f"backend-{name}", True, pool_size, source)

        def row(instances: list[Server], token: str | None) -> list[tuple[int, str | None, int]]:
            return [(srv.port, token, srv.proc.pid) for srv in instances]

        results = asyncio.run(
            interleaved(
                {
                    "backend": row(instrumented, token),
                    "backend (instrumentation off)": row(plain, token),
                    DEFAULT_POOL_ROW: row(default_pool, token),
                    **{name: row(instances, token) for name, instances in compared.items()},
                    "floor": row([floor], None),
                },
                args.clients,
                args.seconds,
                args.rounds,
            )
        )
    finally:
        for srv in servers:
            srv.stop()
        if owned:
            pg.destroy()

    report = render(results, idle_rss, args)
    print(report)
    if args.write_docs:
        write_docs(report)


def render(results: dict[str, dict], idle_rss: float, args: argparse.Namespace) -> str:
    floor = results["floor"]
    lines = [
        f"Measured by `bench/backend/run.py` ({args.clients} concurrent keep-alive clients, "
        f"{args.seconds:g} s per server and operation in {args.rounds} windows taking turns, one "
        f"server loaded at a time, one uvicorn worker each, {args.instances} processes per backend row "
        "taking its windows in turn, "
        f"{args.pool_size or args.clients} database connections each unless the row says otherwise; "
        f"{os.cpu_count()} CPUs shared with PostgreSQL and the load generator; load average "
        f"{os.getloadavg()[0]:.1f} at the end of the run: other work on the machine skews absolute "
        "numbers).",
        "",
        "| server | create req/s | create p95 ms | create CPU ms/req | list req/s | list p95 ms "
        "| list CPU ms/req | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        c, li = r["create"], r["list"]
        lines.append(
            f"| {name} | {c['rps']:.0f} | {c['p95_ms']:.1f} | {c['cpu_ms']:.3f} | {li['rps']:.0f} "
            f"| {li['p95_ms']:.1f} | {li['cpu_ms']:.3f} | {c['errors'] + li['errors']} |"
        )
    be, off = results["backend"], results["backend (instrumentation off)"]
    lines += [
        "",
        "| ratio | value | target |",
        "|---|---|---|",
        f"| create throughput backend / floor | {be['create']['rps'] / floor['create']['rps']:.2f} | ≥ 0.6 |",
        f"| list throughput backend / floor | {be['list']['rps'] / floor['list']['rps']:.2f} | – |",
        f"| create throughput instrumented / not | {be['create']['rps'] / off['create']['rps']:.2f} "
        "| ≥ 0.9 |",
        f"| list throughput instrumented / not | {be['list']['rps'] / off['list']['rps']:.2f} | ≥ 0.9 |",
        f"| create server CPU per request, not / instrumented | "
        f"{off['create']['cpu_ms'] / be['create']['cpu_ms']:.2f} | – |",
        f"| list server CPU per request, not / instrumented | "
        f"{off['list']['cpu_ms'] / be['list']['cpu_ms']:.2f} | – |",
        f"| create p95 (backend) | {be['create']['p95_ms']:.1f} ms | ≤ 50 ms |",
        f"| create p95 ({DEFAULT_POOL_ROW}) | {results[DEFAULT_POOL_ROW]['create']['p95_ms']:.1f} ms | – |",
        f"| idle RSS of the backend process | {idle_rss:.0f} MB | ≤ 120 MB |",
    ]
    others = [f"backend ({spec.partition('=')[0]})" for spec in args.compare]
    if others:
        columns = ["backend", "backend (instrumentation off)", *others]
        lines += [
            "",
            "| compared tree: create throughput / … (server CPU per create, … / tree) | "
            + " | ".join(columns)
            + " |",
            "|---|" + "---|" * len(columns),
        ]
        for name in others:
            mine = results[name]["create"]
            cells = [
                f"{mine['rps'] / results[o]['create']['rps']:.3f} "
                f"({results[o]['create']['cpu_ms'] / mine['cpu_ms']:.3f})"
                for o in columns
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "What the backend does per request that the floor does not: JWT verification (remembered per",
        "token until it expires), pydantic validation of the body (the answer is the snapshot built",
        "for the event), and for create the CloudEvent built and written to the outbox in the same",
        "statement as the task (one data-modifying CTE in autocommit: one round trip like the floor's",
        "INSERT, but two rows, the full-text vector and its GIN index). Create runs as a driver",
        "statement (`todo.common.db.DriverStatement`): compiled once from the table metadata, executed",
        "on the pooled asyncpg connection, with no ORM object and none of SQLAlchemy's per-call",
        "execution layers. Lists run on an autocommit Core connection, built with SQLAlchemy Core per",
        'request (the filters vary) and validated as one page. "Instrumentation" is the request-context',
        "middleware: request id, trace context, one JSON access-log line and the Prometheus HTTP",
        "metrics, in one layer. The outbox relay is off in this benchmark (no sidecar). The backend",
        "processes start as `todo-service backend` does in production (heap settled, FastAPI's",
        "OpenTelemetry hooks off); the floor runs with FastAPI's defaults.",
        "Run with: `.venv/bin/python bench/backend/run.py --write-docs` (about three and a half minutes).",
    ]
    return "\n".join(lines)


def write_docs(report: str) -> None:
    path = ROOT / "docs" / "performance.md"
    text = path.read_text() if path.exists() else "# Performance\n"
    section = "## Backend API\n\n" + report + "\n"
    pattern = re.compile(r"^## Backend API\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)


if __name__ == "__main__":
    main()
