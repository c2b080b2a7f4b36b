"""What the control plane refuses, once for both transports: an error name, a message, details.

Each error name maps to an HTTP status (REST) and a gRPC status code, so that REST and gRPC
clients see the same refusal with the same body.
"""

from __future__ import annotations

from typing import Any

# gRPC refusals carry the REST error body (JSON) under this trailing metadata key.
GRPC_ERROR_METADATA = "aegis-error"
# error name -> (HTTP status, gRPC status code name)
ERRORS: dict[str, tuple[int, str]] = {
    "bad_request": (400, "INVALID_ARGUMENT"),
    "invalid_manifest": (422, "INVALID_ARGUMENT"),
    "too_large": (413, "INVALID_ARGUMENT"),
    "unauthenticated": (401, "UNAUTHENTICATED"),
    "forbidden": (403, "PERMISSION_DENIED"),
    "not_found": (404, "NOT_FOUND"),
    "already_finished": (409, "FAILED_PRECONDITION"),
    "unschedulable": (422, "FAILED_PRECONDITION"),
    "database_unavailable": (503, "UNAVAILABLE"),
    "temporal_unavailable": (503, "UNAVAILABLE"),
    "internal": (500, "INTERNAL"),
}
HTTP_TO_GRPC = {http: code for http, code in ERRORS.values()} | {409: "FAILED_PRECONDITION"}
GRPC_TO_HTTP = {code: http for http, code in ERRORS.values()} | {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 409,
    "DEADLINE_EXCEEDED": 504,
    "UNIMPLEMENTED": 501,
}


class ApiProblem(Exception):
    def __init__(self, error: str, message: str, **extra: Any) -> None:
        if error not in ERRORS:
            raise ValueError(f"unknown API error {error!r}")
        super().__init__(message)
        self.error = error
        self.message = message
        self.extra = extra

    def __reduce__(self) -> tuple[Any, ...]:
        # Crosses Ray process boundaries (Serve replica -> proxy): keep the details.
        return (_rebuild, (self.error, self.message, self.extra))

    @property
    def http_status(self) -> int:
        return ERRORS[self.error][0]

    @property
    def grpc_code(self) -> str:
        return ERRORS[self.error][1]

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "message": self.message, **self.extra}


def _rebuild(error: str, message: str, extra: dict[str, Any]) -> ApiProblem:
    return ApiProblem(error, message, **extra)


def not_found(what: str) -> ApiProblem:
    return ApiProblem("not_found", f"no {what}")


def refusal_types() -> tuple[type[Exception], ...]:
    """Every exception `as_problem` turns into a refusal (REST registers a handler for each)."""
    import asyncpg

    from aegis_ray.adapters.postgres.db import StoreUnavailable
    from aegis_ray.api.context import TemporalUnavailable
    from aegis_ray.core.models.loading import ManifestError

    return (
        ApiProblem,
        ManifestError,
        StoreUnavailable,
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        ConnectionError,
        TemporalUnavailable,
    )


def as_problem(exc: BaseException) -> ApiProblem | None:
    """The refusal a known failure stands for (None: a bug, reported as internal)."""
    # Imported here: clients import this module for the tables above, without the server's
    # dependencies.
    import asyncpg

    from aegis_ray.adapters.postgres.db import StoreUnavailable
    from aegis_ray.api.context import TemporalUnavailable
    from aegis_ray.core.models.loading import ManifestError

    if isinstance(exc, ApiProblem):
        return exc
    if isinstance(exc, ManifestError):
        body = exc.to_dict()
        body.pop("error", None)
        return ApiProblem("invalid_manifest", str(exc), **body)
    if isinstance(exc, StoreUnavailable):
        return ApiProblem("database_unavailable", str(exc))
    if isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.InterfaceError | ConnectionError):
        return ApiProblem("database_unavailable", f"PostgreSQL connection failed: {exc}")
    if isinstance(exc, TemporalUnavailable):
        return ApiProblem("temporal_unavailable", str(exc))
    return None
