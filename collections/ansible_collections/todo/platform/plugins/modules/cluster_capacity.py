#!/usr/bin/python
# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_capacity
short_description: Check that a cluster can hold a set of workloads before they are installed
version_added: 0.1.0
author:
  - Todo Platform developers (@todo-platform)
description:
  - Adds up the CPU, memory and pod count the workloads request and compares them with the
    allocatable capacity of the nodes a pod can be scheduled on (not cordoned, no C(NoSchedule) or
    C(NoExecute) taint), minus what pods outside O(stack_namespaces) already request there.
  - Checks that workloads with a required pod anti-affinity on C(kubernetes.io/hostname) find one
    node per replica, and places every pod (largest first) so that a stack that fits in total but
    not node by node is reported too.
  - Fails with what is missing ("needs 3 nodes for logging/loki's required anti-affinity, the cluster
    has 2 schedulable nodes; needs 5.1 CPU, the cluster has 3.8 CPU allocatable") and what to do,
    instead of letting a Helm release time out later.
  - Pure computation over what it is given; read the nodes and pods with M(kubernetes.core.k8s_info)
    and the charts' objects with M(kubernetes.core.helm_template).
attributes:
  check_mode:
    support: full
    description: Nothing is changed; the check runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing is changed, so there is nothing to compare.
options:
  nodes:
    description:
      - The cluster's Node objects (the C(resources) of M(kubernetes.core.k8s_info) with C(kind=Node)).
    type: list
    elements: dict
    required: true
  pods:
    description:
      - The cluster's Pod objects. Pods outside O(stack_namespaces) that are not finished count as
        already using their node's capacity (system pods, other applications).
    type: list
    elements: dict
    default: []
  stack_namespaces:
    description:
      - Namespaces whose pods belong to the stack being checked; their running pods are not counted
        twice when the stack is deployed again.
    type: list
    elements: str
    default: []
  stack_labels:
    description:
      - Labels (all of them) that mark a pod outside O(stack_namespaces) as the stack's own, for
        example a metrics-server the stack installs in C(kube-system); such pods are not counted
        twice when the stack is deployed again.
    type: dict
    default: {}
  manifests:
    description:
      - Rendered objects (for example the documents of C(helm template)). Deployments,
        StatefulSets, ReplicaSets and DaemonSets become workloads; other kinds are ignored, Jobs
        included (they run to completion).
      - The Prometheus operator's C(Prometheus), C(PrometheusAgent) and C(Alertmanager) objects become
        workloads too (C(spec.replicas) times C(spec.shards), C(spec.resources), the Thanos sidecar),
        with the config-reloader requests the operator's Deployment among the manifests passes it
        (C(--config-reloader-cpu-request), C(--config-reloader-memory-request)); without that
        Deployment the reloader is counted as requesting nothing.
    type: list
    elements: raw
    default: []
  workloads:
    description:
      - Workloads given directly, for objects that are not rendered here (the operator-made Kafka
        brokers, the application Deployments).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Name shown in the report, for example C(todo/backend).
        type: str
        required: true
      replicas:
        description: Number of pods.
        type: int
        default: 1
      cpu:
        description: CPU request of one pod (Kubernetes quantity, for example C(250m)).
        type: raw
        default: 0
      memory:
        description: Memory request of one pod (Kubernetes quantity, for example C(512Mi)).
        type: raw
        default: 0
      distinct_nodes:
        description: The replicas must run on different nodes (required anti-affinity on the hostname).
        type: bool
        default: false
      per_node:
        description: One pod on every node (a DaemonSet); O(workloads[].replicas) is ignored.
        type: bool
        default: false
      dapr_sidecar:
        description: The pods get the Dapr sidecar; the requests in O(sidecar) are added to each.
        type: bool
        default: false
  sidecar:
    description:
      - Requests of the Dapr sidecar, added to every rendered pod annotated C(dapr.io/enabled=true)
        that does not carry its own C(dapr.io/sidecar-cpu-request)/C(dapr.io/sidecar-memory-request),
        and to the O(workloads) with O(workloads[].dapr_sidecar).
    type: dict
    default: {}
    suboptions:
      cpu:
        description: CPU request of the sidecar.
        type: raw
      memory:
        description: Memory request of the sidecar.
        type: raw
  hints:
    description:
      - What a user changes to size a workload, by workload name (C(logging/loki)) or namespace
        (C(logging)). When the stack does not fit, the failure message names, for each workload
        the shortage is about (the ones short of nodes or placement, the three largest requests when
        CPU or memory is short), the hint that applies to it.
    type: dict
    default: {}
  how_to_fix:
    description:
      - General advice closing the failure message (for example how to skip or soften the check).
    type: str
    default: >-
      Add nodes or use a larger node shape, or lower the replicas/requests in the inventory
      (see docs/capacity.md for what each inventory requests).
  fail_on_shortage:
    description:
      - Fail when the workloads do not fit. With C(false) the module only reports (RV(fits)).
    type: bool
    default: true
notes:
  - Requests only; limits and actual usage are not considered, and neither are node selectors,
    tolerations or topology spread constraints of the workloads.
seealso:
  - module: kubernetes.core.k8s_info
  - module: kubernetes.core.helm_template
"""

EXAMPLES = r"""
- name: Read the nodes
  kubernetes.core.k8s_info:
    kind: Node
  register: nodes

- name: Read the pods
  kubernetes.core.k8s_info:
    kind: Pod
  register: pods

- name: Render Loki
  kubernetes.core.helm_template:
    chart_ref: /srv/charts/loki-18.11.0.tgz
    release_name: loki
    release_namespace: logging
    release_values: "{{ loki_values }}"
  check_mode: false
  changed_when: false
  register: loki

- name: Check that the cluster can hold Loki and the applications
  todo.platform.cluster_capacity:
    nodes: "{{ nodes.resources }}"
    pods: "{{ pods.resources }}"
    stack_namespaces: [logging, todo]
    manifests: "{{ loki.stdout | ansible.builtin.from_yaml_all | list }}"
    workloads:
      - {name: todo/backend, replicas: 2, cpu: 100m, memory: 192Mi}
    sidecar: {cpu: 50m, memory: 64Mi}
"""

RETURN = r"""
fits:
  description: Whether every workload fits.
  returned: always
  type: bool
  sample: false
problems:
  description: What does not fit, in words.
  returned: always
  type: list
  elements: str
  sample:
    - >-
      needs 3 nodes for logging/loki's required anti-affinity (one replica per node),
      the cluster has 2 schedulable nodes
summary:
  description: Requests against allocatable in one line.
  returned: always
  type: str
  sample: "3 nodes; requests 4.1 CPU of 5.79 CPU, 9.5 GiB of 18.3 GiB, 41 pods of 330"
node_count:
  description: Number of schedulable nodes.
  returned: always
  type: int
nodes:
  description:
    - The schedulable nodes with their allocatable C(cpu) (millicores), C(memory) (bytes), C(pods)
      and C(zone).
  returned: always
  type: list
  elements: dict
allocatable:
  description: Sum of the schedulable nodes' allocatable C(cpu) (millicores), C(memory) (bytes) and C(pods).
  returned: always
  type: dict
other_requests:
  description: Requests of the pods outside O(stack_namespaces) on those nodes (same units).
  returned: always
  type: dict
requested:
  description: Requests of the workloads (same units).
  returned: always
  type: dict
culprits:
  description: The workloads a shortage is about, most relevant first (see O(hints)).
  returned: always
  type: list
  elements: str
workloads:
  description: One row per workload with C(pods), per-pod C(cpu)/C(memory) and C(total_cpu)/C(total_memory).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.todo.platform.plugins.module_utils.capacity import (
    CapacityError,
    advice,
    check,
    normalize_workload,
    summary,
    workloads_from_manifests,
)

HOW_TO_FIX = (
    "Add nodes or use a larger node shape, or lower the replicas/requests in the inventory "
    "(see docs/capacity.md for what each inventory requests)."
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            nodes=dict(type="list", elements="dict", required=True),
            pods=dict(type="list", elements="dict", default=[]),
            stack_namespaces=dict(type="list", elements="str", default=[]),
            stack_labels=dict(type="dict", default={}),
            manifests=dict(type="list", elements="raw", default=[]),
            workloads=dict(
                type="list",
                elements="dict",
                default=[],
                options=dict(
                    name=dict(type="str", required=True),
                    replicas=dict(type="int", default=1),
                    cpu=dict(type="raw", default=0),
                    memory=dict(type="raw", default=0),
                    distinct_nodes=dict(type="bool", default=False),
                    per_node=dict(type="bool", default=False),
                    dapr_sidecar=dict(type="bool", default=False),
                ),
            ),
            sidecar=dict(
                type="dict",
                default={},
                options=dict(cpu=dict(type="raw"), memory=dict(type="raw")),
            ),
            hints=dict(type="dict", default={}),
            how_to_fix=dict(type="str", default=HOW_TO_FIX),
            fail_on_shortage=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        workloads = workloads_from_manifests(p["manifests"], p["sidecar"]) + [
            normalize_workload(w, p["sidecar"]) for w in p["workloads"]
        ]
        report = check(workloads, p["nodes"], p["pods"], p["stack_namespaces"], p["stack_labels"])
    except CapacityError as exc:
        module.fail_json(msg=f"cannot check the cluster's capacity: {exc}")
    report["summary"] = summary(report)
    if not report["fits"] and p["fail_on_shortage"]:
        to_change = advice(report, p["hints"])
        module.fail_json(
            msg=f"The cluster cannot hold the stack: {'; '.join(report['problems'])}. "
            + (f"What sizes them: {'; '.join(to_change)}. " if to_change else "")
            + f"{p['how_to_fix']} ({report['summary']})",
            **report,
        )
    module.exit_json(changed=False, **report)


if __name__ == "__main__":
    main()
