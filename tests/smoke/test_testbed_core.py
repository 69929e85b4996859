"""The test bed's own machinery: ports, tool cache, teardown of processes, state records."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from testbed import core
from testbed.polling import eventually

# no component needed, but these belong with the smoke suite that scripts/test runs as "testbed"
pytestmark = pytest.mark.testbed


def test_free_ports_are_distinct_and_bindable():
    import socket

    ports = {core.free_port() for _ in range(20)}
    assert len(ports) == 20
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports.pop()))


def test_missing_tool_message_is_one_line():
    err = core.MissingTool("java", "apt-get install -y openjdk-17-jre-headless")
    assert "\n" not in str(err)
    assert "java" in str(err) and "apt-get install" in str(err)


def test_ensure_cached_builds_once_and_never_exposes_a_failed_build(tmp_path, monkeypatch):
    monkeypatch.setenv("TODO_PLATFORM_CACHE", str(tmp_path))
    calls = []

    def broken(tmp):
        (tmp / "half").write_text("x")
        raise RuntimeError("download failed")

    with pytest.raises(RuntimeError):
        core.ensure_cached("demo", "1.0", broken)
    assert not core.cache_dir("demo", "1.0").exists()

    def good(tmp):
        calls.append(tmp)
        (tmp / "bin").mkdir()

    first = core.ensure_cached("demo", "1.0", good)
    second = core.ensure_cached("demo", "1.0", good)
    assert first == second == tmp_path / "demo-1.0"
    assert (first / "bin").is_dir() and len(calls) == 1
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".demo-1.0.") and p.is_dir()]
    assert leftovers == []


def test_owned_processes_die_with_a_killed_owner(tmp_path):
    """Even a SIGKILLed pytest leaves nothing behind (process group + parent-death signal)."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(core.repo_root() / "tests")!r})
        from pathlib import Path
        from testbed import core
        proc = core.ManagedProcess(["sleep", "300"], log_file=Path({str(tmp_path)!r}) / "s.log")
        proc.start()
        print(proc.pid, flush=True)
        time.sleep(300)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(owner.stdout.readline())
    assert core.pid_alive(child)
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    eventually(lambda: not core.pid_alive(child), f"the owned process {child} gone", within=10, interval=0.1)


def test_atexit_stops_owned_processes(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(core.repo_root() / "tests")!r})
        from pathlib import Path
        from testbed import core
        proc = core.ManagedProcess(["sleep", "300"], log_file=Path({str(tmp_path)!r}) / "s.log").start()
        print(proc.pid, flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    child = int(out.stdout.split()[0])
    assert not core.pid_alive(child)
    assert "=== testbed" in (tmp_path / "s.log").read_text()


class _Sleeper(core.Component):
    name = "sleeper"

    def start(self):
        self.spawn(["sleep", "300"])
        self.wait_healthy(5)
        self.started()

    def is_healthy(self):
        return True

    def info(self):
        return {"answer": 42}

    @classmethod
    def restore(cls, run, info):
        comp = cls(run)
        comp.answer = info["answer"]
        return comp


class _Crasher(core.Component):
    name = "crasher"

    def start(self):
        self.spawn(["sh", "-c", "echo it broke; exit 3"])
        self.wait_healthy(10)

    def is_healthy(self):
        return False


def test_a_dying_component_fails_fast_naming_its_log(tmp_path, monkeypatch):
    monkeypatch.setenv("TESTBED_HOME", str(tmp_path))
    comp = _Crasher(core.Run("unit"))
    with pytest.raises(core.ComponentError, match=r"crasher exited \(code 3\).*crasher\.log") as err:
        comp.start()
    assert "it broke" in str(err.value)


def test_detached_component_is_recorded_and_found_again(tmp_path, monkeypatch):
    monkeypatch.setenv("TESTBED_HOME", str(tmp_path))
    monkeypatch.delenv("TESTBED_NO_REUSE", raising=False)
    monkeypatch.setitem(core.COMPONENTS, "sleeper", core.ComponentSpec("sleeper", _Sleeper, False, 99))
    comp = _Sleeper(core.Run("up", detached=True))
    comp.start()
    try:
        found = core.find_running("sleeper")
        assert found is not None and found.answer == 42
        assert found.procs[0].pid == comp.procs[0].pid
        found.stop()
        assert core.find_running("sleeper") is None
    finally:
        comp.stop()


def test_sigterm_of_the_owner_stops_owned_processes(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(core.repo_root() / "tests")!r})
        from pathlib import Path
        from testbed import core
        proc = core.ManagedProcess(["sleep", "300"], log_file=Path({str(tmp_path)!r}) / "s.log").start()
        print(proc.pid, flush=True)
        time.sleep(300)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(owner.stdout.readline())
    owner.send_signal(signal.SIGTERM)
    assert owner.wait(timeout=30) == -signal.SIGTERM
    assert not core.pid_alive(child)
