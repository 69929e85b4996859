"""Run the todo.platform modules the real way: ``ansible localhost -m todo.platform.<module>``.

Each call is a real ad-hoc ansible run with the repository's collections on
ANSIBLE_COLLECTIONS_PATH and the JSON callback, so the tests see exactly what a playbook sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
LISTENERS = ("plaintext", "scram", "sasl_ssl")


@dataclass
class Outcome:
    rc: int
    result: dict[str, Any]
    text: str = ""  # full stdout + stderr of the ansible run
    argv: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.result.get("failed"))

    @property
    def changed(self) -> bool:
        return bool(self.result.get("changed"))


def ansible_env(json_output: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_HOST_KEY_CHECKING="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
        PYTHONDONTWRITEBYTECODE="1",
    )
    if json_output:
        env.update(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
    else:
        env.update(ANSIBLE_STDOUT_CALLBACK="default")
    return env


def run_module(
    module: str,
    args: dict[str, Any],
    *,
    check: bool = False,
    diff: bool = False,
    verbosity: int = 0,
    timeout: int = 600,
) -> Outcome:
    """Run one module on localhost; with verbosity > 0 the plain text output is returned too."""
    json_output = verbosity == 0
    argv = [
        str(Path(sys.executable).with_name("ansible")),
        "localhost",
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        "-m",
        f"todo.platform.{module}",
        "-a",
        json.dumps(args),
    ]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    if verbosity:
        argv.append("-" + "v" * verbosity)
    proc = subprocess.run(
        argv,
        cwd=REPO,
        env=ansible_env(json_output),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    text = proc.stdout + proc.stderr
    if not json_output:
        return Outcome(proc.returncode, {}, text, argv)
    try:
        doc = json.loads(proc.stdout)
        result = doc["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError) as e:
        raise AssertionError(f"ansible gave no JSON result ({e}):\n{text[-4000:]}") from None
    return Outcome(proc.returncode, result, text, argv)


def connection_args(kafka, listener: str, **overrides: Any) -> dict[str, Any]:
    """Module connection options for one test-bed listener."""
    args: dict[str, Any] = {"bootstrap_servers": [kafka.bootstrap(listener)], "request_timeout": 60}
    if listener == "scram":
        args.update(
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username=kafka.scram_user,
            sasl_password=kafka.scram_password,
        )
    elif listener == "sasl_ssl":
        args.update(
            security_protocol="SASL_SSL",
            sasl_mechanism="PLAIN",
            sasl_username=kafka.plain_user,
            sasl_password=kafka.plain_password,
            tls_ca_cert=kafka.ca_file,
        )
    args.update(overrides)
    return args
