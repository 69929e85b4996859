"""Each guide in docs/guides, followed line by line without a cloud.

The clouds themselves (and their CLIs `oci`, `az`, `gcloud`) cannot be reached from the test machine,
so what is checked is everything on this side of them, in the order a user copies the shell blocks:

- every ``ansible-playbook``, ``scripts/…``, ``molecule``, ``pytest`` and test-script command names
  files that exist and flags the tool has (``ansible-playbook --help`` of the project's ansible),
  and every ``-e name=value`` names a variable some role reads;
- every variable a guide exports is one the code reads (an ``ansible.builtin.env`` lookup, an
  environment read of a test or script), and every variable its inventory reads from the
  environment is named in the guide (required and optional ones alike, so they cannot drift);
- no shell variable is used before the guide sets it, and no ``...``/``<placeholder>`` is left
  for the reader to fill in;
- each guide verifies (status runbook, the e2e suite, Grafana) and tears down what it created;
- the nodes a guide creates can hold Loki's replicas under the chart's required anti-affinity.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import shlex
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GUIDES_DIR = ROOT / "docs" / "guides"
ENVIRONMENTS = ["kind", "minikube", "oke", "aks", "gke"]
# Read by every shell and tool, not by this project's code.
SHELL_VARIABLES = {"PATH", "HOME", "PWD"}

# How each guide creates its worker nodes (the local ones get theirs from roles/cluster).
NODE_COUNT_FLAGS = {
    "oke": ("oci ce node-pool create", "--size"),
    "aks": ("az aks create", "--node-count"),
    "gke": ("gcloud container clusters create", "--num-nodes"),
}
# What "back to nothing" means per guide: each of these must run in its shell blocks.
TEARDOWN = {
    "kind": ["-e cluster_state=absent"],
    "minikube": ["-e cluster_state=absent"],
    "oke": [
        "oci ce cluster delete",
        "oci os bucket delete",
        "oci psql db-system delete",
        "oci streaming admin stream-pool delete",
        "oci network vcn delete",
        "oci iam compartment delete",
    ],
    "aks": ["kubectl --context todo-aks delete namespace", "az group delete -n todo"],
    "gke": [
        "kubectl --context todo-gke delete namespace",
        "gcloud container clusters delete",
        "gcloud storage rm",
        "gcloud projects delete",
    ],
}


# --- reading the guides ------------------------------------------------------------------------


def _guide(env: str) -> str:
    return (GUIDES_DIR / f"{env}.md").read_text()


def _blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M)


def _script(text: str) -> list[tuple[str, str]]:
    """The guide's shell lines in order, continuations joined, as (kind, line): kind is ``cmd`` for
    a command line, ``heredoc`` for a line of a here-document expanded by the shell and
    ``literal`` for one of a quoted here-document."""
    out: list[tuple[str, str]] = []
    for block in _blocks(text):
        joined = re.sub(r"\\\n\s*", " ", block)
        lines = iter(joined.splitlines())
        for line in lines:
            out.append(("cmd", line))
            here = re.search(r"<<-?\s*(['\"]?)(\w+)\1", line)
            if here:
                kind = "literal" if here.group(1) else "heredoc"
                for body in lines:
                    if body.strip() == here.group(2):
                        break
                    out.append((kind, body))
    return out


def _commands(line: str) -> list[list[str]]:
    """Simple commands of one line (split at ; && || | &), each as its words, without leading
    ``NAME=value`` assignments and shell keywords."""
    cleaned = []
    for cmd in _words(line):
        while cmd and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", cmd[0]):
            # NAME=$(command …): the command substitution is a command of its own
            inner = cmd[0].split("=", 1)[1]
            cmd = [inner[2:], *cmd[1:]] if inner.startswith("$(") and len(inner) > 2 else cmd[1:]
        if cmd and cmd[0] in ("do", "then", "else", "time"):
            cmd = cmd[1:]
        if cmd:
            cleaned.append(cmd)
    return cleaned


def _all_commands(env: str) -> list[list[str]]:
    return [cmd for kind, line in _script(_guide(env)) if kind == "cmd" for cmd in _commands(line)]


# --- what the code reads -----------------------------------------------------------------------


ENV_LOOKUP = re.compile(r"lookup\(\s*'ansible\.builtin\.env',\s*'([A-Z][A-Z0-9_]*)'")


@functools.cache
def _variables_read_by_code() -> frozenset[str]:
    names: set[str] = set()
    for base in ("inventories", "roles", "playbooks", "molecule", "collections/ansible_collections"):
        for path in (ROOT / base).rglob("*.yml"):
            names |= set(ENV_LOOKUP.findall(path.read_text(errors="replace")))
    py_read = re.compile(r"(?:environ\.get\(|environ\[|getenv\()\s*[\"']([A-Z][A-Z0-9_]*)[\"']")
    for base in ("tests", "services/src", "collections/ansible_collections/todo/platform/plugins"):
        for path in (ROOT / base).rglob("*.py"):
            names |= set(py_read.findall(path.read_text(errors="replace")))
    sh_read = re.compile(r"\$\{?([A-Z][A-Z0-9_]*)")
    for path in [*(ROOT / "scripts").iterdir(), *(ROOT / "tests").rglob("*.sh")]:
        if path.is_file():
            names |= set(sh_read.findall(path.read_text(errors="replace")))
    return frozenset(names)


def _inventory_env_variables(env: str) -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "inventories" / env).rglob("*.yml"):
        names |= set(ENV_LOOKUP.findall(path.read_text()))
    return names - SHELL_VARIABLES


@functools.cache
def _role_variables() -> frozenset[str]:
    names: set[str] = set()
    for path in (ROOT / "roles").glob("*/defaults/main.yml"):
        names |= set((yaml.safe_load(path.read_text()) or {}).keys())
    return frozenset(names)


@functools.cache
def _ansible_playbook_options() -> frozenset[str]:
    binary = ROOT / ".venv" / "bin" / "ansible-playbook"
    help_text = subprocess.run(
        [str(binary), "--help"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    return frozenset(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", help_text))


# --- the checks --------------------------------------------------------------------------------


def _check_ansible_playbook(words: list[str]) -> list[str]:
    problems = []
    options = _ansible_playbook_options()
    args = words[1:]
    positional = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            name = arg.split("=", 1)[0]
            if name not in options:
                problems.append(f"ansible-playbook has no option {name}")
            if name in (
                "-i",
                "--inventory",
                "-e",
                "--extra-vars",
                "-t",
                "--tags",
                "--skip-tags",
                "-l",
                "--limit",
            ):
                value = args[i + 1] if i + 1 < len(args) else ""
                if name in ("-i", "--inventory") and not (ROOT / value).is_dir():
                    problems.append(f"inventory {value} does not exist")
                if name in ("-e", "--extra-vars"):
                    var = value.split("=", 1)[0]
                    if var not in _role_variables():
                        problems.append(f"-e {var}: no role reads a variable of that name")
                i += 1
        else:
            positional.append(arg)
        i += 1
    if len(positional) != 1 or not (ROOT / positional[0]).is_file():
        problems.append(f"playbook {positional} does not exist")
    return problems


def _check_script(words: list[str]) -> list[str]:
    path = ROOT / words[0]
    if not (path.is_file() and path.stat().st_mode & 0o111):
        return [f"{words[0]} is not an executable file of the repository"]
    text = path.read_text()
    problems = []
    args = words[1:]
    if "--" in args:
        args = args[: args.index("--")]
    for arg in args:
        if arg.startswith("-") and not re.search(rf"(^|\s|\|){re.escape(arg)}\)", text, re.M):
            problems.append(f"{words[0]} does not handle the option {arg}")
    deploy_env = args[0] if words[0] == "scripts/deploy" and args and not args[0].startswith("-") else None
    if deploy_env and not (ROOT / "inventories" / deploy_env).is_dir():
        problems.append(f"scripts/deploy: no inventory {args[0]}")
    if words[0] == "scripts/tools":
        from testbed import gobuild

        labels = set(re.findall(r"^\s*([a-z]+)\)", text, re.M))
        if not args or args[0] not in labels:
            problems.append(f"scripts/tools has no command {args[:1]}")
        problems += [f"scripts/tools cannot build {t}" for t in args[1:] if t not in gobuild.TOOLS]
    return problems


def _check_command(words: list[str]) -> list[str]:
    head = words[0]
    if head == "ansible-playbook":
        return _check_ansible_playbook(words)
    if head.startswith(("scripts/", "tests/")):
        return _check_script(words)
    if head == "molecule":
        if "-s" in words and not (ROOT / "molecule" / words[words.index("-s") + 1]).is_dir():
            return [f"no molecule scenario {words[words.index('-s') + 1]}"]
        return []
    if head.endswith("pytest"):
        missing = [w for w in words[1:] if not w.startswith("-") and not (ROOT / w).exists()]
        problems = [f"pytest: {m} does not exist" for m in missing]
        if head.startswith(".venv/") and not (ROOT / head).exists():
            problems.append(f"{head} does not exist")
        return problems
    return []


def _words(line: str) -> list[list[str]]:
    """Simple commands of one line with their leading assignments kept."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands, words = [], []
    try:
        for token in lexer:
            if token and set(token) <= set(";&|"):
                commands.append(words)
                words = []
            else:
                words.append(token)
    except ValueError:
        return []
    return [*commands, words]


