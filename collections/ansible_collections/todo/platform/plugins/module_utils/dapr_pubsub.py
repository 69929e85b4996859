# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of todo.platform.dapr_kafka_pubsub: the builders of the Dapr pubsub.kafka
Component and of the Secret it references. The connection (brokers, credentials, TLS) comes
from providers.resolve_connection; what is here is Dapr's metadata and its per-provider tuning.

Nothing here talks to a network; every rule raises SettingError naming the setting to fix,
so the module (and the unit tests) can turn it into one clear fail_json message.
"""

from __future__ import annotations

import base64
import re

from ansible_collections.todo.platform.plugins.module_utils.providers import (
    PROVIDER_TITLES,
    SettingError,
    resolve_connection,
)

# Kafka protocol version sarama announces. Kafka 4.x brokers (Strimzi today) dropped the
# request versions older than Kafka 2.1, so in-cluster brokers get a modern value. Event Hubs
# needs exactly 1.0.0; OCI Streaming keeps Dapr's own default, which it is known to accept.
DEFAULT_VERSION = {
    "strimzi": "3.6.0",
    "redpanda": "3.6.0",
    "oci_streaming": "2.0.0",
    "azure_event_hubs": "1.0.0",
    "confluent_cloud": "3.6.0",
    "external": "3.6.0",
}
KAFKA4_MIN_VERSION = (2, 1, 0)

# Largest message each managed service accepts (bytes).
MAX_MESSAGE_BYTES_LIMIT = {
    "oci_streaming": 1048576,
    "azure_event_hubs": 1046527,
}
# Below this a task snapshot with a long description no longer fits; it catches the 1024
# that the Dapr docs' examples show (the default is sarama's 1,000,000 when unset).
MIN_MAX_MESSAGE_BYTES = 65536

EVENT_HUBS_IDLE_SECONDS = 240

COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")
INITIAL_OFFSETS = ("oldest", "newest")

SECRET_KEY_PASSWORD = "saslPassword"
SECRET_KEY_CA = "caCert"
MASK = "********"

# Metadata the module manages itself; extra_metadata may not override these.
MANAGED_METADATA = frozenset(
    {
        "brokers",
        "authType",
        "authRequired",
        "saslUsername",
        "saslPassword",
        "saslMechanism",
        "disableTls",
        "caCert",
        "skipVerify",
        "consumerGroup",
        "consumerID",
        "initialOffset",
        "version",
        "maxMessageBytes",
        "compression",
        "heartbeatInterval",
        "sessionTimeout",
        "clientConnectionTopicMetadataRefreshInterval",
    }
)

_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DURATION = re.compile(r"^(\d+)(ms|s|m|h)$")


def parse_version(value, setting="version"):
    m = _VERSION.match(str(value))
    if not m:
        raise SettingError(setting, f"'{value}' is not a Kafka version like 3.6.0")
    return tuple(int(p) for p in m.groups())


def duration_seconds(value, setting):
    """Dapr accepts Go durations; this checks the simple forms (500ms, 10s, 3m, 1h)."""
    m = _DURATION.match(str(value).strip())
    if not m:
        raise SettingError(setting, f"'{value}' is not a duration like 500ms, 10s, 3m or 1h")
    number, unit = int(m.group(1)), m.group(2)
    return number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


# ---------------------------------------------------------------- Dapr metadata


def consumer_group(p):
    group = p.get("consumer_group") or "{appID}"
    if not group.strip():
        raise SettingError("consumer_group", "must not be empty")
    if p.get("consumer_group_per_replica") and "{podName}" not in group:
        group = group + "-{podName}"
    if len(group) > 255:
        raise SettingError("consumer_group", "is longer than 255 characters")
    return group


def build_metadata(p, conn):
    """Return the Dapr metadata list (dicts) and the Secret's string data."""
    md, secret_data = auth_metadata(conn, p["secret_name"])
    md += consumer_metadata(p)
    md += version_metadata(p["provider"], p.get("version"), conn["warnings"])
    md += limits_metadata(p["provider"], p.get("max_message_bytes"), p.get("compression"))
    md += timing_metadata(p)
    md += extra_metadata(p.get("extra_metadata"))
    items = []
    for key, value in md:
        items.append(
            dict({"name": key}, **value) if isinstance(value, dict) else {"name": key, "value": value}
        )
    return items, secret_data


