# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kafka connection shared by kafka_topic, kafka_probe and kafka_consumer_lag_info.

- KAFKA_CONNECTION_SPEC: the connection options (documented in the kafka_connection doc fragment).
- client_config(): validated options -> confluent-kafka configuration (pure).
- preflight(): name resolution, TCP and TLS checks with the standard library, so that a failure
  is classified before librdkafka's retries blur it.
- connect(): an AdminClient whose metadata request succeeded, or KafkaFailure(failure_class, msg).
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
import traceback

CONFLUENT_KAFKA_IMPORT_ERROR = None
try:
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    HAS_CONFLUENT_KAFKA = True
except ImportError:
    HAS_CONFLUENT_KAFKA = False
    CONFLUENT_KAFKA_IMPORT_ERROR = traceback.format_exc()

from ansible_collections.todo.platform.plugins.module_utils.providers import (  # noqa: E402 - after the guarded import
    CLIENT_REQUIRED_IF,
    PROVIDERS,
    SASL_MECHANISMS,
    SECURITY_PROTOCOLS,
    SettingError,
    broker_host,
    broker_port,
    client_connection,
    is_pem,
    security_protocol,
)

FAILURE_CLASSES = (
    "dns",
    "tcp",
    "tls",
    "sasl_authentication",
    "authorization",
    "protocol",
    "timeout",
    "missing_topic",
    "unknown",
)

KAFKA_CONNECTION_SPEC = dict(
    bootstrap_servers=dict(type="list", elements="str", required=True),
    security_protocol=dict(type="str", choices=list(SECURITY_PROTOCOLS), default="PLAINTEXT"),
    sasl_mechanism=dict(type="str", choices=list(SASL_MECHANISMS)),
    sasl_username=dict(type="str"),
    sasl_password=dict(type="str", no_log=True),
    tls_ca_cert=dict(type="str"),
    tls_check_hostname=dict(type="bool", default=True),
    provider=dict(type="str", choices=list(PROVIDERS), default="external"),
    request_timeout=dict(type="int", default=20),
)
# Cross-field rules of those options, for AnsibleModule(required_if=...).
KAFKA_CONNECTION_REQUIRED_IF = CLIENT_REQUIRED_IF


class KafkaFailure(Exception):
    """A classified failure: ``failure_class`` is one of FAILURE_CLASSES."""

    def __init__(self, failure_class, message):
        super().__init__(message)
        self.failure_class = failure_class
        self.message = message


def validate_connection(p):
    """Check the connection options against each other and the provider; return the brokers."""
    return client_connection(p)["brokers"]


def client_config(p, client_id="todo.platform"):
    """confluent-kafka configuration for validated options ``p`` (dict of module params)."""
    conn = client_connection(p)
    protocol = security_protocol(conn)
    timeout_ms = int(p.get("request_timeout") or 20) * 1000
    conf = {
        "bootstrap.servers": ",".join(conn["brokers"]),
        "security.protocol": protocol.lower(),
        "client.id": client_id,
        "socket.timeout.ms": timeout_ms,
        "socket.connection.setup.timeout.ms": timeout_ms,
        # One attempt per broker is enough to classify; the module, not librdkafka, retries.
        "reconnect.backoff.ms": 500,
        "reconnect.backoff.max.ms": 2000,
    }
    if conn["auth"] != "none":
        conf["sasl.mechanism"] = conn["mechanism"]
        conf["sasl.username"] = conn["username"]
        conf["sasl.password"] = conn["password"]
    if conn["tls"]:
        if is_pem(conn["ca"]):
            conf["ssl.ca.pem"] = conn["ca"]
        elif conn["ca"]:
            conf["ssl.ca.location"] = conn["ca"]
        conf["ssl.endpoint.identification.algorithm"] = "https" if conn["check_hostname"] else "none"
    return conf


# ---------------------------------------------------------------- preflight


def _tls_context(p):
    ctx = ssl.create_default_context()
    ca = p.get("tls_ca_cert")
    if is_pem(ca):
        ctx = ssl.create_default_context(cadata=ca)
    elif ca:
        ctx = ssl.create_default_context(cafile=ca)
    if not p.get("tls_check_hostname", True):
        ctx.check_hostname = False
    return ctx


def _tls_failure(p, sock, host, broker):
    """What went wrong in the TLS handshake with ``broker``, or None."""
    try:
        with _tls_context(p).wrap_socket(sock, server_hostname=host) as tls_sock:
            tls_sock.do_handshake()
    except ssl.SSLCertVerificationError as e:
        return f"{broker}: certificate not trusted ({getattr(e, 'verify_message', None) or e})"
    except ssl.SSLError as e:
        return f"{broker}: TLS handshake failed ({getattr(e, 'reason', None) or e})"
    except OSError as e:
        return f"{broker}: connection closed during the TLS handshake ({e})"
    return None


