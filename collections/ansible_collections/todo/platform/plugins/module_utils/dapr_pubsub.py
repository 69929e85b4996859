# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of todo.platform.dapr_kafka_pubsub: provider rules and the builders of the
Dapr pubsub.kafka Component and of the Secret it references.

Nothing here talks to a network; every rule raises SettingError naming the setting to fix,
so the module (and the unit tests) can turn it into one clear fail_json message.
"""

from __future__ import annotations

import base64
import re

PROVIDERS = ("strimzi", "redpanda", "oci_streaming", "azure_event_hubs", "confluent_cloud", "external")
IN_CLUSTER = ("strimzi", "redpanda")
CLOUD = ("oci_streaming", "azure_event_hubs", "confluent_cloud")

PROVIDER_TITLES = {
    "strimzi": "Strimzi (in-cluster Kafka)",
    "redpanda": "Redpanda (in-cluster)",
    "oci_streaming": "OCI Streaming",
    "azure_event_hubs": "Azure Event Hubs",
    "confluent_cloud": "Confluent Cloud",
    "external": "an external Kafka",
}

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

EVENT_HUBS_TIERS = ("basic", "standard", "premium", "dedicated")
EVENT_HUBS_MAX_TOPICS = {"standard": 10, "premium": 100, "dedicated": 1000}
EVENT_HUBS_IDLE_SECONDS = 240

COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")

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

_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+):(?P<port>[0-9]{1,5})$")
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_EH_NAMESPACE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{4,48}[A-Za-z0-9]$")
_DURATION = re.compile(r"^(\d+)(ms|s|m|h)$")
_PEM_CERT = "-----BEGIN CERTIFICATE-----"


class SettingError(ValueError):
    """A setting that cannot work; ``setting`` names the module option to fix."""

    def __init__(self, setting, message):
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message


# ---------------------------------------------------------------- small validators


def parse_brokers(value, setting="brokers"):
    """Accept a list or a comma-separated string of host:port; return a clean list."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    brokers = []
    for item in items:
        item = str(item).strip()
        if not item:
            continue
        m = _HOST_PORT.match(item)
        if not m:
            raise SettingError(setting, f"'{item}' is not host:port (for example kafka-0.kafka:9092)")
        port = int(m.group("port"))
        if not 0 < port < 65536:
            raise SettingError(setting, f"port {port} of '{item}' is out of range 1-65535")
        brokers.append(item)
    return brokers


def broker_port(broker):
    return int(broker.rsplit(":", 1)[1])


def broker_host(broker):
    return broker.rsplit(":", 1)[0].strip("[]")


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


def validate_ca_pem(pem, setting="tls_ca_cert"):
    if not pem or _PEM_CERT not in pem:
        raise SettingError(
            setting, "expected a PEM certificate (-----BEGIN CERTIFICATE-----) or a path to one"
        )
    return pem if pem.endswith("\n") else pem + "\n"


def _require(value, setting, why):
    if value is None or (isinstance(value, str) and not value.strip()):
        raise SettingError(setting, f"is required {why}")
    return value.strip() if isinstance(value, str) else value


def _forbid(value, setting, why):
    if value not in (None, "", [], {}):
        raise SettingError(setting, f"must not be set {why}")


# ---------------------------------------------------------------- connection per provider