def _secret_ref(secret_name, key):
    return {"secretKeyRef": {"name": secret_name, "key": key}}


def auth_metadata(conn, secret_name):
    """Brokers, credentials and TLS as Dapr names them; the secret values go to the Secret."""
    md, secret_data = [("brokers", ",".join(conn["brokers"]))], {}
    if conn["auth"] == "none":
        md.append(("authType", "certificate" if conn["tls"] else "none"))
    else:
        md.append(("authType", "password"))
        md.append(("saslUsername", conn["username"]))
        md.append(("saslPassword", _secret_ref(secret_name, SECRET_KEY_PASSWORD)))
        secret_data[SECRET_KEY_PASSWORD] = conn["password"]
        # Dapr maps SHA-512/SHA-256 to SCRAM and every other value to SASL/PLAIN.
        scram = conn["mechanism"].replace("SCRAM-", "") if conn["auth"] == "scram" else None
        md.append(("saslMechanism", scram or "PLAINTEXT"))
    md.append(("disableTls", "false" if conn["tls"] else "true"))
    if conn["ca"]:
        md.append(("caCert", _secret_ref(secret_name, SECRET_KEY_CA)))
        secret_data[SECRET_KEY_CA] = conn["ca"]
    if conn["tls"] and conn["skip_verify"]:
        md.append(("skipVerify", "true"))
    return md, secret_data


def consumer_metadata(p):
    # Dapr hands initialOffset to sarama as Consumer.Offsets.Initial (components-contrib
    # common/component/kafka/kafka.go), which only applies to a group with no committed offset.
    # A per-replica group is new for every new pod, so "oldest" would replay the whole retention
    # (days of events) to it: per-replica groups start at the newest offset unless told otherwise.
    offset = p.get("initial_offset") or ("newest" if p.get("consumer_group_per_replica") else "oldest")
    if offset not in INITIAL_OFFSETS:
        raise SettingError("initial_offset", f"must be oldest or newest, got {offset!r}")
    return [("consumerGroup", consumer_group(p)), ("initialOffset", offset)]


def version_metadata(provider, version, warnings):
    version = version or DEFAULT_VERSION[provider]
    parsed = parse_version(version)
    if provider == "azure_event_hubs" and version != "1.0.0":
        raise SettingError(
            "version", "Azure Event Hubs needs Kafka protocol version 1.0.0 (SASL/PLAIN breaks on newer ones)"
        )
    if provider == "strimzi" and parsed < KAFKA4_MIN_VERSION:
        raise SettingError(
            "version",
            "{} is older than 2.1.0; Strimzi runs Kafka 4.x, which no longer accepts those requests "
            "(use {})".format(version, DEFAULT_VERSION["strimzi"]),
        )
    if provider in ("redpanda", "external", "confluent_cloud") and parsed < KAFKA4_MIN_VERSION:
        warnings.append(f"version {version} is older than 2.1.0: brokers on Kafka 4.x reject such requests")
    return [("version", version)]


def limits_metadata(provider, max_message_bytes, compression):
    md = []
    if max_message_bytes is not None:
        if max_message_bytes < MIN_MAX_MESSAGE_BYTES:
            raise SettingError(
                "max_message_bytes",
                f"{max_message_bytes} bytes is too small for task events (at least {MIN_MAX_MESSAGE_BYTES}); "
                "leave it unset for sarama's 1000000",
            )
        limit = MAX_MESSAGE_BYTES_LIMIT.get(provider)
        if limit and max_message_bytes > limit:
            raise SettingError(
                "max_message_bytes",
                f"{PROVIDER_TITLES[provider]} accepts messages up to {limit} bytes, got {max_message_bytes}",
            )
        md.append(("maxMessageBytes", str(max_message_bytes)))
    if compression:
        if compression not in COMPRESSIONS:
            raise SettingError("compression", "must be one of {}".format(", ".join(COMPRESSIONS)))
        if provider == "azure_event_hubs" and compression not in ("none", "gzip"):
            raise SettingError(
                "compression", f"Azure Event Hubs only accepts gzip or none, got {compression}"
            )
        md.append(("compression", compression))
    return md


