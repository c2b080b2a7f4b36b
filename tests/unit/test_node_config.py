import copy
import json
from typing import Any

import pytest

from aegis_ray.core.models.loading import ManifestError, parse_node_config
from aegis_ray.core.models.node import NodeType

# The edge example of the multi-node deployment document, verbatim.
EDGE_YAML = """\
apiVersion: 100monkeys.ai/v1
kind: NodeConfig
metadata:
  name: "edge-worker-1"
spec:
  node:
    id: "edge-node-1"
    type: "edge"
    region: "us-west-2"
    tags: ["gpu", "large-memory"]
    resources:
      cpu_cores: 32
      memory_gb: 128
      disk_gb: 500
      gpu: true

  runtime:
    # Point the edge node at the orchestrator for callbacks
    orchestrator_url: "https://orchestrator.internal:8080"
    docker_network_mode: "aegis-net"
    nfs_server_host: "127.0.0.1"
"""

ORCH: dict[str, Any] = {
    "apiVersion": "100monkeys.ai/v1",
    "kind": "NodeConfig",
    "metadata": {"name": "orchestrator-primary"},
    "spec": {
        "node": {
            "id": "orch-node-1",
            "type": "orchestrator",
            "region": "us-west-2",
            "tags": ["primary"],
        },
        "api": {"bind": "0.0.0.0", "rest_port": 8080, "grpc_port": 50051},
    },
}
# The external services an orchestrator can use today (an edge uses none).
SERVICES: dict[str, Any] = {
    "database": {"url": "postgresql://aegis@db/aegis"},
    "temporal": {"address": "temporal:7233"},
}
# An external OpenBao, reached with the control plane's AppRole.
SECRETS: dict[str, Any] = {
    "backend": "openbao",
    "address": "https://openbao:8200",
    "approle": {"role_id": "aegis", "secret_id_file": "/etc/aegis/openbao-secret-id"},
    "ca_file": "/etc/aegis/openbao-ca.pem",
}
# Sections the deployment document shows that no code reads yet: refused until wired.
NOT_WIRED: dict[str, Any] = {
    "llm_providers": [{"name": "local", "type": "ollama", "endpoint": "http://llm:11434"}],
    "storage": {"backend": "seaweedfs", "filer_url": "http://seaweedfs:8888"},
}


def node_doc(**node: Any) -> dict[str, Any]:
    doc = copy.deepcopy(ORCH)
    doc["spec"]["node"].update(node)
    return doc


def error_of(doc: dict[str, Any] | str) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        parse_node_config(doc, source="node.yaml")
    return info.value


def test_documented_edge_example_parses() -> None:
    # Without nfs_server_host, which is refused until NFS volume mounts exist (test below).
    cfg = parse_node_config(EDGE_YAML.replace('    nfs_server_host: "127.0.0.1"\n', ""))
    node = cfg.spec.node
    assert node.type is NodeType.EDGE
    assert node.tags == ["gpu", "large-memory"]
    assert node.resources is not None
    assert (node.resources.cpu_cores, node.resources.memory_gb, node.resources.disk_gb) == (
        32,
        128,
        500,
    )
    assert node.resources.gpu == 1  # `gpu: true` becomes a count
    assert cfg.spec.runtime.max_containers == 32


def test_documented_edge_example_is_refused_only_for_nfs_server_host() -> None:
    err = error_of(EDGE_YAML)
    assert [p.path for p in err.problems] == ["spec.runtime.nfs_server_host"]
    assert "node.yaml: spec.runtime.nfs_server_host: not wired yet" in str(err)


def test_orchestrator_with_services_parses() -> None:
    doc = copy.deepcopy(ORCH)
    doc["spec"] |= SERVICES
    cfg = parse_node_config(doc)
    assert cfg.spec.node.type == "orchestrator"
    assert cfg.spec.node.resources is None
    assert cfg.spec.temporal is not None and cfg.spec.temporal.task_queue == "aegis-executions"
    assert cfg.spec.database is not None and cfg.spec.database.url == "postgresql://aegis@db/aegis"
    assert parse_node_config(cfg.to_document()) == cfg


