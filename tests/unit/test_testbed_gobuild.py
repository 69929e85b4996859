"""Pure logic of the test bed's Go builds and daprd helpers (no build, no process)."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import pytest
import yaml
from testbed import dapr_images, gobuild
from testbed.core import Run
from testbed.daprd import Daprd, kafka_pubsub_component


@pytest.mark.parametrize("tool", sorted(gobuild.TOOLS))
def test_wrapper_module_pins_the_declared_version(tool):
    spec = gobuild.TOOLS[tool]
    gomod = (spec.wrapper / "go.mod").read_text()
    required = re.search(rf"^\s*(?:require\s+)?{re.escape(spec.module)} (v\S+)", gomod, re.M)
    assert required, f"{spec.wrapper}/go.mod does not require {spec.module}"
    assert required.group(1).lstrip("v") == spec.upstream_version.lstrip("v")
    assert (spec.wrapper / "go.sum").is_file(), "a committed go.sum pins every dependency"
    own = re.search(r"^module (\S+)$", gomod, re.M).group(1)
    for pkg in spec.packages:
        if pkg == own:  # the wrapper's own main package (CoreDNS with a subset of its plugins)
            assert (spec.wrapper / "main.go").is_file()
            continue
        assert re.search(rf"^\s*(?:tool\s+)?{re.escape(pkg)}$", gomod, re.M), f"{pkg} is not a tool"


def test_kubernetes_build_stamps_the_version():
    spec = gobuild.TOOLS["kubernetes"]
    cmd = gobuild.build_command(spec, Path("/out"))
    ldflags = cmd[cmd.index("-ldflags") + 1]
    assert f"k8s.io/component-base/version.gitVersion={gobuild.KUBERNETES_VERSION}" in ldflags
    assert "version.gitMinor=" + gobuild.KUBERNETES_VERSION.split(".")[1] in ldflags
    assert "-trimpath" in cmd and ldflags.startswith("-s -w")
    # several binaries: one go build with an output directory
    assert cmd[cmd.index("-o") + 1] == "/out/"
    assert spec.binaries == ["kube-apiserver", "kube-controller-manager", "kube-scheduler"]


def test_daprd_build_uses_the_stable_components_tag():
    spec = gobuild.TOOLS[gobuild.DAPR_TOOL]
    cmd = gobuild.build_command(spec, Path("/out"))
    assert cmd[cmd.index("-tags") + 1] == "stablecomponents"
    assert "daprd" in spec.binaries


def test_dapr_is_built_once_for_the_host_sidecar_and_the_images():
    """A cold machine compiles and links github.com/dapr/dapr in one build: the host daprd is the
    daprd of the build the images are made from."""
    dapr_builds = [name for name, tool in gobuild.TOOLS.items() if tool.module == "github.com/dapr/dapr"]
    assert dapr_builds == [gobuild.DAPR_TOOL]
    assert dapr_images.TOOL == gobuild.DAPR_TOOL
    assert Daprd(Run("unit-test"), "a", None, Path("/r")).info()["binary"] == str(
        gobuild.TOOLS[gobuild.DAPR_TOOL].bin_dir / "daprd"
    )


def test_coredns_is_built_from_the_wrappers_main_package_and_keyed_by_it(tmp_path):
    """The plugin choice lives in gomod/coredns/main.go; a change to it must build anew."""
    spec = gobuild.TOOLS["coredns"]
    assert spec.binaries == ["coredns"]
    copy = tmp_path / "coredns"
    shutil.copytree(spec.wrapper, copy)
    moved = dataclasses.replace(spec, module_dir=str(copy))
    assert moved.cache_version == spec.cache_version
    main = copy / "main.go"
    main.write_text(main.read_text().replace('\t_ "github.com/coredns/coredns/plugin/loop"\n', ""))
    assert moved.cache_version != spec.cache_version


def test_a_build_setting_change_gets_its_own_cache_directory():
    """The cache is keyed by content: binaries built with other tags or ldflags under the same
    version are never reused."""
    spec = gobuild.TOOLS["prometheus"]
    other_tags = dataclasses.replace(spec, tags=("netgo",))
    other_ldflags = dataclasses.replace(spec, ldflags=())
    dirs = {spec.bin_dir, other_tags.bin_dir, other_ldflags.bin_dir}
    assert len(dirs) == 3, dirs
    assert spec.bin_dir == dataclasses.replace(spec).bin_dir, "the same build must keep its key"
    assert spec.bin_dir.parent.name.startswith(f"prometheus-{spec.version}-")


def test_prometheus_keeps_only_the_service_discovery_the_operator_uses():
    tags = gobuild.TOOLS["prometheus"].tags
    assert {"remove_all_sd", "enable_kubernetes_sd"} <= set(tags)


def test_etcd_binary_is_named_etcd():
    assert gobuild.TOOLS["etcd"].binaries == ["etcd"]


def test_go_env_forces_readonly_modules_and_no_cgo(monkeypatch):
    monkeypatch.setenv("GOFLAGS", "-mod=mod -buildvcs=false")
    env = gobuild.go_env()
    assert env["CGO_ENABLED"] == "0"
    assert env["GOFLAGS"].split() == ["-buildvcs=false", "-mod=readonly"]


def test_kafka_component_plaintext():
    doc = yaml.safe_load(kafka_pubsub_component("127.0.0.1:9092", consumer_group="audit"))
    meta = {m["name"]: m["value"] for m in doc["spec"]["metadata"]}
    assert doc["spec"]["type"] == "pubsub.kafka"
    assert meta["authType"] == "none" and meta["disableTls"] == "true"
    assert meta["version"] == "3.6.0"  # Kafka 4 dropped the protocol versions of Dapr's default
    assert meta["clientID"] == "audit"


def test_kafka_component_sasl_ssl_quotes_values_and_keeps_the_pem():
    pem = "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n"
    text = kafka_pubsub_component(
        "h:1",
        consumer_group="g",
        sasl={"mechanism": "PLAIN", "username": "u", "password": 'p"w: #x'},
        ca_pem=pem,
    )
    meta = {m["name"]: m["value"] for m in yaml.safe_load(text)["spec"]["metadata"]}
    assert meta["saslPassword"] == 'p"w: #x'
    assert meta["authType"] == "password" and meta["saslMechanism"] == "PLAIN"
    assert meta["disableTls"] == "false" and meta["caCert"] == pem


def test_daprd_command_line(tmp_path):
    sidecar = Daprd(Run("unit-test"), "audit", 8001, tmp_path, max_request_size_mb=8)
    argv = sidecar.argv("daprd")
    opts = dict(zip(argv[1::2], argv[2::2], strict=False))
    assert opts["--mode"] == "standalone" and opts["--app-id"] == "audit"
    assert opts["--app-port"] == "8001" and opts["--resources-path"] == str(tmp_path)
    assert opts["--dapr-http-port"] == str(sidecar.http_port)
    assert opts["--metrics-port"] == str(sidecar.metrics_port)
    assert "--enable-app-health-check=false" in argv
    assert argv[argv.index("--dapr-http-max-request-size") + 1] == "8"
    assert len({sidecar.http_port, sidecar.grpc_port, sidecar.metrics_port, sidecar.internal_grpc_port}) == 4


def test_daprd_tokens_come_from_options_not_the_callers_shell(monkeypatch, tmp_path):
    monkeypatch.setenv("DAPR_API_TOKEN", "leaked")
    monkeypatch.setenv("APP_API_TOKEN", "leaked")
    plain = Daprd(Run("unit-test"), "a", None, tmp_path).process_env()
    assert "DAPR_API_TOKEN" not in plain and "APP_API_TOKEN" not in plain
    env = Daprd(Run("unit-test"), "a", None, tmp_path, api_token="t1", app_api_token="t2").process_env()
    assert env["DAPR_API_TOKEN"] == "t1" and env["APP_API_TOKEN"] == "t2"
