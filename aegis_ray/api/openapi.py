"""What the OpenAPI document says beyond the route signatures: the manifest body (YAML or JSON
text, read by the route itself), the refusals each route documents, the NDJSON streams, and
the schemas of those (added to the document by `with_extra_schemas`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic.json_schema import models_json_schema

from aegis_ray.contract.cluster import ClusterWatchItem
from aegis_ray.contract.errors import ErrorBody
from aegis_ray.contract.executions import MANIFEST_MEDIA_TYPES, FollowEnd, WatchItem
from aegis_ray.contract.secrets import SecretPut
from aegis_ray.core.models.agent import AgentManifest

_REF = "#/components/schemas/{model}"

MANIFEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "An Agent manifest, as YAML or as JSON (`aegis schema agent`).",
        "content": {
            MANIFEST_MEDIA_TYPES["yaml"]: {
                "schema": {"type": "string", "description": "the manifest's YAML text"}
            },
            MANIFEST_MEDIA_TYPES["json"]: {"schema": {"$ref": _REF.format(model="AgentManifest")}},
        },
    }
}

SECRET_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The secret's KEY -> VALUE pairs (values are never shown again).",
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="SecretPut")}}},
    }
}

_WHY = {
    400: "bad_request: a parameter or field is invalid (`problems` names each)",
    401: "unauthenticated: no valid bearer token",
    403: "forbidden: the token's role may not do this",
    404: "not_found: no such execution, node or secret (for another tenant's, too)",
    409: "already_finished: the execution has ended (`state` says how); idempotency_conflict:"
    " the Idempotency-Key made an execution of another manifest (`execution_id`)",
    413: "too_large: a request body or manifest over its limit",
    422: "invalid_manifest or invalid_request (`problems`: field, message, value),"
    " unschedulable (`plan`: why) or secret_not_found (`problems`: the field and the"
    " reference it names)",
    429: "rate_limited: too many open streams or submissions (`Retry-After`, `retry_after_s`)",
    503: "database_unavailable, temporal_unavailable or secrets_unavailable (`sealed` if "
    "OpenBao is sealed): try again when it is back",
    "4XX": "another refusal, in the same shape",
}


def refusals(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error responses of an authenticated route: the common ones and `codes`."""
    return {
        code: {"model": ErrorBody, "description": _WHY[code]}
        for code in (400, 401, 403, 422, *codes, 429, 503, "4XX")
    }


def ndjson_of(*models: str) -> dict[int | str, dict[str, Any]]:
    """A 200 answered as newline-delimited JSON, each line one of `models`."""
    refs = [{"$ref": _REF.format(model=m)} for m in models]
    # "type" replaces the {"type": "string"} FastAPI gives a streaming response's body.
    schema = {"type": "object"} | (refs[0] if len(refs) == 1 else {"oneOf": refs})
    return {200: {"content": {"application/x-ndjson": {"schema": schema}}}}


def with_extra_schemas(app: Any) -> Callable[[], dict[str, Any]]:
    """`app.openapi` plus the schemas named above that no route parameter brings in."""
    plain: Callable[[], dict[str, Any]] = app.openapi

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            _, extra = models_json_schema(
                [
                    (AgentManifest, "validation"),
                    (SecretPut, "validation"),
                    (WatchItem, "serialization"),
                    (FollowEnd, "serialization"),
                    (ClusterWatchItem, "serialization"),
                ],
                by_alias=True,
                ref_template=_REF,
            )
            schemas = plain().setdefault("components", {}).setdefault("schemas", {})
            for name, schema in extra.get("$defs", {}).items():
                if schemas.setdefault(name, schema) != schema:
                    raise RuntimeError(f"OpenAPI: two different schemas are named {name!r}")
        return plain()

    return document
