"""What the control plane refuses, once for both transports: an error name, a message, details.

The names with their HTTP status and gRPC code are the contract's (aegis_ray/contract/errors.py),
so that REST and gRPC clients see the same refusal with the same body.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from aegis_ray.adapters.openbao.client import SecretNotFound, SecretsUnavailable
from aegis_ray.adapters.postgres.db import StoreUnavailable
from aegis_ray.adapters.postgres.executions import IdempotencyConflict
from aegis_ray.api.context import TemporalUnavailable
from aegis_ray.contract.errors import ERRORS
from aegis_ray.core.models.loading import ManifestError


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
        return {"error": str(self.error), "message": self.message, **self.extra}


def _rebuild(error: str, message: str, extra: dict[str, Any]) -> ApiProblem:
    return ApiProblem(error, message, **extra)


def not_found(what: str) -> ApiProblem:
    return ApiProblem("not_found", f"no {what}")


def refusal_types() -> tuple[type[Exception], ...]:
    """Every exception `as_problem` turns into a refusal (REST registers a handler for each)."""
    return (
        ApiProblem,
        ManifestError,
        IdempotencyConflict,
        StoreUnavailable,
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        ConnectionError,
        TemporalUnavailable,
        SecretsUnavailable,
        SecretNotFound,
    )


def as_problem(exc: BaseException) -> ApiProblem | None:
    """The refusal a known failure stands for (None: a bug, reported as internal)."""
    if isinstance(exc, ApiProblem):
        return exc
    if isinstance(exc, ManifestError):
        body = exc.to_dict()
        body.pop("error", None)
        return ApiProblem("invalid_manifest", str(exc), **body)
    if isinstance(exc, IdempotencyConflict):
        return ApiProblem("idempotency_conflict", str(exc), execution_id=exc.execution_id)
    if isinstance(exc, StoreUnavailable):
        return ApiProblem("database_unavailable", str(exc))
    if isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.InterfaceError | ConnectionError):
        return ApiProblem("database_unavailable", f"PostgreSQL connection failed: {exc}")
    if isinstance(exc, TemporalUnavailable):
        return ApiProblem("temporal_unavailable", str(exc))
    if isinstance(exc, SecretsUnavailable):
        return ApiProblem("secrets_unavailable", str(exc), sealed=exc.sealed)
    if isinstance(exc, SecretNotFound):
        return not_found(f"secret {exc.name!r}")
    return None
