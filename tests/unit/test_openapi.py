"""The REST API's OpenAPI document: every body has a schema, bearer auth and refusals declared."""

from __future__ import annotations

from typing import Any

import pytest

from aegis_ray.api.rest import create_app

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return create_app().openapi()


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def is_bare(schema: dict[str, Any]) -> bool:
    """A schema that says nothing: {} or only a type "object"/"string" with no shape."""
    shape = ("$ref", "properties", "oneOf", "anyOf", "allOf", "items", "additionalProperties")
    return not any(key in schema for key in shape) and schema.get("type") in (None, "object")


def test_every_request_and_success_body_has_a_schema(doc: dict[str, Any]) -> None:
    assert operations(doc)
    for method, path, op in operations(doc):
        where = f"{method} {path}"
        successes = {code: r for code, r in op["responses"].items() if code.startswith("2")}
        assert successes, where
        for response in successes.values():
            assert response.get("content"), where
            for media, content in response["content"].items():
                assert not is_bare(content["schema"]), (where, media, content)
        if method == "POST" and "requestBody" in op:
            for media, content in op["requestBody"]["content"].items():
                assert not is_bare(content["schema"]), (where, media)


def test_the_manifest_body_is_declared_as_yaml_or_json(doc: dict[str, Any]) -> None:
    for path in ("/v1/executions", "/v1/plan"):
        content = doc["paths"][path]["post"]["requestBody"]["content"]
        assert set(content) == {"application/yaml", "application/json"}
        assert content["application/json"]["schema"]["$ref"].endswith("/AgentManifest")
    agent = doc["components"]["schemas"]["AgentManifest"]
    assert {"apiVersion", "kind", "metadata", "spec"} <= set(agent["properties"])


def test_bearer_auth_is_declared_and_required_by_every_api_route(doc: dict[str, Any]) -> None:
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }
    for method, path, op in operations(doc):
        if path.startswith("/v1/"):
            assert op.get("security") == [{"bearer": []}], (method, path)
    assert "security" not in doc["paths"]["/health"]["get"]


def test_refusals_are_documented_with_the_error_body(doc: dict[str, Any]) -> None:
    error = "#/components/schemas/ErrorBody"
    expected = {
        ("POST", "/v1/executions"): {"401", "422", "503"},
        ("GET", "/v1/executions/{execution_id}"): {"401", "404", "503"},
        ("POST", "/v1/executions/{execution_id}/cancel"): {"401", "404", "409", "503"},
        ("GET", "/v1/nodes/{node_id}"): {"401", "404", "503"},
    }
    found = {(m, p): op for m, p, op in operations(doc)}
    for key, codes in expected.items():
        responses = found[key]["responses"]
        for code in codes:
            assert responses[code]["content"]["application/json"]["schema"]["$ref"] == error, (
                key,
                code,
            )
    # FastAPI's own validation error shape is not what the API answers: it is not documented.
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_streams_are_declared_as_ndjson_of_their_items(doc: dict[str, Any]) -> None:
    watch = doc["paths"]["/v1/executions/{execution_id}/watch"]["get"]["responses"]["200"]
    assert watch["content"]["application/x-ndjson"]["schema"]["$ref"].endswith("/WatchItem")
    logs = doc["paths"]["/v1/executions/{execution_id}/logs"]["get"]["responses"]["200"]
    assert set(logs["content"]) == {"application/json", "application/x-ndjson"}
    for name in ("WatchItem", "FollowEnd", "LogLine", "Event"):
        assert name in doc["components"]["schemas"]


def test_docs_page_loads_its_assets_from_the_app_itself() -> None:
    from fastapi.testclient import TestClient

    client = TestClient(create_app())
    page = client.get("/docs")
    assert page.status_code == 200
    import re

    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert assets and all(a.startswith("/") for a in assets), assets
    assert "swagger-ui-bundle.js" in page.text
    for url in assets:
        assert client.get(url).status_code == 200, url


