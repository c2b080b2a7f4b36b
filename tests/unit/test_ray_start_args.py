import json
from pathlib import Path
from typing import Any

import pytest

from aegis_ray.core import naming as N
from aegis_ray.core import ray_mapping as R
from aegis_ray.core.models.loading import ManifestError, parse_node_config
from aegis_ray.core.models.node import DEFAULT_DOCKER_NETWORK, NodeConfig
from aegis_ray.core.models.tags import validate_tag
from aegis_ray.node.local_config import default_node_config, node_id_from_hostname

GiB = 2**30


def config(node_type: str, **node: Any) -> NodeConfig:
    spec: dict[str, Any] = {"node": {"id": f"{node_type}-1", "type": node_type, **node}}
    if node_type in ("edge", "worker"):
        spec["runtime"] = {"orchestrator_url": "http://orch:8080", "max_containers": 8}
    return parse_node_config(
        {
            "apiVersion": "100monkeys.ai/v1",
            "kind": "NodeConfig",
            "metadata": {"name": "n"},
            "spec": spec,
        }
    )


def test_orchestrator_gets_the_orchestrator_marker_and_no_executor() -> None:
    args = R.ray_start_args(config("orchestrator", tags=["primary"], region="eu-1"))
    assert args.resources == {N.ORCHESTRATOR: 1.0}
    assert N.EXECUTOR not in args.resources
    assert (args.num_cpus, args.num_gpus, args.memory_bytes) == (1, 0, 0)
    assert args.labels == {
        N.LABEL_NODE_ID: "orchestrator-1",
        N.LABEL_ROLE: "orchestrator",
        N.LABEL_REGION: "eu-1",
    }
    assert not any(a.startswith("--memory") for a in args.cli_args())  # Ray sizes it


def test_edge_with_tags_gets_slots_disk_tag_resources_and_labels() -> None:
    resources = {"cpu_cores": 16, "memory_gb": 64, "disk_gb": 200, "gpu": 2}
    args = R.ray_start_args(config("worker", tags=["gpu", "fast-disk"], resources=resources))
    assert args.resources == {
        N.EXECUTOR: 8.0,
        N.DISK: 200.0,
        "aegis/tag/gpu": 1.0,
        "aegis/tag/fast-disk": 1.0,
    }
    assert (args.num_cpus, args.num_gpus, args.memory_bytes) == (16, 2, 64 * GiB)
    assert args.labels[N.LABEL_ROLE] == "edge"
    assert N.ORCHESTRATOR not in args.resources


def test_hybrid_gets_both_roles() -> None:
    resources = {"cpu_cores": 2, "memory_gb": 4}
    args = R.ray_start_args(config("hybrid", tags=["local"], resources=resources))
    assert args.resources[N.ORCHESTRATOR] == 1.0
    assert args.resources[N.EXECUTOR] == 32.0
    assert args.resources["aegis/tag/local"] == 1.0
    assert N.DISK not in args.resources  # disk_gb 0: nothing to offer


def test_cli_args_render_for_ray_start() -> None:
    args = R.RayStartArgs(
        num_cpus=4,
        num_gpus=0,
        memory_bytes=8 * GiB,
        resources={N.EXECUTOR: 4.0, "aegis/tag/a": 1.0},
        labels={N.LABEL_NODE_ID: "n1", N.LABEL_ROLE: "edge", N.LABEL_REGION: "local"},
    )
    cli = args.cli_args()
    assert cli[:3] == ["--num-cpus=4", "--num-gpus=0", f"--memory={8 * GiB}"]
    assert cli[3].startswith("--resources=")
    assert json.loads(cli[3].removeprefix("--resources=")) == args.resources
    assert cli[4] == "--labels=aegis/node-id=n1,aegis/role=edge,aegis/region=local"


def test_labels_pass_rays_own_label_syntax_check() -> None:
    from ray._private.label_utils import parse_node_labels_string

    resources = {"cpu_cores": 1, "memory_gb": 1}
    args = R.ray_start_args(config("hybrid", region="us-west-2", resources=resources))
    labels_flag = next(a for a in args.cli_args() if a.startswith("--labels="))
    assert parse_node_labels_string(labels_flag.removeprefix("--labels=")) == args.labels


@pytest.mark.parametrize(
    ("tag", "fragment"),
    [
        ("a_group_1", "_group_"),
        ("GPU", "lowercase"),
        ("bundle", "reserved"),
        ("-x", "1-63"),
        ("", "1-63"),
        ("a" * 64, "1-63"),
        ("has space", "1-63"),
    ],
)
def test_validate_tag_names_the_tag(tag: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment) as info:
        validate_tag(tag)
    assert repr(tag) in str(info.value)


def test_valid_tags_map_to_prefixed_resources() -> None:
    assert validate_tag("large-memory") == "large-memory"
    assert N.tag_resource("gpu.a100") == "aegis/tag/gpu.a100"


def test_default_node_is_a_hybrid_sized_from_this_machine(tmp_path: Path) -> None:
    home = tmp_path / "aegis-home"
    cfg = default_node_config(home, node_id="test-box")
    node = cfg.spec.node
    assert home.is_dir()
    assert (node.id, node.type, node.region, node.tags) == (
        "test-box",
        "hybrid",
        "local",
        ["local"],
    )
    assert node.resources is not None
    assert node.resources.cpu_cores >= 1 and node.resources.memory_gb >= 1
    assert node.resources.gpu == 0
    assert R.ray_start_args(cfg).resources[N.EXECUTOR] == 32.0


@pytest.mark.parametrize(
    ("hostname", "node_id"),
    [("My_Laptop.local", "my-laptop.local"), ("--", "local"), ("a" * 80, "a" * 63)],
)
def test_hostnames_become_valid_node_ids(hostname: str, node_id: str) -> None:
    assert node_id_from_hostname(hostname) == node_id


def _edge_on_network(network: str) -> NodeConfig:
    return parse_node_config(
        {
            "apiVersion": "100monkeys.ai/v1",
            "kind": "NodeConfig",
            "metadata": {"name": "n"},
            "spec": {
                "node": {
                    "id": "edge-1",
                    "type": "edge",
                    "resources": {"cpu_cores": 2, "memory_gb": 4},
                },
                "runtime": {"orchestrator_url": "http://orch:8080", "docker_network_mode": network},
            },
        }
    )


def test_a_docker_network_other_than_the_default_reaches_the_node_agent_as_a_label() -> None:
    default = R.ray_start_args(_edge_on_network(DEFAULT_DOCKER_NETWORK)).labels
    assert DEFAULT_DOCKER_NETWORK == "aegis-agents" and N.LABEL_DOCKER_NETWORK not in default
    for network in ("aegis-net", "bridge"):  # Docker's own bridge only when asked for
        args = R.ray_start_args(_edge_on_network(network))
        assert args.labels[N.LABEL_DOCKER_NETWORK] == network


@pytest.mark.parametrize("network", ["host", "none", "container:abc", "bad name!"])
def test_a_docker_network_that_would_change_the_agents_network_is_refused(network: str) -> None:
    with pytest.raises(ManifestError) as err:
        _edge_on_network(network)
    assert "spec.runtime.docker_network_mode" in str(err.value)
    assert repr(network) in str(err.value)
