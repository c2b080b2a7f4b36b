"""The Python SDK without a server: lazy exports, typed results that print as the API's bodies,
one error per refusal, and the client's own loops (pages, waiting) over a stand-in transport."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aegis_ray.contract.executions import End, Event, Execution, LogLine
from aegis_ray.core.models.execution import ExecutionState
from aegis_ray.sdk import errors
from aegis_ray.sdk.client import Client
from aegis_ray.sdk.transport import Op
from tests.unit.test_import_contract import _loaded_after

HEAVY = ("ray", "grpc", "httpx", "fastapi", "temporalio", "asyncpg", "docker")

EXECUTION = {
    "id": "3f1c1e2a-0000-4000-8000-000000000001",
    "tenant_id": "default",
    "name": "hello-agent",
    "manifest": {"apiVersion": "100monkeys.ai/v1", "kind": "Agent"},
    "state": "RUNNING",
    "attempt": 1,
    "max_retries": 0,
    "timeout_s": 600.0,
    "version": 4,
    "reason": None,
    "node_id": "local",
    "exit_code": None,
    "workflow_id": "aegis-execution-3f1c",
    "created_at": "2026-11-29T10:00:00.123456+00:00",
    "updated_at": "2026-11-29T10:00:01+00:00",
    "started_at": "2026-11-29T10:00:01+00:00",
    "finished_at": None,
}


def test_importing_the_package_loads_no_client_or_server_library() -> None:
    imports = ("import aegis_ray", "import aegis_ray.core.models", "import aegis_ray.contract")
    for statement in imports:
        loaded = _loaded_after(statement)
        assert loaded.isdisjoint(HEAVY), (statement, loaded & set(HEAVY))
    # The names resolve on first use, and only then load what they need.
    assert "httpx" not in _loaded_after("from aegis_ray import Client")
    assert "httpx" in _loaded_after("from aegis_ray import Client; Client.rest('http://x', None)")


def test_the_top_level_names_are_the_sdk() -> None:
    import aegis_ray

    assert aegis_ray.Client is Client
    assert aegis_ray.ApiError is errors.ApiError
    assert {"Client", "AsyncClient", "Execution", "ApiError"} <= set(aegis_ray.__all__)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        aegis_ray.Nope  # noqa: B018


class Replies:
    """A transport that answers from a script and records what it was asked."""

    target = "test"

    def __init__(self, *replies: Any) -> None:
        self.replies = list(replies)
        self.sent: list[tuple[Op, dict[str, Any]]] = []

    def call(self, op: Op, args: dict[str, Any]) -> Any:
        self.sent.append((op, args))
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def stream(self, op: Op, args: dict[str, Any]) -> Iterator[dict[str, Any]]:
        self.sent.append((op, args))
        yield from self.replies.pop(0)

    def close(self) -> None:
        pass


def test_results_are_typed_and_print_exactly_as_the_api_sent_them() -> None:
    body = EXECUTION | {"attempts": []}
    rec = Client(Replies(body)).get(EXECUTION["id"])
    assert isinstance(rec, Execution) and rec.state is ExecutionState.RUNNING
    assert rec.started_at is not None and rec.started_at.year == 2026
    assert not rec.finished
    # The CLI prints to_json(): the same keys, order, values and time format as the body.
    assert json.dumps(rec.to_json()) == json.dumps(body)
    submitted = Client(Replies(EXECUTION | {"waiting": "waiting for capacity"})).get("x")
    assert list(submitted.to_json())[-1] == "waiting" and "attempts" not in submitted.to_json()


def test_a_field_a_newer_server_adds_is_kept() -> None:
    rec = Client(Replies(EXECUTION | {"priority": 3})).get("x")
    assert rec.to_json()["priority"] == 3


def test_submit_takes_a_path_a_dict_or_text(tmp_path: Path) -> None:
    manifest = tmp_path / "agent.yaml"
    manifest.write_text("kind: Agent\n")
    t = Replies(EXECUTION, EXECUTION, EXECUTION)
    c = Client(t)
    c.submit(manifest)
    c.submit({"kind": "Agent"})
    c.submit("kind: Agent\n", source="inline.yaml")
    sent = [args for _, args in t.sent]
    # Each call its own idempotency key (the API makes one execution per key).
    assert len({args.pop("idempotency_key") for args in sent}) == 3
    assert sent[0] == {
        "text": "kind: Agent\n",
        "source": str(manifest),
        "media_type": "application/yaml",
    }
    assert sent[1]["media_type"] == "application/json"
    assert json.loads(sent[1]["text"]) == {"kind": "Agent"}
    assert sent[2]["source"] == "inline.yaml"
    with pytest.raises(FileNotFoundError):
        c.submit(str(tmp_path / "missing.yaml"))


def test_logs_iterates_over_every_page() -> None:
    def line(i: int) -> dict[str, Any]:
        return {"id": i, "execution_id": "x", "attempt": 1, "ts": EXECUTION["created_at"],
                "stream": "stdout", "line": f"line-{i}"}  # fmt: skip

    t = Replies({"items": [line(1), line(2)]}, {"items": [line(3)]}, {"items": []})
    lines = list(Client(t).logs("x"))
    assert [ln.line for ln in lines] == ["line-1", "line-2", "line-3"]
    assert [args["after"] for _, args in t.sent] == [0, 2, 3]


def test_watch_yields_events_lines_and_the_end() -> None:
    event = {"id": 1, "execution_id": "x", "ts": EXECUTION["created_at"], "attempt": 1,
             "kind": "state", "from_state": "STARTING", "to_state": "RUNNING", "message": "",
             "node_id": "local"}  # fmt: skip
    log = {"id": 5, "execution_id": "x", "attempt": 1, "ts": EXECUTION["created_at"],
           "stream": "stderr", "line": "oops"}  # fmt: skip
    t = Replies([{"event": event}, {"log": log}, {"end": {"state": "FAILED"}}])
    items = list(Client(t).watch("x", after_log=4))
    assert [type(i) for i in items] == [Event, LogLine, End]
    assert items[-1].state is ExecutionState.FAILED
    assert t.sent == [(Op.watch, {"execution_id": "x", "after_event": 0, "after_log": 4,
                                  "events": True, "logs": True})]  # fmt: skip


def test_wait_returns_the_ended_execution_and_gives_up_after_its_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("aegis_ray.sdk.client.WAIT_POLL_S", 0.01)
    done = EXECUTION | {"state": "SUCCEEDED", "exit_code": 0}
    assert Client(Replies(EXECUTION, EXECUTION, done)).wait("x").exit_code == 0
    with pytest.raises(TimeoutError, match="still RUNNING"):
        Client(Replies(*[EXECUTION] * 100)).wait("x", timeout=0.05)


def test_a_refusal_is_the_error_of_its_name_with_status_and_body() -> None:
    body = {"error": "not_found", "message": "no execution x"}
    err = errors.ApiError.of(404, body)
    assert isinstance(err, errors.NotFound) and isinstance(err, errors.AegisError)
    assert (err.status, err.error, err.body, str(err)) == (404, "not_found", body, "no execution x")
    assert type(errors.ApiError.of(503, {"error": "temporal_unavailable"})) is errors.Unavailable
    assert type(errors.ApiError.of(500, {"message": "boom"})) is errors.ApiError
    assert not isinstance(errors.ApiUnreachable("x"), errors.ApiError)
    with pytest.raises(errors.NotFound):
        Client(Replies(err)).get("x")


def test_from_env_finds_the_api_and_token_as_the_cli_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("AEGIS_API_URL", "AEGIS_API_TOKEN", "AEGIS_API", "AEGIS_GRPC_ADDRESS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AEGIS_HOME", str(tmp_path))
    with pytest.raises(errors.MissingToken, match="AEGIS_API_TOKEN"):
        Client.from_env()
    (tmp_path / "admin.token").write_text("aegis_admin\n")
    (tmp_path / "up.json").write_text(
        json.dumps({"api_url": "http://10.0.0.5:8080", "grpc_address": "10.0.0.5:50051"})
    )
    rest = Client.from_env()
    assert rest.transport.target == "http://10.0.0.5:8080"
    assert rest.transport.http.headers["authorization"] == "Bearer aegis_admin"  # type: ignore[attr-defined]
    assert Client.from_env("grpc").transport.target == "gRPC 10.0.0.5:50051"
    monkeypatch.setenv("AEGIS_API_URL", "http://api.example:9000")
    monkeypatch.setenv("AEGIS_API_TOKEN", "aegis_user")
    assert Client.from_env().transport.target == "http://api.example:9000"


def test_token_operations_have_rest_routes_and_grpc_requests() -> None:
    """Every token operation, with its optional arguments left out, as each transport sends
    it (a None in a path or message would fail before anything is sent)."""
    from aegis_ray.sdk import grpc as over_grpc
    from aegis_ray.sdk.operations import Operations
    from aegis_ray.sdk.rest import route

    requests = [
        Operations.create_token.build(),
        Operations.create_token.build(role="join", node_id="edge-1", ttl_s=300),
        Operations.tokens.build(revoked=True),
        Operations.revoke_token.build("5b0c7f0e-0000-4000-8000-000000000001"),
        Operations.rotate_admin_token.build(),
        Operations.rotate_join_secret.build("s" * 32),
    ]
    paths = [route(r.op, r.args)[:2] for r in requests]
    assert paths == [
        ("POST", "/v1/tokens"),
        ("POST", "/v1/tokens"),
        ("GET", "/v1/tokens"),
        ("POST", "/v1/tokens/5b0c7f0e-0000-4000-8000-000000000001/revoke"),
        ("POST", "/v1/tokens/rotate-admin"),
        ("POST", "/v1/tokens/join-secret"),
    ]
    assert route(requests[0].op, requests[0].args)[2]["json"] == {
        "role": "user",
        "description": "",
        "eternal": False,
    }
    for r in requests:
        service, method, build = over_grpc.RPCS[r.op]
        assert build(r.args).DESCRIPTOR.name.endswith("Request"), method


def test_every_operation_has_a_rest_route_and_secret_names_are_one_path_segment() -> None:
    from aegis_ray.sdk.rest import route

    assert route(Op.list, {"limit": 50, "states": None, "name": None, "before": None})[1] == (
        "/v1/executions"
    )
    assert route(Op.put_secret, {"name": "a/b", "data": {"k": "v"}})[:2] == (
        "PUT",
        "/v1/secrets/a%2Fb",
    )
    assert route(Op.secrets, {}) == ("GET", "/v1/secrets", {})
    assert route(Op.delete_secret, {"name": "openai"})[:2] == ("DELETE", "/v1/secrets/openai")


def test_secret_calls_send_the_values_and_return_metadata_only() -> None:
    meta = {"name": "openai", "keys": ["api_key"], "version": 1}
    t = Replies(meta, {"items": [meta]}, meta, {"name": "openai", "deleted": True})
    c = Client(t)
    assert c.put_secret("openai", {"api_key": "sk-1"}).keys == ["api_key"]
    assert [s.name for s in c.secrets().items] == ["openai"]
    assert c.secret("openai").version == 1
    assert c.delete_secret("openai").deleted
    assert t.sent[0] == (Op.put_secret, {"name": "openai", "data": {"api_key": "sk-1"}})


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: connecting is refused


def test_several_api_urls_fail_over_on_connection_errors_only() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from aegis_ray.sdk.rest import RestTransport, api_urls

    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            seen.append(self.path)
            body = json.dumps({"status": "ok"}).encode()
            self.send_response(200 if self.path == "/health" else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    live = f"http://127.0.0.1:{server.server_address[1]}"
    dead = f"http://127.0.0.1:{_closed_port()}"
    try:
        assert api_urls(f" {dead}/, {live} ") == [dead, live]
        with pytest.raises(ValueError):
            api_urls(" , ")
        t = RestTransport(f"{dead},{live}", "tok", timeout=5)
        assert t.call(Op.health, {}) == {"status": "ok"}
        assert t.target == live  # the next call starts where the last one succeeded
        # A server that answered (even 503) is not asked again elsewhere: no duplicate submit.
        with pytest.raises(errors.ApiError) as err:
            t.call(Op.nodes, {})
        assert err.value.status == 503 and seen == ["/health", "/v1/nodes"]
        with pytest.raises(errors.ApiUnreachable, match="not reachable at"):
            RestTransport(f"{dead},{dead}", "tok", timeout=5).call(Op.health, {})
    finally:
        server.shutdown()
