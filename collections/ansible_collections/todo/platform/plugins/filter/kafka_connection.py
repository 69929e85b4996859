# Copyright: Todo Platform developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the control host reaches a managed Kafka, in the options of the todo.platform Kafka modules.

The kafka role hands a provider's settings (kafka_oci_streaming, kafka_azure_event_hubs,
kafka_confluent_cloud) to this filter instead of building user names and endpoints in Jinja:
providers.py holds those rules, for the Dapr component and for the Kafka modules alike.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.todo.platform.plugins.module_utils.providers import (
    CLOUD,
    PROVIDERS,
    SettingError,
    client_options,
    cloud_connection,
)

# The client options an external Kafka is described with; the modules check them.
_CLIENT_KEYS = ("bootstrap_servers", "security_protocol", "sasl_mechanism", "sasl_username", "sasl_password")


def kafka_connection(settings, provider):
    """Client options (bootstrap_servers, security_protocol, sasl_*) for ``provider``'s settings;
    an empty dict for an in-cluster provider, whose modules get their options from the role."""
    if provider not in PROVIDERS:
        raise AnsibleFilterError(
            f"kafka_connection: provider must be one of {', '.join(PROVIDERS)}, got {provider!r}"
        )
    settings = dict(settings or {})
    if provider == "external":
        options = {key: settings[key] for key in _CLIENT_KEYS if settings.get(key) not in (None, "")}
        options.setdefault("bootstrap_servers", [])
        options.setdefault("security_protocol", "PLAINTEXT")
        return options
    if provider not in CLOUD:
        return {}
    try:
        return client_options(cloud_connection(provider, settings, prefix=f"kafka_{provider}."))
    except SettingError as e:
        raise AnsibleFilterError(f"kafka: {e}") from None


class FilterModule:
    def filters(self):
        return {"kafka_connection": kafka_connection}
