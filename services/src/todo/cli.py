"""Command-line entry points of the image: ``todo-service <service>`` and ``todo-migrate <service>|all``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from todo.common.heap import settle_heap
from todo.common.migrations import PACKAGES, upgrade

#: service name (docs/contracts.md) -> package under todo.
SERVICES = {
    "backend": "backend",
    "audit": "audit",
    "recurring-task": "recurring",
    "notification": "notification",
    "sync": "sync",
}


def _package(name: str) -> str:
    if name in SERVICES:
        return SERVICES[name]
    if name in PACKAGES:
        return name
    raise SystemExit(f"unknown service {name!r}; choose one of: {', '.join(SERVICES)}")


def serve_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="todo-service", description="Run one Todo service (uvicorn).")
    parser.add_argument("service", help=" | ".join(SERVICES))
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))  # noqa: S104 - a container
    parser.add_argument("--port", type=int, default=None, help="default $PORT or 8000")
    args = parser.parse_args(argv)
    package = _package(args.service)
    try:
        port = args.port or int(os.environ.get("PORT", "8000"))
    except ValueError:
        raise SystemExit("PORT must be an integer") from None

    import uvicorn

    module = importlib.import_module(f"todo.{package}.app")
    try:
        app = module.create_app()
    except ValueError as exc:  # invalid settings (pydantic ValidationError is a ValueError)
        raise SystemExit(f"todo-service {args.service}: invalid configuration: {exc}") from None
    from todo.common.http import WS_MAX_MESSAGE_BYTES, BoundedHttpToolsProtocol
    from todo.common.shutdown import DrainingServer

    settle_heap()
    config = uvicorn.Config(
        app,
        http=BoundedHttpToolsProtocol,
        # A client sends the sync service only "ping"; larger frames are closed with 1009.
        ws_max_size=WS_MAX_MESSAGE_BYTES,
        host=args.host,
        port=port,
        workers=1,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        timeout_graceful_shutdown=20,
    )
    drain = os.environ.get("SHUTDOWN_DRAIN_SECONDS", "5")
    try:
        drain_seconds = float(drain)
    except ValueError:
        raise SystemExit("SHUTDOWN_DRAIN_SECONDS must be a number of seconds") from None
    DrainingServer(config, app, drain_seconds).run()


def _migrate_settings() -> type:
    from pydantic import SecretStr

    from todo.common.settings import ServiceSettings

    class MigrateSettings(ServiceSettings):
        #: Non-empty: after migrating, each service's role <prefix>_<package> gets exactly its own
        #: schema (todo.common.db_roles). Empty: every service shares the migration's URL.
        db_service_role_prefix: str = ""
        #: A service role's password: the migration creates the role or resets its password
        #: (needs CREATEROLE). Unset: the role must exist already (made by the operator).
        db_password_backend: SecretStr | None = None
        db_password_audit: SecretStr | None = None
        db_password_recurring: SecretStr | None = None
        db_password_notification: SecretStr | None = None
        db_password_sync: SecretStr | None = None

        def service_passwords(self) -> dict[str, str | None]:
            return {
                package: (secret.get_secret_value() or None) if secret else None
                for package in PACKAGES
                for secret in [getattr(self, f"db_password_{package}")]
            }

    return MigrateSettings


def migrate_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="todo-migrate", description="Apply Alembic migrations.")
    parser.add_argument("service", help=" | ".join(SERVICES) + " | all")
    parser.add_argument("--revision", default="head")
    args = parser.parse_args(argv)
    from todo.common.logging import configure_logging

    configure_logging("migrate", os.environ.get("LOG_LEVEL", "INFO"))
    try:
        settings = _migrate_settings()()
    except ValueError as exc:
        raise SystemExit(f"todo-migrate: invalid configuration: {exc}") from None
    url = settings.database_url.get_secret_value()
    packages = list(dict.fromkeys(SERVICES.values())) if args.service == "all" else [_package(args.service)]
    for package in packages:
        try:
            upgrade(package, url, args.revision)
        except Exception as exc:  # one clear line (secrets redacted) instead of a traceback
            from todo.common.redaction import redact_text

            detail = redact_text(f"{type(exc).__name__}: {exc}")[:500]
            raise SystemExit(f"todo-migrate: migrating {package} failed: {detail}") from None
    if settings.db_service_role_prefix:
        import asyncio

        from todo.common.db_roles import ServiceRoleError, apply_service_roles

        try:
            asyncio.run(
                apply_service_roles(
                    url, settings.db_service_role_prefix, packages, settings.service_passwords()
                )
            )
        except ServiceRoleError as exc:
            raise SystemExit(f"todo-migrate: {exc}") from None
        except Exception as exc:
            from todo.common.redaction import redact_text

            detail = redact_text(f"{type(exc).__name__}: {exc}")[:500]
            raise SystemExit(f"todo-migrate: granting the service roles failed: {detail}") from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(serve_main())
