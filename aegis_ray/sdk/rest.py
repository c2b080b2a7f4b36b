"""The REST transport (httpx): each operation as its HTTP request, each reply as its JSON body.

`RestTransport` and `AsyncRestTransport` share the routes and the decoding; they differ only in
the httpx client they send with.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import httpx

from aegis_ray.sdk.errors import ApiError, ApiUnreachable
from aegis_ray.sdk.transport import Op

Route = tuple[str, str, dict[str, Any]]  # method, path, httpx keyword arguments


def route(op: Op, a: dict[str, Any]) -> Route:
    """The HTTP request of one operation (paths and parameters of aegis_ray/api/rest.py)."""
    execution = f"/v1/executions/{quote(a.get('execution_id', ''), safe='')}"
    node = f"/v1/nodes/{quote(a.get('node_id') or '', safe='')}"
    secret = f"/v1/secrets/{quote(a.get('name') or '', safe='')}"  # list's `name` may be None
    match op:
        case Op.health:
            return "GET", "/health", {}
        case Op.submit | Op.plan:
            headers = {"Content-Type": a["media_type"]}
            if a.get("idempotency_key"):
                headers["Idempotency-Key"] = a["idempotency_key"]
            kw = {"params": {"source": a["source"]}, "content": a["text"], "headers": headers}
            return "POST", "/v1/executions" if op is Op.submit else "/v1/plan", kw
        case Op.list:
            params = {"limit": a["limit"], "state": a["states"], "name": a["name"]}
            params |= {"before": a["before"], "label": a.get("labels")}
            return "GET", "/v1/executions", {"params": _present(params)}
        case Op.get:
            return "GET", execution, {}
        case Op.events:
            return "GET", f"{execution}/events", {"params": {"after": a["after"]}}
        case Op.logs:
            params = _present({"after": a["after"], "limit": a.get("limit")})
            return "GET", f"{execution}/logs", {"params": params}
        case Op.watch:
            flags = {k: str(a[k]).lower() for k in ("events", "logs")}
            params = {"after_event": a["after_event"], "after_log": a["after_log"], **flags}
            return "GET", f"{execution}/watch", {"params": params, "timeout": None}
        case Op.cancel:
            return "POST", f"{execution}/cancel", {}
        case Op.nodes:
            return "GET", "/v1/nodes", {}
        case Op.node:
            return "GET", node, {}
        case Op.drain | Op.undrain | Op.heartbeat:
            return "POST", f"{node}/{op.value}", {}
        case Op.cluster_status:
            return "GET", "/v1/cluster/status", {}
        case Op.cluster_events:
            params = _present({"after": a["after"], "limit": a["limit"]})
            return "GET", "/v1/events", {"params": params}
        case Op.watch_cluster:
            params = _present({"after": a["after"], "follow": "true"})
            return "GET", "/v1/events", {"params": params, "timeout": None}
        case Op.create_token:
            return "POST", "/v1/tokens", {"json": _present(dict(a))}
        case Op.list_tokens:
            return "GET", "/v1/tokens", {"params": {"revoked": str(a["revoked"]).lower()}}
        case Op.revoke_token:
            return "POST", f"/v1/tokens/{quote(a['token_id'], safe='')}/revoke", {}
        case Op.rotate_admin:
            return "POST", "/v1/tokens/rotate-admin", {}
        case Op.rotate_join_secret:
            return "POST", "/v1/tokens/join-secret", {"json": _present(dict(a))}
        case Op.put_secret:
            return "PUT", secret, {"json": {"data": a["data"]}}
        case Op.secrets:
            return "GET", "/v1/secrets", {}
        case Op.secret:
            return "GET", secret, {}
        case Op.delete_secret:
            return "DELETE", secret, {}
    raise ValueError(f"no REST route for operation {op!r}")


def _present(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v not in (None, [])}


def decode(r: httpx.Response) -> Any:
    """The JSON body of a reply; a refusal (status >= 400) as `ApiError` with its body."""
    try:
        body = r.json()
    except ValueError:
        body = {"error": "http", "message": r.text[:500]}
    if r.status_code >= 400:
        if not isinstance(body, dict):
            body = {"error": "http", "message": str(body)}
        raise ApiError.of(r.status_code, body)
    return body


def _lines(chunks: Iterator[str] | list[str]) -> Iterator[dict[str, Any]]:
    return (json.loads(line) for line in chunks if line.strip())


def verify(ca_file: str | None) -> ssl.SSLContext | bool:
    """How an https:// API's certificate is checked: against `ca_file`, else the system's CAs."""
    return ssl.create_default_context(cafile=ca_file) if ca_file else True


