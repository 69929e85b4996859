"""A kind node image built here: ``kindest/node:v1.36.3`` without any registry.

kind's own build (``images/base`` and ``kind build node-image``) pulls a Debian image, clones
containerd/runc/cri-tools from GitHub and pulls the control-plane images; none of that is reachable
here.  This module assembles the same image from what is:

* the root file system: the ``node`` Debian recipe of :mod:`testbed.images` (systemd, Debian's runc
  and CNI plugins, iptables, conntrack, ...);
* kind's base files (entrypoint, systemd units, containerd config, sysctl, ``/kind/bin``), read at
  build time from the kind module of the Go module cache, at the version the cluster role pins;
* containerd, ctr, the runc shim (:data:`testbed.gobuild.CONTAINERD_VERSION`), kubelet, kubeadm,
  kubectl (Kubernetes :data:`KUBERNETES_VERSION`) and crictl, built by :mod:`testbed.gobuild`;
* the images kubeadm runs, each built from its own source at the version its tag names and saved
  under the upstream name: kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy,
  etcd and CoreDNS at the versions kubeadm v1.36.3 asks for, and the pause image compiled from
  ``build/pause/linux/pause.c`` of the same Kubernetes module; preloaded into containerd's
  ``k8s.io`` namespace the way kind's build does it (``ctr images import`` in a build container,
  then ``docker commit``).

Two settings that this kind of VM needs are baked in: containerd's CRI ``restrict_oom_score_adj``
(kubelet gives sandboxes oom_score_adj -998, which needs CAP_SYS_RESOURCE) and kubelet's
``--fail-cgroupv1=false`` (kubelet >= 1.35 refuses cgroup v1 otherwise; a flag upstream keeps
undeprecated, harmless on cgroup v2).  Both live in the node image, so the product's kind cluster
configuration stays the one users run.

Networking: kind's default CNI is kindnetd, whose module the proxy does not serve.  Instead
containerd writes a ``ptp`` + ``host-local`` CNI configuration (Debian's plugins) from the node's
pod CIDR (its CRI ``conf_template``), so pods get addresses without a CNI image; routes between
nodes are not set up: clusters of one node (what the test bed runs).  NetworkPolicies are enforced
as kindnetd does it, by the engine kindnetd embeds: kube-network-policies (its v0.8.0 image of
:mod:`testbed.monitoring_images`, preloaded like kind preloads kindnetd's) runs as a DaemonSet of
``/kind/manifests/default-cni.yaml``, which kind applies at cluster creation.  It gives each new
connection of a pod a verdict from a netfilter queue; this kernel has no nftables ``queue``
expression (``CONFIG_NFT_QUEUE`` unset, no modules), so the nftables rules it writes are refused and
a second container of the same pod sends the same packets to its queue with the xtables ``NFQUEUE``
target instead (:data:`NFQUEUE_RULES`).  No storage manifest is shipped: kind then installs its
host-path ``standard`` StorageClass (nothing here needs volumes).

The result is cached as a ``docker save`` tarball in the tool cache (``kind-node-image-<key>``, the
key a hash of every input) and loaded into the test bed's Docker engine::

    from testbed.kind_node import ensure_node_image
    ref = ensure_node_image(docker_engine.host)   # "kindest/node:v1.36.3"
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from testbed import image_archive
from testbed.core import ComponentError, MissingTool, ensure_cached, file_lock, log, state_dir
from testbed.gobuild import (
    COREDNS_VERSION,
    KIND_VERSION,
    KUBEADM_ETCD_VERSION,
    KUBERNETES_VERSION,
    TOOLS,
    module_source,
)
from testbed.images import docker_cli, ensure_base_image, image_exists, recipe_key
from testbed.monitoring_images import archive_image
from testbed.monitoring_images import spec as monitoring_spec

NODE_IMAGE = f"kindest/node:{KUBERNETES_VERSION}"
#: the label on the node image that names the content key it was built from
KEY_LABEL = "todo-platform.testbed.kind-node-key"
#: kubeadm v1.36.3's pause image (cmd/kubeadm/app/constants PauseVersion; build/pause/Makefile TAG)
PAUSE_VERSION = "3.10.2"
#: kubeadm tags etcd as <version>-<revision of the image>
ETCD_IMAGE_TAG = KUBEADM_ETCD_VERSION.lstrip("v") + "-0"
#: where containerd finds the CNI configuration template (its CRI ``conf_template``)
CNI_TEMPLATE_PATH = "/etc/containerd/cni-ptp.conflist.tmpl"

# ipMasq: traffic from a pod to an address outside the pod network leaves with the node's address
# (kindnetd masquerades it on a user's kind). The host has no route back to the pod CIDR, so without
# it a pod never reaches the test bed's PostgreSQL or Kafka on the kind network's gateway.
CNI_TEMPLATE = """\
{
  "cniVersion": "1.0.0",
  "name": "kind-ptp",
  "plugins": [
    {
      "type": "ptp",
      "ipMasq": true,
      "mtu": 1500,
      "ipam": {
        "type": "host-local",
        "dataDir": "/run/cni-ipam-state",
        "routes": [{"dst": "0.0.0.0/0"}],
        "ranges": [[{"subnet": "{{.PodCIDR}}"}]]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
"""

#: NetworkPolicy enforcement: kube-network-policies, the engine kindnetd embeds (sigs.k8s.io/kind
#: images/kindnetd uses its dataplane with FailOpen and queue 101), preloaded in the node as kind
#: preloads kindnetd's image
NETPOL_IMAGE = monitoring_spec("kube-network-policies").ref
NETPOL_QUEUE = 101

#: What kube-network-policies' own nftables rules do (pkg/networkpolicy/controller.go,
#: syncNFTablesRules: a postrouting chain before source NAT that skips the node's root processes and
#: established flows and queues the rest of the pods' packets, bypassing the queue while no one listens),
#: with the xtables NFQUEUE target: this kernel refuses nftables' queue expression ("Could not process
#: rule: No such file or directory"; CONFIG_NFT_QUEUE is not set) and has xt_NFQUEUE. Every pod address
#: of the node's pod CIDR is queued (upstream queues only pods that policies select; the engine accepts
#: the others). DNS is queued here too: netpol runs with --netfilter-bug-1766-fix=false, the conntrack
#: race it works around being fixed in kernels 6.12+ (this VM runs 6.18).
NFQUEUE_RULES = r"""
set -eu
chain=KUBE-NETWORK-POLICIES
ipt() { iptables -w 5 -t mangle "$@"; }
remove() {
  while ipt -D POSTROUTING -j "$chain" 2>/dev/null; do :; done
  ipt -F "$chain" 2>/dev/null || true
  ipt -X "$chain" 2>/dev/null || true
}
remove
ipt -N "$chain"
ipt -A "$chain" -m owner --uid-owner 0 -j RETURN
ipt -A "$chain" -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
ipt -A "$chain" -s "$POD_SUBNET" -j NFQUEUE --queue-num "$QUEUE" --queue-bypass
ipt -A "$chain" -d "$POD_SUBNET" -j NFQUEUE --queue-num "$QUEUE" --queue-bypass
ipt -A POSTROUTING -j "$chain"
echo "pod packets of $POD_SUBNET go to netfilter queue $QUEUE"
trap 'remove; exit 0' TERM INT
sleep infinity & wait $!
"""

# kind renders the file as a Go template when it says "would you kindly template this file" (its
# installcni action), giving {{ .PodSubnet }}; kindnetd's manifest gets it the same way.
DEFAULT_CNI_MANIFEST = (
    """\
# What kind applies as the default CNI of a node image built by the test bed (tests/testbed/kind_node.py).
# would you kindly template this file
# No CNI daemon runs: containerd writes a ptp + host-local configuration (Debian's CNI plugins) from
# the node's pod CIDR, from @CNI_TEMPLATE_PATH@. Pods of different nodes are not routed to each other.
# NetworkPolicies: kube-network-policies (what kindnetd embeds) gives each new connection of a pod a
# verdict; the container nfqueue-rules queues the pods' packets to it (xtables NFQUEUE: this kernel has
# no nftables queue expression).
apiVersion: v1
kind: ConfigMap
metadata:
  name: kind-node-cni
  namespace: kube-system
data:
  plugin: ptp
  ipam: host-local
  template: @CNI_TEMPLATE_PATH@
  networkPolicies: kube-network-policies
---
kind: ClusterRole
apiVersion: rbac.authorization.k8s.io/v1
metadata:
  name: kube-network-policies
rules:
  - apiGroups: [""]
    resources: [pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [networking.k8s.io]
    resources: [networkpolicies]
    verbs: [list, watch]
---
kind: ClusterRoleBinding
apiVersion: rbac.authorization.k8s.io/v1
metadata:
  name: kube-network-policies
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: kube-network-policies
subjects:
  - kind: ServiceAccount
    name: kube-network-policies
    namespace: kube-system
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: kube-network-policies
  namespace: kube-system
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: kube-network-policies
  namespace: kube-system
  labels: {tier: node, app: kube-network-policies, k8s-app: kube-network-policies}
spec:
  selector:
    matchLabels: {app: kube-network-policies}
  template:
    metadata:
      labels: {tier: node, app: kube-network-policies, k8s-app: kube-network-policies}
    spec:
      hostNetwork: true
      nodeSelector: {kubernetes.io/os: linux}
      tolerations: [{operator: Exists}]
      priorityClassName: system-node-critical
      serviceAccountName: kube-network-policies
      containers:
        - name: kube-network-policies
          image: @NETPOL_IMAGE@
          args:
            - /bin/netpol
            - --hostname-override=$(MY_NODE_NAME)
            - --v=2
            - --nfqueue-id=@NETPOL_QUEUE@
            - --fail-open
            - --netfilter-bug-1766-fix=false
          env:
            - name: MY_NODE_NAME
              valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
          volumeMounts:
            - {name: nri-plugin, mountPath: /var/run/nri}
            - {name: netns, mountPath: /var/run/netns, mountPropagation: HostToContainer}
          resources:
            requests: {cpu: 100m, memory: 50Mi}
          securityContext:
            privileged: true
        - name: nfqueue-rules
          image: registry.k8s.io/kube-proxy:@KUBERNETES_VERSION@
          command: [/bin/sh, -c, @NFQUEUE_RULES@]
          env:
            - {name: POD_SUBNET, value: "{{ .PodSubnet }}"}
            - {name: QUEUE, value: "@NETPOL_QUEUE@"}
          volumeMounts:
            - {name: xtables-lock, mountPath: /run/xtables.lock}
          resources:
            requests: {cpu: 10m, memory: 10Mi}
          securityContext:
            privileged: true
      volumes:
        - name: nri-plugin
          hostPath: {path: /var/run/nri}
        - name: netns
          hostPath: {path: /var/run/netns}
        - name: xtables-lock
          hostPath: {path: /run/xtables.lock, type: FileOrCreate}
""".replace("@CNI_TEMPLATE_PATH@", CNI_TEMPLATE_PATH)
    .replace("@NETPOL_IMAGE@", NETPOL_IMAGE)
    .replace("@NETPOL_QUEUE@", str(NETPOL_QUEUE))
    .replace("@KUBERNETES_VERSION@", KUBERNETES_VERSION)
    .replace("@NFQUEUE_RULES@", json.dumps(NFQUEUE_RULES))
)

#: On a cgroup v1 host that mounts no hugetlb, net_cls,net_prio or perf_event hierarchy (this VM), Docker
#: gives the node none either; systemd mounts them inside the node after kind's entrypoint prepared
#: kubelet's cgroup root in the others, and kubelet then refuses to start: "invalid configuration:
#: cgroup ["kubelet"] has some missing paths: /sys/fs/cgroup/hugetlb/kubelet.slice".  A kubelet drop-in
#: creates the root in every v1 hierarchy first (read-only ones are already prepared).
KUBELET_CGROUP_DROPIN = """\
[Service]
ExecStartPre=/bin/sh -euc 'if [ ! -f /sys/fs/cgroup/cgroup.controllers ]; then \\
  for h in /sys/fs/cgroup/*/; do mkdir -p "$${h}kubelet" "$${h}kubelet.slice" 2>/dev/null || true; done; fi'
"""

#: appended to kind's containerd config (v2 format; containerd 2 migrates it)
CONTAINERD_CONFIG_ADDITIONS = f"""
# --- added by the test bed (tests/testbed/kind_node.py) ---
[plugins."io.containerd.grpc.v1.cri".cni]
  # pods get a ptp + host-local network from the node's pod CIDR; there is no kindnetd here
  conf_template = "{CNI_TEMPLATE_PATH}"
"""


@dataclass(frozen=True)
class ComponentImage:
    """An image kubeadm runs, built from one binary on a base (``scratch`` or a Debian recipe)."""

    ref: str
    #: (tool, binary) from testbed.gobuild, or ("pause", "pause") for the C build
    tool: str
    binary: str
    path: str
    base_recipe: str | None = None
    user: str | None = None

    def dockerfile(self, base: str) -> str:
        lines = [f"FROM {base}", f"COPY {self.binary} {self.path}"]
        if self.base_recipe is None:
            lines.append("ENV PATH=/usr/local/bin:/")
        if self.user:
            lines.append(f"USER {self.user}")
        lines.append(f'ENTRYPOINT ["{self.path}"]')
        return "\n".join(lines) + "\n"


COMPONENT_IMAGES: tuple[ComponentImage, ...] = (
    *(
        ComponentImage(
            f"registry.k8s.io/{name}:{KUBERNETES_VERSION}", "kubernetes", name, f"/usr/local/bin/{name}"
        )
        for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
    ),
    ComponentImage(
        f"registry.k8s.io/kube-proxy:{KUBERNETES_VERSION}",
        "kubernetes-node",
        "kube-proxy",
        "/usr/local/bin/kube-proxy",
        base_recipe="kube-proxy",
    ),
    ComponentImage(f"registry.k8s.io/etcd:{ETCD_IMAGE_TAG}", "etcd-kubeadm", "etcd", "/usr/local/bin/etcd"),
    # upstream runs it as nonroot with a file capability to bind port 53; a scratch image has no
    # user database, and kubeadm's Deployment adds NET_BIND_SERVICE to the root user here
    ComponentImage(f"registry.k8s.io/coredns/coredns:{COREDNS_VERSION}", "coredns", "coredns", "/coredns"),
    ComponentImage(f"registry.k8s.io/pause:{PAUSE_VERSION}", "pause", "pause", "/pause", user="65535:65535"),
)

#: binaries of the node itself: (tool, binary, path in the node)
NODE_BINARIES: tuple[tuple[str, str, str], ...] = (
    ("containerd", "containerd", "/usr/local/bin/containerd"),
    ("containerd", "containerd-shim-runc-v2", "/usr/local/bin/containerd-shim-runc-v2"),
    ("containerd", "ctr", "/usr/local/bin/ctr"),
    ("cri-tools", "crictl", "/usr/local/bin/crictl"),
    ("kubelet", "kubelet", "/usr/bin/kubelet"),
    ("kubernetes-node", "kubeadm", "/usr/bin/kubeadm"),
    ("kubernetes-node", "kubectl", "/usr/bin/kubectl"),
)

#: what kind's base Dockerfile does to the packages it installed (images/base/Dockerfile), plus the
#: CNI plugin directory containerd looks in (Debian installs them under /usr/lib/cni)
NODE_SETUP_SCRIPT = r"""
set -eu
chmod 755 /kind /kind/bin /kind/bin/* /usr/local/bin/entrypoint
find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete
rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
  /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
  /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*
echo ReadKMsg=no >> /etc/systemd/journald.conf
systemctl enable kubelet.service containerd.service undo-mount-hacks.service
systemctl mask systemd-binfmt.service
mkdir -p /etc/kubernetes/manifests /opt/cni /kind/manifests
rm -rf /opt/cni/bin && ln -s /usr/lib/cni /opt/cni/bin
"""


def kind_module_dir() -> Path:
    """kind's source, for its base files (entrypoint, units, containerd config)."""
    return module_source("kind")


def kubernetes_module_dir() -> Path:
    """Kubernetes' source, for the pause program's C file and kubeadm's constants."""
    return module_source("kubernetes-node")


def preloaded_refs() -> list[str]:
    """Every image in the node's containerd: kubeadm's and the default CNI manifest's."""
    return [*(i.ref for i in COMPONENT_IMAGES), NETPOL_IMAGE]


def _netpol_image() -> image_archive.Image:
    """kube-network-policies' image as :mod:`testbed.monitoring_images` makes it (same image id)."""
    return archive_image(monitoring_spec("kube-network-policies"))


def _image_digest(image: image_archive.Image) -> str:
    digest = hashlib.sha256(image_archive.entries_digest(image_archive.base_entries()))
    digest.update(image_archive.entries_digest(image.entries))
    digest.update(json.dumps(image.config, sort_keys=True).encode() + image.created_by.encode())
    return digest.hexdigest()


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(root)}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def node_image_key() -> str:
    """Content key of the node image: every input (recipes, pinned tools, kind's files, this module)."""
    tools = sorted({i.tool for i in COMPONENT_IMAGES if i.tool != "pause"} | {t for t, _, _ in NODE_BINARIES})
    kind_files = kind_module_dir() / "images/base/files"
    pause_c = kubernetes_module_dir() / "build/pause/linux/pause.c"
    facts = {
        # how the image is assembled: this module, whole
        "assembly": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        "image": NODE_IMAGE,
        "bases": {name: recipe_key(name) for name in ("node", "kube-proxy")},
        "tools": {name: TOOLS[name].fingerprint() for name in tools},
        "components": [i.dockerfile("BASE") + i.ref for i in COMPONENT_IMAGES],
        "node_binaries": [list(b) for b in NODE_BINARIES],
        "kind": {"version": KIND_VERSION, "files": _tree_digest(kind_files)},
        "pause.c": hashlib.sha256(pause_c.read_bytes()).hexdigest(),
        "cni_images": {NETPOL_IMAGE: _image_digest(_netpol_image())},
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def _docker(host: str, *args: str, input: bytes | None = None, timeout: float = 900) -> str:
    done = subprocess.run(
        [docker_cli(), *args],
        env=os.environ | {"DOCKER_HOST": host, "DOCKER_BUILDKIT": "0"},
        input=input,
        capture_output=True,
        check=False,
        timeout=timeout,
    )
    if done.returncode != 0:
        message = (done.stderr or done.stdout).decode(errors="replace").strip()[-2000:]
        raise ComponentError(f"docker {' '.join(args[:3])} … failed (exit {done.returncode}): {message}")
    return done.stdout.decode(errors="replace")


def build_pause(out: Path) -> Path:
    """The pause program from the Kubernetes module's C source, as upstream's Makefile builds it."""
    gcc = shutil.which("gcc")
    if not gcc:
        raise MissingTool("gcc (static C build of the pause image)", "apt-get install -y gcc libc6-dev")
    binary = out / "pause"
    source = kubernetes_module_dir() / "build/pause/linux/pause.c"
    version = f"v{PAUSE_VERSION}-{KUBERNETES_VERSION}"
    done = subprocess.run(
        [gcc, "-Os", "-Wall", "-Werror", "-static", f"-DVERSION={version}", "-o", str(binary), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ComponentError(f"gcc of {source} failed: {done.stderr.strip()}")
    return binary


def build_component_image(host: str, image: ComponentImage, workdir: Path) -> None:
    """``docker build`` (legacy builder, no pulls) of one component image under its upstream name."""
    context = workdir / image.binary
    context.mkdir(parents=True)
    if image.tool == "pause":
        build_pause(context)
    else:
        shutil.copy2(TOOLS[image.tool].binary(image.binary), context / image.binary)
    base = "scratch" if image.base_recipe is None else ensure_base_image(host, image.base_recipe)
    (context / "Dockerfile").write_text(image.dockerfile(base))
    _docker(host, "build", "--network", "none", "-t", image.ref, str(context))


def _stage_node_files(stage: Path) -> None:
    """kind's base files, this VM's two settings and the binaries, laid out as in the node."""
    files = kind_module_dir() / "images/base/files"
    shutil.copytree(files, stage, dirs_exist_ok=True)
    for path in stage.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    config = stage / "etc/containerd/config.toml"
    text = config.read_text()
    # the pause image kubeadm v1.36.3 asks for (kind's file names an older one)
    text = _replace_setting(text, "sandbox_image", f'"registry.k8s.io/pause:{PAUSE_VERSION}"')
    # kubelet gives pod sandboxes oom_score_adj -998; lowering a score needs CAP_SYS_RESOURCE, which
    # this VM withholds ("runc create failed: ... can't get final child's PID from pipe: EOF")
    text = _replace_setting(
        text, "restrict_oom_score_adj", "true  # this VM withholds CAP_SYS_RESOURCE (test bed)"
    )
    config.write_text(text + CONTAINERD_CONFIG_ADDITIONS)
    (stage / CNI_TEMPLATE_PATH.lstrip("/")).write_text(CNI_TEMPLATE)
    dropins = stage / "etc/systemd/system/kubelet.service.d"
    (dropins / "20-testbed-cgroup-v1.conf").write_text(KUBELET_CGROUP_DROPIN)
    kubelet_env = stage / "etc/default/kubelet"
    # kubelet >= 1.35 refuses cgroup v1 (this VM) unless told; the flag is a no-op on cgroup v2
    kubelet_env.write_text(kubelet_env.read_text().rstrip("\n") + " --fail-cgroupv1=false\n")
    (stage / "kind/version").write_text(KUBERNETES_VERSION)
    (stage / "kind/manifests").mkdir(parents=True, exist_ok=True)
    (stage / "kind/manifests/default-cni.yaml").write_text(DEFAULT_CNI_MANIFEST)
    for tool, binary, path in NODE_BINARIES:
        target = stage / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(TOOLS[tool].binary(binary), target)
        target.chmod(0o755)
    for program in (stage / "usr/local/bin").glob("*"):
        program.chmod(0o755)
    for script in (stage / "kind/bin").glob("*"):
        script.chmod(0o755)


def _replace_setting(text: str, key: str, value: str) -> str:
    lines = text.splitlines()
    found = False
    for index, line in enumerate(lines):
        if line.strip().startswith(f"{key} ="):
            indent = line[: len(line) - len(line.lstrip())]
            lines[index] = f"{indent}{key} = {value}"
            found = True
    if not found:
        raise ComponentError(f"kind's containerd config has no {key} setting any more; update kind_node.py")
    return "\n".join(lines) + "\n"


def _cri_base_spec(host: str, container: str) -> bytes:
    """``ctr oci spec`` with kind's product-files hook and without rlimits (kind's base Dockerfile)."""
    spec = json.loads(_docker(host, "exec", container, "ctr", "oci", "spec"))
    hooks = spec.setdefault("hooks", {}).setdefault("createContainer", [])
    hooks.append({"path": "/kind/bin/mount-product-files.sh"})
    spec.get("process", {}).pop("rlimits", None)
    return json.dumps(spec, indent=4).encode()


def _import_images(host: str, container: str, refs: list[str]) -> None:
    """``docker save`` of each image into the build container's containerd, as kind's build does."""
    _docker(host, "exec", "-d", container, "bash", "-c", "containerd > /var/log/containerd-build.log 2>&1")
    deadline = time.monotonic() + 60
    while True:
        try:
            _docker(host, "exec", container, "ctr", "version", timeout=20)
            break
        except ComponentError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    env = os.environ | {"DOCKER_HOST": host}
    for ref in refs:
        save = subprocess.Popen([docker_cli(), "save", ref], env=env, stdout=subprocess.PIPE)
        load = subprocess.run(
            [
                docker_cli(),
                "exec",
                "-i",
                container,
                "ctr",
                "--namespace=k8s.io",
                "images",
                "import",
                "--label=io.cri-containerd.pinned=pinned",
                "--all-platforms",
                "--no-unpack",
                "--digests",
                "-",
            ],  # fmt: skip
            env=env,
            stdin=save.stdout,
            capture_output=True,
            check=False,
        )
        assert save.stdout is not None
        save.stdout.close()
        if save.wait() != 0 or load.returncode != 0:
            raise ComponentError(f"importing {ref} into the node's containerd failed: {load.stderr.decode()}")
    listed = _docker(host, "exec", container, "ctr", "--namespace=k8s.io", "images", "list", "-q")
    missing = [ref for ref in refs if ref not in listed.split()]
    if missing:
        raise ComponentError(f"the node's containerd lacks {missing} after the import; it lists:\n{listed}")
    # a clean stop, so the committed bolt database and content store are consistent
    _docker(
        host, "exec", container, "bash", "-c",
        "pkill -x containerd; for i in $(seq 60); do pgrep -x containerd >/dev/null || exit 0; sleep 1; done;"
        " exit 1",
    )  # fmt: skip


def _build_node_image(host: str, key: str, out: Path) -> None:
    started = time.monotonic()
    timings: dict[str, float] = {}
    node_base = ensure_base_image(host, "node")
    with tempfile.TemporaryDirectory(prefix="kind-node-") as tmp:
        workdir = Path(tmp)
        for image in COMPONENT_IMAGES:
            build_component_image(host, image, workdir / "components")
        cni_archive = workdir / "cni/images.tar"
        cni_archive.parent.mkdir()
        image_archive.write_archive(cni_archive, [_netpol_image()])
        _docker(host, "load", "-i", str(cni_archive))
        timings["component_images"] = round(time.monotonic() - started, 1)
        stage = workdir / "node"
        _stage_node_files(stage)
        container = f"kind-build-{uuid.uuid4().hex[:10]}"
        committed = f"testbed/{container}:committed"
        _docker(
            host, "run", "-d", "--name", container, "--network", "none", "--entrypoint", "sleep",
            "--security-opt", "seccomp=unconfined", node_base, "infinity",
        )  # fmt: skip
        try:
            _docker(host, "cp", f"{stage}/.", f"{container}:/")
            _docker(host, "exec", container, "bash", "-c", NODE_SETUP_SCRIPT)
            _docker(
                host, "exec", "-i", container, "sh", "-c", "cat > /etc/containerd/cri-base.json",
                input=_cri_base_spec(host, container),
            )  # fmt: skip
            _import_images(host, container, preloaded_refs())
            _docker(
                host, "commit",
                "--change", 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]',
                "--change", "CMD []",
                "--change", "ENV container=docker",
                container, committed,
            )  # fmt: skip
            # Docker 20.10's commit takes no STOPSIGNAL; a build step on top sets it (systemd stops
            # cleanly on SIGRTMIN+3, as kind's base image says)
            context = workdir / "stopsignal"
            context.mkdir()
            (context / "Dockerfile").write_text(
                f"FROM {committed}\nSTOPSIGNAL SIGRTMIN+3\nLABEL {KEY_LABEL}={key}\n"
            )
            _docker(host, "build", "--network", "none", "-t", NODE_IMAGE, str(context))
            _docker(host, "rmi", committed)
        finally:
            subprocess.run(
                [docker_cli(), "rm", "-f", "-v", container],
                env=os.environ | {"DOCKER_HOST": host},
                capture_output=True,
                check=False,
            )
    timings["assembled"] = round(time.monotonic() - started, 1)
    _docker(host, "save", "-o", str(out / "image.tar"), NODE_IMAGE, timeout=1800)
    timings["saved"] = round(time.monotonic() - started, 1)
    (out / "image.json").write_text(
        json.dumps(
            {"ref": NODE_IMAGE, "key": key, "images": preloaded_refs(), "seconds": timings},
            indent=1,
        )
    )
    log(f"built {NODE_IMAGE} in {timings['saved']:.0f}s ({timings})")


def _label(host: str, ref: str) -> str | None:
    done = subprocess.run(
        [docker_cli(), "image", "inspect", "--format", f'{{{{index .Config.Labels "{KEY_LABEL}"}}}}', ref],
        env=os.environ | {"DOCKER_HOST": host},
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else None


def ensure_node_image(host: str) -> str:
    """``kindest/node:v1.36.3`` in the engine at ``host``: loaded from the tool cache, or built."""
    key = node_image_key()
    if _label(host, NODE_IMAGE) == key:
        return NODE_IMAGE
    with file_lock(state_dir() / ".kind-node-image.lock"):
        cached = ensure_cached("kind-node-image", key, lambda out: _build_node_image(host, key, out))
        if _label(host, NODE_IMAGE) != key:
            log(f"loading {NODE_IMAGE} from {cached}")
            _docker(host, "load", "-i", str(cached / "image.tar"), timeout=1800)
    if not image_exists(host, NODE_IMAGE) or _label(host, NODE_IMAGE) != key:
        raise ComponentError(f"{NODE_IMAGE} in {host} is not the one built from key {key}")
    return NODE_IMAGE
