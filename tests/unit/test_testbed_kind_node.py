"""The kind node image's recipe (tests/testbed/kind_node.py) without Docker: what kubeadm asks for,
and the settings this VM needs, as staged into the node's file tree."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from testbed import kind_node
from testbed.core import ComponentError
from testbed.gobuild import COREDNS_VERSION, KUBEADM_ETCD_VERSION


def _kubeadm_constant(name: str) -> str:
    source = kind_node.kubernetes_module_dir() / "cmd/kubeadm/app/constants/constants.go"
    found = re.search(rf'^\s*{name}\s*=\s*"([^"]+)"', source.read_text(), re.M)
    assert found, f"{name} not in {source}"
    return found.group(1)


def test_images_are_tagged_as_kubeadm_asks():
    assert _kubeadm_constant("DefaultEtcdVersion") == kind_node.ETCD_IMAGE_TAG
    assert kind_node.ETCD_IMAGE_TAG.startswith(KUBEADM_ETCD_VERSION.lstrip("v") + "-")
    assert _kubeadm_constant("CoreDNSVersion") == COREDNS_VERSION
    assert _kubeadm_constant("PauseVersion") == kind_node.PAUSE_VERSION
    refs = {image.ref for image in kind_node.COMPONENT_IMAGES}
    assert f"registry.k8s.io/etcd:{kind_node.ETCD_IMAGE_TAG}" in refs
    assert f"registry.k8s.io/coredns/coredns:{COREDNS_VERSION}" in refs
    assert f"registry.k8s.io/pause:{kind_node.PAUSE_VERSION}" in refs


def test_staged_node_carries_the_settings_this_vm_needs(tmp_path, monkeypatch):
    monkeypatch.setattr(kind_node, "NODE_BINARIES", ())  # no builds in a unit test
    kind_node._stage_node_files(tmp_path)
    config = (tmp_path / "etc/containerd/config.toml").read_text()
    assert re.search(r"^\s*restrict_oom_score_adj = true\b", config, re.M)
    assert re.search(rf'^\s*sandbox_image = "registry.k8s.io/pause:{kind_node.PAUSE_VERSION}"', config, re.M)
    assert f'conf_template = "{kind_node.CNI_TEMPLATE_PATH}"' in config
    assert (tmp_path / kind_node.CNI_TEMPLATE_PATH.lstrip("/")).read_text() == kind_node.CNI_TEMPLATE
    # Pods reach addresses outside the cluster (the test bed's PostgreSQL and Kafka) only masqueraded.
    cni = json.loads(kind_node.CNI_TEMPLATE.replace("{{.PodCIDR}}", "10.244.0.0/24"))
    assert cni["plugins"][0]["ipMasq"] is True
    assert "--fail-cgroupv1=false" in (tmp_path / "etc/default/kubelet").read_text()
    dropin = tmp_path / "etc/systemd/system/kubelet.service.d/20-testbed-cgroup-v1.conf"
    assert "kubelet.slice" in dropin.read_text()
    assert (tmp_path / "kind/version").read_text() == kind_node.KUBERNETES_VERSION
    manifest = (tmp_path / "kind/manifests/default-cni.yaml").read_text()
    # kind templates the file only when it says so (its installcni action), giving the pod subnet
    assert "would you kindly template this file" in manifest
    documents = list(yaml.safe_load_all(manifest.replace("{{ .PodSubnet }}", "10.244.0.0/16")))
    assert {d["metadata"]["namespace"] for d in documents if "namespace" in d["metadata"]} == {"kube-system"}
    daemonset = next(d for d in documents if d["kind"] == "DaemonSet")
    netpol, rules = daemonset["spec"]["template"]["spec"]["containers"]
    assert netpol["image"] == kind_node.NETPOL_IMAGE and "--fail-open" in netpol["args"]
    assert f"--nfqueue-id={kind_node.NETPOL_QUEUE}" in netpol["args"]
    assert rules["command"][-1] == kind_node.NFQUEUE_RULES
    assert {"name": "POD_SUBNET", "value": "10.244.0.0/16"} in rules["env"]
    assert kind_node.NETPOL_IMAGE in kind_node.preloaded_refs()
    assert (tmp_path / "usr/local/bin/entrypoint").stat().st_mode & 0o111


def test_a_containerd_config_without_the_setting_is_refused():
    with pytest.raises(ComponentError, match="no restrict_oom_score_adj setting"):
        kind_node._replace_setting("version = 2\n", "restrict_oom_score_adj", "true")


def test_component_images_name_their_program():
    for image in kind_node.COMPONENT_IMAGES:
        repository = image.ref.rsplit(":", 1)[0].rsplit("/", 1)[-1]
        assert repository == image.binary, image
        assert f'ENTRYPOINT ["{image.path}"]' in image.dockerfile("scratch")