def _exported(env: str) -> set[str]:
    """Names the guide puts into the environment of the commands it runs: ``export`` statements
    (also written into an env file by ``echo``/here-documents) and ``NAME=value command`` prefixes."""
    names = set()
    for kind, line in _script(_guide(env)):
        if kind == "literal":
            continue
        names |= set(re.findall(r"\bexport\s+([A-Za-z_][A-Za-z0-9_]*)=", line))
        for words in _words(line):
            if words[:1] == ["export"]:
                names |= {w.split("=", 1)[0] for w in words[1:] if re.match(r"^[A-Za-z_]\w*=", w)}
            elif kind == "cmd":
                prefix = []
                for w in words:
                    if re.match(r"^[A-Z][A-Z0-9_]*=", w) and "$(" not in w:
                        prefix.append(w.split("=", 1)[0])
                    else:
                        break
                if prefix and len(words) > len(prefix):
                    names |= set(prefix)
    return names


def _undefined_uses(env: str) -> list[str]:
    defined = set(SHELL_VARIABLES)
    problems = []
    for kind, line in _script(_guide(env)):
        if kind == "literal":
            continue
        text = line if kind == "heredoc" else re.sub(r"'[^']*'", "''", line)
        defined |= set(re.findall(r"\bfor\s+([A-Za-z_][A-Za-z0-9_]*)\s+in\b", line))
        for name, default in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)(:?[-=+?])?", text):
            if name not in defined and not default:
                problems.append(f"${name} is used before the guide sets it: {line.strip()[:120]}")
        defined |= set(re.findall(r"(?:^|[;&|(]\s*|export\s+|\s)([A-Za-z_][A-Za-z0-9_]*)=", line))
    return problems


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_command_names_files_and_flags_that_exist(env):
    commands = _all_commands(env)
    assert any(cmd[0] == "ansible-playbook" for cmd in commands), f"{env}.md never runs ansible-playbook"
    problems = [f"{' '.join(cmd)[:100]}: {p}" for cmd in commands for p in _check_command(cmd)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_exported_variable_is_read_by_the_code(env):
    unread = sorted(_exported(env) - _variables_read_by_code() - SHELL_VARIABLES)
    assert not unread, f"{env}.md exports variables nothing reads: {unread}"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_variable_the_inventory_reads_is_named(env):
    text = _guide(env)
    missing = sorted(v for v in _inventory_env_variables(env) if not re.search(rf"\b{v}\b", text))
    assert not missing, f"inventories/{env} reads {missing} from the environment; {env}.md never names them"


@pytest.mark.parametrize("env", ["oke", "aks", "gke"])
def test_every_required_cloud_secret_is_exported(env):
    # The preflights stop without these on a cloud; the guide must set them, not just mention them.
    required = {
        "TODO_JWT_SECRET",
        "TODO_DAPR_API_TOKEN",
        "TODO_APP_API_TOKEN",
        "TODO_DATABASE_URL",
        "TODO_GRAFANA_ADMIN_PASSWORD",
        "TODO_IMAGE_REPOSITORY",
    }
    required |= {
        v
        for v in _inventory_env_variables(env)
        if v.startswith(("TODO_OCI_S3", "TODO_AZURE_STORAGE", "TODO_GCS", "TODO_EVENTHUBS", "TODO_KAFKA"))
    }
    # Required on the clouds (no default there: the alerts must link to docs the user has).
    if "TODO_RUNBOOK_BASE_URL" in _inventory_env_variables(env):
        required.add("TODO_RUNBOOK_BASE_URL")
    if env == "oke":
        required |= {"TODO_REGISTRY_PULL_USERNAME", "TODO_REGISTRY_PULL_PASSWORD", "TODO_OCI_AUTH_TOKEN"}
    unread = sorted(required - _inventory_env_variables(env))
    assert not unread, f"inventories/{env} no longer reads {unread}: update this list and {env}.md"
    missing = sorted(required - _exported(env))
    assert not missing, f"{env}.md does not export {missing}; the preflights of inventories/{env} need them"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_no_variable_is_used_before_it_is_set(env):
    problems = _undefined_uses(env)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_no_placeholder_is_left_to_fill_in(env):
    leftovers = [
        line
        for kind, line in _script(_guide(env))
        if kind != "literal" and (re.search(r"\.\.\.(?!\.)", line) or re.search(r"(?<!<)<[a-z][\w-]*>", line))
    ]
    assert not leftovers, f"{env}.md: " + "\n".join(leftovers)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_guide_verifies_the_platform(env):
    commands = [" ".join(cmd) for cmd in _all_commands(env)]
    release = yaml.safe_load((ROOT / "roles/monitoring/defaults/main.yml").read_text())[
        "monitoring_release_name"
    ]
    assert any(c.startswith("ansible-playbook playbooks/runbooks/status.yml") for c in commands)
    assert any("tests/e2e" in c or "e2e_port_forward.sh" in c for c in commands), "the e2e suite is not run"
    grafana = f"svc/{release}-grafana"
    assert any(grafana in c for c in commands), f"Grafana is not opened through {grafana}"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_guide_tears_down_what_it_created(env):
    commands = [" ".join(cmd) for cmd in _all_commands(env)]
    missing = [step for step in TEARDOWN[env] if not any(step in c for c in commands)]
    assert not missing, f"{env}.md does not run: {missing}"


# --- nodes against Loki's replicas (issue 13, item 5) ------------------------------------------


def _guide_node_count(env: str) -> int:
    if env == "kind":
        config = yaml.safe_load((ROOT / "roles/cluster/files/kind-config.yml").read_text())
        return len(config["nodes"])
    if env == "minikube":
        local = (ROOT / "roles/cluster/tasks/local.yml").read_text()
        found = re.search(r"--nodes[= ](\d+)", local)
        return int(found.group(1)) if found else 1
    create, flag = NODE_COUNT_FLAGS[env]
    counts = []
    for cmd in _all_commands(env):
        line = " ".join(cmd)
        if line.startswith(create) and flag in cmd:
            count = int(cmd[cmd.index(flag) + 1])
            if "--node-locations" in cmd:  # GKE: --num-nodes is per zone
                count *= len(cmd[cmd.index("--node-locations") + 1].split(","))
            counts.append(count)
    assert len(counts) == 1, f"{env}.md must create its nodes with exactly one `{create} … {flag} N`"
    return counts[0]


def _loki_chart_single_binary_affinity() -> dict:
    from testbed.kube import charts_dir

    version = yaml.safe_load((ROOT / "roles/logging/defaults/main.yml").read_text())[
        "logging_loki_chart_version"
    ]
    with tarfile.open(charts_dir() / f"loki-{version}.tgz") as archive:
        values = yaml.safe_load(archive.extractfile("loki/values.yaml").read())
    return values["singleBinary"]["affinity"] or {}


def _loki_replicas_and_affinity(env: str) -> tuple[int, dict]:
    role_vars = yaml.safe_load((ROOT / "roles/logging/vars/main.yml").read_text())
    role_defaults = yaml.safe_load((ROOT / "roles/logging/defaults/main.yml").read_text())
    inventory = yaml.safe_load(
        (ROOT / "inventories" / env / "group_vars/todo_platform/logging.yml").read_text()
    )
    replicas = int(inventory.get("logging_replicas", role_defaults["logging_replicas"]))
    base = role_vars["_logging_loki_base_values"].get("singleBinary", {})
    override = (inventory.get("logging_values_overrides") or {}).get("singleBinary", {})
    replicas = int(override.get("replicas", replicas))
    affinity = override.get("affinity", base.get("affinity", _loki_chart_single_binary_affinity()))
    return replicas, affinity or {}


def _required_per_host(affinity: dict) -> bool:
    terms = (affinity.get("podAntiAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or []
    return any(term.get("topologyKey") == "kubernetes.io/hostname" for term in terms)


def test_the_loki_chart_still_requires_one_replica_per_node():
    # What the node-count check below relies on, read from the pinned chart archive.
    assert _required_per_host(_loki_chart_single_binary_affinity())


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_guide_creates_enough_nodes_for_loki(env):
    replicas, affinity = _loki_replicas_and_affinity(env)
    nodes = _guide_node_count(env)
    if _required_per_host(affinity):
        assert nodes >= replicas, (
            f"{env}.md creates {nodes} nodes, but Loki runs {replicas} replicas with a required pod "
            f"anti-affinity on kubernetes.io/hostname: {replicas - nodes} would stay Pending"
        )


# --- the networks a guide creates against the inventory's NetworkPolicies ----------------------


def _apps_inventory(env: str) -> dict:
    return yaml.safe_load((ROOT / "inventories" / env / "group_vars/todo_platform/apps.yml").read_text())


def _flag(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def _created_networks(env: str) -> dict[str, ipaddress.IPv4Network]:
    """What the guide creates where the inventory's NetworkPolicies must let traffic through:
    ``lb`` (the load balancer's subnet) and ``database`` (where the database gets its address)."""
    found = {}
    for cmd in _all_commands(env):
        line = " ".join(cmd)
        if env == "oke" and line.startswith("oci network subnet create"):
            name = {"todo-lb": "lb", "todo-workers": "database"}.get(_flag(cmd, "--display-name"))
            if name:
                found[name] = ipaddress.ip_network(_flag(cmd, "--cidr-block"))
        if (
            env == "aks"
            and line.startswith("az network vnet subnet create")
            and _flag(cmd, "-n") == "postgres"
        ):
            found["database"] = ipaddress.ip_network(_flag(cmd, "--address-prefixes"))
        if env == "gke" and line.startswith("gcloud compute addresses create") and "VPC_PEERING" in cmd:
            found["database"] = ipaddress.ip_network(
                f"{_flag(cmd, '--addresses')}/{_flag(cmd, '--prefix-length')}"
            )
    return found


@pytest.mark.parametrize(
    ("env", "expected"), [("oke", {"lb", "database"}), ("aks", {"database"}), ("gke", {"database"})]
)
def test_the_networks_the_guide_creates_are_the_ones_the_policies_allow(env, expected):
    networks = _created_networks(env)
    assert set(networks) == expected, f"{env}.md: could not find the networks {expected - set(networks)}"
    apps = _apps_inventory(env)
    database_cidr = ipaddress.ip_network(apps["apps_database_cidr"])
    assert networks["database"].subnet_of(database_cidr), (
        f"{env}.md puts the database in {networks['database']}, outside apps_database_cidr {database_cidr}"
    )
    if "lb" in networks:
        allowed = [ipaddress.ip_network(c) for c in apps["apps_ingress_cidrs"]]
        assert any(networks["lb"].subnet_of(c) for c in allowed), (
            f"{env}.md's load balancer subnet {networks['lb']} is not in apps_ingress_cidrs {allowed}"
        )