def preflight(p, brokers, resolver=socket.getaddrinfo, connector=socket.create_connection):
    """Resolve, connect and (for TLS) handshake with each bootstrap server.

    Returns the brokers that passed. Raises KafkaFailure when none did, classified by the
    furthest step any broker reached.
    """
    timeout = int(p.get("request_timeout") or 20)
    protocol = p.get("security_protocol") or "PLAINTEXT"
    tls = protocol in ("SSL", "SASL_SSL")
    errors = {"dns": [], "tcp": [], "tls": []}
    passed = []
    for broker in brokers:
        host, port = broker_host(broker), broker_port(broker)
        try:
            resolver(host, port, 0, socket.SOCK_STREAM)
        except (OSError, UnicodeError) as e:
            errors["dns"].append("{} ({})".format(host, getattr(e, "strerror", None) or e))
            continue
        try:
            sock = connector((host, port), timeout)
        except OSError as e:
            errors["tcp"].append("{} ({})".format(broker, getattr(e, "strerror", None) or e))
            continue
        try:
            failure = _tls_failure(p, sock, host, broker) if tls else None
        finally:
            sock.close()
        if failure:
            errors["tls"].append(failure)
            continue
        passed.append(broker)
    if passed:
        return passed
    if errors["tls"]:
        raise KafkaFailure(
            "tls",
            "TLS failed with every bootstrap server: {}; check tls_ca_cert (the CA that signed the broker "
            "certificate) and that the listener speaks TLS".format("; ".join(errors["tls"])),
        )
    if errors["tcp"]:
        raise KafkaFailure(
            "tcp",
            "no bootstrap server accepted a TCP connection: {}; check bootstrap_servers, the port and "
            "firewalls".format("; ".join(errors["tcp"])),
        )
    raise KafkaFailure(
        "dns",
        "no bootstrap server name resolves: {}; check bootstrap_servers and DNS".format(
            "; ".join(errors["dns"])
        ),
    )


# ---------------------------------------------------------------- librdkafka errors


def classify_kafka_error(err):
    """Map a confluent_kafka.KafkaError (or its code) to a failure class."""
    code = err.code() if hasattr(err, "code") else err
    if not HAS_CONFLUENT_KAFKA:
        return "unknown"
    table = {
        KafkaError._AUTHENTICATION: "sasl_authentication",
        KafkaError.SASL_AUTHENTICATION_FAILED: "sasl_authentication",
        KafkaError.ILLEGAL_SASL_STATE: "sasl_authentication",
        KafkaError.UNSUPPORTED_SASL_MECHANISM: "sasl_authentication",
        KafkaError._SSL: "tls",
        KafkaError._RESOLVE: "dns",
        KafkaError._TRANSPORT: "tcp",
        KafkaError._ALL_BROKERS_DOWN: "tcp",
        KafkaError.TOPIC_AUTHORIZATION_FAILED: "authorization",
        KafkaError.GROUP_AUTHORIZATION_FAILED: "authorization",
        KafkaError.CLUSTER_AUTHORIZATION_FAILED: "authorization",
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "authorization",
        KafkaError.DELEGATION_TOKEN_AUTHORIZATION_FAILED: "authorization",
        KafkaError._TIMED_OUT: "timeout",
        KafkaError.REQUEST_TIMED_OUT: "timeout",
    }
    return table.get(code, "unknown")


# Errors that retrying will not cure.
_DEFINITE = ("sasl_authentication", "authorization", "tls")

_PRIORITY = ("sasl_authentication", "authorization", "tls", "dns", "protocol", "tcp", "timeout", "unknown")

_ADVICE = {
    "sasl_authentication": "check sasl_username, sasl_password and sasl_mechanism",
    "authorization": "grant the user the ACLs it needs (Describe on the cluster and topics)",
    "tls": "check tls_ca_cert and tls_check_hostname",
    "dns": "check bootstrap_servers",
    "protocol": "check that security_protocol matches the listener",
    "tcp": "check bootstrap_servers and that the brokers are up",
    "timeout": "the brokers did not answer in request_timeout; check the listener and security_protocol",
    "unknown": "see the message",
}


def _one_line(text):
    return " ".join(str(text).split())


