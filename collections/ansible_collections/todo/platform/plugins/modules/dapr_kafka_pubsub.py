#!/usr/bin/python
# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: dapr_kafka_pubsub
short_description: Build and apply the Dapr Kafka pub/sub Component of a provider
version_added: 0.1.0
author:
  - Todo Platform developers (@todo-platform)
description:
  - Turns the settings of one Kafka provider (in-cluster Strimzi or Redpanda, OCI Streaming, Azure
    Event Hubs, Confluent Cloud or any external Kafka) into a validated Dapr C(pubsub.kafka)
    Component and the Secret that holds its credentials, and applies both through the Kubernetes
    API with server-side apply.
  - Settings that cannot work are refused with a message naming the option, for example an Event
    Hubs namespace on the Basic tier, O(max_message_bytes=1024) or O(tls=false) towards a cloud
    provider.
  - The Component refers to the Secret with C(secretKeyRef) and C(auth.secretStore); passwords are
    never part of the Component, and the returned Secret has its values masked.
  - With O(apply=false) nothing is sent to Kubernetes; the module only returns the Component (for
    example to write it into a self-hosted Dapr resources folder).
  - Check mode sends a server-side dry run; the diff is returned only in diff mode.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
attributes:
  check_mode:
    support: full
    description: Server-side dry run; nothing is written.
  diff_mode:
    support: full
    description: Before and after of the Component and of the Secret, with Secret values masked.
