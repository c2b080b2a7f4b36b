"""PostgreSQL or Temporal going down: clear 503s, nothing half-written, the API keeps answering,
and the cluster recovers by itself when the service is back."""

from __future__ import annotations

import time

import pytest

from aegis_ray import ApiError, Client
from aegis_ray.adapters.postgres.embedded import EmbeddedPostgres
from aegis_ray.adapters.temporal.dev_server import TemporalDevServer
from tests.e2e.conftest import REPO, Stack
from tests.e2e.manifests import agent_yaml
from tests.e2e.test_executions import wait_state
from tests.e2e.test_grpc_api import GRPC_ADDRESS

pytestmark = pytest.mark.e2e


def _temporal(stack: Stack) -> TemporalDevServer:
    return TemporalDevServer(
        stack.home / "temporal",
        port=int(stack.env["AEGIS_TEMPORAL_PORT"]),
        ui_port=int(stack.env["AEGIS_TEMPORAL_UI_PORT"]),
    )


def _postgres(stack: Stack) -> EmbeddedPostgres:
    return EmbeddedPostgres(stack.home / "postgres", port=int(stack.env["AEGIS_POSTGRES_PORT"]))


def _eventually_succeeds(stack: Stack, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            rec = stack.client().submit(agent_yaml("after-outage", "echo back"), source="x.yaml")
            return wait_state(stack.client(), rec.id, {"SUCCEEDED", "FAILED"}, timeout=90)
        except ApiError as err:
            assert err.status == 503, err.body
            assert time.monotonic() < deadline, f"still unavailable: {err.body}"
            time.sleep(2)


def _assert_grpc_unavailable(stack: Stack, error: str, *cli_args: str) -> None:
    """The same outage over gRPC: UNAVAILABLE with the REST error body, CLI exit 3."""
    client = Client.grpc(GRPC_ADDRESS, stack.token)
    call = getattr(client, cli_args[0])
    args = ((REPO / cli_args[1]).read_text(),) if len(cli_args) > 1 else ()
    kwargs = {"source": cli_args[1]} if len(cli_args) > 1 else {}
    with pytest.raises(ApiError) as err:
        call(*args, **kwargs)
    assert err.value.body["grpc_code"] == "UNAVAILABLE" and err.value.body["error"] == error
    assert err.value.status == 503
    assert stack.aegis("--api", "grpc", *cli_args).returncode == 3


def test_temporal_down_gives_503_writes_nothing_and_recovers(stack: Stack) -> None:
    c = stack.client()
    before = len(c.list(limit=500).to_json()["items"])
    server = _temporal(stack)
    server.stop()
    try:
        with pytest.raises(ApiError) as err:
            c.submit(agent_yaml("no-temporal", "true"), source="x.yaml")
        assert err.value.status == 503
        assert err.value.body["error"] == "temporal_unavailable"
        assert len(c.list(limit=500).to_json()["items"]) == before  # nothing half-written
        health = stack.aegis("status", "-o", "json")
        assert health.returncode == 3 and "temporal" in health.stdout
        cli = stack.aegis("submit", "examples/hello-agent.yaml")
        assert cli.returncode == 3 and "Temporal" in cli.stderr
        _assert_grpc_unavailable(
            stack, "temporal_unavailable", "submit", "examples/hello-agent.yaml"
        )
    finally:
        server.start()
    assert _eventually_succeeds(stack)["state"] == "SUCCEEDED"


def test_postgres_down_gives_503_and_the_api_keeps_answering(stack: Stack) -> None:
    c = stack.client()
    db = _postgres(stack)
    db.stop()
    try:
        for call in (lambda: c.list(), lambda: c.submit(agent_yaml("no-db", "true"), source="x")):
            with pytest.raises(ApiError) as err:
                call()
            # Tokens are checked against PostgreSQL too, but a token verified in the last few
            # seconds is cached: either way the answer is a clear 503, never a 500.
            assert err.value.status == 503, err.value.body
            assert err.value.body["error"] == "database_unavailable"
        assert stack.aegis("list").returncode == 3
        _assert_grpc_unavailable(stack, "database_unavailable", "list")
    finally:
        db.start()
    assert _eventually_succeeds(stack)["state"] == "SUCCEEDED"
