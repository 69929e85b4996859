"""Shared framework of the test bed: components, processes, ports, directories, state and the tool cache.

Every real component (PostgreSQL, Kafka, Prometheus, Docker, daprd, the kube API) is a subclass of
:class:`Component`.  A component starts its processes through :meth:`Component.spawn`, which sends
their output to a log file under ``.testbed/logs/`` and registers them for teardown: processes run in
their own process group, are killed at interpreter exit (atexit), on SIGTERM/SIGHUP, and (through
``PR_SET_PDEATHSIG``) when the Python process that owns them dies.  ``testbed up`` starts components
*detached* instead: they outlive the command and are found again through ``.testbed/state.json``.

How a subclass plugs in::

    @register("kafka", default=True)
    class Kafka(Component):
        name = "kafka"
        def start(self) -> None: ...        # spawn processes, then self.wait_healthy()
        def is_healthy(self) -> bool: ...   # a real check (SQL, metadata, /-/ready)
        def info(self) -> dict: ...         # JSON-able connection facts; enough for restore()
        def env(self) -> dict[str, str]: ...  # TESTBED_* variables for `testbed env`
        @classmethod
        def restore(cls, run, info): ...    # rebuild an object for an already running instance

Tools go into the versioned cache ``${TODO_PLATFORM_CACHE:-~/.cache/todo-platform}/<tool>-<version>/``;
:func:`ensure_cached` builds a tool there once, under a file lock, atomically.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar


class MissingTool(RuntimeError):
    """A prerequisite is not installed. The message is one line saying how to get it."""

    def __init__(self, tool: str, how: str) -> None:
        super().__init__(f"test bed: {tool} is missing; {how}")
        self.tool = tool
        self.how = how


class ComponentError(RuntimeError):
    """A component failed to start or to become healthy; the message names its log file."""


# --------------------------------------------------------------------------------------------------
# Directories


def repo_root() -> Path:
    """The repository root (this file lives in <repo>/tests/testbed/)."""
    return Path(__file__).resolve().parents[2]


def state_dir() -> Path:
    """Where the test bed keeps state, data and logs: ``$TESTBED_HOME`` or ``<repo>/.testbed``."""
    path = Path(os.environ.get("TESTBED_HOME") or repo_root() / ".testbed")
    path.mkdir(parents=True, exist_ok=True)
    return path


def state_file() -> Path:
    return state_dir() / "state.json"


def cache_root() -> Path:
    """``${TODO_PLATFORM_CACHE:-~/.cache/todo-platform}``."""
    raw = os.environ.get("TODO_PLATFORM_CACHE") or str(Path.home() / ".cache" / "todo-platform")
    path = Path(raw).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir(tool: str, version: str) -> Path:
    """The versioned cache directory of a tool (not created; see :func:`ensure_cached`)."""
    return cache_root() / f"{tool}-{version}"


_COMPLETE = ".complete"


def ensure_cached(tool: str, version: str, build: Callable[[Path], None]) -> Path:
    """Return the cache dir of ``tool``/``version``, calling ``build(tmpdir)`` first if it is absent.

    ``build`` fills a fresh temporary directory next to the final one; on success it is renamed into
    place and marked complete, so a half-finished build is never used.  A file lock serialises
    concurrent builders (several engineers or pytest runs on one machine).
    """
    final = cache_dir(tool, version)
    if (final / _COMPLETE).exists():
        return final
    with file_lock(cache_root() / f".{tool}-{version}.lock"):
        if (final / _COMPLETE).exists():
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{tool}-{version}.", dir=cache_root()))
        try:
            build(tmp)
            (tmp / _COMPLETE).write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def require_tool(name: str, how: str, candidates: Sequence[str | Path] = ()) -> str:
    """Find an executable on PATH or among ``candidates``; raise :class:`MissingTool` otherwise."""
    for cand in candidates:
        cand = Path(cand)
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    found = shutil.which(name)
    if found:
        return found
    raise MissingTool(name, how)


def apt_install(package: str, tool: str, how: str) -> None:
    """Install a Debian package when we are root (CI); otherwise raise :class:`MissingTool`.

    Set ``TESTBED_NO_APT=1`` to forbid installing.  Output goes to ``.testbed/logs/apt-<pkg>.log``.
    """
    apt = shutil.which("apt-get")
    if os.geteuid() != 0 or not apt or os.environ.get("TESTBED_NO_APT") == "1":
        raise MissingTool(tool, how)
    log_file = state_dir() / "logs" / f"apt-{package}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(state_dir() / ".apt.lock"), open(log_file, "ab") as out:
        env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
        install = [apt, "-o", "DPkg::Lock::Timeout=600", "install", "-y", "--no-install-recommends", package]

        def run(argv: list[str]) -> bool:
            done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
            return done.returncode == 0

        # the package index may be stale on a fresh machine: update once and retry
        if not run(install) and not (run([apt, "update"]) and run(install)):
            raise MissingTool(tool, f"{how} (automatic install failed; see {log_file})")


# --------------------------------------------------------------------------------------------------
# Ports

_handed_out: set[int] = set()
_port_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on loopback that is free now and was not handed out before by this process."""
    with _port_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = sock.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise ComponentError("could not find a free loopback port")


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------------------
# Processes and teardown

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def process_start_time(pid: int) -> int | None:
    """The kernel start time of ``pid`` (guards against pid reuse), or None if it is gone/a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time ``pid`` has used so far (benchmarks), or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()  # from field 3 (state): utime is 14, stime 15
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def pid_alive(pid: int, start_time: int | None = None) -> bool:
    current = process_start_time(pid)
    return current is not None and (start_time is None or current == start_time)


def kill_group(
    pid: int, start_time: int | None = None, timeout: float = 20.0, sig: int = signal.SIGTERM
) -> None:
    """Send ``sig`` (SIGTERM) to the process group led by ``pid``, wait, then SIGKILL what is left."""
    if not pid_alive(pid, start_time):
        return
    for signum, wait in ((sig, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signum)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not pid_alive(pid, start_time):
                return
            time.sleep(0.1)


class ManagedProcess:
    """One started process: own process group, output appended to ``log_file``."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_file: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        owned: bool = True,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.user = user
        self.stop_signal = stop_signal
        self.log_file = Path(log_file)
        self.env = env
        self.cwd = cwd
        self.owned = owned
        self.popen: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        self.start_time: int | None = None

    def start(self) -> ManagedProcess:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"\n=== testbed {stamp} start: {' '.join(self.argv[:3])} ...\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                user=self.user,
                # PR_SET_PDEATHSIG fires when the *thread* that forked exits, so only children of the
                # main thread get it (worker threads of a parallel start end long before the session)
                preexec_fn=_die_with_parent if self.owned and _in_main_thread() else None,
            )
        self.pid = self.popen.pid
        self.start_time = process_start_time(self.pid)
        if self.owned:
            _register(self)
        return self

    @classmethod
    def adopt(
        cls, pid: int, start_time: int | None, log_file: Path, stop_signal: int = signal.SIGTERM
    ) -> ManagedProcess:
        """Represent a process started by another command (``testbed up``)."""
        proc = cls([], log_file=log_file, owned=False, stop_signal=stop_signal)
        proc.pid, proc.start_time = pid, start_time
        return proc

    def alive(self) -> bool:
        if self.pid is None:
            return False
        if self.popen is not None:
            return self.popen.poll() is None
        return pid_alive(self.pid, self.start_time)

    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def stop(self, timeout: float = 20.0) -> None:
        if self.pid is None:
            return
        kill_group(self.pid, self.start_time, timeout, self.stop_signal)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=1)
        _unregister(self)

    def describe(self) -> dict[str, Any]:
        return {"pid": self.pid, "start_time": self.start_time}


