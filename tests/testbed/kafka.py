"""Apache Kafka 4.x in KRaft mode from Maven Central jars, one combined broker/controller on Java 17+.

Three client listeners on free loopback ports:

* ``plaintext`` - PLAINTEXT, no authentication;
* ``scram``     - SASL_PLAINTEXT with SCRAM-SHA-512 (the user is created when the storage is formatted);
* ``sasl_ssl``  - SASL_SSL with PLAIN over TLS; the server certificate is signed by a CA the test bed
  generates (``ca_file``), SANs 127.0.0.1 and localhost - like OCI Streaming / Azure Event Hubs.

The jars come from ``tests/testbed/kafka/pom.xml`` via ``mvn dependency:copy-dependencies`` into the
versioned cache.  ``stop()``/``start()``/``restart()`` keep ports, users and data.

Opt-in, for a kind cluster in the test bed's Docker: ``Kafka(run, external=net)`` (a
:class:`testbed.docker_network.DockerNetwork`) adds the same three listeners on the network's gateway
address, each advertising that address (the certificate names it too), so pods reach the broker as
an external Kafka: ``external_bootstrap(listener)``, ``external_client_config(listener)``.  Such an
instance is named ``kafka-<network>``, so its data and log never mix with the loopback one's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import ipaddress
import os
import re
import secrets
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

from testbed.core import (
    Component,
    ComponentError,
    MissingTool,
    Run,
    ensure_cached,
    file_lock,
    free_port,
    log,
    port_open,
    register,
    register_tool,
    state_dir,
)
from testbed.docker_network import DockerNetwork

#: must match <kafka.version> in tests/testbed/kafka/pom.xml
KAFKA_VERSION = "4.2.2"
POM = Path(__file__).with_name("kafka") / "pom.xml"
JAVA_HOW = "install Java 17+: apt-get install -y openjdk-17-jre-headless (or set JAVA_HOME)"
MVN_HOW = "install Maven (needs Maven Central): apt-get install -y maven"
LISTENERS = ("plaintext", "scram", "sasl_ssl")
#: Kafka's listener names of the loopback listeners, and of their twins on a Docker network's gateway
LISTENER_NAMES = {"plaintext": "PLAINTEXT", "scram": "SCRAM", "sasl_ssl": "SASLSSL"}
EXTERNAL_LISTENER_NAMES = {"plaintext": "EXTPLAIN", "scram": "EXTSCRAM", "sasl_ssl": "EXTSASLSSL"}
SECURITY_PROTOCOLS = {"plaintext": "PLAINTEXT", "scram": "SASL_PLAINTEXT", "sasl_ssl": "SASL_SSL"}


def java_bin() -> str:
    cands = []
    if os.environ.get("JAVA_HOME"):
        cands.append(Path(os.environ["JAVA_HOME"]) / "bin" / "java")
    found = shutil.which("java")
    if found:
        cands.append(Path(found))
    for cand in cands:
        if not cand.is_file():
            continue
        out = subprocess.run([str(cand), "-version"], capture_output=True, text=True, check=False).stderr
        match = re.search(r'version "(\d+)', out)
        if match and int(match.group(1)) >= 17:
            return str(cand)
    raise MissingTool("java (17 or newer)", JAVA_HOW)


def _pom_version() -> str:
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    if not match or match.group(1) != KAFKA_VERSION:
        raise ComponentError(f"{POM}: kafka.version must equal KAFKA_VERSION={KAFKA_VERSION}")
    return KAFKA_VERSION


def tool_version() -> str:
    """Kafka version plus a digest of the pom, so editing the pom gives a fresh cache entry."""
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:8]
    return f"{_pom_version()}-{digest}"


def ensure_tool() -> Path:
    """The cache dir holding lib/*.jar of the pinned Kafka (downloaded once with Maven)."""

    def build(tmp: Path) -> None:
        mvn = shutil.which("mvn")
        if not mvn:
            raise MissingTool("mvn", MVN_HOW)
        java_bin()
        shutil.copy(POM, tmp / "pom.xml")
        result = subprocess.run(
            [mvn, "-q", "-B", "-f", str(tmp / "pom.xml"), "dependency:copy-dependencies",
             "-DincludeScope=runtime", f"-DoutputDirectory={tmp / 'lib'}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        log_file = state_dir() / "logs" / "mvn-kafka.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log_file.write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
            raise ComponentError(
                f"mvn could not fetch Kafka {KAFKA_VERSION} from Maven Central; see {log_file}:\n{tail}"
            )

    return ensure_cached("kafka", tool_version(), build)


def ensure_tool_and_archives() -> Path:
    home = ensure_tool()
    ensure_class_archives(home, java_bin())
    return home


register_tool("kafka", lambda: ensure_tool_and_archives())


def class_archive(home: Path, java: str, kind: str) -> Path:
    """Path of the CDS archive of ``kind`` ("format" or "broker") for this JDK (archives are
    JDK-build specific)."""
    ident = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    digest = hashlib.sha256(f"{java}\n{ident}".encode()).hexdigest()[:10]
    return home / f"cds-{kind}-{digest}.jsa"


def ensure_class_archives(home: Path, java: str) -> None:
    """Make the class-data-sharing archives once: a throwaway broker runs (format, start on all
    three listeners, clean stop) with -XX:ArchiveClassesAtExit.  Failure only costs speed."""
    wanted = [class_archive(home, java, kind) for kind in ("format", "broker")]
    if all(a.exists() for a in wanted) or os.environ.get("TESTBED_KAFKA_CDS") == "0":
        return
    with file_lock(home.parent / f".{home.name}.cds.lock"):
        if all(a.exists() for a in wanted):
            return
        trainer = Kafka(Run(f"kafka-cds-{os.getpid()}"), heap="512m")
        trainer._training = True
        try:
            trainer.start()
            for proc in trainer.procs:  # the archive is written while the JVM exits: be patient
                proc.stop(timeout=180)
            for archive in wanted:
                tmp = archive.with_suffix(f".{os.getpid()}.tmp")
                if tmp.exists() and tmp.stat().st_size > 0:
                    tmp.replace(archive)
        except (ComponentError, OSError) as exc:
            log(f"kafka: could not build class-data-sharing archives ({exc}); starting without them")
        finally:
            trainer.stop()
            trainer.run.remove_data()
            for tmp in home.glob(f"cds-*.{os.getpid()}.tmp"):
                tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------
# Certificates


def make_ca_and_server_cert(directory: Path, extra_ips: tuple[str, ...] = ()) -> dict[str, Path]:
    """A CA and a server certificate (SAN 127.0.0.1, localhost and ``extra_ips``) as PEM files in
    ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "todo-platform test bed CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost")]
                + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", *extra_ips)]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    files = {"ca": directory / "ca.pem", "keystore": directory / "server-keystore.pem"}
    files["ca"].write_bytes(ca_cert.public_bytes(pem))
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    files["keystore"].write_bytes(key_pem + cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    files["keystore"].chmod(0o600)
    return files


# --------------------------------------------------------------------------------------------------


LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = info
logger.apache.name = org.apache.kafka
logger.apache.level = warn
logger.controller.name = kafka.controller
logger.controller.level = warn
"""


@register("kafka", default=True, order=20)
class Kafka(Component):
    name = "kafka"
    start_timeout = 120.0

    scram_user = "todo-scram"
    plain_user = "todo-plain"

    def __init__(
        self, run: Run | None = None, heap: str = "768m", external: DockerNetwork | None = None
    ) -> None:
        super().__init__(run)
        self.host = "127.0.0.1"
        self.heap = heap
        self.ports: dict[str, int] = {}
        self.external = external
        #: listener -> port on the external (gateway) address
        self.external_ports: dict[str, int] = {}
        if external is not None:
            self.name = f"{type(self).name}-{external.name}"  # its own data directory and log
        self.scram_password = secrets.token_urlsafe(18)
        self.plain_password = secrets.token_urlsafe(18)
        self.cluster_id = ""

    # -- connection facts -----------------------------------------------------------------------
    @property
    def plaintext(self) -> str:
        return f"{self.host}:{self.ports['plaintext']}"

    @property
    def scram(self) -> str:
        return f"{self.host}:{self.ports['scram']}"

    @property
    def sasl_ssl(self) -> str:
        return f"{self.host}:{self.ports['sasl_ssl']}"

    @property
    def ca_file(self) -> str:
        return str(self.workdir / "certs" / "ca.pem")

    def bootstrap(self, listener: str) -> str:
        if listener not in LISTENERS:
            raise ValueError(f"unknown Kafka listener {listener!r}; expected one of {LISTENERS}")
        return f"{self.host}:{self.ports[listener]}"

    def external_bootstrap(self, listener: str) -> str:
        """``gateway:port`` of ``listener``'s twin on the Docker network (see the module docstring)."""
        if self.external is None:
            raise ComponentError("this Kafka listens on loopback only; start it with external=")
        if listener not in LISTENERS:
            raise ValueError(f"unknown Kafka listener {listener!r}; expected one of {LISTENERS}")
        return f"{self.external.gateway}:{self.external_ports[listener]}"

    def external_client_config(self, listener: str = "plaintext") -> dict[str, str]:
        """librdkafka settings for ``listener``'s twin on the Docker network."""
        return self.client_config(listener) | {"bootstrap.servers": self.external_bootstrap(listener)}

    def kafka_external_settings(self, listener: str = "scram") -> dict[str, Any]:
        """The kafka role's ``kafka_external`` (``kafka_provider: external``) for ``listener``'s twin on
        the Docker network: what a kind cluster's deploy uses to reach this broker."""
        conf = self.external_client_config(listener)
        settings: dict[str, Any] = {
            "bootstrap_servers": [conf["bootstrap.servers"]],
            "security_protocol": conf.get("security.protocol", "PLAINTEXT"),
        }
        if "sasl.mechanism" in conf:
            settings |= {
                "sasl_mechanism": conf["sasl.mechanism"],
                "sasl_username": conf["sasl.username"],
                "sasl_password": conf["sasl.password"],
            }
        if "ssl.ca.location" in conf:
            settings["tls_ca_cert"] = Path(conf["ssl.ca.location"]).read_text()
        return settings

    def client_config(self, listener: str = "plaintext") -> dict[str, str]:
        """librdkafka / confluent-kafka settings for ``listener``."""
        conf = {"bootstrap.servers": self.bootstrap(listener)}
        if listener == "scram":
            conf |= {
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": self.scram_user,
                "sasl.password": self.scram_password,
            }
        elif listener == "sasl_ssl":
            conf |= {
                "security.protocol": "SASL_SSL",
                "sasl.mechanism": "PLAIN",
                "sasl.username": self.plain_user,
                "sasl.password": self.plain_password,
                "ssl.ca.location": self.ca_file,
            }
        return conf

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    def start(self) -> None:
        home = ensure_tool()
        java = java_bin()
        if not self._training:
            ensure_class_archives(home, java)
        if not self.ports:
            self.ports = {n: free_port() for n in (*LISTENERS, "controller")}
        if self.external is not None and not self.external_ports:
            self.external_ports = {n: free_port() for n in LISTENERS}
        props = self._write_config()
        # C1 only and the serial collector: a test broker wants a quick start on 2 cores, not peak
        # throughput.  Class-data-sharing archives (made once per JDK, see ensure_class_archives)
        # cut the JVM's class loading.
        jvm = [java, "-Xms256m", f"-Xmx{self.heap}", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
               "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
               "-cp", str(home / "lib" / "*")]  # fmt: skip
        if not self.cluster_id and self.datadir.exists():
            # data of an earlier instance (e.g. `up` after a crash): its SCRAM user has another password
            shutil.rmtree(self.datadir)
        if not (self.datadir / "meta.properties").exists():
            self._format([*jvm, *self._cds_flag(home, java, "format")], props)
        self.spawn([*jvm, *self._cds_flag(home, java, "broker"), "kafka.Kafka", str(props)])
        self.wait_healthy()
        self.started()

    _training = False

    def _cds_flag(self, home: Path, java: str, kind: str) -> list[str]:
        archive = class_archive(home, java, kind)
        if self._training:
            return [f"-XX:ArchiveClassesAtExit={archive.with_suffix(f'.{os.getpid()}.tmp')}"]
        return [f"-XX:SharedArchiveFile={archive}"] if archive.exists() else []

    def _format(self, jvm: list[str], props: Path) -> None:
        self.cluster_id = self.cluster_id or _random_cluster_id()
        scram = f"SCRAM-SHA-512=[name={self.scram_user},password={self.scram_password}]"
        argv = [*jvm, "kafka.tools.StorageTool", "format", "--standalone", "-t", self.cluster_id,
                "-c", str(props), "--add-scram", scram]  # fmt: skip
        with open(self.log_path("-format"), "wb") as log:
            result = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0:
            raise ComponentError(
                f"kafka storage format failed (code {result.returncode}); see {self.log_path('-format')}"
            )

    def _write_config(self) -> Path:
        certs = self.workdir / "certs"
        if not (certs / "server-keystore.pem").exists():
            make_ca_and_server_cert(certs, (self.external.gateway,) if self.external else ())
        (self.workdir / "log4j2.properties").write_text(LOG4J2)
        p, h = self.ports, self.host
        plain_jaas = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'user_{self.plain_user}="{self.plain_password}";'
        )
        # (Kafka listener name, listener kind, address, port): loopback, then the gateway's twins
        endpoints = [(LISTENER_NAMES[n], n, h, p[n]) for n in LISTENERS]
        if self.external is not None:
            endpoints += [
                (EXTERNAL_LISTENER_NAMES[n], n, self.external.gateway, self.external_ports[n])
                for n in LISTENERS
            ]
        addresses = ",".join(f"{name}://{host}:{port}" for name, _, host, port in endpoints)
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{h}:{p['controller']}",
            "listeners": f"{addresses},CONTROLLER://{h}:{p['controller']}",
            "advertised.listeners": f"{addresses},CONTROLLER://{h}:{p['controller']}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": ",".join(
                ["CONTROLLER:PLAINTEXT"]
                + [f"{name}:{SECURITY_PROTOCOLS[kind]}" for name, kind, _, _ in endpoints]
            ),
        }
        for name, kind, _, _ in endpoints:
            prefix = f"listener.name.{name.lower()}"
            if kind == "scram":
                lines[f"{prefix}.sasl.enabled.mechanisms"] = "SCRAM-SHA-512"
                lines[f"{prefix}.scram-sha-512.sasl.jaas.config"] = (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                )
            elif kind == "sasl_ssl":
                lines[f"{prefix}.sasl.enabled.mechanisms"] = "PLAIN"
                lines[f"{prefix}.plain.sasl.jaas.config"] = plain_jaas
                lines[f"{prefix}.ssl.keystore.type"] = "PEM"
                lines[f"{prefix}.ssl.keystore.location"] = str(certs / "server-keystore.pem")
        lines |= {
            "log.dirs": str(self.datadir),
            "num.partitions": "3",
            "auto.create.topics.enable": "true",
            "default.replication.factor": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "3",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.flush.interval.messages": "9223372036854775807",
            "num.network.threads": "2",
            "num.io.threads": "4",
        }
        props = self.workdir / "server.properties"
        props.write_text("".join(f"{k}={_escape(v)}\n" for k, v in lines.items()))
        props.chmod(0o600)
        return props

    def is_healthy(self) -> bool:
        if not self.ports or not all(port_open(port) for port in self.ports.values()):
            return False
        from confluent_kafka.admin import AdminClient

        configs = [self.client_config(listener) for listener in LISTENERS]
        if self.external is not None:
            if not all(port_open(port, self.external.gateway) for port in self.external_ports.values()):
                return False
            configs += [self.external_client_config(listener) for listener in LISTENERS]
        for conf in configs:
            metadata = AdminClient(conf | {"log_level": "0"}).list_topics(timeout=5)
            if not metadata.brokers:
                return False
        return True

    def info(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "ports": self.ports,
            "plaintext": self.plaintext if self.ports else None,
            "scram": self.scram if self.ports else None,
            "sasl_ssl": self.sasl_ssl if self.ports else None,
            "scram_user": self.scram_user,
            "scram_password": self.scram_password,
            "plain_user": self.plain_user,
            "plain_password": self.plain_password,
            "ca_file": self.ca_file,
            "cluster_id": self.cluster_id,
            "heap": self.heap,
            "workdir": str(self.workdir),
            "version": KAFKA_VERSION,
            "external": dataclasses.asdict(self.external) if self.external else None,
            "external_ports": self.external_ports,
        }

    def env(self) -> dict[str, str]:
        return {
            "TESTBED_KAFKA_PLAINTEXT": self.plaintext,
            "TESTBED_KAFKA_SCRAM": self.scram,
            "TESTBED_KAFKA_SASL_SSL": self.sasl_ssl,
            "TESTBED_KAFKA_SCRAM_USER": self.scram_user,
            "TESTBED_KAFKA_SCRAM_PASSWORD": self.scram_password,
            "TESTBED_KAFKA_PLAIN_USER": self.plain_user,
            "TESTBED_KAFKA_PLAIN_PASSWORD": self.plain_password,
            "TESTBED_KAFKA_CA_FILE": self.ca_file,
        } | {
            f"TESTBED_KAFKA_EXTERNAL_{listener.upper()}": self.external_bootstrap(listener)
            for listener in (LISTENERS if self.external is not None else ())
        }

    @classmethod
    def restore(cls, run: Run, info: dict[str, Any]) -> Kafka:
        external = info.get("external")
        comp = cls(
            run, heap=info.get("heap", "768m"), external=DockerNetwork(**external) if external else None
        )
        comp.external_ports = {k: int(v) for k, v in (info.get("external_ports") or {}).items()}
        comp.host = info["host"]
        comp.ports = {k: int(v) for k, v in info["ports"].items()}
        comp.scram_password = info["scram_password"]
        comp.plain_password = info["plain_password"]
        comp.cluster_id = info.get("cluster_id", "")
        return comp

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _random_cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64. Like Kafka's own Uuid.randomUuid(), never
    one that starts with "-": the storage tool would read it as an option (one id in 64)."""
    import base64

    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _escape(value: str) -> str:
    # java.util.Properties: backslashes escape; keep values literal
    return value.replace("\\", "\\\\")
