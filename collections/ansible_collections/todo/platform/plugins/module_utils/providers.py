# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kafka providers: the one place for their connection rules.

Two option vocabularies reach here and leave as one normalised connection (``Connection``):
- the Dapr vocabulary of todo.platform.dapr_kafka_pubsub (``resolve_connection``): provider
  sections (oci_streaming, azure_event_hubs, confluent_cloud) or brokers/auth/tls;
- the client vocabulary of the Kafka admin modules (``client_connection``): bootstrap_servers,
  security_protocol, sasl_mechanism, sasl_username, sasl_password.
``client_options`` turns a connection back into the client vocabulary (the kafka role's filter).

Rules that only concern which options are present are argument-spec rules (``*_REQUIRED_IF``,
``DAPR_MUTUALLY_EXCLUSIVE``); ``check_options`` applies them where no AnsibleModule does.
Every other rule raises SettingError naming the setting to fix.
"""

from __future__ import annotations

import os
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

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
AUTH_TYPES = ("none", "scram", "plain")
SCRAM_MECHANISMS = ("SHA-512", "SHA-256")
EVENT_HUBS_TIERS = ("basic", "standard", "premium", "dedicated")
EVENT_HUBS_MAX_TOPICS = {"standard": 10, "premium": 100, "dedicated": 1000}
EVENT_HUBS_USERNAME = "$ConnectionString"

# Where each cloud service listens: (port or None for any, host suffix, what an endpoint looks like).
CLOUD_ENDPOINTS = {
    "oci_streaming": (9092, ".oraclecloud.com", "*.streaming.<region>.oci.oraclecloud.com:9092"),
    "azure_event_hubs": (9093, ".servicebus.windows.net", "<namespace>.servicebus.windows.net:9093"),
    "confluent_cloud": (None, ".confluent.cloud", "*.confluent.cloud"),
}

# Argument-spec rules shared by the modules (and applied by check_options elsewhere).
CLIENT_REQUIRED_IF = [
    ("security_protocol", protocol, ("sasl_mechanism", "sasl_username", "sasl_password"))
    for protocol in SASL_PROTOCOLS
]
DAPR_REQUIRED_IF = (
    [("provider", provider, ("brokers",)) for provider in PROVIDERS if provider not in CLOUD]
    + [("provider", provider, (provider,)) for provider in CLOUD]
    + [("auth", auth, ("sasl_username", "sasl_password")) for auth in ("scram", "plain")]
)
DAPR_MUTUALLY_EXCLUSIVE = [
    (other, cloud) for cloud in CLOUD for other in ("brokers", "sasl_username", "sasl_password")
] + [(a, b) for i, a in enumerate(CLOUD) for b in CLOUD[i + 1 :]]

_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+):(?P<port>[0-9]{1,5})$")
_EH_NAMESPACE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{4,48}[A-Za-z0-9]$")
_PEM_CERT = "-----BEGIN CERTIFICATE-----"


class SettingError(ValueError):
    """A setting that cannot work; ``setting`` names the module option to fix."""

    def __init__(self, setting, message):
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message


def check_options(spec, params, required_if=None, mutually_exclusive=None):
    """The argument-spec rules where no AnsibleModule applies them; returns the validated params."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    validator = ArgumentSpecValidator(spec, required_if=required_if, mutually_exclusive=mutually_exclusive)
    result = validator.validate(params)
    if result.error_messages:
        raise SettingError("options", "; ".join(result.error_messages))
    return result.validated_parameters


def new_connection(**fields):
    """The normalised connection every vocabulary ends in.

    brokers (list of host:port), tls (bool), auth ('none'|'plain'|'scram'), mechanism (a Kafka
    SASL mechanism or None), username, password, ca (PEM text or a file path, or None),
    skip_verify, check_hostname, warnings (list of strings).
    """
    conn = dict.fromkeys(("mechanism", "username", "password", "ca"))
    conn.update(brokers=[], tls=False, auth="none", skip_verify=False, check_hostname=True, warnings=[])
    conn.update(fields)
    return conn


def security_protocol(conn):
    if conn["auth"] == "none":
        return "SSL" if conn["tls"] else "PLAINTEXT"
    return "SASL_SSL" if conn["tls"] else "SASL_PLAINTEXT"


# ---------------------------------------------------------------- brokers and certificates


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


def is_pem(value):
    return isinstance(value, str) and _PEM_CERT in value


def ca_certificate(value, setting="tls_ca_cert", read=False):
    """A CA given as PEM text or as a file path: the PEM text, or the path (``read`` reads it)."""
    if not value:
        return None
    if not is_pem(value):
        if not os.path.isfile(value):
            raise SettingError(
                setting,
                f"is neither a PEM certificate (-----BEGIN CERTIFICATE-----) nor a readable file: {value}",
            )
        if not read:
            return value
        with open(value, encoding="utf-8") as handle:
            value = handle.read()
        if not is_pem(value):
            raise SettingError(setting, "the file holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    return value if value.endswith("\n") else value + "\n"


def _require(value, setting, why):
    if value is None or (isinstance(value, str) and not value.strip()):
        raise SettingError(setting, f"is required {why}")
    return value.strip() if isinstance(value, str) else value


def _forbid(value, setting, why):
    if value not in (None, "", [], {}, False):
        raise SettingError(setting, f"must not be set {why}")


# ---------------------------------------------------------------- cloud rules (both vocabularies)


# Option names of each vocabulary, for messages that name the setting to fix.
CLIENT_NAMES = dict(
    auth="security_protocol",
    tls="security_protocol",
    brokers="bootstrap_servers",
    username="sasl_username",
    password="sasl_password",
)


def check_cloud(provider, conn, names):
    """The rules of a managed service: SASL/PLAIN over verified TLS, its endpoints, its user name."""
    title = PROVIDER_TITLES[provider]
    if conn["auth"] != "plain" or not conn["tls"]:
        raise SettingError(
            names["auth" if conn["auth"] != "plain" else "tls"],
            f"{title} only accepts SASL/PLAIN over TLS (security_protocol SASL_SSL, sasl_mechanism PLAIN)",
        )
    if conn["skip_verify"]:
        raise SettingError(
            "tls_skip_verify", f"{title} presents a publicly trusted certificate; do not skip verification"
        )
    port, suffix, example = CLOUD_ENDPOINTS[provider]
    for broker in conn["brokers"]:
        if port is not None and broker_port(broker) != port:
            raise SettingError(names["brokers"], f"{title} listens on port {port}, not '{broker}'")
        if not broker_host(broker).endswith(suffix):
            raise SettingError(names["brokers"], f"'{broker}' is not a {title} endpoint ({example})")
    if provider == "oci_streaming":
        parse_oci_streaming_username(conn["username"], names["username"])
    elif provider == "azure_event_hubs":
        if conn["username"] != EVENT_HUBS_USERNAME:
            raise SettingError(
                names["username"], f"Event Hubs needs the literal username {EVENT_HUBS_USERNAME}"
            )
        namespace = broker_host(conn["brokers"][0]).split(".", 1)[0]
        check_event_hubs_connection_string(conn["password"], namespace, names["password"])


def check_event_hubs_connection_string(value, namespace, setting):
    if value.startswith("SharedAccessSignature"):
        raise SettingError(
            setting,
            "a SAS token is not accepted by the Kafka endpoint; give the connection string (Endpoint=sb://...)",
        )
    if not value.lower().startswith(f"endpoint=sb://{namespace.lower()}.servicebus.windows.net"):
        raise SettingError(
            setting,
            f"must start with Endpoint=sb://{namespace}.servicebus.windows.net/ "
            "(the connection string of that namespace)",
        )
    if "sharedaccesskey=" not in value.lower():
        raise SettingError(setting, "has no SharedAccessKey=...; copy the whole string")


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
    parts = [_oci_name_part(tenancy, "tenancy", setting_prefix + "tenancy")]
    if domain is not None:
        parts.append(_oci_name_part(domain, "domain", setting_prefix + "domain"))
    parts.append(_oci_name_part(user, "user", setting_prefix + "user"))
    pool_setting = setting_prefix + "stream_pool_id"
    if not isinstance(stream_pool_id, str) or not stream_pool_id.strip():
        raise SettingError(pool_setting, "is required (the stream pool OCID)")
    if (
        not stream_pool_id.startswith(OCI_POOL_PREFIX)
        or "/" in stream_pool_id
        or stream_pool_id != stream_pool_id.strip()
    ):
        raise SettingError(pool_setting, "must be a stream pool OCID (ocid1.streampool....)")
    parts.append(stream_pool_id)
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


# ---------------------------------------------------------------- provider sections


def _section_brokers(section, prefix, missing_hint):
    setting = prefix + "bootstrap_servers"
    brokers = parse_brokers(section.get("bootstrap_servers"), setting)
    if not brokers:
        raise SettingError(setting, f"is required: {missing_hint}")
    return brokers


def _oci_section(s, prefix):
    _require(s.get("tenancy"), prefix + "tenancy", "(the tenancy name)")
    _require(s.get("user"), prefix + "user", "(the user name that owns the auth token)")
    _require(s.get("stream_pool_id"), prefix + "stream_pool_id", "(the stream pool OCID)")
    username = oci_streaming_username(s["tenancy"], s["user"], s["stream_pool_id"], s.get("domain"), prefix)
    token = _require(s.get("auth_token"), prefix + "auth_token", "(an IAM auth token of the user)")
    brokers = _section_brokers(
        s,
        prefix,
        "take kafka_settings.bootstrap_servers of the stream pool "
        "(oracle.oci.oci_streaming_stream_pool_facts)",
    )
    return dict(brokers=brokers, username=username, password=token)


def _event_hubs_section(s, prefix):
    namespace = _require(s.get("namespace"), prefix + "namespace", "(the Event Hubs namespace name)")
    if not _EH_NAMESPACE.match(namespace):
        raise SettingError(
            prefix + "namespace",
            f"'{namespace}' is not a namespace name (6-50 letters, digits and hyphens, starting "
            "with a letter); give the name, not the FQDN",
        )
    tier = _require(s.get("tier"), prefix + "tier", "(standard, premium or dedicated)").lower()
    if tier not in EVENT_HUBS_TIERS:
        raise SettingError(prefix + "tier", "must be one of {}".format(", ".join(EVENT_HUBS_TIERS)))
    if tier == "basic":
        raise SettingError(
            prefix + "tier",
            "the Basic tier has no Kafka endpoint; use a Standard, Premium or Dedicated namespace",
        )
    topics, limit = set(s.get("topics") or []), EVENT_HUBS_MAX_TOPICS[tier]
    if len(topics) > limit:
        raise SettingError(
            prefix + "topics",
            f"{len(topics)} topics need as many event hubs, but a {tier} namespace holds at most "
            f"{limit}; split them over namespaces or use fewer topics",
        )
    conn_str = _require(s.get("connection_string"), prefix + "connection_string", "(a SAS connection string)")
    check_event_hubs_connection_string(conn_str, namespace, prefix + "connection_string")
    brokers = [f"{namespace}.servicebus.windows.net:{CLOUD_ENDPOINTS['azure_event_hubs'][0]}"]
    return dict(brokers=brokers, username=EVENT_HUBS_USERNAME, password=conn_str)


def _confluent_section(s, prefix):
    brokers = _section_brokers(s, prefix, "(pkc-....confluent.cloud:9092)")
    key = _require(s.get("api_key"), prefix + "api_key", "(the cluster API key)")
    secret = _require(s.get("api_secret"), prefix + "api_secret", "(the cluster API secret)")
    return dict(brokers=brokers, username=key, password=secret)


_SECTIONS = {
    "oci_streaming": _oci_section,
    "azure_event_hubs": _event_hubs_section,
    "confluent_cloud": _confluent_section,
}


def cloud_connection(provider, section, prefix=None, **fields):
    """The connection of a managed service from its settings section (dict); ``fields`` are the
    transport settings given beside the section (auth, tls, ca, skip_verify)."""
    prefix = f"{provider}." if prefix is None else prefix
    fields = dict(dict(tls=True, auth="plain"), **fields)
    conn = new_connection(mechanism="PLAIN", **fields, **_SECTIONS[provider](section, prefix))
    names = dict(auth="auth", tls="tls", brokers=prefix + "bootstrap_servers")
    check_cloud(provider, conn, dict(names, username=prefix + "username", password=prefix + "password"))
    return conn


# ---------------------------------------------------------------- the Dapr vocabulary


def resolve_connection(p):
    """The connection of dapr_kafka_pubsub's options (the presence rules are in its argument spec)."""
    provider = p.get("provider")
    if provider not in PROVIDERS:
        raise SettingError("provider", "must be one of {}, got {!r}".format(", ".join(PROVIDERS), provider))
    if provider in CLOUD:
        return _dapr_cloud(provider, p)
    return _dapr_brokers(provider, p)


def _dapr_cloud(provider, p):
    return cloud_connection(
        provider,
        p.get(provider) or {},
        auth=p.get("auth") or "plain",
        tls=p.get("tls") is not False,
        skip_verify=bool(p.get("tls_skip_verify")),
        ca=ca_certificate(p.get("tls_ca_cert"), read=True),
    )


def _dapr_brokers(provider, p):
    title = PROVIDER_TITLES[provider]
    for section in CLOUD:
        # A cloud's settings beside another provider are a mistake in the inventory, not a no-op.
        _forbid(p.get(section), section, f"with provider {provider} (it is {PROVIDER_TITLES[section]}'s)")
    brokers = parse_brokers(p.get("brokers"))
    if not brokers:
        raise SettingError("brokers", f"is required for {title} (host:port of the bootstrap service)")
    auth = p.get("auth") or "none"
    allowed = ("none", "scram") if provider in IN_CLUSTER else AUTH_TYPES
    if auth not in allowed:
        raise SettingError(
            "auth", "{} supports {}; {!r} is not one of them".format(title, " or ".join(allowed), auth)
        )
    scram = "SCRAM-" + (p.get("scram_mechanism") or SCRAM_MECHANISMS[0])
    mechanism = {"none": None, "plain": "PLAIN", "scram": scram}[auth]
    if auth == "none":
        _forbid(p.get("sasl_username"), "sasl_username", "with auth: none")
        _forbid(p.get("sasl_password"), "sasl_password", "with auth: none")
    conn = new_connection(
        brokers=brokers,
        tls=bool(p.get("tls")),
        auth=auth,
        mechanism=mechanism,
        username=p.get("sasl_username"),
        password=p.get("sasl_password"),
        ca=p.get("tls_ca_cert"),
        skip_verify=bool(p.get("tls_skip_verify")),
    )
    if auth == "plain" and not conn["tls"]:
        raise SettingError("tls", "auth: plain sends the password in clear text; set tls: true (SASL_SSL)")
    check_tls(conn, "tls: true")
    conn["ca"] = ca_certificate(conn["ca"], read=True)
    if conn["tls"] and auth == "none" and not conn["ca"]:
        raise SettingError(
            "tls_ca_cert",
            "is required for TLS without SASL (Dapr authType certificate trusts only the given CA)",
        )
    return conn


def check_tls(conn, how_to_enable):
    """TLS rules of both vocabularies: a CA and skipping verification only with TLS."""
    if conn["ca"] and not conn["tls"]:
        raise SettingError("tls_ca_cert", f"is only used with {how_to_enable}")
    if conn["skip_verify"] and not conn["tls"]:
        raise SettingError("tls_skip_verify", f"is only used with {how_to_enable}")
    if conn["skip_verify"]:
        conn["warnings"].append("tls_skip_verify is on: the broker certificate is not verified")


# ---------------------------------------------------------------- the client vocabulary


def client_connection(p):
    """The connection of the Kafka modules' options (the presence rules are in their argument spec)."""
    brokers = parse_brokers(p.get("bootstrap_servers"), "bootstrap_servers")
    if not brokers:
        raise SettingError("bootstrap_servers", "needs at least one host:port")
    protocol = p.get("security_protocol") or "PLAINTEXT"
    if protocol not in SASL_PROTOCOLS:
        for key in ("sasl_mechanism", "sasl_username", "sasl_password"):
            if p.get(key):
                raise SettingError(key, f"is only used with a SASL_* security_protocol, not {protocol}")
    mechanism = p.get("sasl_mechanism") if protocol in SASL_PROTOCOLS else None
    conn = new_connection(
        brokers=brokers,
        tls=protocol in ("SSL", "SASL_SSL"),
        auth={None: "none", "PLAIN": "plain"}.get(mechanism, "scram"),
        mechanism=mechanism,
        username=p.get("sasl_username"),
        password=p.get("sasl_password"),
        check_hostname=p.get("tls_check_hostname", True),
        ca=p.get("tls_ca_cert"),
    )
    check_tls(conn, "security_protocol SSL or SASL_SSL")
    conn["ca"] = ca_certificate(conn["ca"])
    provider = p.get("provider") or "external"
    if provider in CLOUD:
        check_cloud(provider, conn, CLIENT_NAMES)
    return conn


def client_options(conn):
    """A connection in the client vocabulary (what the Kafka modules take)."""
    options = dict(bootstrap_servers=list(conn["brokers"]), security_protocol=security_protocol(conn))
    if conn["auth"] != "none":
        options.update(
            sasl_mechanism=conn["mechanism"], sasl_username=conn["username"], sasl_password=conn["password"]
        )
    if conn["ca"]:
        options["tls_ca_cert"] = conn["ca"]
    return options