_live: list[ManagedProcess] = []
_live_lock = threading.RLock()  # re-entrant: the signal handler may interrupt a holder
_handlers_installed = False
_atexit_installed = False


def _register(proc: ManagedProcess) -> None:
    install_teardown_handlers()
    with _live_lock:
        _live.append(proc)


def _unregister(proc: ManagedProcess) -> None:
    with _live_lock, contextlib.suppress(ValueError):
        _live.remove(proc)


def stop_all_owned() -> None:
    """Stop every process this Python process started (newest first)."""
    while True:
        with _live_lock:
            if not _live:
                return
            proc = _live[-1]
        try:
            proc.stop(timeout=10)
        finally:
            _unregister(proc)


def _on_signal(signum: int, _frame: Any) -> None:
    stop_all_owned()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def install_teardown_handlers() -> None:
    """atexit + SIGTERM/SIGHUP teardown of owned processes.  Signal handlers can only be set from
    the main thread: call this there before starting components in worker threads."""
    global _atexit_installed, _handlers_installed
    if not _atexit_installed:
        _atexit_installed = True
        atexit.register(stop_all_owned)
    if _handlers_installed or not _in_main_thread():
        return
    _handlers_installed = True
    for sig in (signal.SIGTERM, signal.SIGHUP):
        # Leave handlers that someone else installed alone; atexit still covers normal exits.
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _on_signal)