def resolve_connection(p):
    """Turn the provider settings into one connection description.

    Returns dict(brokers, auth ('none'|'scram'|'plain'), username, password, mechanism,
    tls (bool), ca_pem, skip_verify, warnings).
    """
    provider = p.get("provider")
    if provider not in PROVIDERS:
        raise SettingError("provider", "must be one of {}, got {!r}".format(", ".join(PROVIDERS), provider))
    warnings = []
    conn = dict(warnings=warnings, skip_verify=bool(p.get("tls_skip_verify")), ca_pem=None)
    auth = p.get("auth")
    tls = p.get("tls")
    title = PROVIDER_TITLES[provider]

    if provider in CLOUD:
        for key in ("brokers", "sasl_username", "sasl_password"):
            _forbid(p.get(key), key, f"for {title}; use the {provider} settings")
        if auth not in (None, "plain"):
            raise SettingError("auth", f"{title} only accepts SASL/PLAIN (auth: plain), got {auth!r}")
        if tls is False:
            raise SettingError("tls", f"{title} only accepts TLS connections (SASL_SSL); remove tls: false")
        if conn["skip_verify"]:
            raise SettingError(
                "tls_skip_verify",
                f"{title} presents a publicly trusted certificate; do not skip verification",
            )
        conn.update(auth="plain", tls=True, mechanism=None)
        section = p.get(provider) or {}
        if not section:
            raise SettingError(provider, f"is required when provider is {provider}")
        if provider == "oci_streaming":
            conn.update(_oci(section))
        elif provider == "azure_event_hubs":
            conn.update(_event_hubs(section, p))
        else:
            conn.update(_confluent(section))
        if p.get("tls_ca_cert"):
            conn["ca_pem"] = validate_ca_pem(p["tls_ca_cert"])
    else:
        for other in CLOUD:
            _forbid(p.get(other), other, f"when provider is {provider}")
        brokers = parse_brokers(p.get("brokers"))
        if not brokers:
            raise SettingError("brokers", f"is required for {title} (host:port of the bootstrap service)")
        auth = auth or "none"
        allowed = ("none", "scram") if provider in IN_CLUSTER else ("none", "scram", "plain")
        if auth not in allowed:
            raise SettingError(
                "auth",
                "{} supports {}; {!r} is not one of them".format(title, " or ".join(allowed), auth),
            )
        tls = bool(tls)
        username, password = p.get("sasl_username"), p.get("sasl_password")
        mechanism = None
        if auth == "none":
            _forbid(username, "sasl_username", "with auth: none")
            _forbid(password, "sasl_password", "with auth: none")
        else:
            username = _require(username, "sasl_username", f"with auth: {auth}")
            password = _require(password, "sasl_password", f"with auth: {auth}")
            if auth == "scram":
                mechanism = p.get("scram_mechanism") or "SHA-512"
                if mechanism not in ("SHA-512", "SHA-256"):
                    raise SettingError("scram_mechanism", f"must be SHA-512 or SHA-256, got {mechanism!r}")
            elif not tls:
                raise SettingError(
                    "tls", "auth: plain sends the password in clear text; set tls: true (SASL_SSL)"
                )
        ca_pem = p.get("tls_ca_cert")
        if ca_pem and not tls:
            raise SettingError("tls_ca_cert", "is only used with tls: true")
        if conn["skip_verify"] and not tls:
            raise SettingError("tls_skip_verify", "is only used with tls: true")
        if ca_pem:
            ca_pem = validate_ca_pem(ca_pem)
        if tls and auth == "none" and not ca_pem:
            raise SettingError(
                "tls_ca_cert",
                "is required for TLS without SASL (Dapr authType certificate trusts only the given CA)",
            )
        if conn["skip_verify"]:
            warnings.append("tls_skip_verify is on: the broker certificate is not verified")
        conn.update(
            brokers=brokers,
            auth=auth,
            tls=tls,
            username=username,
            password=password,
            mechanism=mechanism,
            ca_pem=ca_pem,
        )
    return conn


# OCI Streaming's SASL user name. Oracle documents two forms ("Using Kafka APIs", Streaming docs,
# https://docs.oracle.com/en-us/iaas/Content/Streaming/Tasks/kafkacompatibility_topic-Configuration.htm):
# tenancyName/domainName/username/streamPoolId in a tenancy with identity domains and
# tenancyName/username/streamPoolId in one without. The parts are names, not OCIDs (except the pool).
OCI_POOL_PREFIX = "ocid1.streampool."
OCI_USERNAME_FORMS = (
    "tenancyName/domainName/userName/streamPoolOCID (tenancy with identity domains) or "
    "tenancyName/userName/streamPoolOCID (tenancy without identity domains)"
)
_OCI_NAME_PARTS = {
    "tenancy": ("the tenancy name", "ocid1.tenancy."),
    "domain": ("the identity domain name, for example Default", "ocid1.domain."),
    "user": ("the user name", "ocid1.user."),
}


