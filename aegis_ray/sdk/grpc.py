"""The gRPC transport: each operation as its RPC, each reply turned back into the REST body.

Replies become the REST API's JSON bodies (aegis_ray/rpc/convert.py) and refusals the same
`ApiError` with the REST error body (carried in the trailing metadata), so the client and the
CLI behave alike over either transport: `aegis --api grpc ...` or AEGIS_API=grpc.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from aegis_ray.contract.errors import GRPC_ERROR_METADATA, GRPC_TO_HTTP
from aegis_ray.core.models.loading import ManifestError, parse_agent
from aegis_ray.rpc import executions_pb2 as ex
from aegis_ray.rpc import nodes_pb2 as nd
from aegis_ray.rpc import secrets_pb2 as sc
from aegis_ray.rpc.convert import health_body, manifest_message, to_dict
from aegis_ray.rpc.executions_pb2_grpc import ExecutionServiceStub
from aegis_ray.rpc.nodes_pb2_grpc import ClusterServiceStub, NodeServiceStub
from aegis_ray.rpc.secrets_pb2_grpc import SecretServiceStub
from aegis_ray.sdk.errors import ApiError, ApiUnreachable
from aegis_ray.sdk.transport import Op

# What grpc-core says when nothing answered at all (not a refusal by the API).
_TRANSPORT_FAILURES = ("failed to connect", "connection refused", "socket closed", "dns")
# Large enough for a page of 1,000 long log lines; gRPC's default is 4 MiB.
MAX_MESSAGE_BYTES = 64 << 20


def api_error(err: grpc.RpcError) -> Exception:
    """The REST-equivalent error for a failed call (ApiUnreachable if nothing answered)."""
    code: grpc.StatusCode = err.code()
    details = err.details() or code.name
    trailing = err.trailing_metadata() or ()
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
    return ApiError.of(status, body)


def manifest_input(text: str, source: str) -> ex.ManifestInput:
    """The structured manifest when it validates here (normalized: bytes, seconds,
    millicores, so nothing depends on how protobuf carries numbers); otherwise the text
    itself, so that the server refuses it exactly as REST would (same problems, paths)."""
    try:
        manifest = parse_agent(text, source=source)
        return ex.ManifestInput(agent=manifest_message(manifest.to_document()), source=source)
    except (ManifestError, json_format.ParseError):
        return ex.ManifestInput(yaml=text, source=source)


def _execution(body: dict[str, Any], *only_in: str) -> dict[str, Any]:
    """An Execution message's body with the fields REST sends only with other operations
    (attempts: GET of one; waiting: submit, when set) left out, as REST leaves them out."""
    if "waiting" not in only_in or body.get("waiting") is None:
        body.pop("waiting", None)
    if "attempts" not in only_in:
        body.pop("attempts", None)
    return body


def _list_page(body: dict[str, Any]) -> dict[str, Any]:
    body["items"] = [_execution(item) for item in body["items"]]
    return body


def _id(a: dict[str, Any]) -> dict[str, Any]:
    return {"id": a["execution_id"]}


def _manifest(a: dict[str, Any]) -> dict[str, Any]:
    return {"manifest": manifest_input(a["text"], a["source"])}


# operation -> (service, method, request message from the operation's arguments)
RPCS: dict[Op, tuple[str, str, Callable[[dict[str, Any]], Message]]] = {
    Op.health: ("cluster", "CheckHealth", lambda a: nd.CheckHealthRequest()),
    Op.submit: ("executions", "SubmitExecution", lambda a: ex.SubmitExecutionRequest(
        **_manifest(a), idempotency_key=a.get("idempotency_key"))),
    Op.plan: ("executions", "PlanExecution", lambda a: ex.PlanExecutionRequest(**_manifest(a))),
    Op.list: ("executions", "ListExecutions", lambda a: ex.ListExecutionsRequest(
        states=a["states"] or [], name=a["name"], limit=a["limit"], before=a["before"],
        labels=a.get("labels") or [])),
    Op.get: ("executions", "GetExecution", lambda a: ex.GetExecutionRequest(**_id(a))),
    Op.events: ("executions", "ListExecutionEvents",
                lambda a: ex.ListExecutionEventsRequest(**_id(a), after=a["after"])),
    Op.logs: ("executions", "ListExecutionLogs", lambda a: ex.ListExecutionLogsRequest(
        **_id(a), after=a["after"], limit=a.get("limit"))),
    Op.watch: ("executions", "WatchExecution", lambda a: ex.WatchExecutionRequest(
        **_id(a), **{k: a[k] for k in ("after_event", "after_log", "events", "logs")})),
    Op.cancel: ("executions", "CancelExecution", lambda a: ex.CancelExecutionRequest(**_id(a))),
    Op.nodes: ("nodes", "ListNodes", lambda a: nd.ListNodesRequest()),
    Op.node: ("nodes", "GetNode", lambda a: nd.GetNodeRequest(node_id=a["node_id"])),
    Op.drain: ("nodes", "DrainNode", lambda a: nd.DrainNodeRequest(node_id=a["node_id"])),
    Op.undrain: ("nodes", "UndrainNode", lambda a: nd.DrainNodeRequest(node_id=a["node_id"])),
    Op.heartbeat: ("nodes", "Heartbeat", lambda a: nd.HeartbeatRequest(node_id=a["node_id"])),
    Op.cluster_status: ("cluster", "GetClusterStatus", lambda a: nd.GetClusterStatusRequest()),
    Op.create_token: ("cluster", "CreateToken", lambda a: nd.CreateTokenRequest(**a)),
    Op.list_tokens: ("cluster", "ListTokens",
                     lambda a: nd.ListTokensRequest(revoked=a["revoked"])),
    Op.revoke_token: ("cluster", "RevokeToken", lambda a: nd.RevokeTokenRequest(id=a["token_id"])),
    Op.rotate_admin: ("cluster", "RotateAdminToken", lambda a: nd.RotateAdminTokenRequest()),
    Op.rotate_join_secret: ("cluster", "RotateJoinSecret", lambda a: nd.RotateJoinSecretRequest(
        secret=a["secret"], node_types=a["node_types"] or [])),
    Op.cluster_events: ("cluster", "ListClusterEvents", lambda a: nd.ListClusterEventsRequest(
        after=a["after"], limit=a["limit"])),
    Op.watch_cluster: ("cluster", "WatchClusterEvents",
                       lambda a: nd.WatchClusterEventsRequest(after=a["after"])),
    Op.put_secret: ("secrets", "PutSecret",
                    lambda a: sc.PutSecretRequest(name=a["name"], data=a["data"])),
    Op.secrets: ("secrets", "ListSecrets", lambda a: sc.ListSecretsRequest()),
    Op.secret: ("secrets", "GetSecret", lambda a: sc.GetSecretRequest(name=a["name"])),
    Op.delete_secret: ("secrets", "DeleteSecret",
                       lambda a: sc.DeleteSecretRequest(name=a["name"])),
}  # fmt: skip
# Replies whose message holds fields the REST body of that operation does not.
FIXUPS: dict[Op, Callable[[dict[str, Any]], dict[str, Any]]] = {
    Op.submit: lambda b: _execution(b, "waiting"),
    Op.get: lambda b: _execution(b, "attempts"),
    Op.list: _list_page,
}


class GrpcTransport:
    def __init__(
        self, address: str, token: str | None, *, timeout: float = 30.0, ca_file: str | None = None
    ) -> None:
        """With `ca_file`, over TLS, the server's certificate checked against that CA."""
        self.address = address
        self.target = f"gRPC {address}" + (" (TLS)" if ca_file else "")
        self.timeout = timeout
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        if ca_file:
            with open(ca_file, "rb") as f:
                credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
            self.channel = grpc.secure_channel(address, credentials, options=options)
        else:
            self.channel = grpc.insecure_channel(address, options=options)
        self.metadata = [("authorization", f"Bearer {token}")] if token else []
        self.services = {
            "executions": ExecutionServiceStub(self.channel),
            "nodes": NodeServiceStub(self.channel),
            "cluster": ClusterServiceStub(self.channel),
            "secrets": SecretServiceStub(self.channel),
        }

    def _rpc(self, op: Op, args: dict[str, Any]) -> tuple[Any, Message]:
        service, method, request = RPCS[op]
        return getattr(self.services[service], method), request(args)

    def call(self, op: Op, args: dict[str, Any]) -> Any:
        stub, request = self._rpc(op, args)
        try:
            reply = stub(request, metadata=self.metadata, timeout=self.timeout)
        except grpc.RpcError as err:
            raise api_error(err) from None
        if op is Op.health:
            return health_body(reply)
        return FIXUPS.get(op, lambda body: body)(to_dict(reply))

    def stream(self, op: Op, args: dict[str, Any]) -> Iterator[dict[str, Any]]:
        stub, request = self._rpc(op, args)
        try:
            for msg in stub(request, metadata=self.metadata):
                which = msg.WhichOneof("item")
                yield {which: to_dict(getattr(msg, which))}
        except grpc.RpcError as err:
            raise api_error(err) from None

    def close(self) -> None:
        self.channel.close()