def failure_from_errors(errors, fallback=None):
    """Pick the most telling of the errors librdkafka reported; return KafkaFailure."""
    found = []
    for err in errors:
        cls = classify_kafka_error(err)
        text = err.str() if hasattr(err, "str") else str(err)
        if cls == "tcp" and (
            "APIVERSION_QUERY" in text or "AUTH_HANDSHAKE" in text or "SSL_HANDSHAKE" in text
        ):
            cls = "protocol"
        found.append((cls, text))
    if fallback is not None:
        found.append(
            (classify_kafka_error(fallback), fallback.str() if hasattr(fallback, "str") else str(fallback))
        )
    if not found:
        return KafkaFailure("unknown", "the Kafka client failed without telling why")
    found.sort(key=lambda item: _PRIORITY.index(item[0]))
    cls, text = found[0]
    return KafkaFailure(cls, f"{cls} failure: {_one_line(text)}; {_ADVICE[cls]}")


_SILENT = logging.getLogger("todo.platform.kafka.librdkafka")
_SILENT.addHandler(logging.NullHandler())
_SILENT.propagate = False


class KafkaConnection:
    """An AdminClient plus the errors librdkafka reported through error_cb."""

    def __init__(self, params, client_id="todo.platform"):
        self.params = params
        self.errors = []
        conf = client_config(params, client_id=client_id)
        conf["error_cb"] = self.errors.append
        # librdkafka's own log lines go to a silent logger instead of the module's stderr.
        conf["logger"] = _SILENT
        self.conf = conf
        self.timeout = int(params.get("request_timeout") or 20)
        self.admin = AdminClient(conf)

    def metadata(self, topic=None):
        """Cluster metadata; gives up early once librdkafka reported a definite failure."""
        deadline = time.monotonic() + self.timeout
        while True:
            step = max(min(2.0, deadline - time.monotonic()), 0.1)
            try:
                return self.admin.list_topics(topic=topic, timeout=step)
            except KafkaException as e:
                last = e.args[0] if e.args else None
                self.admin.poll(0.2)  # error_cb is only served by poll()
                definite = [err for err in self.errors if classify_kafka_error(err) in _DEFINITE]
                if definite or time.monotonic() >= deadline:
                    raise failure_from_errors(self.errors, last) from None

    def consumer_config(self, group):
        conf = dict(self.conf)
        conf.pop("error_cb", None)
        conf.pop("logger", None)
        conf.update({"group.id": group, "enable.auto.commit": False})
        return conf

    def fail_from(self, exc):
        """KafkaFailure for an exception raised by an admin future."""
        self.admin.poll(0.2)
        err = exc.args[0] if isinstance(exc, KafkaException) and exc.args else exc
        if hasattr(err, "code"):
            return failure_from_errors(self.errors, err)
        return KafkaFailure("unknown", _one_line(err))


def connect(params, client_id="todo.platform"):
    """Validate, preflight, then fetch cluster metadata. Returns (connection, metadata)."""
    brokers = validate_connection(params)
    preflight(params, brokers)
    conn = KafkaConnection(params, client_id=client_id)
    md = conn.metadata()
    return conn, md


def describe_metadata(md):
    """Plain data from a ClusterMetadata."""
    brokers = sorted(
        ({"id": b.id, "host": b.host, "port": b.port} for b in md.brokers.values()), key=lambda b: b["id"]
    )
    topics = sorted(
        (
            {
                "name": t.topic,
                "partitions": len(t.partitions),
                "replication_factor": max((len(pt.replicas) for pt in t.partitions.values()), default=0),
            }
            for t in md.topics.values()
            if not t.topic.startswith("__")
        ),
        key=lambda t: t["name"],
    )
    return {
        "cluster_id": md.cluster_id,
        "controller_id": md.controller_id,
        "brokers": brokers,
        "topics": topics,
    }


def kafka_module(**options):
    """An AnsibleModule with the connection options and their rules beside the module's ``options``."""
    from ansible.module_utils.basic import AnsibleModule

    return AnsibleModule(
        argument_spec=dict(KAFKA_CONNECTION_SPEC, **options),
        required_if=KAFKA_CONNECTION_REQUIRED_IF,
        supports_check_mode=True,
    )


def missing_library_message(module_name):
    from ansible.module_utils.basic import missing_required_lib

    return "{}: {}".format(module_name, missing_required_lib("confluent-kafka"))


def run_kafka_module(module, module_name, work):
    """Run ``work(module)`` and return what it returns; every failure ends in ``fail_json`` with a
    message saying what to fix (the setting, the connection's failure class, or one line naming what
    broke), never a traceback. Shared by the Kafka modules."""
    if not HAS_CONFLUENT_KAFKA:
        module.fail_json(msg=missing_library_message(module_name))
    try:
        return work(module)
    except SettingError as e:
        module.fail_json(msg=str(e), setting=e.setting)
    except KafkaFailure as e:
        module.fail_json(msg=e.message, failure_class=e.failure_class)
    except Exception as e:  # never a traceback: one line saying what broke
        module.fail_json(
            msg="{} failed unexpectedly: {}: {}".format(
                module_name, type(e).__name__, " ".join(str(e).split())
            )
        )