def _oci_name_part(value, part, setting):
    what, ocid_prefix = _OCI_NAME_PARTS[part]
    if not isinstance(value, str) or not value.strip():
        raise SettingError(setting, f"must not be empty (give {what})")
    if value != value.strip():
        raise SettingError(setting, f"'{value}' has leading or trailing spaces")
    if "/" in value:
        raise SettingError(setting, f"'{value}' must not contain '/' (it separates the username parts)")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise SettingError(setting, "must not contain control characters")
    if value.lower().startswith(ocid_prefix):
        raise SettingError(setting, f"'{value}' is an OCID; give {what} instead")
    return value


def oci_streaming_username(tenancy, user, stream_pool_id, domain=None, setting_prefix="oci_streaming."):
    """The SASL user name of OCI Streaming from its parts; ``domain`` None means no identity domain.

    Raises SettingError naming ``<setting_prefix><part>`` for a part that cannot work.
    """
    tenancy = _oci_name_part(tenancy, "tenancy", setting_prefix + "tenancy")
    parts = [tenancy]
    if domain is not None:
        parts.append(_oci_name_part(domain, "domain", setting_prefix + "domain"))
    parts.append(_oci_name_part(user, "user", setting_prefix + "user"))
    pool = stream_pool_id
    pool_setting = setting_prefix + "stream_pool_id"
    if not isinstance(pool, str) or not pool.strip():
        raise SettingError(pool_setting, "is required (the stream pool OCID)")
    if not pool.startswith(OCI_POOL_PREFIX) or "/" in pool or pool != pool.strip():
        raise SettingError(pool_setting, "must be a stream pool OCID (ocid1.streampool....)")
    parts.append(pool)
    return "/".join(parts)


def parse_oci_streaming_username(value, setting="sasl_username"):
    """Check a ready-made OCI Streaming user name.

    Returns dict(tenancy, domain (None in the three-part form), user, stream_pool_id).
    """
    parts = value.split("/") if isinstance(value, str) else []
    if len(parts) not in (3, 4) or not parts[-1].startswith(OCI_POOL_PREFIX):
        raise SettingError(setting, f"OCI Streaming needs {OCI_USERNAME_FORMS}, got {value!r}")
    tenancy, user, pool = parts[0], parts[-2], parts[-1]
    domain = parts[1] if len(parts) == 4 else None
    try:
        oci_streaming_username(tenancy, user, pool, domain)
    except SettingError as exc:
        part = exc.setting.rsplit(".", 1)[-1]
        raise SettingError(
            setting, f"the {part} part: {exc.message} (expected {OCI_USERNAME_FORMS})"
        ) from None
    return dict(tenancy=tenancy, domain=domain, user=user, stream_pool_id=pool)


def _oci(s):
    _require(s.get("tenancy"), "oci_streaming.tenancy", "(the tenancy name)")
    _require(s.get("user"), "oci_streaming.user", "(the user name that owns the auth token)")
    _require(s.get("stream_pool_id"), "oci_streaming.stream_pool_id", "(the stream pool OCID)")
    username = oci_streaming_username(s["tenancy"], s["user"], s["stream_pool_id"], s.get("domain"))
    token = _require(s.get("auth_token"), "oci_streaming.auth_token", "(an IAM auth token of the user)")
    brokers = parse_brokers(s.get("bootstrap_servers"), "oci_streaming.bootstrap_servers")
    if not brokers:
        raise SettingError(
            "oci_streaming.bootstrap_servers",
            "is required: take kafka_settings.bootstrap_servers of the stream pool "
            "(oracle.oci.oci_streaming_stream_pool_facts)",
        )
    for b in brokers:
        if broker_port(b) != 9092:
            raise SettingError(
                "oci_streaming.bootstrap_servers", f"OCI Streaming listens on port 9092, not '{b}'"
            )
        if not broker_host(b).endswith(".oraclecloud.com"):
            raise SettingError(
                "oci_streaming.bootstrap_servers",
                f"'{b}' is not an OCI Streaming endpoint (*.streaming.<region>.oci.oraclecloud.com)",
            )
    return dict(brokers=brokers, username=username, password=token)


