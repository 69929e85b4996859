"""Configuration of the backend (environment variables; see docs/contracts.md)."""

from todo.common.settings import ServiceSettings


class BackendSettings(ServiceSettings):
    #: Relay outbox events to Dapr from this process (one relay runs at a time across replicas).
    outbox_relay: bool = True
    outbox_batch_size: int = 200
    #: Register and login attempts (429 with Retry-After beyond them): per client address, and per
    #: account (e-mail), a burst and then so many per minute.
    auth_client_burst: int = 30
    auth_client_per_minute: float = 60
    auth_account_burst: int = 10
    auth_account_per_minute: float = 10
    #: Password hashes at once (19 MiB each; the 384 MiB limit leaves room for 2 beside the process)
    #: and requests that may wait for one (503 with Retry-After beyond).
    password_hash_concurrency: int = 2
    password_hash_queue: int = 32
