"""The gRPC API (protos/aegis/v1), served by Ray Serve's gRPC proxy from the same deployment
as REST.

Serve calls a method of the ingress deployment named like the RPC, with the request message and
a `grpc_context` keyword argument. Every method authenticates with the bearer token in the
`authorization` metadata, calls the same `ControlPlane` operation as the REST route, converts
its body with `to_message`, and turns an `ApiProblem` into a status code, a details string and
the REST error body as JSON in the trailing metadata key `aegis-error`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from pydantic import BaseModel, ValidationError

from aegis_ray.adapters import metrics
from aegis_ray.api.auth import Caller, metadata_secret
from aegis_ray.api.control_plane import (
    ADMINS,
    JOINERS,
    NODES,
    USERS,
    ControlPlane,
    read_manifest,
)
from aegis_ray.api.errors import ApiProblem, as_problem
from aegis_ray.contract.cluster import JoinSecretRequest, NodeIdentity, TokenRequest
from aegis_ray.contract.errors import GRPC_ERROR_METADATA
from aegis_ray.core.models.agent import AgentManifest
from aegis_ray.core.models.loading import problems_of
from aegis_ray.core.models.node import NodeStatus
from aegis_ray.rpc import executions_pb2 as ex
from aegis_ray.rpc import nodes_pb2 as nd
from aegis_ray.rpc import secrets_pb2 as sc
from aegis_ray.rpc.convert import health_message, to_dict, to_message

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Message)
Context = Any  # ray.serve.grpc_util.RayServegRPCContext


# gRPC clients refuse trailing metadata over 8 KiB (soft) / 16 KiB (hard limit).
MAX_ERROR_METADATA = 7 * 1024


def error_metadata(problem: ApiProblem) -> str:
    """The REST error body as JSON, cut to fit in trailing metadata: a plan keeps as many
    nodes as fit (with `nodes_omitted`), anything else keeps error, message and status."""
    body = problem.body() | {"http_status": problem.http_status}
    text = json.dumps(body, default=str)
    plan = body.get("plan")
    if len(text) > MAX_ERROR_METADATA and isinstance(plan, dict) and plan.get("nodes"):
        plan = body["plan"] = dict(plan, nodes=list(plan["nodes"]))
        while len(text) > MAX_ERROR_METADATA and plan["nodes"]:
            plan["nodes"].pop()
            plan["nodes_omitted"] = plan.get("nodes_omitted", 0) + 1
            text = json.dumps(body, default=str)
    if len(text) > MAX_ERROR_METADATA:
        small = {"error": problem.error, "message": problem.message[:2000], "truncated": True}
        text = json.dumps(small | {"http_status": problem.http_status})
    return text


def _refuse(context: Context, problem: ApiProblem) -> None:
    context.set_code(getattr(grpc.StatusCode, problem.grpc_code))
    context.set_details(problem.message[:2000])
    context.set_trailing_metadata([(GRPC_ERROR_METADATA, error_metadata(problem))])


def _problem(err: Exception) -> ApiProblem:
    problem = as_problem(err)
    if problem is None:
        # A bug: the details stay in the control plane's log, as REST's 500 does.
        log.exception("gRPC call failed")
        problem = ApiProblem("internal", "internal error (see the control plane's log)")
    return problem


def _model(model: type[BaseModel], msg: Message, what: str) -> Any:
    """Validate a request message with the REST API's pydantic model (same rules, same paths)."""
    try:
        return model.model_validate(to_dict(msg, drop_unset=True))
    except ValidationError as err:
        problems = problems_of(err, model)
        text = "; ".join(f"{what}.{p.path}: {p.message} (got {p.value!r})" for p in problems)
        raise ApiProblem(
            "invalid_request",
            text,
            problems=[{"path": f"{what}.{p.path}", "message": p.message} for p in problems],
        ) from None