def _event_hubs(s, p):
    namespace = _require(s.get("namespace"), "azure_event_hubs.namespace", "(the Event Hubs namespace name)")
    if not _EH_NAMESPACE.match(namespace):
        raise SettingError(
            "azure_event_hubs.namespace",
            f"'{namespace}' is not a namespace name (6-50 letters, digits and hyphens, starting "
            "with a letter); give the name, not the FQDN",
        )
    tier = _require(s.get("tier"), "azure_event_hubs.tier", "(standard, premium or dedicated)").lower()
    if tier not in EVENT_HUBS_TIERS:
        raise SettingError("azure_event_hubs.tier", "must be one of {}".format(", ".join(EVENT_HUBS_TIERS)))
    if tier == "basic":
        raise SettingError(
            "azure_event_hubs.tier",
            "the Basic tier has no Kafka endpoint; use a Standard, Premium or Dedicated namespace",
        )
    topics = s.get("topics") or []
    limit = EVENT_HUBS_MAX_TOPICS[tier]
    if len(set(topics)) > limit:
        raise SettingError(
            "azure_event_hubs.topics",
            f"{len(set(topics))} topics need as many event hubs, but a {tier} namespace holds at most "
            f"{limit}; split them over namespaces or use fewer topics",
        )
    conn_str = _require(
        s.get("connection_string"), "azure_event_hubs.connection_string", "(a SAS connection string)"
    )
    if conn_str.startswith("SharedAccessSignature"):
        raise SettingError(
            "azure_event_hubs.connection_string",
            "a SAS token is not accepted by the Kafka endpoint; give the connection string (Endpoint=sb://...)",
        )
    expected = f"endpoint=sb://{namespace.lower()}.servicebus.windows.net"
    if not conn_str.lower().startswith(expected):
        raise SettingError(
            "azure_event_hubs.connection_string",
            f"must start with Endpoint=sb://{namespace}.servicebus.windows.net/ "
            "(the connection string of that namespace)",
        )
    if "sharedaccesskey=" not in conn_str.lower():
        raise SettingError(
            "azure_event_hubs.connection_string", "has no SharedAccessKey=...; copy the whole string"
        )
    return dict(
        brokers=[f"{namespace}.servicebus.windows.net:9093"],
        username="$ConnectionString",
        password=conn_str,
    )


