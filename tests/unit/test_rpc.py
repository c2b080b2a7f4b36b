"""The gRPC contract without a server: generated code current, names routable by Serve,
REST bodies and messages convertible both ways, refusals mapped to status codes."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format

from aegis_ray.api.errors import ApiProblem
from aegis_ray.contract.errors import ERRORS, GRPC_TO_HTTP
from aegis_ray.core.models.loading import parse_agent
from aegis_ray.rpc import executions_pb2 as ex
from aegis_ray.rpc import nodes_pb2 as nd
from aegis_ray.rpc import secrets_pb2 as sc
from aegis_ray.rpc.convert import health_body, health_message, manifest_message, to_dict, to_message

REPO = Path(__file__).resolve().parents[2]


def test_generated_code_matches_the_protos() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/gen_protos.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_rpc_names_are_unique_across_services() -> None:
    # Ray Serve routes a gRPC call to the deployment method named like the RPC, whatever the
    # service: two services with a `List` would reach the same method.
    names = [
        method.name
        for module in (ex, nd, sc)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    ]
    assert len(names) == len(set(names)), sorted(names)
    from aegis_ray.api.grpc_api import GrpcMethods

    assert all(callable(getattr(GrpcMethods, n, None)) for n in names)


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*-agent.yaml")), ids=str)
def test_example_manifests_survive_the_structured_form(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    back = to_dict(manifest_message(doc))
    assert parse_agent(back) == parse_agent(doc)


@pytest.mark.parametrize(
    ("cpu", "millis"), [(250, 250), (0.5, 500), (2.0, 2000), ("750m", 750), ("1.5", 1500)]
)
def test_cpu_keeps_its_meaning_through_protobuf_doubles(cpu: object, millis: int) -> None:
    # 250 is millicores, 2.0 is two cores: a double alone could not tell them apart.
    doc = {
        "apiVersion": "100monkeys.ai/v1",
        "kind": "Agent",
        "metadata": {"name": "q"},
        "spec": {
            "runtime": {"image": "busybox"},
            "task": {"input": {"ratio": 0.25, "n": 3, "tags": ["a", None]}},
            "security": {"resources": {"cpu": cpu, "memory": "64Mi"}},
            "execution": {"timeout": 1.5},
        },
    }
    manifest = parse_agent(to_dict(manifest_message(doc)))
    assert manifest.spec.security.resources.cpu == millis
    assert manifest.spec.execution.timeout == 1.5
    assert manifest.spec.task.input == {"ratio": 0.25, "n": 3, "tags": ["a", None]}


def _execution_body() -> dict[str, object]:
    now = datetime(2026, 11, 21, 10, 0, 0, 123456, tzinfo=UTC).isoformat()
    doc = yaml.safe_load((REPO / "examples" / "hello-agent.yaml").read_text())
    return {
        "id": str(uuid.uuid4()),
        "tenant_id": "default",
        "name": "hello-agent",
        "manifest": parse_agent(doc).to_document(),
        "state": "RUNNING",
        "attempt": 1,
        "max_retries": 0,
        "timeout_s": 60.0,
        "version": 4,
        "reason": None,
        "node_id": "vm",
        "exit_code": None,
        "workflow_id": "aegis-exec-1",
        "created_at": now,
        "updated_at": now,
        "started_at": now,
        "finished_at": None,
        "attempts": [],
        "waiting": None,
    }


def test_rest_body_round_trips_through_the_execution_message() -> None:
    body = _execution_body()
    back = to_dict(to_message(body, ex.Execution))
    assert {k: v for k, v in back.items() if k != "manifest"} == {
        k: v for k, v in body.items() if k != "manifest"
    }
    assert parse_agent(back["manifest"]) == parse_agent(body["manifest"])


def test_a_rest_field_the_message_lacks_is_an_error_not_dropped() -> None:
    body = _execution_body() | {"new_field": 1}
    with pytest.raises(json_format.ParseError, match="new_field"):
        to_message(body, ex.Execution)


def test_event_ids_stay_integers() -> None:
    event = {
        "id": 2**40,
        "execution_id": str(uuid.uuid4()),
        "ts": datetime.now(UTC).isoformat(),
        "attempt": None,
        "kind": "state",
        "from_state": None,
        "to_state": "PENDING",
        "message": "submitted",
        "node_id": None,
    }
    assert to_dict(to_message(event, ex.ExecutionEvent)) == event


def test_health_converts_both_ways() -> None:
    body = {"status": "degraded", "version": "0.1.0", "database": "ok", "temporal": "down: x"}
    assert health_body(health_message(body)) == body


def test_every_error_has_a_status_and_a_grpc_code() -> None:
    codes = {code for _, code in ERRORS.values()}
    assert {
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "FAILED_PRECONDITION",
        "UNAUTHENTICATED",
        "UNAVAILABLE",
    } <= codes
    assert ApiProblem("invalid_manifest", "x").grpc_code == "INVALID_ARGUMENT"
    assert ApiProblem("unschedulable", "x").http_status == 422
    assert GRPC_TO_HTTP["NOT_FOUND"] == 404
    with pytest.raises(ValueError, match="unknown API error"):
        ApiProblem("oops", "x")


def test_a_refusal_keeps_its_details_across_processes() -> None:
    problem = ApiProblem("unschedulable", "no node", plan={"feasible": False})
    again = pickle.loads(pickle.dumps(problem))
    assert (again.error, again.message, again.extra) == ("unschedulable", "no node", problem.extra)


def test_error_metadata_fits_grpc_limits_and_keeps_what_fits() -> None:
    from aegis_ray.api.grpc_api import MAX_ERROR_METADATA, error_metadata

    node = {"node_id": "n", "reasons": [{"check": "cpu", "message": "x" * 300}]}
    plan = {"feasible": False, "summary": "no node fits", "nodes": [node] * 100}
    text = error_metadata(ApiProblem("unschedulable", "no node fits", plan=plan))
    body = json.loads(text)
    assert len(text) <= MAX_ERROR_METADATA
    kept = len(body["plan"]["nodes"])
    assert kept > 5 and kept + body["plan"]["nodes_omitted"] == 100
    assert body["http_status"] == 422 and len(plan["nodes"]) == 100  # the original untouched
    huge = error_metadata(ApiProblem("bad_request", "y" * 20_000, problems=["z" * 20_000]))
    assert len(huge) <= MAX_ERROR_METADATA and json.loads(huge)["truncated"] is True


def test_resources_and_capacities_cross_grpc_whatever_their_dimensions() -> None:
    # The messages name no dimension: a new one in the table travels without a proto change.
    from aegis_ray.rpc import executions_pb2, nodes_pb2

    capacity = {"cpu_millis": 2000, "memory_bytes": 2**33, "npu": 4}
    node = {"node_id": "n1", "role": "edge", "status": "ready", "tags": [], "total": capacity}
    back = to_dict(to_message(node, nodes_pb2.Node))
    assert back["total"] == capacity
    security = {"resources": {"cpu": "0.5", "memory": "512Mi", "npu": 2}}
    msg = to_message(security, executions_pb2.SecuritySpec)
    assert to_dict(msg, drop_unset=True)["resources"] == security["resources"]


def test_secret_references_survive_the_structured_manifest() -> None:
    doc = yaml.safe_load((REPO / "examples" / "hello-agent.yaml").read_text())
    doc["spec"]["env"] = {"K": {"secret": "openai#api_key"}, "PLAIN": "text"}
    doc["spec"]["secret_files"] = [{"secret": "tls#key", "path": "/run/secrets/tls.key"}]
    msg = manifest_message(parse_agent(doc).to_document())
    assert msg.spec.secret_files[0].path == "/run/secrets/tls.key"
    assert parse_agent(to_dict(msg)) == parse_agent(doc)


def test_a_secret_reply_has_no_field_for_a_value() -> None:
    body = {"name": "openai", "keys": ["api_key"], "version": 2, "created_at": None}
    assert to_dict(to_message(body, sc.Secret))["keys"] == ["api_key"]
    with pytest.raises(json_format.ParseError, match="data"):
        to_message(body | {"data": {"api_key": "v"}}, sc.Secret)
