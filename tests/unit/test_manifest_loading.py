import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aegis_ray.core.models.agent import AgentManifest
from aegis_ray.core.models.loading import (
    ManifestError,
    json_schema,
    load_file,
    parse_agent,
    parse_document,
    parse_node_config,
)
from aegis_ray.core.models.node import NodeConfig

AGENT_YAML = """\
apiVersion: 100monkeys.ai/v1
kind: Agent
metadata:
  name: hello
spec:
  runtime:
    image: busybox:1.36
"""
NODE_YAML = """\
apiVersion: 100monkeys.ai/v1
kind: NodeConfig
metadata: {name: orch}
spec:
  node: {id: orch-1, type: orchestrator}
"""


def error_of(data: Any, parse: Callable[..., object] = parse_document) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        parse(data, source="in.yaml")
    return info.value


def test_document_kind_picks_the_model() -> None:
    assert isinstance(parse_document(AGENT_YAML), AgentManifest)
    assert isinstance(parse_document(NODE_YAML.encode()), NodeConfig)


def test_json_text_is_accepted() -> None:
    doc = {
        "apiVersion": "100monkeys.ai/v1",
        "kind": "Agent",
        "metadata": {"name": "j"},
        "spec": {"runtime": {"image": "busybox"}},
    }
    assert parse_agent(json.dumps(doc, indent="\t")).metadata.name == "j"


def test_load_file_uses_the_path_as_source(tmp_path: Path) -> None:
    good = tmp_path / "agent.yaml"
    good.write_text(AGENT_YAML)
    assert isinstance(load_file(good), AgentManifest)
    bad = tmp_path / "bad.yaml"
    bad.write_text(AGENT_YAML.replace("hello", "Hello!"))
    with pytest.raises(ManifestError) as info:
        load_file(str(bad))
    assert str(info.value).startswith(f"{bad}: metadata.name: ")
    with pytest.raises(ManifestError, match="cannot read file"):
        load_file(tmp_path / "missing.yaml")


def test_wrong_api_version_names_value_and_accepted() -> None:
    err = error_of(AGENT_YAML.replace("v1", "v2"))
    assert str(err) == (
        "in.yaml: apiVersion: unsupported apiVersion (accepted: 100monkeys.ai/v1) "
        "(got '100monkeys.ai/v2')"
    )


def test_missing_and_unknown_kind_are_explained() -> None:
    err = error_of(AGENT_YAML.replace("kind: Agent\n", ""))
    assert str(err) == "in.yaml: kind: required (accepted: Agent, NodeConfig)"
    err = error_of(AGENT_YAML.replace("kind: Agent", "kind: Pod"))
    assert str(err) == "in.yaml: kind: unknown kind (accepted: Agent, NodeConfig) (got 'Pod')"


def test_wrong_kind_for_the_endpoint_is_explained() -> None:
    err = error_of(NODE_YAML, parse=parse_agent)
    assert (
        str(err) == "in.yaml: kind: expected kind Agent here (accepted: Agent) (got 'NodeConfig')"
    )
    err = error_of(AGENT_YAML, parse=parse_node_config)
    assert err.problems[0].path == "kind"


def test_yaml_syntax_error_gives_line_and_column() -> None:
    err = error_of("apiVersion: 100monkeys.ai/v1\nkind: Agent\nmetadata: {name: x\n")
    assert len(err.problems) == 1 and err.problems[0].path == ""
    assert "YAML syntax error at line" in str(err) and "column" in str(err)
    assert str(err).startswith("in.yaml: ")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("- a\n- b\n", "expected a mapping"),
        ("", "empty document"),
        ("just text", "expected a mapping"),
        (AGENT_YAML + "---\n" + AGENT_YAML, "2 YAML documents"),
        ("kind: Agent\nkind: Agent\n", "duplicate key 'kind'"),
        ("a: &x [1]\nb: *x\n", "aliases"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_documents_that_are_not_one_mapping_are_rejected(text: str | bytes, fragment: str) -> None:
    err = error_of(text)
    assert fragment in str(err)
    assert err.problems[0].path == ""


def test_error_dict_is_json_safe() -> None:
    err = error_of(
        {
            "apiVersion": b"raw",
            "kind": "Agent",
            "metadata": {"name": "x"},
            "spec": {"runtime": {"image": "busybox"}, "when": {1, 2}},
        }
    )
    body = err.to_dict()
    json.dumps(body)
    assert body["error"] == "invalid_manifest" and body["source"] == "in.yaml"
    assert {p["path"] for p in body["problems"]} == {"apiVersion", "spec.when"}
    assert isinstance(err, ValueError)


def test_json_schemas_describe_both_kinds() -> None:
    agent = json_schema("agent")
    assert set(agent["properties"]) == {"apiVersion", "kind", "metadata", "spec"}
    resources = agent["$defs"]["ResourceSpec"]["properties"]
    assert {"cpu", "memory", "disk", "gpu"} <= set(resources)
    assert resources["memory"]["anyOf"][1]["type"] == "string"
    assert agent["$defs"]["AgentSpec"]["additionalProperties"] is False
    node = json_schema("node")
    assert set(node["$defs"]["NodeSection"]["properties"]) >= {"id", "type", "tags", "resources"}
    json.dumps(node)
    with pytest.raises(ValueError):
        json_schema("pod")  # type: ignore[arg-type]