options:
  name:
    description:
      - Name of the Dapr component (C(metadata.name)); the services publish to this name.
    type: str
    default: pubsub
  namespace:
    description:
      - Namespace of the Component and of its Secret.
    type: str
    default: default
  state:
    description:
      - V(present) applies the Component and its Secret; V(absent) deletes both.
    type: str
    choices: [present, absent]
    default: present
  apply:
    description:
      - Send the objects to Kubernetes. With V(false) the module only validates and returns them.
    type: bool
    default: true
  provider:
    description:
      - Where Kafka runs. Decides the rules, the defaults and which other options are needed.
      - V(strimzi), V(redpanda) and V(external) need O(brokers); V(oci_streaming),
        V(azure_event_hubs) and V(confluent_cloud) need the option of the same name.
    type: str
    required: true
    choices: [strimzi, redpanda, oci_streaming, azure_event_hubs, confluent_cloud, external]
  brokers:
    description:
      - Bootstrap servers (C(host:port)) of an in-cluster or external Kafka, for example
        C(todo-kafka-kafka-bootstrap.kafka.svc:9092).
      - Not used for cloud providers.
    type: list
    elements: str
  auth:
    description:
      - SASL towards an in-cluster or external Kafka. V(none) or V(scram) for V(strimzi) and
        V(redpanda); V(external) also accepts V(plain) (only with O(tls=true)).
      - Cloud providers always use SASL/PLAIN over TLS; leave it unset or V(plain).
      - Defaults to V(none) for in-cluster and external brokers.
    type: str
    choices: [none, scram, plain]
  sasl_username:
    description:
      - SASL user for O(auth=scram) or O(auth=plain).
    type: str
  sasl_password:
    description:
      - SASL password for O(auth=scram) or O(auth=plain); stored in the Secret.
    type: str
  scram_mechanism:
    description:
      - SCRAM hash for O(auth=scram).
    type: str
    choices: [SHA-512, SHA-256]
    default: SHA-512
  tls:
    description:
      - Use TLS towards an in-cluster or external Kafka. Defaults to V(false) there.
      - Cloud providers require TLS; V(false) is refused.
    type: bool
  tls_ca_cert:
    description:
      - CA certificate (PEM text, or path of a PEM file on the managed node) that signed the
        broker certificate. Stored in the Secret and referenced as C(caCert).
      - Required for TLS without SASL (Dapr C(authType=certificate)).
    type: str
  tls_skip_verify:
    description:
      - Do not verify the broker certificate. Only for tests; refused for cloud providers.
    type: bool
    default: false
  oci_streaming:
    description:
      - OCI Streaming settings; required with O(provider=oci_streaming).
      - The SASL user name is built from the parts in one of the two forms Oracle documents for
        Streaming's Kafka API, C(tenancyName/domainName/userName/streamPoolOCID) when
        O(oci_streaming.domain) is given (tenancies with identity domains), and
        C(tenancyName/userName/streamPoolOCID) when it is left out (tenancies without identity domains).
    type: dict
    suboptions:
      tenancy:
        description:
          - Tenancy name (not its OCID).
          - Non-empty, no C(/), no leading or trailing spaces.
        type: str
      domain:
        description:
          - Name of the identity domain the user belongs to (not its OCID), for example V(Default) for
            the default domain of a tenancy with identity domains.
          - Leave it out (or null) for a tenancy without identity domains; the user name then has three
            parts. When given it must be non-empty, without C(/) and without leading or trailing spaces.
          - There is no default (version 0.1.0 of the collection used V(Default)). A tenancy with
            identity domains must name one, or Streaming refuses the SASL login.
        type: str
      user:
        description:
          - Name of the user that owns the auth token (not its OCID).
          - Non-empty, no C(/), no leading or trailing spaces.
        type: str
      stream_pool_id:
        description: OCID of the stream pool (C(ocid1.streampool....)).
        type: str
      bootstrap_servers:
        description:
          - The stream pool's C(kafka_settings.bootstrap_servers), as returned by
            M(oracle.oci.oci_streaming_stream_pool_info) (port 9092).
        type: list
        elements: str
      auth_token:
        description: IAM auth token of the user; stored in the Secret.
        type: str
  azure_event_hubs:
    description:
      - Azure Event Hubs settings; required with O(provider=azure_event_hubs).
      - The broker is C(<namespace>.servicebus.windows.net:9093), the user C($ConnectionString) and
        the protocol version C(1.0.0).
    type: dict
    suboptions:
      namespace:
        description: Event Hubs namespace name (not the FQDN).
        type: str
      tier:
        description:
          - Pricing tier of the namespace. V(basic) has no Kafka endpoint and is refused.
        type: str
        choices: [basic, standard, premium, dedicated]
      connection_string:
        description:
          - Connection string of a shared access policy (C(Endpoint=sb://...;SharedAccessKey=...));
            stored in the Secret. SAS tokens are not accepted by the Kafka endpoint.
        type: str
      topics:
        description:
          - Topics (event hubs) the applications use; checked against the tier's limit (10 on Standard).
        type: list
        elements: str
  confluent_cloud:
    description:
      - Confluent Cloud settings; required with O(provider=confluent_cloud).
    type: dict
    suboptions:
      bootstrap_servers:
        description: Cluster bootstrap endpoint (C(pkc-....confluent.cloud:9092)).
        type: list
        elements: str
      api_key:
        description: Cluster API key (the SASL user).
        type: str
      api_secret:
        description: Cluster API secret; stored in the Secret.
        type: str
  consumer_group:
    description:
      - Dapr C(consumerGroup). The default gives each application its own group.
      - Dapr fills in C({appID}), C({podName}) and C({namespace}).
    type: str
    default: '{appID}'
  consumer_group_per_replica:
    description:
      - Give every replica its own group by adding C(-{podName}), so each replica receives every
        message (fan-out consumers such as the sync service). Use it on a component scoped
        (O(scopes)) to those applications.
    type: bool
    default: false
  initial_offset:
    description:
      - Where a consumer group starts that has no committed offset yet (Dapr passes it to its Kafka
        client as the initial offset; a group that has committed offsets resumes from them).
      - Defaults to V(oldest) for a shared group (a new app reads what was published before it
        subscribed) and to V(newest) with O(consumer_group_per_replica=true), whose group is new for
        every new pod and would otherwise replay the topic's whole retention to it.
    type: str
    choices: [oldest, newest]
  version:
    description:
      - Kafka protocol version Dapr (sarama) speaks.
      - Defaults to V(3.6.0) (in-cluster, external and Confluent Cloud; Kafka 4.x brokers refuse
        versions older than 2.1.0), V(2.0.0) for OCI Streaming and V(1.0.0) for Event Hubs, which
        accepts nothing else.
    type: str
  max_message_bytes:
    description:
      - Largest message the producer sends. Leave unset to keep the client default of 1000000.
      - Values below 65536 are refused; OCI Streaming and Event Hubs cap it at about 1 MB.
    type: int
  compression:
    description:
      - Producer compression. Event Hubs accepts only V(none) and V(gzip).
    type: str
    choices: [none, gzip, snappy, lz4, zstd]
  heartbeat_interval:
    description:
      - Consumer heartbeat interval (for example V(3s)). Defaults to V(10s) for OCI Streaming,
        whose heartbeat rate is limited.
    type: str
  session_timeout:
    description:
      - Consumer session timeout; at least three heartbeats. Defaults to V(30s) for OCI Streaming.
    type: str
  metadata_refresh_interval:
    description:
      - Dapr C(clientConnectionTopicMetadataRefreshInterval). Defaults to V(3m) for Event Hubs,
        which closes connections idle for 240 seconds; longer values are refused there.
    type: str
  scopes:
    description:
      - Dapr app-ids allowed to use the component. All applications when unset.
    type: list
    elements: str
  secret_name:
    description:
      - Name of the Secret holding the credentials and CA. Defaults to C(<name>-kafka).
    type: str
  secret_store:
    description:
      - Dapr secret store that resolves the C(secretKeyRef) entries (C(auth.secretStore)).
    type: str
    default: kubernetes
  extra_metadata:
    description:
      - More Dapr metadata entries (for example C(consumeRetryInterval)). Keys the module manages
        itself are refused.
    type: dict
  field_manager:
    description:
      - Field manager of the server-side apply.
    type: str
    default: todo.platform
requirements:
  - kubernetes >= 24.2.0 (Python library, only with O(apply=true))
  - PyYAML
seealso:
  - module: todo.platform.kafka_topic
  - module: todo.platform.kafka_probe
  - module: kubernetes.core.k8s
notes:
  - The Dapr CRDs (C(components.dapr.io)) must be installed before O(apply=true).
  - Use the C(todo.platform.k8s) action group in C(module_defaults) to set O(kubeconfig) and
    O(context) once for this module and the C(kubernetes.core) modules.
"""

EXAMPLES = r"""
- name: Wire the in-cluster Strimzi Kafka with SCRAM into Dapr
  todo.platform.dapr_kafka_pubsub:
    provider: strimzi
    namespace: todo
    brokers:
      - todo-kafka-kafka-bootstrap.kafka.svc:9092
    auth: scram
    sasl_username: todo-app
    sasl_password: "{{ vault_kafka_password }}"
  no_log: true

- name: Wire OCI Streaming
  todo.platform.dapr_kafka_pubsub:
    provider: oci_streaming
    namespace: todo
    oci_streaming:
      tenancy: mytenancy
      domain: Default
      user: todo-streaming
      stream_pool_id: "{{ stream_pool.id }}"
      bootstrap_servers: "{{ stream_pool.kafka_settings.bootstrap_servers }}"
      auth_token: "{{ vault_oci_auth_token }}"

- name: Wire Azure Event Hubs (Standard tier)
  todo.platform.dapr_kafka_pubsub:
    provider: azure_event_hubs
    namespace: todo
    azure_event_hubs:
      namespace: todo-events
      tier: standard
      connection_string: "{{ vault_eventhubs_connection_string }}"
      topics: [task-events, reminders, task-events-dlq, reminders-dlq]

- name: Give each sync replica its own consumer group
  todo.platform.dapr_kafka_pubsub:
    name: pubsub-fanout
    provider: strimzi
    namespace: todo
    brokers: [todo-kafka-kafka-bootstrap.kafka.svc:9092]
    consumer_group_per_replica: true
    scopes: [sync]

- name: Only build the Component (nothing is sent to Kubernetes)
  todo.platform.dapr_kafka_pubsub:
    provider: external
    brokers: [127.0.0.1:9092]
    apply: false
  register: pubsub
"""

RETURN = r"""
component:
  description: The Dapr Component as applied (or as it would be applied).
  returned: always
  type: dict
  sample:
    apiVersion: dapr.io/v1alpha1
    kind: Component
    metadata: {name: pubsub, namespace: todo}
    spec:
      type: pubsub.kafka
      version: v1
      metadata:
        - {name: brokers, value: "todo-kafka-kafka-bootstrap.kafka.svc:9092"}
        - {name: authType, value: password}
        - {name: saslPassword, secretKeyRef: {name: pubsub-kafka, key: saslPassword}}
component_yaml:
  description: The Component as a YAML document.
  returned: always
  type: str
secret:
  description:
    - The Secret the Component refers to, with every value replaced by C(********).
    - Absent when no credential or CA is needed.
  returned: when the provider settings need credentials or a CA
  type: dict
  sample:
    apiVersion: v1
    kind: Secret
    metadata: {name: pubsub-kafka, namespace: todo}
    data: {saslPassword: "********"}
secret_name:
  description: Name of the Secret (also when none is needed).
  returned: always
  type: str
results:
  description: What happened to each object.
  returned: when O(apply=true)
  type: list
  elements: dict
  contains:
    kind:
      description: C(Component) or C(Secret).
      type: str
      returned: always
    name:
      description: Object name.
      type: str
      returned: always
    changed:
      description: Whether the object was (or would be) created, changed or deleted.
      type: bool
      returned: always
"""

from ansible.module_utils.basic import missing_required_lib
from ansible.module_utils.common.yaml import HAS_YAML, yaml_dump
from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule
from ansible_collections.todo.platform.plugins.module_utils.dapr_pubsub import (
    COMPRESSIONS,
    INITIAL_OFFSETS,
    build_resources,
)
from ansible_collections.todo.platform.plugins.module_utils.k8s_apply import (
    HAS_KUBERNETES,
    ApplyError,
    ensure,
    masked,
    run_k8s_module,
)
from ansible_collections.todo.platform.plugins.module_utils.providers import (
    AUTH_TYPES,
    DAPR_MUTUALLY_EXCLUSIVE,
    DAPR_REQUIRED_IF,
    EVENT_HUBS_TIERS,
    PROVIDERS,
    SCRAM_MECHANISMS,
    SettingError,
)

ARGUMENT_SPEC = dict(
    name=dict(type="str", default="pubsub"),
    namespace=dict(type="str", default="default"),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    apply=dict(type="bool", default=True),
    provider=dict(type="str", required=True, choices=list(PROVIDERS)),
    brokers=dict(type="list", elements="str"),
    auth=dict(type="str", choices=list(AUTH_TYPES)),
    sasl_username=dict(type="str"),
    sasl_password=dict(type="str", no_log=True),
    scram_mechanism=dict(type="str", choices=list(SCRAM_MECHANISMS), default=SCRAM_MECHANISMS[0]),
    tls=dict(type="bool"),
    tls_ca_cert=dict(type="str"),
    tls_skip_verify=dict(type="bool", default=False),
    oci_streaming=dict(
        type="dict",
        options=dict(
            tenancy=dict(type="str"),
            domain=dict(type="str"),
            user=dict(type="str"),
            stream_pool_id=dict(type="str"),
            bootstrap_servers=dict(type="list", elements="str"),
            auth_token=dict(type="str", no_log=True),
        ),
    ),
    azure_event_hubs=dict(
        type="dict",
        options=dict(
            namespace=dict(type="str"),
            tier=dict(type="str", choices=list(EVENT_HUBS_TIERS)),
            connection_string=dict(type="str", no_log=True),
            topics=dict(type="list", elements="str"),
        ),
    ),
    confluent_cloud=dict(
        type="dict",
        options=dict(
            bootstrap_servers=dict(type="list", elements="str"),
            api_key=dict(type="str", no_log=False),
            api_secret=dict(type="str", no_log=True),
        ),
    ),
    consumer_group=dict(type="str", default="{appID}"),
    consumer_group_per_replica=dict(type="bool", default=False),
    initial_offset=dict(type="str", choices=list(INITIAL_OFFSETS)),
    version=dict(type="str"),
    max_message_bytes=dict(type="int"),
    compression=dict(type="str", choices=list(COMPRESSIONS)),
    heartbeat_interval=dict(type="str"),
    session_timeout=dict(type="str"),
    metadata_refresh_interval=dict(type="str"),
    scopes=dict(type="list", elements="str"),
    secret_name=dict(type="str"),
    secret_store=dict(type="str", default="kubernetes", no_log=False),
    extra_metadata=dict(type="dict"),
    field_manager=dict(type="str", default="todo.platform"),
)


def _diff_entry(kind, before, after):
    header = "{} {}".format(kind, (after or before or {}).get("metadata", {}).get("name", ""))
    return dict(
        before_header=header,
        after_header=header,
        before=masked(before, None) if before is not None else {},
        after=masked(after, before) if after is not None else {},
    )


def _objects(params, built, secret_name):
    """(kind, definition) in the order to apply; reversed for state=absent."""
    # Secret first so the Component never points at a missing Secret; reverse order on delete.
    objects = [("Secret", built["secret"]), ("Component", built["component"])]
    if params["state"] == "absent":
        objects.reverse()
        if built["secret"] is None:
            # Delete a Secret left by an earlier configuration with credentials as well.
            metadata = {"name": secret_name, "namespace": params["namespace"]}
            objects.append(("Secret", {"apiVersion": "v1", "kind": "Secret", "metadata": metadata}))
    return [(kind, definition) for kind, definition in objects if definition is not None]


def apply_objects(module, client, built, result):
    params = module.params
    results, diffs = [], []
    for kind, definition in _objects(params, built, result["secret_name"]):
        try:
            outcome = ensure(module, client, definition, params["state"], params["field_manager"])
        except ApplyError as e:
            module.fail_json(msg=str(e), results=results)
        except Exception as e:  # connection refused, TLS, timeouts of the API client
            module.fail_json(
                msg="cannot reach the Kubernetes API ({}): {}; check kubeconfig, context and host".format(
                    getattr(e, "kind", type(e).__name__), " ".join(str(e).split())[:300]
                ),
                results=results,
            )
        results.append(dict(kind=kind, name=definition["metadata"]["name"], changed=outcome["changed"]))
        if outcome["changed"]:
            result["changed"] = True
            diffs.append(_diff_entry(kind, outcome["before"], outcome["after"]))
    result["results"] = results
    if module._diff and diffs:
        result["diff"] = diffs
    module.exit_json(**result)


def run(module):
    params = dict(module.params)
    try:
        built = build_resources(params)
    except SettingError as e:
        module.fail_json(msg=str(e), setting=e.setting)
    component, secret = built["component"], built["secret"]
    for warning in built["warnings"]:
        module.warn(warning)
    result = dict(
        changed=False,
        component=component,
        component_yaml=yaml_dump(component, default_flow_style=False, sort_keys=False),
        secret_name=params.get("secret_name") or "{}-kafka".format(params["name"]),
    )
    if secret is not None:
        result["secret"] = masked(secret)
    if not params["apply"]:
        module.exit_json(**result)
    if not HAS_KUBERNETES:
        module.fail_json(
            msg=missing_required_lib("kubernetes"), error="apply: true needs the kubernetes library"
        )
    run_k8s_module(
        module, "dapr_kafka_pubsub", lambda _module, client: apply_objects(module, client, built, result)
    )


def main():
    argument_spec = dict(AUTH_ARG_SPEC)
    argument_spec.update(ARGUMENT_SPEC)
    module = AnsibleK8SModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        check_k8s=False,
        check_pyyaml=False,
        required_if=DAPR_REQUIRED_IF,
        mutually_exclusive=DAPR_MUTUALLY_EXCLUSIVE,
    )
    if not HAS_YAML:
        module.fail_json(msg=missing_required_lib("PyYAML"))
    try:
        run(module)
    except Exception as e:  # never a traceback: say what broke in one line
        module.fail_json(msg=f"dapr_kafka_pubsub failed unexpectedly: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
