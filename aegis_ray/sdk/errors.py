"""Everything the client raises, in one hierarchy:

    AegisError
    ├── MissingToken        no API token was given or found (AEGIS_API_TOKEN, AEGIS_HOME)
    ├── ApiUnreachable      nothing answered: no server there, connection refused, timeout
    └── ApiError            the API refused: `status` (HTTP, or gRPC's equivalent),
        │                   `error` (the contract's error name) and the whole `body`
        ├── InvalidRequest      bad_request, too_large
        ├── InvalidManifest     invalid_manifest (`body["problems"]`: field, message, value)
        ├── Unschedulable       unschedulable (`body["plan"]`: why no node fits)
        ├── Unauthenticated     unauthenticated, forbidden
        ├── NotFound            not_found
        ├── AlreadyFinished     already_finished (`body["state"]`)
        ├── UnknownSecret       secret_not_found (`body["problems"]`: field, reference)
        ├── IdempotencyConflict idempotency_conflict (`body["execution_id"]`: the key's)
        └── Unavailable         database_unavailable, temporal_unavailable,
                                secrets_unavailable (`body["sealed"]`)

Both transports raise the same error with the same body for the same refusal.
"""

from __future__ import annotations

from typing import Any

from aegis_ray.contract.errors import ErrorName


class AegisError(Exception):
    """Base of everything the aegis client raises."""


class MissingToken(AegisError):
    pass


class ApiUnreachable(AegisError):
    pass


class ApiError(AegisError):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        self.error: str = str(body.get("error") or "")
        super().__init__(body.get("message") or body.get("error") or f"HTTP {status}")

    @staticmethod
    def of(status: int, body: dict[str, Any]) -> ApiError:
        """The most specific error for a refusal body."""
        kind = _BY_NAME.get(str(body.get("error")), ApiError)
        return kind(status, body)


class InvalidRequest(ApiError):
    pass


class InvalidManifest(ApiError):
    pass


class Unschedulable(ApiError):
    pass


class Unauthenticated(ApiError):
    pass


class NotFound(ApiError):
    pass


class AlreadyFinished(ApiError):
    pass


class UnknownSecret(ApiError):
    pass


class IdempotencyConflict(ApiError):
    pass


class Unavailable(ApiError):
    pass


class RateLimited(ApiError):
    """Too many open streams or submissions: try again after `retry_after_s` seconds."""

    @property
    def retry_after_s(self) -> int:
        return int(self.body.get("retry_after_s") or 1)


E = ErrorName
_BY_NAME: dict[str, type[ApiError]] = {
    E.bad_request: InvalidRequest,
    E.invalid_request: InvalidRequest,
    E.rate_limited: RateLimited,
    E.too_large: InvalidRequest,
    E.invalid_manifest: InvalidManifest,
    E.unschedulable: Unschedulable,
    E.unauthenticated: Unauthenticated,
    E.forbidden: Unauthenticated,
    E.not_found: NotFound,
    E.already_finished: AlreadyFinished,
    E.idempotency_conflict: IdempotencyConflict,
    E.database_unavailable: Unavailable,
    E.temporal_unavailable: Unavailable,
    E.secrets_unavailable: Unavailable,
    E.secret_not_found: UnknownSecret,
}
