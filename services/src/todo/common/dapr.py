"""A small async client for the Dapr sidecar's HTTP API (pub/sub publish, service invocation, health)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from todo.common.cloudevents import CONTENT_TYPE as CLOUDEVENTS_JSON
from todo.common.context import outgoing_headers

PUBSUB_NAME = "pubsub"


class DaprError(RuntimeError):
    """The sidecar answered with an error, or could not be reached (status None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class BulkEntry:
    """One event of a bulk publish: ``entry_id`` is unique within the call and names it in failures."""

    entry_id: str
    event: dict[str, Any]
    partition_key: str | None = None


class DaprClient:
    def __init__(
        self,
        base_url: str,
        api_token: str | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"dapr-api-token": api_token} if api_token else {}
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = {**outgoing_headers(), **kwargs.pop("headers", {})}
        try:
            response = await self._http.request(method, url, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise DaprError(f"Dapr sidecar unreachable: {type(exc).__name__}") from None
        return response

    async def publish(
        self,
        topic: str,
        event: dict[str, Any] | bytes,
        *,
        partition_key: str | None = None,
        pubsub: str = PUBSUB_NAME,
        metadata: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Publish a structured CloudEvent (passed through unchanged by Dapr); raise DaprError on failure."""
        params = {f"metadata.{k}": v for k, v in (metadata or {}).items()}
        if partition_key:
            params["metadata.partitionKey"] = partition_key
        body = event if isinstance(event, bytes) else orjson.dumps(event)
        response = await self._request(
            "POST",
            f"/v1.0/publish/{quote(pubsub, safe='')}/{quote(topic, safe='')}",
            params=params,
            content=body,
            headers={**(headers or {}), "Content-Type": CLOUDEVENTS_JSON},
        )
        if response.status_code >= 300:
            raise DaprError(
                f"publish to {topic} failed: HTTP {response.status_code} {response.text[:300]}",
                response.status_code,
            )

    async def publish_bulk(
        self, topic: str, entries: list[BulkEntry], *, pubsub: str = PUBSUB_NAME
    ) -> dict[str, str]:
        """Publish many structured CloudEvents in one call (Dapr's bulk publish API, alpha since 1.10;
        Kafka sends them as one produce request). Returns ``{entry_id: error}`` for the entries that
        failed (empty when all were published); raises DaprError when the sidecar cannot be reached
        or rejects the request as a whole."""
        body = [
            {
                "entryId": entry.entry_id,
                "event": entry.event,
                "contentType": CLOUDEVENTS_JSON,
                "metadata": {"partitionKey": entry.partition_key} if entry.partition_key else {},
            }
            for entry in entries
        ]
        response = await self._request(
            "POST",
            f"/v1.0-alpha1/publish/bulk/{quote(pubsub, safe='')}/{quote(topic, safe='')}",
            content=orjson.dumps(body),
            headers={"Content-Type": "application/json"},
        )
        if response.status_code < 300:
            return {}
        try:
            failed = orjson.loads(response.content).get("failedEntries")
        except (orjson.JSONDecodeError, AttributeError):
            failed = None
        if not isinstance(failed, list) or not failed:
            raise DaprError(
                f"bulk publish to {topic} failed: HTTP {response.status_code} {response.text[:300]}",
                response.status_code,
            )
        known = {entry.entry_id for entry in entries}
        errors = {
            str(item.get("entryId")): str(item.get("error") or f"HTTP {response.status_code}")
            for item in failed
            if isinstance(item, dict)
        }
        if not errors.keys() <= known:
            # an answer that does not name our entries cannot be trusted to say what was sent
            raise DaprError(
                f"bulk publish to {topic}: unexpected answer {response.text[:300]}", response.status_code
            )
        return errors

    async def invoke(
        self,
        app_id: str,
        method_path: str,
        *,
        http_method: str = "POST",
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Service invocation through the sidecar; returns the callee's response (any status)."""
        return await self._request(
            http_method,
            f"/v1.0/invoke/{quote(app_id, safe='')}/method/{method_path.lstrip('/')}",
            content=None if json is None else orjson.dumps(json),
            headers={"Content-Type": "application/json", **(headers or {})},
        )

    async def healthy(self) -> bool:
        """The sidecar's outbound health: components initialised, able to publish and invoke."""
        try:
            response = await self._request("GET", "/v1.0/healthz/outbound")
        except DaprError:
            return False
        return response.status_code < 300
