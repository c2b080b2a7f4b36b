"""A small client for the aegis REST API, used by the CLI and the benchmarks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        super().__init__(body.get("message") or body.get("error") or f"HTTP {status}")


class ApiUnreachable(Exception):
    pass


class AegisClient:
    def __init__(self, base_url: str, token: str | None, *, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.TransportError as err:
            raise ApiUnreachable(f"aegis API not reachable at {self.base_url}: {err}") from err
        return self._decode(r)

    @staticmethod
    def _decode(r: httpx.Response) -> Any:
        try:
            body = r.json()
        except ValueError:
            body = {"error": "http", "message": r.text[:500]}
        if r.status_code >= 400:
            if not isinstance(body, dict):
                body = {"error": "http", "message": str(body)}
            raise ApiError(r.status_code, body)
        return body

    def health(self) -> Any:
        return self._call("GET", "/health")

    def submit(self, manifest_text: str, *, source: str) -> Any:
        return self._call(
            "POST",
            "/v1/executions",
            params={"source": source},
            content=manifest_text,
            headers={"Content-Type": "application/yaml"},
        )

    def plan(self, manifest_text: str, *, source: str) -> Any:
        return self._call(
            "POST",
            "/v1/plan",
            params={"source": source},
            content=manifest_text,
            headers={"Content-Type": "application/yaml"},
        )

    def list(
        self, *, states: list[str] | None = None, name: str | None = None, limit: int = 50
    ) -> Any:
        params: dict[str, Any] = {"limit": limit}
        if states:
            params["state"] = states
        if name:
            params["name"] = name
        return self._call("GET", "/v1/executions", params=params)

    def get(self, execution_id: str) -> Any:
        return self._call("GET", f"/v1/executions/{execution_id}")

    def events(self, execution_id: str, *, after: int = 0) -> Any:
        return self._call("GET", f"/v1/executions/{execution_id}/events", params={"after": after})

    def logs(self, execution_id: str, *, after: int = 0) -> Any:
        return self._call("GET", f"/v1/executions/{execution_id}/logs", params={"after": after})

    def watch(
        self,
        execution_id: str,
        *,
        after_event: int = 0,
        after_log: int = 0,
        events: bool = True,
        logs: bool = True,
    ) -> Iterator[dict[str, Any]]:
        """{"event": row} / {"log": row} as they happen; the last item is {"end": {"state"}}."""
        params = {
            "after_event": after_event,
            "after_log": after_log,
            "events": str(events).lower(),
            "logs": str(logs).lower(),
        }
        try:
            with self.http.stream(
                "GET", f"/v1/executions/{execution_id}/watch", params=params, timeout=None
            ) as r:
                if r.status_code >= 400:
                    r.read()
                    self._decode(r)
                for line in r.iter_lines():
                    if line.strip():
                        yield json.loads(line)
        except httpx.TransportError as err:
            raise ApiUnreachable(f"aegis API not reachable at {self.base_url}: {err}") from err

    def cancel(self, execution_id: str) -> Any:
        return self._call("POST", f"/v1/executions/{execution_id}/cancel")

    def heartbeat(self, node_id: str) -> Any:
        return self._call("POST", f"/v1/nodes/{node_id}/heartbeat")

    def nodes(self) -> Any:
        return self._call("GET", "/v1/nodes")

    def node(self, node_id: str) -> Any:
        return self._call("GET", f"/v1/nodes/{node_id}")

    def drain(self, node_id: str) -> Any:
        return self._call("POST", f"/v1/nodes/{node_id}/drain")

    def undrain(self, node_id: str) -> Any:
        return self._call("POST", f"/v1/nodes/{node_id}/undrain")

    def cluster_status(self) -> Any:
        return self._call("GET", "/v1/cluster/status")

    def create_token(self, *, role: str, ttl_s: float, description: str = "") -> Any:
        body = {"role": role, "ttl_s": ttl_s, "description": description}
        return self._call("POST", "/v1/tokens", json=body)
