"""The gRPC API through Ray Serve's real gRPC proxy, checked against REST on the same stack:
same stored results, Watch streams in order to the end, status codes for refusals."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import datetime
from typing import Any

import grpc
import pytest
import yaml

from aegis_ray import ApiError, Client
from aegis_ray.core.models.loading import parse_agent
from aegis_ray.rpc import executions_pb2 as ex
from aegis_ray.rpc import nodes_pb2 as nd
from aegis_ray.rpc.convert import manifest_message, to_dict
from aegis_ray.rpc.executions_pb2_grpc import ExecutionServiceStub
from aegis_ray.rpc.nodes_pb2_grpc import ClusterServiceStub, NodeServiceStub
from tests.e2e.conftest import Stack
from tests.e2e.manifests import agent_yaml
from tests.e2e.test_executions import wait_state

pytestmark = pytest.mark.e2e
GRPC_ADDRESS = "127.0.0.1:28051"  # AEGIS_GRPC_PORT of the session stack (conftest)
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED"}
SCRIPT = "echo out-1; echo err-1 >&2; sleep 0.3; echo out-2; exit 3"


@pytest.fixture(scope="module")
def channel(stack: Stack) -> Any:
    with grpc.insecure_channel(GRPC_ADDRESS) as ch:
        grpc.channel_ready_future(ch).result(timeout=30)
        yield ch


def auth(stack: Stack) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {stack.token}")]


def structured(text: str, source: str = "t.yaml") -> ex.ManifestInput:
    return ex.ManifestInput(agent=manifest_message(yaml.safe_load(text)), source=source)


def stored(c: Client, eid: str) -> dict[str, Any]:
    """What the cluster stored about an execution, minus what differs between any two runs."""
    rec = c.get(eid).to_json()
    return {
        "state": rec["state"],
        "exit_code": rec["exit_code"],
        "reason": rec["reason"],
        "attempt": rec["attempt"],
        "manifest": rec["manifest"],
        "max_retries": rec["max_retries"],
        "timeout_s": rec["timeout_s"],
        "transitions": [e["to_state"] for e in c.events(eid).to_json()["items"] if e["to_state"]],
        "logs": sorted((ln["stream"], ln["line"]) for ln in c.log_page(eid).to_json()["items"]),
    }


def test_same_submission_over_rest_and_grpc_stores_the_same_result(
    stack: Stack, channel: Any
) -> None:
    rest = stack.client()
    over_grpc = Client.grpc(GRPC_ADDRESS, stack.token)
    text = agent_yaml("parity", SCRIPT)
    ids = [
        rest.submit(text, source="p.yaml").id,
        over_grpc.submit(text, source="p.yaml").id,  # structured manifest
        ExecutionServiceStub(channel).SubmitExecution(  # the YAML text form
            ex.SubmitExecutionRequest(manifest=ex.ManifestInput(yaml=text, source="p.yaml")),
            metadata=auth(stack),
        ).id,
    ]
    for eid in ids:
        wait_state(rest, eid, TERMINAL)
    results = [stored(rest, eid) for eid in ids]
    assert results[0]["state"] == "FAILED" and results[0]["exit_code"] == 3
    assert results[0]["logs"] == [("stderr", "err-1"), ("stdout", "out-1"), ("stdout", "out-2")]
    assert results[1] == results[0] and results[2] == results[0]
    # And each API reads back the same record: the gRPC message holds every REST field.
    for eid in ids:
        by_rest, by_grpc = rest.get(eid).to_json(), over_grpc.get(eid).to_json()
        assert set(by_grpc) == set(by_rest)
        for key, value in by_rest.items():
            if key.endswith("_at"):
                assert datetime.fromisoformat(by_grpc[key]) == datetime.fromisoformat(value)
            elif key == "manifest":  # a document: empty and null fields left out
                assert parse_agent(by_grpc[key]) == parse_agent(value)
            elif key != "attempts":
                assert by_grpc[key] == value, key
        assert [a["outcome"] for a in by_grpc["attempts"]] == [
            a["outcome"] for a in by_rest["attempts"]
        ]
    listed = {e["id"] for e in over_grpc.list(name="parity", limit=500).to_json()["items"]}
    assert set(ids) <= listed


def test_watch_streams_every_change_in_order_until_the_end(stack: Stack, channel: Any) -> None:
    stub = ExecutionServiceStub(channel)
    created = stub.SubmitExecution(
        ex.SubmitExecutionRequest(manifest=structured(agent_yaml("watched", SCRIPT))),
        metadata=auth(stack),
    )
    items = [
        (m.WhichOneof("item"), to_dict(getattr(m, m.WhichOneof("item"))))
        for m in stub.WatchExecution(ex.WatchExecutionRequest(id=created.id), metadata=auth(stack))
    ]
    kinds = [k for k, _ in items]
    assert kinds[-1] == "end" and kinds.count("end") == 1
    assert items[-1][1]["state"] == "FAILED"
    events = [row for k, row in items if k == "event"]
    logs = [row for k, row in items if k == "log"]
    # Exactly what is stored, in order, nothing twice, nothing left out.
    rest = stack.client()
    assert [e["id"] for e in events] == [e.id for e in rest.events(created.id).items]
    assert [ln["id"] for ln in logs] == [ln.id for ln in rest.logs(created.id)]
    states = [e["to_state"] for e in events if e["to_state"]]
    assert states == ["PENDING", "SCHEDULED", "STARTING", "RUNNING", "FAILED"]
    # Output comes after the container started and before the state change that ended it.
    at = {row.get("to_state"): i for i, (k, row) in enumerate(items) if k == "event"}
    lines_at = [i for i, k in enumerate(kinds) if k == "log"]
    assert at["RUNNING"] < min(lines_at) and max(lines_at) < at["FAILED"]

    # Resuming after the last event gives only the end; logs only gives no events.
    rest_of = list(
        stub.WatchExecution(
            ex.WatchExecutionRequest(
                id=created.id, after_event=events[-1]["id"], after_log=logs[-1]["id"]
            ),
            metadata=auth(stack),
        )
    )
    assert [m.WhichOneof("item") for m in rest_of] == ["end"]
    only_logs = list(
        stub.WatchExecution(
            ex.WatchExecutionRequest(id=created.id, logs=True), metadata=auth(stack)
        )
    )
    assert {m.WhichOneof("item") for m in only_logs} == {"log", "end"}


def test_bad_manifest_is_invalid_argument_with_the_field_path(stack: Stack, channel: Any) -> None:
    stub = ExecutionServiceStub(channel)
    before = len(stack.client().list(limit=500).to_json()["items"])
    bad = agent_yaml("bad-cpu", "true").replace("cpu: 250", "cpu: lots")
    with pytest.raises(grpc.RpcError) as err:
        stub.SubmitExecution(
            ex.SubmitExecutionRequest(manifest=structured(bad, "bad.yaml")), metadata=auth(stack)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "spec.security.resources.cpu" in err.value.details()
    body = json.loads(dict(err.value.trailing_metadata())["aegis-error"])
    assert body["error"] == "invalid_manifest" and body["source"] == "bad.yaml"
    assert [p["path"] for p in body["problems"]] == ["spec.security.resources.cpu"]

    unknown_key = agent_yaml("bad-key", "true").replace("  task:", "  bogus: 1\n  task:")
    with pytest.raises(grpc.RpcError) as err:
        stub.PlanExecution(
            ex.PlanExecutionRequest(manifest=ex.ManifestInput(yaml=unknown_key)),
            metadata=auth(stack),
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "spec.bogus: unknown key" in err.value.details()
    assert len(stack.client().list(limit=500).to_json()["items"]) == before  # nothing written


def test_calls_without_a_valid_token_are_refused(stack: Stack, channel: Any) -> None:
    stub = ExecutionServiceStub(channel)
    for metadata in ([], [("authorization", "Bearer aegis_forged")], [("authorization", "x")]):
        with pytest.raises(grpc.RpcError) as err:
            stub.ListExecutions(ex.ListExecutionsRequest(), metadata=metadata)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as err:
            list(stub.WatchExecution(ex.WatchExecutionRequest(id=str(uuid.uuid4()))))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # A user token may run agents but not drain nodes or issue tokens.
    user = stack.client().create_token(role="user", ttl_s=300).to_json()["token"]
    as_user = [("authorization", f"Bearer {user}")]
    assert ExecutionServiceStub(channel).ListExecutions(
        ex.ListExecutionsRequest(limit=1), metadata=as_user
    )
    with pytest.raises(grpc.RpcError) as err:
        NodeServiceStub(channel).DrainNode(nd.DrainNodeRequest(node_id="x"), metadata=as_user)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Health needs no token, like GET /health.
    health = ClusterServiceStub(channel).CheckHealth(nd.CheckHealthRequest())
    assert health.status == "ok" and health.checks["database"] == "ok"


def test_refusals_map_to_fitting_status_codes(stack: Stack, channel: Any) -> None:
    stub = ExecutionServiceStub(channel)
    md = auth(stack)
    for bad_id in (str(uuid.uuid4()), "not-an-id"):
        with pytest.raises(grpc.RpcError) as err:
            stub.GetExecution(ex.GetExecutionRequest(id=bad_id), metadata=md)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        stub.ListExecutions(ex.ListExecutionsRequest(states=["DONE"]), metadata=md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown state 'DONE'" in err.value.details()

    huge = agent_yaml("too-big", "true", cpu=200_000)
    with pytest.raises(grpc.RpcError) as err:
        stub.SubmitExecution(ex.SubmitExecutionRequest(manifest=structured(huge)), metadata=md)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    body = json.loads(dict(err.value.trailing_metadata())["aegis-error"])
    assert body["error"] == "unschedulable"
    assert any(r["check"] == "cpu" for n in body["plan"]["nodes"] for r in n["reasons"])

    done = stub.SubmitExecution(
        ex.SubmitExecutionRequest(manifest=structured(agent_yaml("quick", "true"))), metadata=md
    )
    wait_state(stack.client(), done.id, TERMINAL)
    with pytest.raises(grpc.RpcError) as err:
        stub.CancelExecution(ex.CancelExecutionRequest(id=done.id), metadata=md)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # The Python client turns refusals into the REST client's errors, with the same body.
    with pytest.raises(ApiError) as api_err:
        Client.grpc(GRPC_ADDRESS, stack.token).cancel(done.id)
    assert api_err.value.status == 409 and api_err.value.body["state"] == "SUCCEEDED"


def test_every_cli_command_runs_over_grpc(stack: Stack) -> None:
    def aegis(*args: str) -> Any:
        return stack.aegis("--api", "grpc", *args)

    run = aegis("submit", "examples/hello-agent.yaml", "--follow")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "hello from the aegis example agent" in run.stdout
    assert "SUCCEEDED" in run.stdout
    (latest,) = json.loads(aegis("list", "--limit", "1", "-o", "json").stdout)
    eid = latest["id"]
    assert json.loads(aegis("get", eid, "-o", "json").stdout)["state"] == "SUCCEEDED"
    assert "hello from the aegis example agent" in aegis("logs", eid).stdout
    assert "hello from the aegis example agent" in aegis("logs", "-f", eid).stdout
    states = [e["to_state"] for e in json.loads(aegis("events", eid, "-o", "json").stdout)]
    assert "SUCCEEDED" in states
    assert json.loads(aegis("plan", "examples/hello-agent.yaml", "-o", "json").stdout)["feasible"]
    (node,) = json.loads(aegis("nodes", "-o", "json").stdout)
    assert node["role"] == "hybrid"
    # Issue 15: cancelling a finished execution is idempotent (it was exit 2, a 409).
    again = aegis("cancel", eid)
    assert again.returncode == 0 and "already ended" in again.stdout
    assert aegis("get", str(uuid.uuid4())).returncode == 4
    assert aegis("submit", "examples/hello-agent.yaml").returncode == 0
    status = aegis("status")
    assert status.returncode == 0 and "gRPC 127.0.0.1:28051" in status.stdout
    bad = stack.env | {"AEGIS_API_TOKEN": "aegis_forged"}
    refused = subprocess.run(
        [sys.executable, "-m", "aegis_ray.cli", "--api", "grpc", "list"],
        env=bad,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 5 and "UNAUTHENTICATED" in refused.stderr
