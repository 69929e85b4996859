"""Every third-party chart, rendered for every inventory with exactly the values its role passes.

The values come from the roles themselves: for each role, a stand-in role is put together from the
real role's defaults, vars, templates and files (symlinked) and one generated task
per ``kubernetes.core.helm`` task of the real role, which writes that task's arguments (name,
namespace, chart reference and version, skip_crds, values - the same expressions, task vars
included) to JSON instead of installing. It runs against each inventory, so inventory variables,
role defaults and role vars take their usual precedence.

Then, per inventory and chart, with the upstream archive of the pinned version from the test data:

* every key of the values must be a key of the chart's ``values.yaml`` (or be declared by its
  ``values.schema.json``), subcharts and ``global`` included, so a misspelt key fails here instead
  of being ignored by Helm (``test_every_values_key_is_known_to_the_chart``, no cluster needed);
* ``helm template`` (the pinned helm) renders without error for the test bed's Kubernetes version
  and API groups, and the API server of the test bed accepts every rendered object in a
  server-side dry run with the upstream CRDs installed
  (``test_chart_renders_objects_the_api_server_accepts``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import ENVIRONMENTS, ROOT, TEST_INVENTORIES, TEST_SECRETS, charts_dir, inventory_dir

ROLES = ["kafka", "dapr", "monitoring", "logging"]
INVENTORIES = ENVIRONMENTS + TEST_INVENTORIES
#: Release name (as the role names it by default) -> chart name of its archive in the test data.
CHARTS = {
    "strimzi": "strimzi-kafka-operator",
    "dapr": "dapr",
    "kube-prometheus-stack": "kube-prometheus-stack",
    "loki": "loki",
    "alloy": "alloy",
}
#: Releases a role does not install for an inventory, and why (asserted, so this list stays true).
NOT_INSTALLED = {
    ("oke", "strimzi"): "Kafka is OCI Streaming (kafka_provider: oci_streaming)",
    ("aks", "strimzi"): "Kafka is Azure Event Hubs (kafka_provider: azure_event_hubs)",
}
#: Values paths (chart, dotted path: the key and everything below it) accepted although absent from
#: the chart's values.yaml and schema, each with the reason. Only for keys a chart's templates read
#: without declaring them, or maps it hands on verbatim; a test checks that the chart still reads each.
KEY_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("kube-prometheus-stack", "grafana.persistence.storageClassName"): (
        "Grafana's values.yaml has it only as a comment (# storageClassName: default); its pvc.yaml and "
        "statefulset.yaml templates read .Values.persistence.storageClassName"
    ),
    ("loki", "loki.storage.bucketNames"): (
        "Loki's values.yaml has it only as a comment; _helpers.tpl reads it with dig and requires "
        "bucketNames.chunks/ruler/admin for object storage"
    ),
    ("loki", "loki.limits_config"): (
        "passed verbatim into Loki's configuration (loki.config's `with .Values.loki.limits_config`): "
        "its keys are Loki's limits_config options, which the chart does not list"
    ),
}


def key_exception(chart: str, path: str) -> bool:
    return any(c == chart and (path == p or path.startswith(f"{p}.")) for c, p in KEY_EXCEPTIONS)


HELM_TASK_ARGS = {
    "name",
    "release_name",
    "chart_ref",
    "chart_repo_url",
    "chart_version",
    "release_namespace",
    "namespace",
    "skip_crds",
    "values",
    "release_values",
    "wait",
    "wait_timeout",
    "atomic",
}


# --------------------------------------------------------------------------------------------------
# The values each role passes, per inventory


def _helm_tasks(role: str) -> list[dict[str, Any]]:
    """The kubernetes.core.helm tasks of a role with the `when` of the import that includes them."""
    tasks_dir = ROOT / "roles" / role / "tasks"
    imports: dict[str, list[str]] = {}
    for task in yaml.safe_load((tasks_dir / "main.yml").read_text()):
        target = task.get("ansible.builtin.import_tasks") or task.get("ansible.builtin.include_tasks")
        if target:
            when = task.get("when", [])
            imports[target] = when if isinstance(when, list) else [when]
    found = []
    for file in sorted(tasks_dir.glob("*.yml")):
        for task in yaml.safe_load(file.read_text()) or []:
            helm = task.get("kubernetes.core.helm")
            if helm is None:
                continue
            unknown = set(helm) - HELM_TASK_ARGS
            assert not unknown, (
                f"roles/{role}/tasks/{file.name}: '{task['name']}' passes {sorted(unknown)}, which this test "
                "does not reproduce yet; teach it those arguments"
            )
            when = task.get("when", [])
            found.append(
                {
                    "task": task["name"],
                    "file": file.name,
                    "args": helm,
                    "vars": task.get("vars", {}),
                    "when": imports.get(file.name, []) + (when if isinstance(when, list) else [when]),
                }
            )
    return found


def _stand_in_role(role: str, roles_dir: Path) -> None:
    """roles_dir/<role>: the real role's data, and tasks that write each helm task's arguments."""
    src = ROOT / "roles" / role
    dst = roles_dir / role
    (dst / "tasks").mkdir(parents=True)
    # Not meta/: argument validation templates every variable, and some inventory values read the
    # cluster (GKE's Strimzi CA); the dry runs of tests/deploy/test_dry_run.py validate them.
    for sub in ("defaults", "vars", "templates", "files"):
        if (src / sub).is_dir():
            (dst / sub).symlink_to(src / sub)
    tasks = []
    for index, helm in enumerate(_helm_tasks(role)):
        args = helm["args"]
        values = args.get("release_values", args.get("values", {}))
        conditions = [c for c in helm["when"] if c not in (None, "")]
        probe = {
            "role": role,
            "task": helm["task"],
            "name": args.get("name", args.get("release_name")),
            "namespace": args.get("release_namespace", args.get("namespace")),
            "chart_ref": args["chart_ref"],
            "chart_version": args.get("chart_version", ""),
            "skip_crds": args.get("skip_crds", False),
            "values": values,
            "installed": "{{ " + " and ".join(f"({c})" for c in conditions) + " }}" if conditions else True,
        }
        tasks.append(
            {
                "name": f"Write the arguments of '{helm['task']}'",
                "ansible.builtin.copy": {
                    "dest": f"{{{{ chart_render_out }}}}/{role}-{index}.json",
                    "content": "{{ _chart_render_probe | to_nice_json }}",
                    "mode": "0600",
                },
                "vars": {**helm["vars"], "_chart_render_probe": probe},
            }
        )
    (dst / "tasks" / "main.yml").write_text(yaml.safe_dump(tasks, sort_keys=False))


def _ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(TEST_SECRETS)
    env.update(
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
    )
    return env


def render_role_values(
    work: Path, inventories: list[str], roles_dir: Path | None = None, extra_vars: dict | None = None
) -> dict[str, list[dict]]:
    """For each inventory, the arguments of every helm task of ROLES, as the roles compute them
    (with ``extra_vars`` as ``-e`` would give them)."""
    if roles_dir is None:
        roles_dir = work / "roles"
        for role in ROLES:
            _stand_in_role(role, roles_dir)
    playbook = work / "chart_values.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Write the values each role passes to Helm",
                    "hosts": "todo_platform",
                    "gather_facts": False,
                    "roles": ROLES,
                }
            ],
            sort_keys=False,
        )
    )
    env = _ansible_env() | {"ANSIBLE_ROLES_PATH": str(roles_dir)}
    procs = {}
    for inventory in inventories:
        out = work / "out" / inventory
        out.mkdir(parents=True, exist_ok=True)
        procs[inventory] = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("ansible-playbook")),
                str(playbook),
                "-i",
                str(inventory_dir(inventory)),
                "-e",
                json.dumps({**(extra_vars or {}), "chart_render_out": str(out)}),
            ],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    result: dict[str, list[dict]] = {}
    for inventory, proc in procs.items():
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{inventory}: rendering the roles' values failed\n{output[-5000:]}"
        result[inventory] = [
            json.loads(p.read_text()) for p in sorted((work / "out" / inventory).glob("*.json"))
        ]
    return result


@pytest.fixture(scope="module")
def role_values(tmp_path_factory) -> dict[str, list[dict]]:
    started = time.monotonic()
    values = render_role_values(tmp_path_factory.mktemp("chart-values"), INVENTORIES)
    seconds = time.monotonic() - started
    print(f"\nroles' helm values rendered for {len(INVENTORIES)} inventories in {seconds:.0f} s")
    return values


def release(role_values: dict[str, list[dict]], inventory: str, name: str) -> dict:
    (found,) = [r for r in role_values[inventory] if r["name"] == name]
    return found


# --------------------------------------------------------------------------------------------------
# Charts from the test data


class Chart:
    """A chart archive read in memory: values.yaml, values.schema.json and its subcharts (vendored
    archives or directories under charts/), each under the key the parent's values use (alias or
    name)."""

    def __init__(self, name: str, files: dict[str, bytes]) -> None:
        self.name = name
        meta = yaml.safe_load(files["Chart.yaml"])
        self.version = str(meta["version"])
        self.values_text = files.get("values.yaml", b"").decode(errors="replace")
        self.values = yaml.safe_load(self.values_text) or {}
        self.schema = json.loads(files["values.schema.json"]) if "values.schema.json" in files else None
        self.templates = "\n".join(
            data.decode(errors="replace")
            for path, data in sorted(files.items())
            if path.startswith("templates/")
        )
        aliases = {d["name"]: d.get("alias") or d["name"] for d in meta.get("dependencies") or []}
        self.subcharts: dict[str, Chart] = {}
        nested: dict[str, dict[str, bytes]] = {}
        for path, data in files.items():
            parts = path.split("/")
            if parts[0] != "charts" or len(parts) < 2:
                continue
            if len(parts) == 2 and parts[1].endswith(".tgz"):
                sub = Chart.from_archive_bytes(data)
                self.subcharts[aliases.get(sub.name, sub.name)] = sub
            elif len(parts) > 2:
                nested.setdefault(parts[1], {})["/".join(parts[2:])] = data
        for directory, sub_files in nested.items():
            if "Chart.yaml" in sub_files:
                sub = Chart(directory, sub_files)
                sub.name = yaml.safe_load(sub_files["Chart.yaml"])["name"]
                self.subcharts[aliases.get(sub.name, sub.name)] = sub

    @classmethod
    def from_archive_bytes(cls, data: bytes) -> Chart:
        import io

        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            return cls._from_tar(tar)

    @classmethod
    def from_archive(cls, path: Path) -> Chart:
        with tarfile.open(path) as tar:
            return cls._from_tar(tar)

    @classmethod
    def _from_tar(cls, tar: tarfile.TarFile) -> Chart:
        files: dict[str, bytes] = {}
        top = None
        for member in tar.getmembers():
            if not member.isfile():
                continue
            head, _, rest = member.name.partition("/")
            top = top or head
            if head == top and (rest.startswith(("charts/", "templates/")) or "/" not in rest):
                files[rest] = tar.extractfile(member).read()
        return cls(top or "?", files)

    def globals_(self) -> dict:
        """The union of the `global` defaults of this chart and of all its subcharts."""
        merged: dict = {}
        for chart in [self, *self.all_subcharts()]:
            merged = _merge(merged, chart.values.get("global") or {})
        return merged

    def all_subcharts(self) -> list[Chart]:
        found = []
        for sub in self.subcharts.values():
            found += [sub, *sub.all_subcharts()]
        return found


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for key, value in b.items():
        out[key] = (
            _merge(out[key], value) if isinstance(out.get(key), dict) and isinstance(value, dict) else value
        )
    return out


def _open_schema(schema: dict | None) -> bool:
    """A schema node that leaves its keys open: no declared properties, extra ones not forbidden."""
    if schema is None or schema.get("properties") or schema.get("patternProperties"):
        return False
    return schema.get("additionalProperties", True) is not False


def _schema_child(schema: dict | None, key: str) -> dict | None:
    if not schema:
        return None
    if key in (schema.get("properties") or {}):
        return schema["properties"][key]
    for pattern, child in (schema.get("patternProperties") or {}).items():
        if re.search(pattern, key):
            return child
    return None


def unknown_keys(values: Any, defaults: Any, schema: dict | None, path: str) -> list[str]:
    """Dotted paths of the keys of `values` that neither `defaults` (from values.yaml) nor `schema`
    (from values.schema.json) declares. Below a key whose default is not a non-empty map (an empty
    map, null) and that the schema does not describe key by key, any key is allowed: free-form maps
    such as podAnnotations, resources, nodeSelector or extraArgs. A default that lists keys is
    checked even where the schema would take extra ones (Loki's `loki.storage`): the chart's
    templates read the listed keys, so another one is most likely a typo."""
    if not isinstance(values, dict):
        return []
    known_defaults = defaults if isinstance(defaults, dict) else {}
    if not known_defaults and (_open_schema(schema) or not schema):
        return []
    problems = []
    for key, value in values.items():
        where = f"{path}.{key}" if path else key
        child_schema = _schema_child(schema, key)
        if key in known_defaults or child_schema is not None:
            problems += unknown_keys(value, known_defaults.get(key), child_schema, where)
        else:
            problems.append(where)
    return problems


def check_chart_values(
    values: dict, chart: Chart, prefix: str = "", parent_defaults: Any = None
) -> list[str]:
    """Unknown keys of a release's values (dotted paths) against the chart, its subcharts (the values
    under a subchart's key against that subchart's values.yaml, plus the parent's defaults for it)
    and `global` (against the globals of the chart and all its subcharts)."""
    defaults = _merge(chart.values, parent_defaults if isinstance(parent_defaults, dict) else {})
    problems = []
    for key, value in values.items():
        where = f"{prefix}{key}"
        if key == "global":
            problems += unknown_keys(
                value, chart.globals_() or None, _schema_child(chart.schema, "global"), where
            )
        elif key in chart.subcharts and isinstance(value, dict):
            problems += check_chart_values(value, chart.subcharts[key], f"{where}.", defaults.get(key))
        elif key in defaults or _schema_child(chart.schema, key) is not None:
            problems += unknown_keys(value, defaults.get(key), _schema_child(chart.schema, key), where)
        else:
            problems.append(where)
    return problems


def chart_archive(name: str, version: str) -> Path:
    path = charts_dir() / f"{CHARTS[name]}-{version}.tgz"
    assert path.is_file(), (
        f"the test data has no archive of {CHARTS[name]} {version} (the role's pinned version): {path}"
    )
    return path


# --------------------------------------------------------------------------------------------------
# Tests without a cluster


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_every_values_key_is_known_to_the_chart(role_values, inventory):
    installed = {r["name"]: r for r in role_values[inventory]}
    assert sorted(installed) == sorted(CHARTS), f"{inventory}: helm tasks found: {sorted(installed)}"
    problems = []
    for name, rel in installed.items():
        expected = (inventory, name) not in NOT_INSTALLED
        assert rel["installed"] is expected, (
            f"{inventory}: {name} installed={rel['installed']}, expected {expected}: "
            f"{NOT_INSTALLED.get((inventory, name), 'installed everywhere else')}"
        )
        chart = Chart.from_archive(chart_archive(name, rel["chart_version"]))
        assert chart.version == rel["chart_version"]
        problems += [
            f"{name} ({CHARTS[name]} {chart.version}): {key}"
            for key in check_chart_values(rel["values"], chart)
            if not key_exception(CHARTS[name], key)
        ]
    assert not problems, (
        f"{inventory}: values keys the charts do not know (misspelt, renamed upstream, or a free-form map "
        "that needs an entry in KEY_EXCEPTIONS with its reason):\n  " + "\n  ".join(problems)
    )


def test_a_misspelt_values_key_is_reported():
    """The check itself: a typo at the top, deep inside, in a subchart and in `global` is found;
    free-form maps (empty default) accept any key."""
    chart = Chart.from_archive(chart_archive("kube-prometheus-stack", "88.5.3"))
    values = {
        "prometheus": {
            "prometheusSpec": {"retention": "15d", "retentionn": "1d"},
            "annotations": {"anything.example.com/goes": "x"},
        },
        "grafana": {"persistence": {"enabledd": True}, "nodeSelector": {"free": "form"}},
        "global": {"imageRegistryy": "mirror.example.com"},
        "alertmanagerr": {},
    }
    assert sorted(check_chart_values(values, chart)) == [
        "alertmanagerr",
        "global.imageRegistryy",
        "grafana.persistence.enabledd",
        "prometheus.prometheusSpec.retentionn",
    ]
    # Loki: the schema leaves loki.storage open, but values.yaml lists its keys; an empty default
    # (loki.schemaConfig) takes any key, and the aliased subchart is checked under its alias.
    loki = Chart.from_archive(chart_archive("loki", "18.11.0"))
    values = {
        "loki": {"storage": {"typ": "s3"}, "schemaConfig": {"configs": []}},
        "rollout_operator": {"enabledd": False},
    }
    assert sorted(check_chart_values(values, loki)) == ["loki.storage.typ", "rollout_operator.enabledd"]


#: Charts deliberately pinned below the newest archive of the test data, with the measured reason.
PINNED_BEHIND: dict[str, str] = {}


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


@pytest.mark.parametrize("name", list(CHARTS))
def test_each_pin_is_the_newest_chart_of_the_test_data(role_values, name):
    """Pin freshness: a role pins the newest chart version the test data holds, or PINNED_BEHIND
    says why not (docs/air-gapped.md, "Pinned chart versions")."""
    pinned = release(role_values, "kind", name)["chart_version"]
    available = sorted(
        (
            path.name[len(CHARTS[name]) + 1 : -len(".tgz")]
            for path in charts_dir().glob(f"{CHARTS[name]}-*.tgz")
        ),
        key=_version_key,
    )
    assert available, f"the test data holds no {CHARTS[name]} archive"
    if name in PINNED_BEHIND:
        assert pinned != available[-1], f"{name} is at the newest {pinned}: drop it from PINNED_BEHIND"
        return
    assert pinned == available[-1], (
        f"{name} is pinned at {pinned}, the test data holds {available[-1]}: move the pin (render both "
        "with this test file, compare the values.yaml keys) or add a measured reason to PINNED_BEHIND"
    )


@pytest.mark.parametrize("exception", sorted(KEY_EXCEPTIONS))
def test_each_key_exception_is_read_by_the_chart(role_values, exception):
    """An exception stays only while the chart (or the subchart under its first key) reads the key:
    `.Values.<path>` in its templates or in the templates its values.yaml carries, or the key's name
    in a `dig` of its templates."""
    chart_name, path = exception
    (rel,) = [r for r in role_values["kind"] if CHARTS[r["name"]] == chart_name]
    chart = Chart.from_archive(chart_archive(rel["name"], rel["chart_version"]))
    keys = path.split(".")
    while keys[0] in chart.subcharts:
        chart = chart.subcharts[keys.pop(0)]
    reference = ".Values." + ".".join(keys)
    text = chart.templates + chart.values_text
    assert reference in text or f'"{keys[-1]}"' in chart.templates, (
        f"{chart_name}: no template of {chart.name} reads {reference} any more"
    )


# --------------------------------------------------------------------------------------------------
# Rendered with the pinned helm and admitted by the test bed's API server

CRD_SETS = ["prometheus-operator", "dapr", "strimzi", "gateway-api"]
SUMMARY: dict[tuple[str, str], str] = {}


@pytest.fixture(scope="module")
def helm_binary() -> Path:
    from testbed import gobuild

    return gobuild.TOOLS["helm"].binary()


@pytest.fixture(scope="module")
def api(kube, request):
    """The test bed's API server with the upstream CRDs, and the API versions Helm would discover
    there (group/version and group/version/Kind, as .Capabilities.APIVersions holds them)."""
    kube.install_crds(CRD_SETS)
    versions = set(kube.kubectl("api-versions").stdout.split())
    namespaced: dict[tuple[str, str], bool] = {}
    for line in kube.kubectl("api-resources", "--no-headers").stdout.splitlines():
        fields = line.split()  # NAME [SHORTNAMES] APIVERSION NAMESPACED KIND
        versions.add(f"{fields[-3]}/{fields[-1]}")
        namespaced[(_group(fields[-3]), fields[-1])] = fields[-2] == "true"
    yield kube, sorted(versions), namespaced
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter and capture and SUMMARY:
        # Printed past output capture, so a passing run shows it too.
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            reporter.write_line(
                "charts rendered per inventory (objects by kind, each accepted by a server-side dry run):"
            )
            for (inventory, name), line in sorted(SUMMARY.items()):
                reporter.write_line(f"  {inventory:9} {name:22} {line}")


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def helm_template(helm: Path, rel: dict, archive: Path, api_versions: list[str], work: Path) -> str:
    from testbed import gobuild

    values = work / f"{rel['name']}-values.json"
    values.write_text(json.dumps(rel["values"]))
    args = [
        str(helm),
        "template",
        rel["name"],
        str(archive),
        "--namespace",
        rel["namespace"],
        "--values",
        str(values),
        "--kube-version",
        gobuild.KUBERNETES_VERSION,
        # kubernetes.core.helm installs without running chart tests.
        "--skip-tests",
    ]
    if rel["skip_crds"]:
        args.append("--skip-crds")
    for version in api_versions:
        args += ["--api-versions", version]
    env = dict(
        os.environ,
        HELM_CACHE_HOME=str(work / "helm-cache"),
        HELM_CONFIG_HOME=str(work / "helm-config"),
        HELM_DATA_HOME=str(work / "helm-data"),
    )
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, f"helm template {rel['name']} failed:\n{result.stderr[-4000:]}"
    return result.stdout


@pytest.mark.testbed
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("inventory", INVENTORIES)
@pytest.mark.parametrize("name", list(CHARTS))
def test_chart_renders_objects_the_api_server_accepts(
    role_values, api, helm_binary, inventory, name, tmp_path
):
    kube, api_versions, namespaced = api
    rel = release(role_values, inventory, name)
    if not rel["installed"]:
        assert (inventory, name) in NOT_INSTALLED, f"{inventory}: the role does not install {name}"
        SUMMARY[(inventory, name)] = f"not installed: {NOT_INSTALLED[(inventory, name)]}"
        return
    archive = chart_archive(name, rel["chart_version"])
    manifest = helm_template(helm_binary, rel, archive, api_versions, tmp_path)
    objects = [doc for doc in yaml.safe_load_all(manifest) if doc]
    assert objects, f"{inventory}: {name} rendered no objects"
    for obj in objects:
        # What Helm does on install: a namespaced object without a namespace goes to the release's.
        if not obj["metadata"].get("namespace") and namespaced.get((_group(obj["apiVersion"]), obj["kind"])):
            obj["metadata"]["namespace"] = rel["namespace"]
    namespaces = {rel["namespace"]} | {
        o["metadata"]["namespace"] for o in objects if o["metadata"].get("namespace")
    }
    existing = set(
        kube.kubectl("get", "namespaces", "-o", "jsonpath={.items[*].metadata.name}").stdout.split()
    )
    for namespace in sorted(namespaces - existing):
        kube.kubectl("create", "namespace", namespace)
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(objects))
    result = kube.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--force-conflicts",
        "--field-manager=chart-render",
        "-f",
        str(rendered),
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"{inventory}: the API server refused objects of {name}:\n{result.stderr[-4000:]}"
    )
    accepted = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(accepted) == len(objects), (
        f"{inventory}: {name}: {len(objects)} rendered, {len(accepted)} accepted"
    )
    kinds: dict[str, int] = {}
    for obj in objects:
        kinds[obj["kind"]] = kinds.get(obj["kind"], 0) + 1
    SUMMARY[(inventory, name)] = (
        f"{CHARTS[name]} {rel['chart_version']}: {len(objects)} objects ("
        + ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        + ")"
    )


# --------------------------------------------------------------------------------------------------
# The chart source settings (docs/air-gapped.md), checked by each role's preflight

PREFLIGHT_CASES = [
    ("kafka", "kafka_strimzi"),
    ("dapr", "dapr"),
    ("logging", "logging_loki"),
    ("logging", "logging_alloy"),
]
RELEASE_OF = {"kafka_strimzi": "strimzi", "dapr": "dapr", "logging_loki": "loki", "logging_alloy": "alloy"}


def source_cases(prefix: str, tmp_path: Path) -> list[tuple[str, dict, str | None]]:
    """(label, settings, None when the preflight must pass / a text its failure message must hold)."""
    role = prefix.split("_")[0]
    name = RELEASE_OF[prefix]
    version = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())[
        f"{prefix}_chart_version"
    ]
    ref, url = f"{prefix}_chart_ref", f"{prefix}_chart_repo_url"
    return [
        ("local archive", {ref: str(chart_archive(name, version)), url: ""}, None),
        ("oci mirror", {ref: f"oci://registry.example.internal/charts/{CHARTS[name]}", url: ""}, None),
        ("name and repository", {ref: CHARTS[name], url: "https://charts.example.internal"}, None),
        ("name without repository", {ref: "somechart", url: ""}, url),
        ("missing archive", {ref: str(tmp_path / "missing-1.0.0.tgz")}, "missing-1.0.0.tgz"),
    ]


@pytest.fixture(scope="module")
def preflight_results(tmp_path_factory) -> dict[tuple[str, str], dict]:
    """Every case of source_cases for every role, in one ansible-playbook run: each case includes
    the role's preflight with the settings, and records whether it failed and the message."""
    work = tmp_path_factory.mktemp("preflight")
    tasks = []
    for role, prefix in PREFLIGHT_CASES:
        for label, settings, _ in source_cases(prefix, work):
            key = f"{prefix}: {label}"
            record = "{{ _results | combine({%r: {'failed': %s, 'msg': %s}}) }}"
            tasks.append({
                "name": key,
                "block": [
                    {"ansible.builtin.include_role": {"name": role, "tasks_from": "preflight"},
                     "vars": settings},
                    {"ansible.builtin.set_fact": {"_results": record % (key, "false", "''")}},
                ],
                "rescue": [
                    {"ansible.builtin.set_fact":
                     {"_results": record % (key, "true", "ansible_failed_result.msg")}},
                ],
            })  # fmt: skip
    tasks.append({
        "name": "Write the results",
        "ansible.builtin.copy": {"dest": str(work / "results.json"), "content": "{{ _results | to_json }}",
                                 "mode": "0600"},
    })  # fmt: skip
    playbook = work / "preflight.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Run the roles' preflight with each chart source",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": {"_results": {}},
        "tasks": tasks,
    }], sort_keys=False))  # fmt: skip
    env = _ansible_env() | {"ANSIBLE_ROLES_PATH": str(ROOT / "roles")}
    result = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), str(playbook)],
        cwd=ROOT, env=env, text=True, capture_output=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    found = json.loads((work / "results.json").read_text())
    results = {}
    for _, prefix in PREFLIGHT_CASES:
        for label, _, expected in source_cases(prefix, work):
            results[(prefix, label)] = {**found[f"{prefix}: {label}"], "expected": expected}
    return results


@pytest.mark.parametrize(("role", "prefix"), PREFLIGHT_CASES)
def test_each_chart_source_form_passes_the_preflight(preflight_results, role, prefix):
    """A local archive of the pinned version, an oci:// mirror, and a plain name with its repository."""
    for (case_prefix, label), result in preflight_results.items():
        if case_prefix == prefix and result["expected"] is None:
            assert not result["failed"], f"{role}: {label}: {result['msg']}"


@pytest.mark.parametrize(("role", "prefix"), PREFLIGHT_CASES)
def test_a_chart_source_helm_cannot_use_is_refused(preflight_results, role, prefix):
    """A plain chart name without a repository, and a local archive that does not exist."""
    for (case_prefix, label), result in preflight_results.items():
        if case_prefix == prefix and result["expected"] is not None:
            assert result["failed"], f"{role}: {label} passed the preflight"
            assert f"{prefix}_chart_ref" in result["msg"] and result["expected"] in result["msg"], result[
                "msg"
            ]
