"""A client for the aegis gRPC API with the same methods and results as `AegisClient` (REST).

Replies are converted back into the REST API's JSON bodies and refusals into the same
`ApiError` (HTTP-equivalent status and REST error body), so the CLI runs unchanged over either
transport: `aegis --api grpc ...` or AEGIS_API=grpc.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf import json_format

from aegis_ray.api.errors import GRPC_ERROR_METADATA, GRPC_TO_HTTP
from aegis_ray.rpc import executions_pb2 as ex
from aegis_ray.rpc import nodes_pb2 as nd
from aegis_ray.rpc.convert import health_body, manifest_message, to_dict
from aegis_ray.rpc.executions_pb2_grpc import ExecutionServiceStub
from aegis_ray.rpc.nodes_pb2_grpc import ClusterServiceStub, NodeServiceStub
from aegis_ray.sdk.rest import ApiError, ApiUnreachable

# What grpc-core says when nothing answered at all (not a refusal by the API).
_TRANSPORT_FAILURES = ("failed to connect", "connection refused", "socket closed", "dns")
# Large enough for a page of 1,000 long log lines; gRPC's default is 4 MiB.
MAX_MESSAGE_BYTES = 64 << 20


def api_error(err: grpc.RpcError) -> Exception:
    """The REST-equivalent error for a failed call (ApiUnreachable if nothing answered)."""
    code: grpc.StatusCode = err.code()  # type: ignore[attr-defined]
    details = err.details() or code.name  # type: ignore[attr-defined]
    trailing = err.trailing_metadata() or ()  # type: ignore[attr-defined]
    raw = next((v for k, v in trailing if k == GRPC_ERROR_METADATA), None)
    unanswered = code == grpc.StatusCode.DEADLINE_EXCEEDED or (
        code == grpc.StatusCode.UNAVAILABLE
        and any(s in details.lower() for s in _TRANSPORT_FAILURES)
    )
    if raw is None and unanswered:
        return ApiUnreachable(f"aegis gRPC API not reachable: {details}")
    body: dict[str, Any] = (
        json.loads(raw) if raw else {"error": code.name.lower(), "message": details}
    )
    status = int(body.pop("http_status", GRPC_TO_HTTP.get(code.name, 500)))
    body.setdefault("grpc_code", code.name)
    return ApiError(status, body)


class GrpcAegisClient:
    def __init__(self, address: str, token: str | None, *, timeout: float = 30.0) -> None:
        self.address = address
        self.timeout = timeout
        self.channel = grpc.insecure_channel(
            address, options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        )
        self.metadata = [("authorization", f"Bearer {token}")] if token else []
        self.executions = ExecutionServiceStub(self.channel)
        self.node_service = NodeServiceStub(self.channel)
        self.cluster = ClusterServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, metadata=self.metadata, timeout=self.timeout)
        except grpc.RpcError as err:
            raise api_error(err) from None

    def _body(self, method: Any, request: Any) -> dict[str, Any]:
        return to_dict(self._call(method, request))

    @staticmethod
    def _manifest(manifest_text: str, source: str) -> ex.ManifestInput:
        """The structured manifest when it validates here (normalized: bytes, seconds,
        millicores, so nothing depends on how protobuf carries numbers); otherwise the text
        itself, so that the server refuses it exactly as REST would (same problems, paths)."""
        from aegis_ray.core.models.loading import ManifestError, parse_agent

        try:
            manifest = parse_agent(manifest_text, source=source)
            return ex.ManifestInput(agent=manifest_message(manifest.to_document()), source=source)
        except (ManifestError, json_format.ParseError):
            return ex.ManifestInput(yaml=manifest_text, source=source)

    # ------------------------------------------------------------ executions

    def health(self) -> Any:
        return health_body(self._call(self.cluster.CheckHealth, nd.CheckHealthRequest()))

    def submit(self, manifest_text: str, *, source: str) -> Any:
        req = ex.SubmitExecutionRequest(manifest=self._manifest(manifest_text, source))
        body = self._body(self.executions.SubmitExecution, req)
        if body.get("waiting") is None:
            body.pop("waiting", None)
        body.pop("attempts", None)
        return body

    def plan(self, manifest_text: str, *, source: str) -> Any:
        req = ex.PlanExecutionRequest(manifest=self._manifest(manifest_text, source))
        return self._body(self.executions.PlanExecution, req)

    def list(
        self, *, states: list[str] | None = None, name: str | None = None, limit: int = 50
    ) -> Any:
        req = ex.ListExecutionsRequest(states=states or [], name=name, limit=limit)
        body = self._body(self.executions.ListExecutions, req)
        for item in body["items"]:  # fields only GetExecution / SubmitExecution fill
            item.pop("attempts", None)
            item.pop("waiting", None)
        return body

    def get(self, execution_id: str) -> Any:
        body = self._body(self.executions.GetExecution, ex.GetExecutionRequest(id=execution_id))
        body.pop("waiting", None)
        return body

    def events(self, execution_id: str, *, after: int = 0) -> Any:
        req = ex.ListExecutionEventsRequest(id=execution_id, after=after)
        return self._body(self.executions.ListExecutionEvents, req)

    def logs(self, execution_id: str, *, after: int = 0) -> Any:
        req = ex.ListExecutionLogsRequest(id=execution_id, after=after)
        return self._body(self.executions.ListExecutionLogs, req)

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
        req = ex.WatchExecutionRequest(
            id=execution_id,
            after_event=after_event,
            after_log=after_log,
            events=events,
            logs=logs,
        )
        try:
            for msg in self.executions.WatchExecution(req, metadata=self.metadata):
                which = msg.WhichOneof("item")
                yield {which: to_dict(getattr(msg, which))}
        except grpc.RpcError as err:
            raise api_error(err) from None

    def cancel(self, execution_id: str) -> Any:
        req = ex.CancelExecutionRequest(id=execution_id)
        return self._body(self.executions.CancelExecution, req)

    # ------------------------------------------------------------ nodes and cluster

    def nodes(self) -> Any:
        return self._body(self.node_service.ListNodes, nd.ListNodesRequest())

    def node(self, node_id: str) -> Any:
        return self._body(self.node_service.GetNode, nd.GetNodeRequest(node_id=node_id))

    def drain(self, node_id: str) -> Any:
        return self._body(self.node_service.DrainNode, nd.DrainNodeRequest(node_id=node_id))

    def undrain(self, node_id: str) -> Any:
        return self._body(self.node_service.UndrainNode, nd.DrainNodeRequest(node_id=node_id))

    def heartbeat(self, node_id: str) -> Any:
        return self._body(self.node_service.Heartbeat, nd.HeartbeatRequest(node_id=node_id))

    def cluster_status(self) -> Any:
        return self._body(self.cluster.GetClusterStatus, nd.GetClusterStatusRequest())

    def create_token(self, *, role: str, ttl_s: float, description: str = "") -> Any:
        req = nd.CreateTokenRequest(role=role, ttl_s=ttl_s, description=description)
        return self._body(self.cluster.CreateToken, req)