@pytest.mark.parametrize("section", sorted(NOT_WIRED))
def test_sections_nothing_reads_yet_are_refused_naming_file_and_key(section: str) -> None:
    doc = copy.deepcopy(ORCH)
    doc["spec"][section] = NOT_WIRED[section]
    err = error_of(doc)
    assert [p.path for p in err.problems] == [f"spec.{section}"]
    assert str(err).startswith(f"node.yaml: spec.{section}: not wired yet: ")
    assert str(err).endswith("; remove it")


def test_every_unwired_key_is_reported_at_once() -> None:
    doc = copy.deepcopy(ORCH)
    doc["spec"] |= NOT_WIRED | {"runtime": {"nfs_server_host": "127.0.0.1"}}
    paths = [p.path for p in error_of(doc).problems]
    assert paths == [
        "spec.llm_providers",
        "spec.storage",
        "spec.runtime.nfs_server_host",
    ]


def test_an_empty_llm_providers_list_configures_nothing_and_is_accepted() -> None:
    doc = copy.deepcopy(ORCH)
    doc["spec"]["llm_providers"] = []
    assert parse_node_config(doc).spec.llm_providers == []


def test_an_edge_refuses_database_and_temporal_it_would_never_use() -> None:
    doc = node_doc(type="edge", resources={"cpu_cores": 2, "memory_gb": 4})
    doc["spec"] |= SERVICES | {"runtime": {"orchestrator_url": "http://orch:8080"}}
    err = error_of(doc)
    assert [p.path for p in err.problems] == ["spec.database", "spec.temporal"]
    assert "an edge node runs no control plane" in str(err)


def test_a_password_in_the_database_url_is_refused_and_not_echoed() -> None:
    doc = copy.deepcopy(ORCH)
    doc["spec"]["database"] = {"url": "postgresql://aegis:hunter2@db:5432/aegis"}
    err = error_of(doc)
    assert [p.path for p in err.problems] == ["spec.database.url"]
    assert "AEGIS_DATABASE_PASSWORD_FILE" in str(err)
    assert "hunter2" not in str(err) and "hunter2" not in json.dumps(err.to_dict())


def test_temporal_address_may_be_bracketed_ipv6() -> None:
    doc = copy.deepcopy(ORCH)
    doc["spec"]["temporal"] = {"address": "[::1]:7233", "namespace": "aegis"}
    cfg = parse_node_config(doc)
    assert cfg.spec.temporal is not None and cfg.spec.temporal.address == "[::1]:7233"


@pytest.mark.parametrize(
    ("written", "canonical"),
    [("controller", "orchestrator"), ("worker", "edge"), ("Hybrid", "hybrid"), ("edge", "edge")],
)
def test_node_type_aliases_are_stored_canonically(written: str, canonical: str) -> None:
    resources = {"cpu_cores": 2, "memory_gb": 4}
    doc = node_doc(type=written, resources=resources)
    doc["spec"]["runtime"] = {"orchestrator_url": "http://orch:8080"}
    cfg = parse_node_config(doc)
    assert cfg.spec.node.type == canonical
    assert cfg.to_document()["spec"]["node"]["type"] == canonical


def test_unknown_node_type_lists_accepted_values() -> None:
    err = error_of(node_doc(type="master"))
    assert str(err) == (
        "node.yaml: spec.node.type: 'master' is not a node type "
        "(accepted: orchestrator, edge, hybrid; aliases: controller, worker)"
    )


def test_edge_without_resources_or_orchestrator_url_is_rejected() -> None:
    err = error_of(node_doc(type="edge"))
    paths = [p.path for p in err.problems]
    assert paths == ["spec.node.resources", "spec.runtime.orchestrator_url"]
    assert "required for edge nodes" in str(err)


def test_hybrid_needs_at_least_one_core_and_one_gib() -> None:
    err = error_of(node_doc(type="hybrid", resources={"cpu_cores": 0, "memory_gb": 8}))
    assert err.problems[0].path == "spec.node.resources"
    assert "cpu_cores >= 1 and memory_gb >= 1" in str(err)