class _Plane:
    """Stands in for the ControlPlane: every token is an admin's."""

    async def authenticate(self, secret: str | None, roles: tuple[str, ...]) -> Any:
        from aegis_ray.api.auth import Caller, TokenCache
        from aegis_ray.api.control_plane import ControlPlane

        if secret != "good":
            return await ControlPlane(None, TokenCache()).authenticate(secret, roles)  # type: ignore[arg-type]
        return Caller(tenant_id="t", role="admin")


def _client() -> Any:
    from fastapi.testclient import TestClient

    app = create_app()
    app.state.plane = _Plane()
    return TestClient(app)


def test_request_validation_is_answered_in_the_error_shape_naming_the_field() -> None:
    client = _client()
    auth = {"Authorization": "Bearer good"}
    r = client.get("/v1/executions", params={"limit": 0}, headers=auth)
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "bad_request" and body["message"].startswith("query.limit: ")
    assert body["problems"][0]["path"] == "query.limit" and body["problems"][0]["value"] == "0"
    r = client.post("/v1/tokens", json={"role": "join", "ttl_s": -1}, headers=auth)
    assert r.status_code == 422 and r.json()["problems"][0]["path"] == "body.ttl_s"
    assert r.json()["error"] == "invalid_request"


def test_every_string_a_caller_stores_is_bounded_and_a_long_one_is_named() -> None:
    """Token description and tenant, and a registering node's strings: 422 naming the field,
    before anything is stored."""
    client = _client()
    auth = {"Authorization": "Bearer good"}
    cases = [
        ("/v1/tokens", {"role": "user", "description": "d" * 100_000}, "body.description"),
        ("/v1/tokens", {"role": "user", "tenant_id": "t" * 100_000}, "body.tenant_id"),
        ("/v1/tokens", {"role": "join", "node_id": "N" * 300}, "body.node_id"),
    ]
    node = {"id": "n1", "type": "edge"}
    for field, value in (
        ("address", "a" * 10_000),
        ("version", "v" * 1000),
        ("ray_node_id", "r" * 1000),
    ):
        cases.append(("/v1/nodes/register", {"node": node, field: value}, f"body.{field}"))
    cases.append(
        (
            "/v1/nodes/register",
            {"node": node | {"tags": [f"t{i}" for i in range(300)]}},
            "body.node.tags",
        )
    )
    for path, body, field in cases:
        r = client.post(path, json=body, headers=auth)
        assert r.status_code == 422, (field, r.status_code, r.text[:300])
        assert r.json()["error"] == "invalid_request"
        assert [p["path"] for p in r.json()["problems"]] == [field], r.json()["problems"]


def test_a_missing_or_malformed_bearer_token_gets_the_401_body() -> None:
    client = _client()
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer   "}):
        r = client.get("/v1/executions", headers=headers)
        assert r.status_code == 401, headers
        assert r.json() == {"error": "unauthenticated", "message": "missing bearer token"}
        assert r.headers["www-authenticate"] == "Bearer"


def test_the_contract_declares_every_field_the_store_returns() -> None:
    """Bodies are built from the store's records: a column added there must be added to the
    contract (else REST would pass it undeclared and the OpenAPI document would not show it)."""
    import dataclasses

    from aegis_ray.adapters.postgres import records
    from aegis_ray.contract import cluster, executions

    pairs = [
        (records.ExecutionRecord, executions.Execution),
        (records.AttemptRecord, executions.Attempt),
        (records.EventRecord, executions.Event),
        (records.LogRecord, executions.LogLine),
        (records.NodeRecord, cluster.NodeRecord),
    ]
    for record, model in pairs:
        stored = [f.name for f in dataclasses.fields(record)]
        declared = [name for name in model.model_fields if name in stored]
        assert declared == stored, (record.__name__, set(stored) - set(declared))
