"""PostgreSQL and Kafka of the test bed, opted in to a Docker network of the test bed's own engine, are
reached from a container on that network at the network's gateway address: what a kind cluster's pods
use as the external database and Kafka (the cloud inventories' managed-services path).

The client container is the Debian ``python3`` base (testbed.images) with the virtualenv's psycopg
and confluent-kafka mounted read-only (same CPython minor version).
"""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
from pathlib import Path

import pytest
from testbed.core import Run
from testbed.docker_network import ensure_network
from testbed.images import docker_cli, ensure_base_image
from testbed.kafka import LISTENERS, Kafka
from testbed.postgres import Postgres

pytestmark = pytest.mark.testbed

CLIENT = """
import json, os, psycopg
from confluent_kafka.admin import AdminClient

result = {}
with psycopg.connect(os.environ["PG_DSN"], connect_timeout=10) as conn:
    result["select_1"] = conn.execute("SELECT 1").fetchone()[0]
for listener, conf in json.loads(os.environ["KAFKA_CONFIGS"]).items():
    metadata = AdminClient(conf).list_topics(timeout=30)
    result[listener] = sorted(f"{b.host}:{b.port}" for b in metadata.brokers.values())
print(json.dumps(result))
"""


def docker(host: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [docker_cli(), *args],
        env=os.environ | {"DOCKER_HOST": host} | (env or {}),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, f"docker {args[0]}: {done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def network(docker_engine):
    net = ensure_network(docker_engine.host, f"testbed-external-{os.getpid()}")
    yield net
    subprocess.run(
        [docker_cli(), "network", "rm", net.name],
        env=os.environ | {"DOCKER_HOST": docker_engine.host},
        capture_output=True,
        check=False,
    )


@pytest.fixture(scope="module")
def external_pg(testbed_run, network):
    comp = Postgres(testbed_run, external=network)
    comp.start()
    yield comp
    comp.destroy()


@pytest.fixture(scope="module")
def external_kafka(testbed_run, network):
    comp = Kafka(testbed_run, external=network)
    comp.start()
    yield comp
    comp.destroy()


def test_network_address_comes_from_docker(docker_engine, network):
    (info,) = json.loads(docker(docker_engine.host, "network", "inspect", network.name).stdout)
    assert {"Subnet": network.subnet, "Gateway": network.gateway}.items() <= info["IPAM"]["Config"][0].items()


def test_a_container_on_the_network_reaches_postgres_and_kafka(
    docker_engine, network, external_pg, external_kafka
):
    base = ensure_base_image(docker_engine.host, "python3")
    site = Path(sysconfig.get_paths()["purelib"])
    ca = Path(external_kafka.ca_file)
    configs = {}
    for listener in LISTENERS:
        conf = external_kafka.external_client_config(listener)
        if "ssl.ca.location" in conf:
            conf["ssl.ca.location"] = "/kafka-ca.pem"
        configs[listener] = conf
    done = docker(
        docker_engine.host,
        "run", "--rm", "--network", network.name, "--read-only", "--cap-drop", "ALL", "--user", "65534:65534",
        "-v", f"{site}:/site:ro", "-v", f"{ca}:/kafka-ca.pem:ro",
        # passed by name: the values (passwords) stay out of the command line
        "-e", "PYTHONPATH=/site", "-e", "PG_DSN", "-e", "KAFKA_CONFIGS",
        base, "python3", "-c", CLIENT,
        env={"PG_DSN": external_pg.external_dsn(), "KAFKA_CONFIGS": json.dumps(configs)},
    )  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["select_1"] == 1
    for listener in LISTENERS:
        # the broker advertises its gateway address on the external listeners
        assert result[listener] == [external_kafka.external_bootstrap(listener)], listener
    assert external_pg.external_host == network.gateway
    settings = external_kafka.kafka_external_settings("sasl_ssl")
    assert settings["bootstrap_servers"] == [external_kafka.external_bootstrap("sasl_ssl")]
    assert (settings["security_protocol"], settings["sasl_mechanism"]) == ("SASL_SSL", "PLAIN")
    assert settings["tls_ca_cert"].startswith("-----BEGIN CERTIFICATE-----")


def _listeners(comp: Kafka) -> dict[str, str]:
    props = dict(line.split("=", 1) for line in comp._write_config().read_text().splitlines() if "=" in line)
    return {key: props[key] for key in ("listeners", "advertised.listeners")}


def test_loopback_only_stays_the_default(testbed_run, network):
    """Without ``external`` every listener is on loopback; with it, the gateway twins are added and the
    controller stays on loopback (configuration only, no broker started; a run of its own, so the
    files never touch a running broker's)."""
    run = Run(f"{testbed_run.name}-config")
    try:
        default = Kafka(run)
        default.ports = {name: 1 for name in (*LISTENERS, "controller")}
        for value in _listeners(default).values():
            assert {address.split("//")[1].split(":")[0] for address in value.split(",")} == {"127.0.0.1"}
        opted_in = Kafka(run, external=network)
        opted_in.ports, opted_in.external_ports = dict(default.ports), {name: 2 for name in LISTENERS}
        for value in _listeners(opted_in).values():
            hosts = {
                address.split("://")[0]: address.split("//")[1].split(":")[0] for address in value.split(",")
            }
            loopback = dict.fromkeys(("PLAINTEXT", "SCRAM", "SASLSSL", "CONTROLLER"), "127.0.0.1")
            assert hosts == loopback | dict.fromkeys(("EXTPLAIN", "EXTSCRAM", "EXTSASLSSL"), network.gateway)
    finally:
        run.remove_data()
