"""Configuration of the backend (environment variables; see docs/contracts.md)."""

from todo.common.settings import ServiceSettings


class BackendSettings(ServiceSettings):
    #: Relay outbox events to Dapr from this process (one relay runs at a time across replicas).
    outbox_relay: bool = True
    outbox_batch_size: int = 200
