"""An OCI runtime in front of runc that asks only for capabilities this machine can grant.

Usage (how the test bed's dockerd calls it, through a launcher script registered as its default
runtime)::

    python3 -S -E oci_runtime_wrapper.py REAL_RUNC [runc's global options] COMMAND [options] [args]

Why: some VMs run every process with a capability bounding set that lacks a capability (here
CAP_SYS_RESOURCE).  Docker 20.10 gives a ``--privileged`` container every capability it knows, and runc
then fails with "unable to apply caps: operation not permitted".  Before handing over to runc, this
program removes from the process spec the capabilities missing from its own bounding set
(``CapBnd`` in /proc/self/status), for

- ``create`` / ``run``: the bundle's ``config.json`` (``--bundle DIR``, default: the current directory);
- ``exec --process FILE``: the process spec Docker writes for ``docker exec``.

Then it replaces itself with runc, unchanged arguments.  Every other command goes to runc untouched.
A capability a process could never hold is not granted by leaving it in the list, so nothing a
container can do changes; only the failure goes away.

Standard library only and started with ``-S``: runc is called for every container operation, so the
wrapper must start quickly.
"""

from __future__ import annotations

import json
import os
import sys

# Linux capability numbers (include/uapi/linux/capability.h), index = bit number.
CAPS = (
    "CHOWN",  # 0
    "DAC_OVERRIDE",  # 1
    "DAC_READ_SEARCH",  # 2
    "FOWNER",  # 3
    "FSETID",  # 4
    "KILL",  # 5
    "SETGID",  # 6
    "SETUID",  # 7
    "SETPCAP",  # 8
    "LINUX_IMMUTABLE",  # 9
    "NET_BIND_SERVICE",  # 10
    "NET_BROADCAST",  # 11
    "NET_ADMIN",  # 12
    "NET_RAW",  # 13
    "IPC_LOCK",  # 14
    "IPC_OWNER",  # 15
    "SYS_MODULE",  # 16
    "SYS_RAWIO",  # 17
    "SYS_CHROOT",  # 18
    "SYS_PTRACE",  # 19
    "SYS_PACCT",  # 20
    "SYS_ADMIN",  # 21
    "SYS_BOOT",  # 22
    "SYS_NICE",  # 23
    "SYS_RESOURCE",  # 24
    "SYS_TIME",  # 25
    "SYS_TTY_CONFIG",  # 26
    "MKNOD",  # 27
    "LEASE",  # 28
    "AUDIT_WRITE",  # 29
    "AUDIT_CONTROL",  # 30
    "SETFCAP",  # 31
    "MAC_OVERRIDE",  # 32
    "MAC_ADMIN",  # 33
    "SYSLOG",  # 34
    "WAKE_ALARM",  # 35
    "BLOCK_SUSPEND",  # 36
    "AUDIT_READ",  # 37
    "PERFMON",  # 38
    "BPF",  # 39
    "CHECKPOINT_RESTORE",  # 40
)

# runc's global options that take a value (runc --help); the others are flags.
GLOBAL_WITH_VALUE = {"--root", "--log", "--log-format", "--criu", "--rootless"}
SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")


def bounding_set(status: str = "/proc/self/status") -> int:
    with open(status) as handle:
        for line in handle:
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    raise RuntimeError(f"no CapBnd line in {status}")


def missing_caps(bounding: int) -> set[str]:
    """Names (``CAP_...``) of the known capabilities whose bit is not in ``bounding``."""
    return {f"CAP_{name}" for bit, name in enumerate(CAPS) if not bounding >> bit & 1}


def strip_caps(process: dict, missing: set[str]) -> bool:
    """Remove ``missing`` from every capability list of an OCI process spec; True if it changed."""
    caps = process.get("capabilities") or {}
    changed = False
    for key in SETS:
        values = caps.get(key)
        if values:
            kept = [c for c in values if c not in missing]
            if len(kept) != len(values):
                caps[key] = kept
                changed = True
    return changed


def _option(args: list[str], names: tuple[str, ...]) -> str | None:
    """The value of an option given as ``--name VALUE`` or ``--name=VALUE`` (last one wins)."""
    value = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        for name in names:
            if arg == name and i + 1 < len(args):
                value = args[i + 1]
            elif arg.startswith(name + "="):
                value = arg[len(name) + 1 :]
    return value


def command_index(argv: list[str]) -> int | None:
    """Index of runc's command in ``argv`` (after the global options), or None."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-"):
            return i
        if arg in GLOBAL_WITH_VALUE:
            i += 1
        i += 1
    return None


def spec_file(argv: list[str]) -> tuple[str, bool] | None:
    """The spec file to fix for this runc call: (path, is_bundle_config), or None."""
    idx = command_index(argv)
    if idx is None:
        return None
    command, rest = argv[idx], argv[idx + 1 :]
    if command in ("create", "run"):
        bundle = _option(rest, ("--bundle", "-b")) or "."
        return os.path.join(bundle, "config.json"), True
    if command == "exec":
        process = _option(rest, ("--process", "-p"))
        if process:
            return process, False
    return None


def fix(argv: list[str], bounding: int) -> str | None:
    """Rewrite the spec file of this call if it asks for missing capabilities; return its path."""
    missing = missing_caps(bounding)
    found = spec_file(argv) if missing else None
    if found is None:
        return None
    path, is_bundle = found
    with open(path) as handle:
        spec = json.load(handle)
    process = (spec.get("process") or {}) if is_bundle else spec
    if not strip_caps(process, missing):
        return None
    tmp = path + ".capfix"
    with open(tmp, "w") as handle:
        json.dump(spec, handle)
    os.replace(tmp, path)
    return path


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.stderr.write("usage: oci_runtime_wrapper.py REAL_RUNC [runc arguments]\n")
        raise SystemExit(2)
    runc, args = argv[1], argv[2:]
    fix(args, bounding_set())
    os.execv(runc, [runc, *args])  # noqa: S606 - become runc, arguments unchanged


if __name__ == "__main__":
    main(sys.argv)