@pytest.mark.parametrize(
    ("node", "path", "fragment"),
    [
        ({"id": "Node_1"}, "spec.node.id", "not a node id"),
        ({"tags": ["gpu", "gpu"]}, "spec.node.tags", "duplicate 'gpu'"),
        ({"tags": ["ok", "x_group_y"]}, "spec.node.tags[1]", "_group_"),
        ({"region": "us west"}, "spec.node.region", "not a region"),
        (
            {"resources": {"cpu_cores": -1, "memory_gb": 1}},
            "spec.node.resources.cpu_cores",
            "at least 0",
        ),
        (
            {"resources": {"cpu_cores": 1, "memory_gb": 1, "gpu": 65}},
            "spec.node.resources.gpu",
            "at most 64",
        ),
        (
            {"resources": {"cpu_cores": 1, "memory_gb": 1, "tpu": 1}},
            "spec.node.resources.tpu",
            "unknown key (accepted: cpu_cores, memory_gb, disk_gb, gpu)",
        ),
        ({"zone": "a"}, "spec.node.zone", "unknown key (accepted: id, type, region, tags"),
    ],
)
def test_bad_node_section_names_the_key(node: dict[str, Any], path: str, fragment: str) -> None:
    err = error_of(node_doc(**node))
    assert [p.path for p in err.problems] == [path]
    assert fragment in str(err)


@pytest.mark.parametrize(
    ("section", "value", "path", "fragment"),
    [
        ("storage", {"backend": "s3"}, "spec.storage.backend", "'seaweedfs' or 'local'"),
        ("storage", {"backend": "seaweedfs"}, "spec.storage.filer_url", "required"),
        (
            "secrets",
            {"address": "bao:8200", "approle": {"role_id": "r", "secret_id_env": "ID"}},
            "spec.secrets.address",
            "not an http(s) URL",
        ),
        ("api", {"rest_port": 0}, "spec.api.rest_port", "at least 1"),
        ("runtime", {"max_containers": 5000}, "spec.runtime.max_containers", "at most 1000"),
        ("database", {"url": "x", "pool": 3}, "spec.database.pool", "(accepted: url, pool_size)"),
        ("cluster", {}, "spec.cluster", "unknown key (accepted: node, runtime, llm_providers"),
        ("database", {"url": "mysql://db/aegis"}, "spec.database.url", "not a PostgreSQL URL"),
        ("temporal", {"address": "temporal"}, "spec.temporal.address", "HOST:PORT"),
        ("temporal", {"address": "http://t:7233"}, "spec.temporal.address", "HOST:PORT"),
    ],
)
def test_service_sections_are_strict(section: str, value: Any, path: str, fragment: str) -> None:
    doc = copy.deepcopy(ORCH)
    doc["spec"][section] = value
    err = error_of(doc)
    assert [p.path for p in err.problems] == [path]
    assert fragment in str(err)


def test_an_orchestrator_names_an_external_openbao_reached_with_approle() -> None:
    doc = copy.deepcopy(ORCH)
    doc["spec"]["secrets"] = SECRETS
    secrets = parse_node_config(doc).spec.secrets
    assert secrets is not None and secrets.approle.role_id == "aegis"
    assert (secrets.mount, secrets.approle.mount) == ("secret", "approle")


@pytest.mark.parametrize(
    ("change", "path", "fragment"),
    [
        ({"approle": {"role_id": "r"}}, "spec.secrets.approle.secret_id_env", "exactly one"),
        ({"approle": {"role_id": "r", "secret_id_env": "A", "secret_id_file": "/f"}},
         "spec.secrets.approle.secret_id_env", "exactly one"),
        ({"approle": {"role_id": "r", "secret_id_env": "1A"}},
         "spec.secrets.approle.secret_id_env", "not an environment variable name"),
        ({"address": "http://openbao:8200"}, "spec.secrets.ca_file", "only used with an https"),
        ({"approle": {"role_id": "r", "secret_id": "s3cr3t"}}, "spec.secrets.approle.secret_id",
         "unknown key"),
    ],
)  # fmt: skip
def test_the_secrets_section_is_strict(change: dict[str, Any], path: str, fragment: str) -> None:
    doc = copy.deepcopy(ORCH)
    doc["spec"]["secrets"] = SECRETS | change
    err = error_of(doc)
    assert [p.path for p in err.problems] == [path]
    assert fragment in str(err)


def test_an_edge_refuses_a_secrets_section_it_would_never_use() -> None:
    doc = node_doc(type="edge", resources={"cpu_cores": 2, "memory_gb": 4})
    doc["spec"] |= {"secrets": SECRETS, "runtime": {"orchestrator_url": "http://orch:8080"}}
    err = error_of(doc)
    assert [p.path for p in err.problems] == ["spec.secrets"]
    assert "an edge node runs no control plane" in str(err)