def _manifest(msg: ex.ManifestInput) -> AgentManifest:
    source = msg.source or "<request>"
    which = msg.WhichOneof("manifest")
    if which == "yaml":
        return read_manifest(msg.yaml, source)
    if which == "agent":
        return read_manifest(to_dict(msg.agent), source)
    raise ApiProblem("bad_request", "manifest: give `agent` (structured) or `yaml` (text)")


async def _submit(p: ControlPlane, who: Caller, r: ex.SubmitExecutionRequest) -> dict[str, Any]:
    key = _opt(r, "idempotency_key", None)
    return (await p.submit_once(who, _manifest(r.manifest), key))[0]


def _opt(request: Message, name: str, default: Any) -> Any:
    return getattr(request, name) if request.HasField(name) else default


def _unary(
    roles: tuple[str, ...] | None,
    reply: type[R],
    operation: Callable[[ControlPlane, Any, Any], Awaitable[dict[str, Any]]],
    convert: Callable[[dict[str, Any]], R] | None = None,
) -> Callable[..., Awaitable[R]]:
    """A unary RPC: authenticate (roles None: no token needed), run `operation(plane, caller,
    request)`, convert its REST body to `reply`; a refusal sets the status code instead."""

    async def method(self: GrpcMethods, request: Any, grpc_context: Context) -> R:
        started, code = time.perf_counter(), "OK"
        try:
            who = None
            if roles is not None:
                secret = metadata_secret(grpc_context.invocation_metadata())
                who = await self.plane.authenticate(secret, roles)
                if roles == JOINERS:  # registration spends the join token itself
                    who = (who, secret)
            body = await operation(self.plane, who, request)
            return convert(body) if convert else to_message(body, reply)
        except Exception as err:
            problem = _problem(err)
            code = problem.grpc_code
            _refuse(grpc_context, problem)
            return reply()
        finally:
            _timed(type(request).__name__, started, code)

    return method


def _timed(request_type: str, started: float, code: str) -> None:
    # The RPC's name from its request message (GetExecutionRequest -> GetExecution).
    route = request_type.removesuffix("Request")
    metrics.API_REQUESTS.observe(
        time.perf_counter() - started, transport="grpc", route=route, code=code
    )


def _streaming(
    reply: type[R],
    operation: Callable[[ControlPlane, Any, Any], Awaitable[AsyncIterator[dict[str, Any]]]],
) -> Callable[..., AsyncIterator[R]]:
    """A server-streaming RPC for any API token: each item of `operation(plane, caller,
    request)` converted to `reply`."""

    async def method(self: GrpcMethods, request: Any, grpc_context: Context) -> AsyncIterator[R]:
        try:
            who = await self.plane.authenticate(
                metadata_secret(grpc_context.invocation_metadata()), USERS
            )
            async for item in await operation(self.plane, who, request):
                yield to_message(item, reply)
        except Exception as err:
            problem = _problem(err)
            _refuse(grpc_context, problem)
            # A stream's status only reaches the client through an exception (Serve keeps the
            # code set on the context): a return would end the stream with OK.
            raise problem from None

    return method