# Errors raised before a request reached any server: safe to send it to another one.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


def api_urls(base_url: str) -> list[str]:
    """One API URL, or several separated by commas (orchestrators, or balancers)."""
    urls = [u.strip().rstrip("/") for u in base_url.split(",") if u.strip()]
    if not urls:
        raise ValueError(f"no API URL in {base_url!r}")
    return urls


class _Http:
    """What both REST transports hold: where they send and the token they send.

    With several URLs, a request that could not connect goes to the next one (in order,
    starting from the one that answered last); a request that reached a server is never sent
    twice. `ApiUnreachable` only when none could be reached."""

    def __init__(
        self, base_url: str, token: str | None, timeout: float, kind: type, ca_file: str | None
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.targets = api_urls(base_url)
        self.target = self.targets[0]
        self.http = kind(headers=headers, timeout=timeout, verify=verify(ca_file))

    def _order(self) -> list[str]:
        i = self.targets.index(self.target)
        return self.targets[i:] + self.targets[:i]

    def _unreachable(self, err: Exception) -> ApiUnreachable:
        where = ", ".join(self.targets)
        return ApiUnreachable(f"aegis API not reachable at {where}: {err}")


class RestTransport(_Http):
    http: httpx.Client

    def __init__(
        self, base_url: str, token: str | None, *, timeout: float = 30.0, ca_file: str | None = None
    ) -> None:
        super().__init__(base_url, token, timeout, httpx.Client, ca_file)

    def _send(self, method: str, path: str, kw: dict[str, Any], *, stream: bool) -> httpx.Response:
        last: Exception | None = None
        for url in self._order():
            request = self.http.build_request(method, url + path, **kw)
            try:
                r = self.http.send(request, stream=stream)
            except NOT_SENT as err:
                last = err
                continue
            except httpx.TransportError as err:
                raise self._unreachable(err) from err
            self.target = url
            return r
        assert last is not None
        raise self._unreachable(last) from last

    def call(self, op: Op, args: dict[str, Any]) -> Any:
        method, path, kw = route(op, args)
        return decode(self._send(method, path, kw, stream=False))

    def stream(self, op: Op, args: dict[str, Any]) -> Iterator[dict[str, Any]]:
        method, path, kw = route(op, args)
        r = self._send(method, path, kw, stream=True)
        try:
            if r.status_code >= 400:
                r.read()
                decode(r)
            yield from _lines(r.iter_lines())
        except httpx.TransportError as err:
            raise self._unreachable(err) from err
        finally:
            r.close()

    def close(self) -> None:
        self.http.close()


class AsyncRestTransport(_Http):
    """The same routes over httpx.AsyncClient."""

    http: httpx.AsyncClient

    def __init__(
        self, base_url: str, token: str | None, *, timeout: float = 30.0, ca_file: str | None = None
    ) -> None:
        super().__init__(base_url, token, timeout, httpx.AsyncClient, ca_file)

    async def _send(
        self, method: str, path: str, kw: dict[str, Any], *, stream: bool
    ) -> httpx.Response:
        last: Exception | None = None
        for url in self._order():
            request = self.http.build_request(method, url + path, **kw)
            try:
                r = await self.http.send(request, stream=stream)
            except NOT_SENT as err:
                last = err
                continue
            except httpx.TransportError as err:
                raise self._unreachable(err) from err
            self.target = url
            return r
        assert last is not None
        raise self._unreachable(last) from last

    async def call(self, op: Op, args: dict[str, Any]) -> Any:
        method, path, kw = route(op, args)
        return decode(await self._send(method, path, kw, stream=False))

    async def stream(self, op: Op, args: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        method, path, kw = route(op, args)
        r = await self._send(method, path, kw, stream=True)
        try:
            if r.status_code >= 400:
                await r.aread()
                decode(r)
            async for line in r.aiter_lines():
                for item in _lines([line]):
                    yield item
        except httpx.TransportError as err:
            raise self._unreachable(err) from err
        finally:
            await r.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()
