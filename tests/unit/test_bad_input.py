"""Bad input is refused with a 4xx naming the field, never a 500 (issue 11, item 6): the
manifest loader, the API's parameter checks, the REST layer's own refusals, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from aegis_ray.api.auth import Caller, TokenCache
from aegis_ray.api.control_plane import ControlPlane, _parse_cursor, cursor_ids, plain_text
from aegis_ray.api.errors import ApiProblem
from aegis_ray.api.rest import create_app
from aegis_ray.cli.main import app as cli
from aegis_ray.core.models.loading import MAX_MANIFEST_BYTES, ManifestError, parse_agent

REPO = Path(__file__).resolve().parents[2]
HELLO = (REPO / "examples" / "hello-agent.yaml").read_text()


def problems(text: str) -> list[dict[str, object]]:
    with pytest.raises(ManifestError) as info:
        parse_agent(text, source="req")
    body = info.value.to_dict()
    # The body must be JSON an HTTP answer can carry: no NaN, no lone surrogate.
    json.dumps(body, allow_nan=False, ensure_ascii=False).encode("utf-8")
    return list(body["problems"])


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("memory: 32Mi", "memory: .inf", "spec.security.resources.memory"),
        ("cpu: 250 ", "cpu: -.inf ", "spec.security.resources.cpu"),
        ("timeout: 60s", "timeout: .nan", "spec.execution.timeout"),
        ("name: world", "name: .nan", "spec.task.input.name"),
    ],
)
def test_nan_and_infinity_are_refused_by_field(old: str, new: str, path: str) -> None:
    assert old in HELLO
    found = problems(HELLO.replace(old, new))
    assert [p["path"] for p in found] == [path]
    assert found[0]["message"] == "must be a finite number"


def test_nan_in_a_json_manifest_is_refused_by_field() -> None:
    doc = json.dumps(parse_agent(HELLO).to_document())
    text = doc.replace('"timeout": 60.0', '"timeout": NaN')
    assert "NaN" in text
    assert [p["path"] for p in problems(text)] == ["spec.execution.timeout"]


@pytest.mark.parametrize("depth", [150, 5000])
def test_deep_nesting_is_refused_not_a_recursion_error(depth: int) -> None:
    for text in (
        HELLO.replace("name: world", "name: " + "[" * depth + "]" * depth),
        '{"a": ' + "[" * depth + "]" * depth + "}",
    ):
        found = problems(text)
        assert len(found) == 1 and "nested" in str(found[0]["message"])


def test_a_list_as_a_mapping_key_is_refused() -> None:
    found = problems(HELLO.replace("  env:\n", "  env:\n    ? [a, b]\n    : 1\n"))
    assert "a key must be a plain value" in str(found[0]["message"])


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ('"Say hello to the cluster"', '"Say\\0hello"', "spec.task.instruction"),
        ('"Say hello to the cluster"', '"Say\\ud800hello"', "spec.task.instruction"),
        ("GREETING: hello", 'GREETING: "he\\0llo"', "spec.env.GREETING"),
        ('example: "true"', 'example: "t\\udc00"', "metadata.labels.example"),
        ("name: world", '"na\\0me": world', "spec.task.input.na\x00me"),
        ('["/bin/aegis-hello"]', '["/bin/aegis-hello", "\\0"]', "spec.runtime.command[1]"),
    ],
)
def test_nul_or_a_lone_surrogate_in_any_string_is_refused_by_field(
    old: str, new: str, path: str
) -> None:
    assert old in HELLO
    found = problems(HELLO.replace(old, new))
    assert [p["path"] for p in found] == [path]
    assert "NUL character or a lone surrogate" in str(found[0]["message"])


def test_a_structured_manifest_is_checked_the_same() -> None:
    doc = parse_agent(HELLO).to_document()
    doc["spec"]["task"]["input"] = {"x": float("inf"), "y": "a\x00"}
    with pytest.raises(ManifestError) as info:
        parse_agent(doc, source="grpc")
    assert {p.path for p in info.value.problems} == {"spec.task.input.x", "spec.task.input.y"}


def refused(fn: object, *args: object, **kw: object) -> ApiProblem:
    with pytest.raises(ApiProblem) as info:
        fn(*args, **kw)  # type: ignore[operator]
    assert info.value.http_status == 400
    json.dumps(info.value.body(), allow_nan=False, ensure_ascii=False).encode("utf-8")
    return info.value


@pytest.mark.parametrize(
    "before", ["0001-01-01T00:00:00+01:00", "not a time", "2026-01-01T00:00:00|nope", "\x00"]
)
def test_an_out_of_range_or_malformed_paging_cursor_is_a_bad_request(before: str) -> None:
    assert "before" in str(refused(_parse_cursor, before))


def test_a_paging_cursor_in_range_is_taken() -> None:
    when, ident = _parse_cursor("0001-01-01T00:00:00")
    assert when is not None and when.year == 1 and ident is None


@pytest.mark.parametrize("value", [1180591620717411303424, -(1 << 63) - 1, 1 << 63])
def test_an_id_cursor_outside_bigint_is_a_bad_request(value: int) -> None:
    problem = refused(cursor_ids, after_event=0, after_log=value)
    assert "after_log" in str(problem)
    cursor_ids(after=(1 << 63) - 1, other=-(1 << 63), unset=None)  # the range's ends are ids


def test_nul_in_a_parameter_is_a_bad_request_naming_it() -> None:
    problem = refused(plain_text, name="ok", label=["a=b", "c=\x00"])
    assert problem.extra["problems"][0]["path"] == "label[1]"


ADMIN = {"Authorization": "Bearer admin-secret"}


@pytest.fixture(scope="module")
def rest() -> TestClient:
    """The REST layer with a control plane that knows one admin token and has no connections:
    enough for what is refused before a route reads or writes anything."""

    class AdminOnly(ControlPlane):
        async def authenticate(self, secret: str | None, roles: tuple[str, ...]) -> Caller:
            if secret != "admin-secret":
                raise ApiProblem("unauthenticated", "not the test's token")
            return Caller(tenant_id="default", role="admin", token_id="t1")

    app = create_app()
    app.state.plane = AdminOnly(conns=None, tokens=TokenCache())  # type: ignore[arg-type]
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/v1/executions?name=%00", "query.name"),
        ("/v1/executions?state=RUNNING&state=%00", "query.state[1]"),
        ("/v1/nodes/%00", "path"),
        ("/v1/executions/ab%00cd/events", "path"),
    ],
)
def test_rest_refuses_nul_in_the_url_with_400(rest: TestClient, url: str, field: str) -> None:
    r = rest.get(url, headers={"Authorization": "Bearer x"})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad_request" and field in r.json()["message"]


def test_rest_refuses_a_deeply_nested_json_body_with_400(rest: TestClient) -> None:
    body = '{"role": ' + "[" * 100_000 + "]" * 100_000 + "}"
    r = rest.post("/v1/tokens", content=body, headers={"Content-Type": "application/json", **ADMIN})
    assert r.status_code == 400, r.text


@pytest.mark.parametrize("ttl", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_rest_refuses_a_non_finite_token_ttl_naming_it(rest: TestClient, ttl: str) -> None:
    body = '{"role": "user", "ttl_s": ' + ttl + "}"
    r = rest.post("/v1/tokens", content=body, headers={"Content-Type": "application/json", **ADMIN})
    assert r.status_code in (400, 422), r.text
    assert "ttl_s" in r.json()["message"]


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/v1/executions?before=0001-01-01T00:00:00%2B01:00", "before"),
        ("/v1/events?after=1180591620717411303424", "after"),
        ("/v1/events?after=1180591620717411303424&follow=true", "after"),
        ("/v1/executions/x/events?after=1180591620717411303424&follow=true", "after="),
        ("/v1/executions/x/logs?after=1180591620717411303424&follow=true", "after="),
        ("/v1/executions/x/watch?after_log=-9223372036854775809", "after_log"),
    ],
)
def test_rest_refuses_out_of_range_cursors_before_reading(
    rest: TestClient, url: str, field: str
) -> None:
    r = rest.get(url, headers=ADMIN)
    assert r.status_code == 400, r.text
    assert field in r.json()["message"]


runner = CliRunner()


def test_cli_refuses_a_manifest_over_the_api_limit_before_sending(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(HELLO + "# " + "x" * MAX_MANIFEST_BYTES + "\n")
    for command in (["submit", str(big)], ["plan", str(big)]):
        result = runner.invoke(cli, command, env={"AEGIS_API_TOKEN": "x"})
        assert result.exit_code == 2, result.output
        assert "at most" in result.output, result.output


@pytest.mark.parametrize(
    "content",
    [
        HELLO.replace("timeout: 60s", "timeout: .nan").encode(),
        ("a: " + "[" * 5000 + "]" * 5000).encode(),
        b"? [a, b]\n: 1\n",
        HELLO.replace("GREETING: hello", 'GREETING: "\\0"').encode(),
        b"\xff\xfe not utf-8",
    ],
)
def test_cli_exits_2_without_a_traceback_for_bad_manifests(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(content)
    for command in (["submit", str(bad)], ["config", "validate", str(bad)]):
        result = runner.invoke(cli, command, env={"AEGIS_API_TOKEN": "x"})
        assert result.exit_code == 2, (command, result.output, result.exception)
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