class GrpcMethods:
    """Mixed into the Serve ingress deployment, which sets `self.plane`. One attribute per RPC
    (Serve calls the method named like the RPC), each the REST route's operation."""

    plane: ControlPlane

    # ExecutionService
    SubmitExecution = _unary(USERS, ex.Execution, lambda p, who, r: _submit(p, who, r))
    PlanExecution = _unary(USERS, ex.Plan, lambda p, who, r: p.plan(_manifest(r.manifest)))
    GetExecution = _unary(USERS, ex.Execution, lambda p, who, r: p.get_execution(who, r.id))
    ListExecutions = _unary(
        USERS,
        ex.ListExecutionsResponse,
        lambda p, who, r: p.list_executions(
            who,
            states=list(r.states) or None,
            name=_opt(r, "name", None),
            limit=_opt(r, "limit", 50),
            before=_opt(r, "before", None),
            labels=list(r.labels) or None,
        ),
    )
    CancelExecution = _unary(
        USERS, ex.CancelExecutionResponse, lambda p, who, r: p.cancel(who, r.id)
    )
    ListExecutionEvents = _unary(
        USERS, ex.ListExecutionEventsResponse, lambda p, who, r: p.events(who, r.id, r.after)
    )
    ListExecutionLogs = _unary(
        USERS,
        ex.ListExecutionLogsResponse,
        lambda p, who, r: p.logs(who, r.id, r.after, _opt(r, "limit", 1000)),
    )

    WatchExecution = _streaming(
        ex.WatchExecutionResponse,
        lambda p, who, r: p.watch(
            who,
            r.id,
            after_event=r.after_event,
            after_log=r.after_log,
            events=r.events,
            logs=r.logs,
        ),
    )

    # NodeService
    RegisterNode = _unary(
        JOINERS,
        nd.RegisterNodeResponse,
        lambda p, who, r: p.register(*who, _model(NodeIdentity, r.identity, "identity")),
    )
    Heartbeat = _unary(NODES, nd.NodeRecord, lambda p, who, r: p.heartbeat(who, r.node_id))
    ListNodes = _unary(USERS, nd.ListNodesResponse, lambda p, who, r: p.list_nodes(who))
    GetNode = _unary(USERS, nd.Node, lambda p, who, r: p.get_node(who, r.node_id))
    DrainNode = _unary(
        ADMINS, nd.NodeRecord, lambda p, who, r: p.set_node_status(r.node_id, NodeStatus.DRAINING)
    )
    UndrainNode = _unary(
        ADMINS, nd.NodeRecord, lambda p, who, r: p.set_node_status(r.node_id, NodeStatus.READY)
    )

    # ClusterService
    GetClusterStatus = _unary(USERS, nd.ClusterStatus, lambda p, who, r: p.cluster_status())
    CreateToken = _unary(
        ADMINS,
        nd.CreateTokenResponse,
        lambda p, who, r: p.create_token(who, _model(TokenRequest, r, "token")),
    )
    ListTokens = _unary(
        ADMINS,
        nd.ListTokensResponse,
        lambda p, who, r: p.list_tokens(who, include_revoked=r.revoked),
    )
    RevokeToken = _unary(
        ADMINS, nd.RevokeTokenResponse, lambda p, who, r: p.revoke_token(who, r.id)
    )
    RotateAdminToken = _unary(
        ADMINS, nd.RotateAdminTokenResponse, lambda p, who, r: p.rotate_admin(who)
    )
    RotateJoinSecret = _unary(
        ADMINS,
        nd.TokenInfo,
        lambda p, who, r: p.rotate_join_secret(who, _model(JoinSecretRequest, r, "join_secret")),
    )
    CheckHealth = _unary(None, nd.Health, lambda p, who, r: p.health(), health_message)
    ListClusterEvents = _unary(
        USERS,
        nd.ListClusterEventsResponse,
        lambda p, who, r: p.cluster_events(
            who, after=_opt(r, "after", None), limit=_opt(r, "limit", 100)
        ),
    )
    WatchClusterEvents = _streaming(
        nd.WatchClusterEventsResponse,
        lambda p, who, r: p.watch_cluster(who, after=_opt(r, "after", None)),
    )

    # SecretService (values only ever in PutSecret's request)
    PutSecret = _unary(
        USERS, sc.Secret, lambda p, who, r: p.put_secret(who, r.name, {"data": dict(r.data)})
    )
    ListSecrets = _unary(USERS, sc.ListSecretsResponse, lambda p, who, r: p.list_secrets(who))
    GetSecret = _unary(USERS, sc.Secret, lambda p, who, r: p.get_secret(who, r.name))
    DeleteSecret = _unary(
        USERS, sc.DeleteSecretResponse, lambda p, who, r: p.delete_secret(who, r.name)
    )
