"""Instructions per create-task request, counted under valgrind's callgrind: instrumented / not.

Throughput and CPU time on this shared 2-core machine move by several per cent between two
processes of the same code and between minutes (docs/performance.md), more than most single
changes to the request path cost. An instruction count does not: the same code gives the same
count within about half a per cent. It is no substitute for ``run.py`` (cache misses and the
database are not in it), but it says which of two versions of the request path does less work.

Each server runs ``todo-service backend`` under callgrind (about 50 times slower than native), is
warmed up, has its counters zeroed, serves ``--requests`` creates from ``--clients`` keep-alive
connections, and dumps its counters. All servers run at once (callgrind is single-threaded).

Usage (from the repo root, about five minutes; needs valgrind: ``apt-get install valgrind``):
  .venv/bin/python bench/backend/instructions.py [--requests 1000] [--warm-up 600]
      [--compare NAME=SRC ...]
``--compare`` adds a server running the services' source in SRC (a directory holding ``todo``, as
in run.py). PostgreSQL comes from the test bed, as in run.py. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from run import OPERATIONS, PY, ROOT, Server, _json, _raw, _request, backend_env, free_port

ACCOUNT = {"email": "instructions@example.com", "password": "bench-password"}


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise SystemExit(
            f"bench/backend/instructions.py: {tool} not found; install valgrind (apt-get install valgrind)"
        )
    return path


async def _creates(port: int, token: str, count: int, clients: int) -> None:
    method, path, body, expect = OPERATIONS["create"]
    raw = _raw(method, path, port, token, body)

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(count // clients):
                status = await _request(reader, writer, raw)
                if status != expect:
                    raise RuntimeError(f"create answered {status}, expected {expect}")
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))


def measure(name: str, env: dict[str, str], out_dir: Path, args: argparse.Namespace) -> int:
    """Instructions of ``args.requests`` creates served by one server under callgrind."""
    port = free_port()
    out = out_dir / f"{re.sub(r'[^a-z0-9]+', '-', name.lower())}.callgrind"
    argv = [
        _require("valgrind"),
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        PY,
        str(Path(PY).parent / "todo-service"),
        "backend",
    ]
    with open(f"{out}.log", "w") as log:
        # Python's start-up under callgrind takes a minute or more
        server = Server(name, argv, {**env, "PORT": str(port)}, port, ROOT, stderr=log, start_seconds=600)
    try:
        token = asyncio.run(_json(port, "POST", "/api/auth/login", ACCOUNT))["access_token"]
        asyncio.run(_creates(port, token, args.warm_up, args.clients))
        control = _require("callgrind_control")
        subprocess.run([control, "--zero", str(server.proc.pid)], check=True, capture_output=True)
        asyncio.run(_creates(port, token, args.requests, args.clients))
        subprocess.run([control, "--dump", str(server.proc.pid)], check=True, capture_output=True)
    finally:
        server.stop()
    dump = Path(f"{out}.1")  # the first dump after zeroing; the exit writes the rest to ``out``
    summary = re.search(r"^summary: (\d+)", dump.read_text(), re.M)
    if summary is None:
        raise RuntimeError(f"{dump}: no summary line")
    requests = args.requests // args.clients * args.clients
    return int(summary.group(1)) // requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="creates counted per server")
    parser.add_argument("--warm-up", type=int, default=600, help="creates before the count starts")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--compare", action="append", default=[], metavar="NAME=SRC")
    args = parser.parse_args()
    if args.requests < args.clients:
        parser.error("--requests must be at least --clients")
    _require("valgrind"), _require("callgrind_control")

    sys.path.insert(0, str(ROOT / "tests"))
    from testbed.core import Run, acquire
    from testbed.postgres import Postgres
    from todo.common.migrations import upgrade

    pg, owned = acquire("postgres", Postgres, Run("bench-instructions"))
    try:
        dsn = pg.create_database("bench_instructions")
        upgrade("backend", dsn)
        base = {
            **os.environ,
            **backend_env(dsn),
            "DB_POOL_SIZE": str(args.clients),
            "PYTHONHASHSEED": "0",  # the same dict layouts in every server
        }
        servers = {
            "backend": {**base, "INSTRUMENTATION": "true"},
            "backend (instrumentation off)": {**base, "INSTRUMENTATION": "false"},
        }
        for spec in args.compare:
            name, _, source = spec.partition("=")
            servers[f"backend ({name})"] = {
                **base,
                "INSTRUMENTATION": "true",
                "PYTHONPATH": str(Path(source).resolve()),
            }
        _register(base)
        with (
            tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp,
            ThreadPoolExecutor(len(servers)) as pool,
        ):
            futures = {
                name: pool.submit(measure, name, env, Path(tmp), args) for name, env in servers.items()
            }
            counts = {name: future.result() for name, future in futures.items()}
    finally:
        if owned:
            pg.destroy()
    on, off = counts["backend"], counts["backend (instrumentation off)"]
    print(
        f"Instructions per create (callgrind, {args.requests} creates after {args.warm_up}, "
        f"{args.clients} clients)"
    )
    for name, count in counts.items():
        print(f"  {name:<40} {count:>10,}   {count / on:.3f} of backend")
    print(f"  instrumentation: {on - off:,} instructions per create; not / instrumented {off / on:.3f}")


def _register(env: dict[str, str]) -> None:
    """The account every server logs in with, made by one native server (argon2 under callgrind
    would take minutes)."""
    port = free_port()
    argv = [str(Path(PY).parent / "todo-service"), "backend"]
    server = Server("registering server", argv, {**env, "PORT": str(port)}, port, ROOT)
    try:
        asyncio.run(_json(port, "POST", "/api/auth/register", ACCOUNT))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
