"""The error vocabulary both transports share: a name, its HTTP status and its gRPC code.

A refusal is one of these names with a message and details; REST answers it with the HTTP
status and the body `ErrorBody`, gRPC with the status code and the same body as JSON in the
trailing metadata key `GRPC_ERROR_METADATA`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from aegis_ray.contract.executions import PlanResult


class ErrorName(StrEnum):
    bad_request = "bad_request"
    invalid_request = "invalid_request"
    invalid_manifest = "invalid_manifest"
    too_large = "too_large"
    rate_limited = "rate_limited"
    unauthenticated = "unauthenticated"
    forbidden = "forbidden"
    not_found = "not_found"
    already_finished = "already_finished"
    idempotency_conflict = "idempotency_conflict"
    unschedulable = "unschedulable"
    database_unavailable = "database_unavailable"
    temporal_unavailable = "temporal_unavailable"
    secrets_unavailable = "secrets_unavailable"
    secret_not_found = "secret_not_found"
    internal = "internal"


E = ErrorName
# error name -> (HTTP status, gRPC status code name)
ERRORS: dict[str, tuple[int, str]] = {
    E.bad_request: (400, "INVALID_ARGUMENT"),
    E.invalid_manifest: (422, "INVALID_ARGUMENT"),
    E.too_large: (413, "INVALID_ARGUMENT"),
    E.rate_limited: (429, "RESOURCE_EXHAUSTED"),
    E.invalid_request: (422, "INVALID_ARGUMENT"),
    E.unauthenticated: (401, "UNAUTHENTICATED"),
    E.forbidden: (403, "PERMISSION_DENIED"),
    E.not_found: (404, "NOT_FOUND"),
    E.already_finished: (409, "FAILED_PRECONDITION"),
    E.idempotency_conflict: (409, "ALREADY_EXISTS"),
    E.unschedulable: (422, "FAILED_PRECONDITION"),
    E.database_unavailable: (503, "UNAVAILABLE"),
    E.temporal_unavailable: (503, "UNAVAILABLE"),
    E.secrets_unavailable: (503, "UNAVAILABLE"),
    E.secret_not_found: (422, "FAILED_PRECONDITION"),
    E.internal: (500, "INTERNAL"),
}
# The HTTP status a client reports for a gRPC code that came without an error body.
GRPC_TO_HTTP = {code: http for http, code in ERRORS.values()} | {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 409,
    "DEADLINE_EXCEEDED": 504,
    "RESOURCE_EXHAUSTED": 429,
    "UNIMPLEMENTED": 501,
}
# gRPC refusals carry the REST error body (JSON) under this trailing metadata key.
GRPC_ERROR_METADATA = "aegis-error"


class Problem(BaseModel):
    """One thing wrong with a request: where (dotted path), what, and the value given."""

    model_config = ConfigDict(extra="allow")
    path: str
    message: str
    value: Any = None


class ErrorBody(BaseModel):
    """Every refusal's body. Details depend on the error: `problems` (bad_request,
    invalid_request, invalid_manifest, with `source`; secret_not_found: the field and the
    reference), `plan` (unschedulable), `state` (already_finished), `sealed`
    (secrets_unavailable), `retry_after_s` (rate_limited; REST also sends `Retry-After`)."""

    model_config = ConfigDict(extra="allow")
    error: str
    message: str
    source: str | None = None
    problems: list[Problem] | None = None
    plan: PlanResult | None = None
    state: str | None = None
    retry_after_s: int | None = None
    sealed: bool | None = None
