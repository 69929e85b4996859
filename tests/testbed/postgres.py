"""PostgreSQL from the Debian package: initdb into a temporary directory, one server on a free port.

The superuser is ``todo`` with a random password (scram-sha-256 over TCP).  PostgreSQL refuses to
run as root, so when the test bed runs as root the server runs as the ``postgres`` system user that
Debian's package creates.

Opt-in, for a kind cluster in the test bed's Docker: ``Postgres(run, external=net)`` (a
:class:`testbed.docker_network.DockerNetwork`) also listens on the network's gateway address and lets
its subnet in (``pg_hba.conf``), so pods reach it as an external database (``external_dsn()``).  Such
an instance is named ``postgres-<network>``, so its data and log never mix with the loopback one's.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from testbed.core import (
    Component,
    ComponentError,
    MissingTool,
    Run,
    free_port,
    pid_alive,
    register,
    register_tool,
)
from testbed.docker_network import DockerNetwork

HOW = "install Debian's PostgreSQL: apt-get install -y postgresql (initdb lives in /usr/lib/postgresql/*/bin)"


def pg_bindir() -> Path:
    """The bin directory holding initdb and postgres (newest installed major version)."""
    override = os.environ.get("TESTBED_PG_BINDIR")
    if override:
        cands = [override]
    else:
        cands = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
        cands.reverse()
        which = shutil.which("initdb")
        if which:
            cands.append(str(Path(which).parent))
    for cand in cands:
        if (Path(cand) / "initdb").is_file() and (Path(cand) / "postgres").is_file():
            return Path(cand)
    raise MissingTool("initdb/postgres", HOW)


def ensure_tool() -> Path:
    return pg_bindir()


register_tool("postgres", ensure_tool)


def _run_as() -> str | None:
    """PostgreSQL cannot run as root; use the package's system user then."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise MissingTool("postgres system user", HOW) from exc
    return "postgres"


def _remove_abandoned_datadirs() -> None:
    """Data directories of pytest runs that died without tearing down."""
    for path in Path(tempfile.gettempdir()).glob("testbed-pg-pytest-*-*"):
        pid = path.name.split("-")[3]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


@register("postgres", default=True, order=10)
class Postgres(Component):
    name = "postgres"
    start_timeout = 60.0
    stop_signal = signal.SIGINT  # "fast" shutdown: do not wait for clients to disconnect

    user = "todo"

    def __init__(self, run: Run | None = None, external: DockerNetwork | None = None) -> None:
        super().__init__(run)
        self.host = "127.0.0.1"
        self.port = 0
        self.password = secrets.token_urlsafe(18)
        self.datadir: Path | None = None
        self.external = external
        if external is not None:
            self.name = f"{type(self).name}-{external.name}"  # its own data directory and log

    @property
    def external_host(self) -> str:
        """The gateway address of the Docker network it also listens on (see the module docstring)."""
        if self.external is None:
            raise ComponentError("this PostgreSQL listens on loopback only; start it with external=")
        return self.external.gateway

    # -- connection facts -----------------------------------------------------------------------
    def dsn(self, db: str = "postgres") -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{db}"

    def external_dsn(self, db: str = "postgres") -> str:
        """The DSN for clients on the Docker network (a kind cluster's pods)."""
        return f"postgresql://{self.user}:{self.password}@{self.external_host}:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        """Create (or re-create, empty) database ``name`` and return its DSN."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=10) as conn:
            ident = sql.Identifier(name)
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
        return self.dsn(name)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        bindir = pg_bindir()
        as_user = _run_as()
        if self.datadir is None or not (self.datadir / "PG_VERSION").exists():
            self._initdb(bindir, as_user)
        if not self.port:
            self.port = free_port()
        listen = [self.host]
        if self.external is not None:
            listen.append(self.external.gateway)
            self._allow_subnet(self.external.subnet)
        self.spawn(
            [
                bindir / "postgres",
                "-D", self.datadir,
                "-c", f"port={self.port}",
                "-c", f"listen_addresses={','.join(listen)}",
                "-c", f"unix_socket_directories={self.datadir}",
                "-c", "fsync=off",
                "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off",
                "-c", "max_connections=200",
                "-c", "shared_buffers=64MB",
                "-c", "logging_collector=off",
            ],
            user=as_user,
        )  # fmt: skip
        self.wait_healthy()
        self.started()

    def _allow_subnet(self, subnet: str) -> None:
        """Let clients of ``subnet`` in with a password (initdb allows only loopback over TCP)."""
        assert self.datadir is not None
        hba = self.datadir / "pg_hba.conf"
        line = f"host all all {subnet} scram-sha-256"
        if line not in hba.read_text().splitlines():
            with open(hba, "a") as handle:
                handle.write(f"# clients on the test bed's Docker network\n{line}\n")

    def _initdb(self, bindir: Path, as_user: str | None) -> None:
        _remove_abandoned_datadirs()
        # a temporary directory rather than the repo: the postgres user may not reach the repo
        base = Path(tempfile.mkdtemp(prefix=f"testbed-pg-{self.run.name}-"))
        datadir = base / "data"
        pwfile = base / "pw"
        pwfile.write_text(self.password + "\n")
        if as_user:
            ent = pwd.getpwnam(as_user)
            for path in (base, pwfile):
                os.chown(path, ent.pw_uid, ent.pw_gid)
        argv = [
            str(bindir / "initdb"),
            "-D", str(datadir),
            "--username", self.user,
            "--pwfile", str(pwfile),
            "--auth-host=scram-sha-256",
            "--auth-local=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]  # fmt: skip
        with open(self.log_path("-initdb"), "wb") as log:
            result = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, user=as_user, check=False)
        pwfile.unlink()
        if result.returncode != 0:
            raise ComponentError(f"initdb failed (code {result.returncode}); see {self.log_path('-initdb')}")
        self.datadir = datadir

    def stop(self) -> None:
        super().stop()

    def destroy(self) -> None:
        """Stop and remove the data directory."""
        self.stop()
        if self.datadir is not None:
            shutil.rmtree(self.datadir.parent, ignore_errors=True)

    def is_healthy(self) -> bool:
        import psycopg

        dsns = [self.dsn()] + ([self.external_dsn()] if self.external is not None else [])
        for dsn in dsns:
            with psycopg.connect(dsn, connect_timeout=3) as conn:
                if conn.execute("SELECT 1").fetchone() != (1,):
                    return False
        return True

    def info(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dsn": self.dsn(),
            "datadir": str(self.datadir) if self.datadir else None,
            "external": dataclasses.asdict(self.external) if self.external else None,
        }

    def env(self) -> dict[str, str]:
        return {
            "TESTBED_PG_HOST": self.host,
            "TESTBED_PG_PORT": str(self.port),
            "TESTBED_PG_USER": self.user,
            "TESTBED_PG_PASSWORD": self.password,
            "TESTBED_PG_DSN": self.dsn(),
        } | (
            {"TESTBED_PG_EXTERNAL_HOST": self.external_host, "TESTBED_PG_EXTERNAL_DSN": self.external_dsn()}
            if self.external is not None
            else {}
        )

    @classmethod
    def restore(cls, run: Run, info: dict[str, Any]) -> Postgres:
        external = info.get("external")
        comp = cls(run, external=DockerNetwork(**external) if external else None)
        comp.host, comp.port, comp.password = info["host"], int(info["port"]), info["password"]
        comp.datadir = Path(info["datadir"]) if info.get("datadir") else None
        return comp
