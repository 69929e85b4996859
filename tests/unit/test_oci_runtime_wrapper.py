"""The capability-filtering runc wrapper of the test bed's Docker engine (testbed.oci_runtime_wrapper)."""

import json
import subprocess
import sys

import pytest
from testbed import oci_runtime_wrapper as wrapper

ALL = (1 << 41) - 1
NO_SYS_RESOURCE = ALL & ~(1 << 24)  # what the VMs this was made for run with
PRIVILEGED = ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_SYS_RESOURCE", "CAP_BPF"]


def _caps(names):
    return {key: list(names) for key in wrapper.SETS}


def _bundle(tmp_path, names=PRIVILEGED):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    spec = {
        "ociVersion": "1.0.2",
        "process": {"args": ["sh"], "capabilities": _caps(names)},
        "root": {"path": "rootfs"},
    }
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


def test_missing_caps_reads_the_bounding_mask():
    assert wrapper.missing_caps(NO_SYS_RESOURCE) == {"CAP_SYS_RESOURCE"}
    assert wrapper.missing_caps(ALL) == set()
    assert wrapper.CAPS[21] == "SYS_ADMIN" and wrapper.CAPS[40] == "CHECKPOINT_RESTORE"


def test_bounding_set_of_this_process():
    assert wrapper.bounding_set() & 1  # CAP_CHOWN is in every bounding set a test runs with


@pytest.mark.parametrize(
    "argv",
    [
        ["create", "--bundle", "{b}", "ctr"],
        ["--root", "/run/r", "--log", "/tmp/l.json", "--log-format", "json", "create", "--bundle={b}", "ctr"],
        ["--systemd-cgroup", "run", "-b", "{b}", "--detach", "ctr"],
    ],
)
def test_create_and_run_drop_missing_caps_from_the_bundle(tmp_path, argv):
    bundle = _bundle(tmp_path)
    argv = [a.replace("{b}", str(bundle)) for a in argv]
    assert wrapper.fix(argv, NO_SYS_RESOURCE) == str(bundle / "config.json")
    spec = json.loads((bundle / "config.json").read_text())
    assert spec["process"]["capabilities"] == _caps(["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_BPF"])
    assert spec["root"] == {"path": "rootfs"}  # the rest of the spec is kept


def test_create_without_bundle_uses_the_working_directory(tmp_path, monkeypatch):
    bundle = _bundle(tmp_path)
    monkeypatch.chdir(bundle)
    assert wrapper.fix(["create", "ctr"], NO_SYS_RESOURCE)
    assert "CAP_SYS_RESOURCE" not in (bundle / "config.json").read_text()


def test_exec_process_file_is_fixed(tmp_path):
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["sh"], "capabilities": _caps(PRIVILEGED)}))
    assert wrapper.fix(
        ["--root", "/r", "exec", "--process", str(process), "--detach", "ctr"], NO_SYS_RESOURCE
    )
    assert json.loads(process.read_text())["capabilities"]["bounding"] == [
        "CAP_CHOWN",
        "CAP_SYS_ADMIN",
        "CAP_BPF",
    ]


@pytest.mark.parametrize(
    "argv", [["start", "ctr"], ["delete", "--force", "ctr"], ["state", "ctr"], ["exec", "ctr", "ls"]]
)
def test_other_commands_are_untouched(tmp_path, argv, monkeypatch):
    bundle = _bundle(tmp_path)
    monkeypatch.chdir(bundle)
    before = (bundle / "config.json").read_text()
    assert wrapper.fix(argv, NO_SYS_RESOURCE) is None
    assert (bundle / "config.json").read_text() == before


def test_nothing_is_rewritten_when_no_cap_is_missing(tmp_path):
    bundle = _bundle(tmp_path)
    before = (bundle / "config.json").read_bytes()
    assert wrapper.fix(["create", "--bundle", str(bundle), "ctr"], ALL) is None
    assert (bundle / "config.json").read_bytes() == before


def test_a_spec_asking_for_nothing_missing_is_kept_byte_for_byte(tmp_path):
    bundle = _bundle(tmp_path, ["CAP_CHOWN", "CAP_KILL"])
    before = (bundle / "config.json").read_bytes()
    assert wrapper.fix(["create", "--bundle", str(bundle), "ctr"], NO_SYS_RESOURCE) is None
    assert (bundle / "config.json").read_bytes() == before


def test_main_hands_the_unchanged_arguments_to_runc(tmp_path):
    fake = tmp_path / "runc"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    args = ["--root", "/run/x", "state", "my container"]
    done = subprocess.run(
        [sys.executable, "-S", "-E", wrapper.__file__, str(fake), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.splitlines() == args


def test_main_without_runc_says_how_to_call_it():
    done = subprocess.run([sys.executable, "-S", wrapper.__file__], capture_output=True, text=True)
    assert done.returncode == 2 and "usage" in done.stderr