def timing_metadata(p):
    provider = p["provider"]
    heartbeat, session = p.get("heartbeat_interval"), p.get("session_timeout")
    refresh = p.get("metadata_refresh_interval")
    if provider == "oci_streaming":
        # OCI allows 5 heartbeats/s per stream pool; many sidecars at Dapr's 3s would exceed it.
        heartbeat, session = heartbeat or "10s", session or "30s"
    if provider == "azure_event_hubs":
        refresh = refresh or "3m"
        if duration_seconds(refresh, "metadata_refresh_interval") >= EVENT_HUBS_IDLE_SECONDS:
            raise SettingError(
                "metadata_refresh_interval",
                "Event Hubs closes connections idle for 240s; refresh metadata more often (for example 3m)",
            )
    if (
        heartbeat
        and session
        and duration_seconds(heartbeat, "heartbeat_interval") * 3
        > duration_seconds(session, "session_timeout")
    ):
        raise SettingError("session_timeout", f"must be at least three heartbeat_interval ({heartbeat})")
    md = []
    for key, value, setting in (
        ("heartbeatInterval", heartbeat, "heartbeat_interval"),
        ("sessionTimeout", session, "session_timeout"),
        ("clientConnectionTopicMetadataRefreshInterval", refresh, "metadata_refresh_interval"),
    ):
        if value:
            duration_seconds(value, setting)
            md.append((key, value))
    return md


def extra_metadata(extra):
    """Metadata the module has no option for (Dapr topic scopes and the like), passed as strings."""
    md = []
    for key in sorted(extra or {}):
        if key in MANAGED_METADATA:
            raise SettingError("extra_metadata", f"'{key}' is set by the module's own options; remove it")
        value = extra[key]
        if isinstance(value, bool):
            value = "true" if value else "false"
        md.append((key, str(value)))
    return md


# ---------------------------------------------------------------- resources


def validate_names(p):
    name = p.get("name") or ""
    if not _DNS_LABEL.match(name) or len(name) > 63:
        raise SettingError("name", f"'{name}' is not a valid Kubernetes name (lower case, digits, '-')")
    namespace = p.get("namespace") or ""
    if not _DNS_LABEL.match(namespace) or len(namespace) > 63:
        raise SettingError("namespace", f"'{namespace}' is not a valid namespace name")
    secret_name = p.get("secret_name") or f"{name}-kafka"
    if not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", secret_name) or len(secret_name) > 253:
        raise SettingError("secret_name", f"'{secret_name}' is not a valid Secret name")
    for app_id in p.get("scopes") or []:
        if not app_id or not app_id.strip():
            raise SettingError("scopes", "holds an empty app-id")
    store = p.get("secret_store") or "kubernetes"
    return secret_name, store


def build_resources(params):
    """Validate ``params`` (the module options) and build the resources.

    Returns dict(component, secret (None when no credential or CA is needed), secret_data
    (plain strings, never returned by the module), warnings).
    """
    p = dict(params)
    secret_name, store = validate_names(p)
    p["secret_name"] = secret_name
    conn = resolve_connection(p)
    metadata, secret_data = build_metadata(p, conn)
    labels = {
        "app.kubernetes.io/managed-by": "todo.platform",
        "todo.platform/kafka-provider": p["provider"].replace("_", "-"),
    }
    component = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": p["name"], "namespace": p["namespace"], "labels": dict(labels)},
        "spec": {"type": "pubsub.kafka", "version": "v1", "metadata": metadata},
    }
    if secret_data:
        component["auth"] = {"secretStore": store}
    if p.get("scopes"):
        component["scopes"] = list(p["scopes"])
    secret = None
    if secret_data:
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": secret_name, "namespace": p["namespace"], "labels": dict(labels)},
            "data": {k: base64.b64encode(v.encode("utf-8")).decode("ascii") for k, v in secret_data.items()},
        }
    return dict(component=component, secret=secret, secret_data=secret_data, warnings=conn["warnings"])