# --------------------------------------------------------------------------------------------------
# Runs: where one set of components keeps its data and logs


@dataclass
class Run:
    """A named set of component instances.

    ``up`` is the detached test bed of ``testbed up`` (data in ``.testbed/up/``); a pytest session
    that starts its own components uses ``pytest-<pid>`` and removes its data at the end.  Logs of
    every run stay under ``.testbed/logs/<run>/`` for post-mortems.
    """

    name: str
    detached: bool = False

    @property
    def data_dir(self) -> Path:
        path = state_dir() / self.name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def log_dir(self) -> Path:
        path = state_dir() / "logs" / self.name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def remove_data(self) -> None:
        shutil.rmtree(state_dir() / self.name, ignore_errors=True)

    @classmethod
    def for_session(cls) -> Run:
        prune_logs()
        return cls(f"pytest-{os.getpid()}")


def prune_logs(keep: int = 8) -> None:
    """Keep the log directories of the newest ``keep`` pytest runs."""
    logs = state_dir() / "logs"
    if not logs.is_dir():
        return
    runs = sorted(
        (p for p in logs.iterdir() if p.is_dir() and p.name.startswith("pytest-")),
        key=lambda p: p.stat().st_mtime,
    )
    for old in runs[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    # data left behind by a pytest run that was SIGKILLed
    for data in state_dir().glob("pytest-*"):
        pid = data.name.removeprefix("pytest-")
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(data, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# Components


class Component:
    """Base class of every test bed component; see the module docstring."""

    name: ClassVar[str] = "component"
    #: seconds wait_healthy() waits by default
    start_timeout: ClassVar[float] = 60.0
    #: signal that asks the component's processes to shut down cleanly
    stop_signal: ClassVar[int] = signal.SIGTERM

    def __init__(self, run: Run | None = None) -> None:
        self.run = run or Run.for_session()
        self.procs: list[ManagedProcess] = []

    # -- directories ---------------------------------------------------------------------------
    @property
    def workdir(self) -> Path:
        path = self.run.data_dir / self.name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def log_path(self, suffix: str = "") -> Path:
        return self.run.log_dir / f"{self.name}{suffix}.log"

    @property
    def log_file(self) -> Path:
        return self.log_path()

    # -- processes -----------------------------------------------------------------------------
    def spawn(
        self,
        argv: Sequence[str | Path],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        log_suffix: str = "",
        user: str | None = None,
    ) -> ManagedProcess:
        """Start a process of this component (detached if the run is, else owned by this process)."""
        proc = ManagedProcess(
            [str(a) for a in argv],
            log_file=self.log_path(log_suffix),
            env=env,
            cwd=cwd,
            owned=not self.run.detached,
            user=user,
            stop_signal=self.stop_signal,
        ).start()
        self.procs.append(proc)
        return proc

    def started(self) -> None:
        """Call at the end of start(): a detached instance (``testbed up``, or one a test restarted
        after reusing it) is recorded in state.json with its new pids."""
        if self.run.detached:
            update_state(self.name, self)

    def processes_alive(self) -> bool:
        return bool(self.procs) and all(p.alive() for p in self.procs)

    # -- lifecycle (override start / is_healthy / info) ------------------------------------------
    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()

    def restart(self) -> None:
        self.stop()
        self.start()

    def is_healthy(self) -> bool:
        raise NotImplementedError

    def wait_healthy(self, timeout: float | None = None) -> None:
        """Poll :meth:`is_healthy`; fail fast if a process died; the error names the log file."""
        timeout = self.start_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            dead = [p for p in self.procs if not p.alive()]
            if dead:
                code = dead[0].returncode()
                raise ComponentError(
                    f"{self.name} exited (code {code}) before becoming healthy; see {dead[0].log_file}"
                    + self._log_tail(dead[0].log_file)
                )
            with contextlib.suppress(Exception):
                if self.is_healthy():
                    return
            if time.monotonic() > deadline:
                raise ComponentError(
                    f"{self.name} did not become healthy within {timeout:.0f}s; see {self.log_file}"
                    + self._log_tail(self.log_file)
                )
            time.sleep(0.25)

    @staticmethod
    def _log_tail(path: Path, lines: int = 15) -> str:
        try:
            tail = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n--- last lines of the log ---\n" + "\n".join(tail)

    def info(self) -> dict[str, Any]:
        """JSON-able connection facts; must be enough for :meth:`restore`."""
        return {}

    def env(self) -> dict[str, str]:
        """``TESTBED_*`` environment variables describing this component."""
        return {}

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "run": self.run.name,
            "log": str(self.log_file),
            "processes": [p.describe() for p in self.procs],
            "info": self.info(),
        }

    @classmethod
    def restore(cls, run: Run, info: dict[str, Any]) -> Component:
        """Rebuild an object for an instance started elsewhere; subclasses set their fields."""
        raise NotImplementedError(f"{cls.__name__} cannot attach to a running instance")

    @classmethod
    def from_state(cls, record: dict[str, Any]) -> Component:
        run = Run(record["run"], detached=True)
        comp = cls.restore(run, record["info"])
        comp.procs = [
            ManagedProcess.adopt(p["pid"], p.get("start_time"), Path(record["log"]), cls.stop_signal)
            for p in record.get("processes", [])
        ]
        return comp


# --------------------------------------------------------------------------------------------------
# Registry of components and tools (the CLI and the fixtures look here)


@dataclass
class ComponentSpec:
    name: str
    cls: type[Component]
    default: bool  # started by a plain `testbed up`
    order: int  # start order (lower first)


@dataclass
class ToolSpec:
    name: str
    ensure: Callable[[], Any]  # installs/builds the tool into the cache, returns anything


COMPONENTS: dict[str, ComponentSpec] = {}
TOOLS: dict[str, ToolSpec] = {}

#: Modules that register components/tools on import; missing optional ones are skipped.
COMPONENT_MODULES = (
    "testbed.postgres",
    "testbed.kafka",
    "testbed.prometheus",
    "testbed.docker",
    "testbed.gobuild",
    "testbed.daprd",
    "testbed.dapr_images",
    "testbed.monitoring_images",
    "testbed.kube",
)


def register(name: str, *, default: bool = True, order: int = 50) -> Callable[[type[Component]], type]:
    """Class decorator: make a component known to ``testbed up`` and the state machinery."""

    def deco(cls: type[Component]) -> type[Component]:
        COMPONENTS[name] = ComponentSpec(name, cls, default, order)
        return cls

    return deco


def register_tool(name: str, ensure: Callable[[], Any]) -> None:
    """Make ``testbed tools`` install/build a tool ahead of time."""
    TOOLS[name] = ToolSpec(name, ensure)


def load_components() -> dict[str, ComponentSpec]:
    import importlib

    for mod in COMPONENT_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:  # the module exists but something it imports does not
                raise
    return dict(sorted(COMPONENTS.items(), key=lambda kv: (kv[1].order, kv[0])))


# --------------------------------------------------------------------------------------------------
# state.json of the detached test bed


def read_state() -> dict[str, Any]:
    try:
        return json.loads(state_file().read_text())
    except (OSError, ValueError):
        return {"components": {}}


def write_state(state: dict[str, Any]) -> None:
    path = state_file()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.chmod(0o600)  # holds test-bed passwords
    tmp.replace(path)


def update_state(name: str, comp: Component | None) -> None:
    """Record (or with ``None`` forget) a detached component in state.json."""
    with file_lock(state_dir() / ".state.lock"):
        state = read_state()
        comps = state.setdefault("components", {})
        if comp is None:
            comps.pop(name, None)
        else:
            comps[name] = comp.state()
        write_state(state)


def find_running(name: str, *, check_health: bool = True) -> Component | None:
    """The detached instance of component ``name`` from state.json if its processes live (and it is
    healthy); None otherwise.  Fixtures use this to reuse ``testbed up``."""
    if os.environ.get("TESTBED_NO_REUSE") == "1":
        return None
    record = read_state().get("components", {}).get(name)
    if not record:
        return None
    try:
        # the record names its class: import just that module, not every component module
        cls = COMPONENTS[name].cls if name in COMPONENTS else _import_class(record["class"])
        comp = cls.from_state(record)
    except Exception:  # a stale record (older test bed version) or a module that does not import
        return None
    if not comp.processes_alive():
        return None
    if check_health:
        try:
            healthy = comp.is_healthy()
        except Exception:
            healthy = False
        if not healthy:
            return None
    return comp


def _import_class(path: str) -> type[Component]:
    import importlib

    mod, _, qual = path.partition(":")
    obj: Any = importlib.import_module(mod)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def acquire(name: str, factory: Callable[[Run], Component], run: Run) -> tuple[Component, bool]:
    """Reuse the running ``testbed up`` instance of ``name`` or start a new one in ``run``.

    Returns ``(component, owned)``; the caller stops it at the end only if ``owned``.
    """
    comp = find_running(name)
    if comp is not None:
        return comp, False
    comp = factory(run)
    comp.start()
    return comp, True


def log(msg: str) -> None:
    print(f"testbed: {msg}", file=sys.stderr, flush=True)
