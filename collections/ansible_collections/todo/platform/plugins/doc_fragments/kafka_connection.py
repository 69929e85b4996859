# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options shared by the modules that talk to Kafka through its admin API."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  bootstrap_servers:
    description:
      - Kafka bootstrap servers as C(host:port).
      - For OCI Streaming use the stream pool's C(kafka_settings.bootstrap_servers) (port 9092); for Azure
        Event Hubs C(<namespace>.servicebus.windows.net:9093).
    type: list
    elements: str
    required: true
  security_protocol:
    description:
      - How to talk to the listener.
      - Cloud providers (O(provider=oci_streaming), O(provider=azure_event_hubs),
        O(provider=confluent_cloud)) need V(SASL_SSL) with O(sasl_mechanism=PLAIN); their endpoints and
        user names are checked by the rules of M(todo.platform.dapr_kafka_pubsub).
      - O(sasl_mechanism), O(sasl_username) and O(sasl_password) are required with a C(SASL_*) protocol
        and refused without one.
    type: str
    choices: [PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL]
    default: PLAINTEXT
  sasl_mechanism:
    description:
      - SASL mechanism; required with a C(SASL_*) O(security_protocol).
    type: str
    choices: [PLAIN, SCRAM-SHA-256, SCRAM-SHA-512]
  sasl_username:
    description:
      - SASL user. OCI Streaming C(tenancyName/domainName/userName/streamPoolOCID) in a tenancy with
        identity domains or C(tenancyName/userName/streamPoolOCID) in one without (checked part by part);
        Event Hubs the literal C($ConnectionString); Confluent Cloud the API key.
    type: str
  sasl_password:
    description:
      - SASL password (OCI auth token, Event Hubs connection string, Confluent API secret).
      - Never shown in the output.
    type: str
  tls_ca_cert:
    description:
      - CA that signed the broker certificates, as PEM text or as the path of a PEM file on the
        managed node. Without it the system trust store is used.
    type: str
  tls_check_hostname:
    description:
      - Check that the broker certificate names the host that was dialled.
    type: bool
    default: true
  provider:
    description:
      - Where the brokers run. Decides which settings and changes are possible, for example
        that OCI Streaming cannot change a stream's partitions or retention after creation.
    type: str
    choices: [strimzi, redpanda, oci_streaming, azure_event_hubs, confluent_cloud, external]
    default: external
  request_timeout:
    description:
      - Seconds to wait for the brokers per request.
    type: int
    default: 20
requirements:
  - confluent-kafka >= 2.3 (Python library on the managed node)
notes:
  - Before the Kafka client runs, each bootstrap server is resolved, dialled and (for TLS)
    handshaked, so a failure is reported with a precise C(failure_class).
"""