def _confluent(s):
    brokers = parse_brokers(s.get("bootstrap_servers"), "confluent_cloud.bootstrap_servers")
    if not brokers:
        raise SettingError("confluent_cloud.bootstrap_servers", "is required (pkc-....confluent.cloud:9092)")
    for b in brokers:
        if not broker_host(b).endswith(".confluent.cloud"):
            raise SettingError(
                "confluent_cloud.bootstrap_servers",
                f"'{b}' is not a Confluent Cloud endpoint (*.confluent.cloud)",
            )
    key = _require(s.get("api_key"), "confluent_cloud.api_key", "(the cluster API key)")
    secret = _require(s.get("api_secret"), "confluent_cloud.api_secret", "(the cluster API secret)")
    return dict(brokers=brokers, username=key, password=secret)


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
    provider = p["provider"]
    secret_name = p["secret_name"]
    secret_data = {}
    md = [("brokers", ",".join(conn["brokers"]))]

    if conn["auth"] == "none":
        md.append(("authType", "certificate" if conn["tls"] else "none"))
    else:
        md.append(("authType", "password"))
        md.append(("saslUsername", conn["username"]))
        md.append(("saslPassword", {"secretKeyRef": {"name": secret_name, "key": SECRET_KEY_PASSWORD}}))
        secret_data[SECRET_KEY_PASSWORD] = conn["password"]
        # Dapr maps SHA-512/SHA-256 to SCRAM and every other value to SASL/PLAIN.
        md.append(("saslMechanism", conn["mechanism"] if conn["auth"] == "scram" else "PLAINTEXT"))
    md.append(("disableTls", "false" if conn["tls"] else "true"))
    if conn["ca_pem"]:
        md.append(("caCert", {"secretKeyRef": {"name": secret_name, "key": SECRET_KEY_CA}}))
        secret_data[SECRET_KEY_CA] = conn["ca_pem"]
    if conn["tls"] and conn["skip_verify"]:
        md.append(("skipVerify", "true"))

    md.append(("consumerGroup", consumer_group(p)))
    # Dapr hands initialOffset to sarama as Consumer.Offsets.Initial (components-contrib
    # common/component/kafka/kafka.go), which only applies to a group with no committed offset.
    # A per-replica group is new for every new pod, so "oldest" would replay the whole retention
    # (days of events) to it: per-replica groups start at the newest offset unless told otherwise.
    offset = p.get("initial_offset") or ("newest" if p.get("consumer_group_per_replica") else "oldest")
    if offset not in ("oldest", "newest"):
        raise SettingError("initial_offset", f"must be oldest or newest, got {offset!r}")
    md.append(("initialOffset", offset))

    version = p.get("version") or DEFAULT_VERSION[provider]
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
        conn["warnings"].append(
            f"version {version} is older than 2.1.0: brokers on Kafka 4.x reject such requests"
        )
    md.append(("version", version))

    mmb = p.get("max_message_bytes")
    if mmb is not None:
        if mmb < MIN_MAX_MESSAGE_BYTES:
            raise SettingError(
                "max_message_bytes",
                f"{mmb} bytes is too small for task events (at least {MIN_MAX_MESSAGE_BYTES}); "
                "leave it unset for sarama's 1000000",
            )
        limit = MAX_MESSAGE_BYTES_LIMIT.get(provider)
        if limit and mmb > limit:
            raise SettingError(
                "max_message_bytes",
                f"{PROVIDER_TITLES[provider]} accepts messages up to {limit} bytes, got {mmb}",
            )
        md.append(("maxMessageBytes", str(mmb)))

    compression = p.get("compression")
    if compression:
        if compression not in COMPRESSIONS:
            raise SettingError("compression", "must be one of {}".format(", ".join(COMPRESSIONS)))
        if provider == "azure_event_hubs" and compression not in ("none", "gzip"):
            raise SettingError(
                "compression", f"Azure Event Hubs only accepts gzip or none, got {compression}"
            )
        md.append(("compression", compression))

    heartbeat = p.get("heartbeat_interval")
    session = p.get("session_timeout")
    refresh = p.get("metadata_refresh_interval")
    if provider == "oci_streaming":
        # OCI allows 5 heartbeats/s per stream pool; many sidecars at Dapr's 3s would exceed it.
        heartbeat = heartbeat or "10s"
        session = session or "30s"
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
    for key, value, setting in (
        ("heartbeatInterval", heartbeat, "heartbeat_interval"),
        ("sessionTimeout", session, "session_timeout"),
        ("clientConnectionTopicMetadataRefreshInterval", refresh, "metadata_refresh_interval"),
    ):
        if value:
            duration_seconds(value, setting)
            md.append((key, value))

    extra = p.get("extra_metadata") or {}
    for key in sorted(extra):
        if key in MANAGED_METADATA:
            raise SettingError("extra_metadata", f"'{key}' is set by the module's own options; remove it")
        value = extra[key]
        if isinstance(value, bool):
            value = "true" if value else "false"
        md.append((key, str(value)))

    items = []
    for key, value in md:
        if isinstance(value, dict):
            item = {"name": key}
            item.update(value)
        else:
            item = {"name": key, "value": value}
        items.append(item)
    return items, secret_data


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


def mask_secret(secret):
    """A copy of a Secret manifest whose values are replaced by a mask."""
    if secret is None:
        return None
    masked = dict(secret)
    masked["metadata"] = dict(secret.get("metadata") or {})
    for key in ("data", "stringData"):
        if secret.get(key):
            masked[key] = {k: MASK for k in secret[key]}
    return masked
