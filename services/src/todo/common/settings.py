"""Service configuration from the environment (pydantic-settings).

Every secret may also be given as ``<NAME>_FILE`` naming a file that holds it (a mounted Kubernetes
Secret); an explicit ``<NAME>`` variable wins over the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from todo.common.auth import DEFAULT_AUDIENCE, DEFAULT_ISSUER, DEFAULT_KEY_ID

#: Secrets whose file may be absent: the previous JWT key is mounted from an optional Secret key,
#: which the deploy removes when the rotation's overlap ends; a pod of the older template started
#: after that (a reschedule mid-rollout) then runs with the current key only.
OPTIONAL_SECRET_FILES = frozenset({"jwt_previous_secret"})


class FileSecretSource(PydanticBaseSettingsSource):
    """Reads ``<FIELD>_FILE`` for every field: the variable names a file whose content is the value."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        path = os.environ.get(f"{field_name.upper()}_FILE")
        if not path:
            return None, field_name, False
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            if field_name in OPTIONAL_SECRET_FILES:
                return None, field_name, False
            raise ValueError(f"{field_name.upper()}_FILE names an unreadable file: {exc.strerror}") from None
        except OSError as exc:
            raise ValueError(f"{field_name.upper()}_FILE names an unreadable file: {exc.strerror}") from None
        return text.strip(), field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values


def async_database_url(url: str) -> str:
    """Accept ``postgresql://`` / ``postgres://`` URLs and return the SQLAlchemy asyncpg form."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("DATABASE_URL must be a postgresql:// URL")


class ServiceSettings(BaseSettings):
    """Settings every service shares. Services subclass it to add their own fields."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    database_url: SecretStr = SecretStr("postgresql://todo@localhost:5432/todo")
    jwt_secret: SecretStr | None = None
    #: ``kid`` of JWT_SECRET in the tokens it signs. Rotation (docs/security.md): the old secret and
    #: its kid become JWT_PREVIOUS_SECRET/JWT_PREVIOUS_KEY_ID, which still verify, for one token TTL.
    jwt_key_id: str = DEFAULT_KEY_ID
    jwt_previous_secret: SecretStr | None = None
    jwt_previous_key_id: str | None = None
    jwt_issuer: str = DEFAULT_ISSUER
    jwt_audience: str = DEFAULT_AUDIENCE
    jwt_ttl_seconds: int = 3600
    dapr_http_port: int = 3500
    dapr_host: str = "127.0.0.1"
    dapr_api_token: SecretStr | None = None
    app_api_token: SecretStr | None = None
    #: A developer's machine: the service may run without APP_API_TOKEN, and then its event and
    #: internal routes accept calls from anyone. Never set in a deployment.
    development_mode: bool = False
    #: /readyz also checks the Dapr sidecar (turn off only for a service run without a sidecar).
    dapr_ready_check: bool = True
    log_level: str = "INFO"
    #: Metrics and request logging middleware; off only for the instrumentation benchmark.
    instrumentation: bool = True
    #: Connections each process keeps open. No overflow by default: under a burst, requests wait
    #: for a pooled connection instead of opening extra ones that are closed again on return
    #: (measured: that churn cost the backend ~40 % of its create throughput, docs/performance.md).
    #: Largest request body accepted (413 above it); an API body is a few KiB at most.
    max_request_body_bytes: int = 1024 * 1024
    #: Largest body of a request that carries the app token: a bulk delivery of up to 100 events from
    #: the sidecar, each up to Kafka's default largest message of 1 MiB in the worst case.
    max_delivery_body_bytes: int = 128 * 1024 * 1024
    db_pool_size: int = 10
    db_max_overflow: int = 0
    #: A database that stops answering (a frozen or vanished primary, no reset) must not hang
    #: requests for the kernel's TCP timeout: the server cancels a statement after
    #: DB_STATEMENT_TIMEOUT_SECONDS, the client gives up on any command after
    #: DB_COMMAND_TIMEOUT_SECONDS (then drops the connection), on a pooled connection after
    #: DB_POOL_TIMEOUT_SECONDS and on a new one after DB_CONNECT_TIMEOUT_SECONDS; TCP keepalive
    #: (both ends) finds a peer that is gone after DB_KEEPALIVE_SECONDS.
    db_statement_timeout_seconds: float = Field(default=5.0, gt=0)
    db_command_timeout_seconds: float = Field(default=8.0, gt=0)
    db_pool_timeout_seconds: float = Field(default=5.0, gt=0)
    db_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    db_keepalive_seconds: int = Field(default=30, ge=1)

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: SecretStr) -> SecretStr:
        return SecretStr(async_database_url(value.get_secret_value()))

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    def check_can_serve(self) -> None:
        """Raise ValueError for settings a service must not run with (the CLI exits with the message)."""
        if not self.development_mode and (
            self.app_api_token is None or not self.app_api_token.get_secret_value()
        ):
            raise ValueError(
                "APP_API_TOKEN is not set: without it the event and internal routes would accept "
                "unauthenticated calls. Give the service the token its Dapr sidecar sends (the "
                "dapr.io/app-token-secret), or set DEVELOPMENT_MODE=true on a developer machine."
            )

    @property
    def dapr_url(self) -> str:
        return f"http://{self.dapr_host}:{self.dapr_http_port}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, FileSecretSource(settings_cls)
