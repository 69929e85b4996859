"""``testbed up [components…] | down [components…] | status | env | tools [names…]``.

``up`` starts components detached (they outlive the command), in parallel, and records them in
``.testbed/state.json``; pytest fixtures and ``env`` find them there.  ``down`` stops them and removes
their data (logs stay in ``.testbed/logs/up/``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from testbed.core import (
    TOOLS,
    Component,
    ComponentError,
    MissingTool,
    Run,
    find_running,
    load_components,
    read_state,
    state_dir,
    state_file,
    update_state,
)


def _select(names: list[str], *, default_only: bool) -> list[str]:
    specs = load_components()
    if not names:
        return [n for n, s in specs.items() if s.default or not default_only]
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise SystemExit(f"testbed: unknown component(s) {', '.join(unknown)}; known: {', '.join(specs)}")
    return sorted(names, key=lambda n: (specs[n].order, n))


def cmd_up(args: argparse.Namespace) -> int:
    if args.prom_scrape_interval:
        os.environ["TESTBED_PROM_SCRAPE_INTERVAL"] = args.prom_scrape_interval
    specs = load_components()
    names = _select(args.components, default_only=True)
    run = Run("up", detached=True)
    began = time.monotonic()

    def start(name: str) -> tuple[str, str, float]:
        t0 = time.monotonic()
        if find_running(name) is not None:
            return name, "already up", time.monotonic() - t0
        comp = specs[name].cls(run)
        try:
            comp.start()
        except BaseException:
            # never leave a half-started detached process behind
            comp.stop()
            raise
        return name, "up", time.monotonic() - t0

    failed = 0
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        futures = {name: pool.submit(start, name) for name in names}
        for name, fut in futures.items():
            try:
                _, what, secs = fut.result()
                print(f"testbed: {name:<11} {what} ({secs:.1f}s)")
            except (MissingTool, ComponentError) as exc:
                failed += 1
                print(f"testbed: {name:<11} FAILED: {exc}", file=sys.stderr)
    print(f"testbed: up in {time.monotonic() - began:.1f}s; state in {state_file()}")
    if not failed:
        print('testbed: `eval "$(scripts/testbed env)"` exports the connection settings')
    return 1 if failed else 0


def _record(name: str) -> tuple[Component | None, dict]:
    record = read_state().get("components", {}).get(name, {})
    specs = load_components()
    if not record or name not in specs:
        return None, record
    try:
        return specs[name].cls.from_state(record), record
    except Exception:  # a stale record from an older version of the test bed
        return None, record


def cmd_down(args: argparse.Namespace) -> int:
    recorded = list(read_state().get("components", {}))
    names = args.components or recorded
    for name in reversed(names):
        comp, _ = _record(name)
        if comp is not None:
            destroy = getattr(comp, "destroy", None)
            (destroy or comp.stop)()
            print(f"testbed: {name} down")
        update_state(name, None)
    if not read_state().get("components"):
        shutil.rmtree(state_dir() / "up", ignore_errors=True)
    return 0


def cmd_status(_args: argparse.Namespace) -> int:
    records = read_state().get("components", {})
    if not records:
        print("testbed: nothing is up (start it with scripts/testbed up)")
        return 1
    bad = 0
    for name in records:
        comp, record = _record(name)
        if comp is None:
            state = "unknown component"
        elif not comp.processes_alive():
            state = "DEAD"
        else:
            try:
                state = "healthy" if comp.is_healthy() else "UNHEALTHY"
            except Exception as exc:
                state = f"UNHEALTHY ({type(exc).__name__})"
        bad += state != "healthy"
        pids = ",".join(str(p["pid"]) for p in record.get("processes", []))
        print(f"{name:<11} {state:<10} pids={pids:<14} log={record.get('log')}")
        if comp is not None:
            for key, value in sorted(comp.env().items()):
                if "PASSWORD" not in key and "DSN" not in key:
                    print(f"{'':<11} {key}={value}")
    return 1 if bad else 0


def cmd_env(_args: argparse.Namespace) -> int:
    records = read_state().get("components", {})
    if not records:
        print("testbed: nothing is up (start it with scripts/testbed up)", file=sys.stderr)
        return 1
    print(f"export TESTBED_STATE={shlex.quote(str(state_file()))}")
    for name in records:
        comp = find_running(name, check_health=False)
        if comp is None:
            print(f"# {name}: not running", file=sys.stdout)
            continue
        for key, value in sorted(comp.env().items()):
            print(f"export {key}={shlex.quote(value)}")
    return 0


def cmd_tools(args: argparse.Namespace) -> int:
    load_components()
    names = args.names or list(TOOLS)
    unknown = [n for n in [*names, *args.skip] if n not in TOOLS]
    if unknown:
        raise SystemExit(f"testbed: unknown tool(s) {', '.join(unknown)}; known: {', '.join(TOOLS)}")
    failed = 0
    for name in (n for n in names if n not in args.skip):
        t0 = time.monotonic()
        try:
            result = TOOLS[name].ensure()
            print(f"testbed: tool {name:<11} ok ({time.monotonic() - t0:.1f}s) {_short(result)}")
        except (MissingTool, ComponentError) as exc:
            failed += 1
            print(f"testbed: tool {name:<11} FAILED: {exc}", file=sys.stderr)
    return 1 if failed else 0


def _short(result: object) -> str:
    text = str(result) if result is not None else ""
    return text if len(text) < 160 else text[:157] + "..."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="testbed", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start components detached (default: all default components)")
    up.add_argument("components", nargs="*")
    up.add_argument("--prom-scrape-interval", help="Prometheus global scrape interval, e.g. 2s (default 15s)")
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="stop components started by up and remove their data")
    down.add_argument("components", nargs="*")
    down.set_defaults(func=cmd_down)
    sub.add_parser("status", help="show what is up and whether it is healthy").set_defaults(func=cmd_status)
    sub.add_parser("env", help="print export lines with connection settings").set_defaults(func=cmd_env)
    tools = sub.add_parser("tools", help="install/build every tool into the cache ahead of time")
    tools.add_argument("names", nargs="*", help="the tools to make ready (default: all)")
    tools.add_argument(
        "--except", dest="skip", nargs="+", default=[], metavar="NAME", help="leave these tools out"
    )
    tools.set_defaults(func=cmd_tools)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except MissingTool as exc:
        print(exc, file=sys.stderr)
        return 2
