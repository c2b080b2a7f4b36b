"""`ray up` cluster configs: the shipped ones validate, their node types match `aegis node start`,
and broken variants fail `aegis cluster validate` with a message naming file, node type and key."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from aegis_ray.cli.main import app
from aegis_ray.cluster_config.identity import instance_node_id, with_overrides
from aegis_ray.cluster_config.names import resource_name_problem
from aegis_ray.core.models.loading import ManifestError, load_file
from aegis_ray.core.models.node import NodeConfig
from aegis_ray.core.naming import DISK, EXECUTOR, LABEL_NODE_ID, ORCHESTRATOR
from aegis_ray.core.ray_mapping import ray_start_args

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "cluster_configs"
AWS = CONFIGS / "aws.yaml"
runner = CliRunner()


@pytest.fixture(autouse=True)
def in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    # Relative file_mounts resolve against the working directory, as for `ray up`.
    monkeypatch.chdir(REPO)


def node_config(path: Path) -> NodeConfig:
    cfg = load_file(path)
    assert isinstance(cfg, NodeConfig)
    return cfg


def validate(path: Path) -> Any:
    return runner.invoke(app, ["cluster", "validate", str(path)])


def broken(tmp_path: Path, old: str, new: str, source: Path = AWS) -> Path:
    text = source.read_text()
    assert text.count(old) == 1, old
    path = tmp_path / source.name
    path.write_text(text.replace(old, new))
    return path


def assert_invalid(result: Any, path: Path, *parts: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("invalid:")]
    assert any(all(p in ln for p in (str(path), *parts)) for ln in lines), result.output


# ---------------------------------------------------------------- shipped configs


@pytest.mark.parametrize("name", ["aws.yaml", "onprem.yaml"])
def test_shipped_cluster_configs_validate(name: str) -> None:
    result = validate(CONFIGS / name)
    assert result.exit_code == 0, result.output
    assert f"valid cluster config {CONFIGS / name}" in result.output


def test_every_shipped_node_config_validates() -> None:
    files = sorted((CONFIGS / "nodes").glob("*.yaml")) + sorted(
        (CONFIGS / "onprem-hosts").glob("*.yaml")
    )
    assert len(files) >= 7
    for f in files:
        result = runner.invoke(app, ["config", "validate", str(f)])
        assert result.exit_code == 0, (f, result.output)


def test_aws_node_types_carry_exactly_what_aegis_node_start_gives_ray() -> None:
    doc = yaml.safe_load(AWS.read_text())
    types = doc["available_node_types"]
    assert set(types) == {"orchestrator", "orchestrator-2", "edge-cpu", "edge-gpu"}
    for name, spec in types.items():
        args = ray_start_args(node_config(CONFIGS / "nodes" / f"{name}.yaml"))
        want = {"CPU": args.num_cpus, **{k: int(v) for k, v in args.resources.items()}}
        want |= {"GPU": args.num_gpus} if args.num_gpus else {}
        want |= {"memory": args.memory_bytes} if args.memory_bytes else {}
        assert spec["resources"] == want, name
        assert all(type(v) is int for v in spec["resources"].values()), name  # whole numbers
        labels = {k: v for k, v in args.labels.items() if k != LABEL_NODE_ID}
        assert spec["labels"] == labels, name
    gpu = types["edge-gpu"]["resources"]
    assert gpu["memory"] == 128 * 2**30 and gpu["GPU"] == 1  # bytes, as Ray counts memory
    assert "aegis/executor" not in types["orchestrator"]["resources"]
    assert doc["head_node_type"] == "orchestrator"
    assert all(types[t]["min_workers"] >= 1 for t in ("edge-cpu", "edge-gpu"))


def test_node_type_command_prints_the_aws_node_type() -> None:
    result = runner.invoke(app, ["cluster", "node-type", str(CONFIGS / "nodes" / "edge-gpu.yaml")])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.output)["edge-gpu"]
    aws = yaml.safe_load(AWS.read_text())["available_node_types"]["edge-gpu"]
    assert printed == {"resources": aws["resources"], "labels": aws["labels"]}


# ---------------------------------------------------------------- broken variants


def test_fractional_resource_is_rejected_by_rays_schema(tmp_path: Path) -> None:
    path = broken(tmp_path, "      aegis/tag/cpu: 1", "      aegis/tag/cpu: 0.5")
    result = validate(path)
    assert_invalid(result, path, "node type edge-cpu", "resources.aegis/tag/cpu", "whole number")


def test_unknown_keys_are_rejected_by_rays_schema(tmp_path: Path) -> None:
    path = broken(tmp_path, "  edge-gpu:\n", "  edge-gpu:\n    spot: true\n")
    result = validate(path)
    assert_invalid(result, path, "node type edge-gpu", "spot", "unknown key")
    path = broken(tmp_path, "cluster_name: aegis\n", "cluster_name: aegis\nautoscale: yes\n")
    assert_invalid(validate(path), path, "autoscale", "unknown key")


def test_bad_tag_resource_name_is_rejected(tmp_path: Path) -> None:
    path = broken(tmp_path, "      aegis/tag/cpu: 1", "      aegis/tag/Fast_CPU: 1")
    result = validate(path)
    assert_invalid(result, path, "node type edge-cpu", "resources.aegis/tag/Fast_CPU", "tag")
    # The tag the NodeConfig does declare is reported missing too.
    assert_invalid(result, path, "node type edge-cpu", "resources.aegis/tag/cpu", "missing")


def test_aegis_resources_a_node_type_may_carry_are_the_dimensions_and_the_marker() -> None:
    for name in (DISK, EXECUTOR, ORCHESTRATOR, "aegis/tag/gpu", "CPU", "memory"):
        assert resource_name_problem(name) is None, name
    why = resource_name_problem("aegis/disk")
    assert why is not None and all(n in why for n in (DISK, EXECUTOR, ORCHESTRATOR))


def test_orchestrator_with_executor_resource_is_rejected(tmp_path: Path) -> None:
    path = broken(
        tmp_path,
        "resources: {CPU: 4, memory: 17179869184, aegis/orchestrator: 1}",
        "resources: {CPU: 4, memory: 17179869184, aegis/orchestrator: 1, aegis/executor: 8}",
    )
    result = validate(path)
    assert_invalid(
        result, path, "node type orchestrator", "resources.aegis/executor", "no agent containers"
    )


def test_unquoted_command_with_colon_space_is_reported_where_written(tmp_path: Path) -> None:
    path = broken(
        tmp_path,
        "      - mkdir -p ~/aegis && ln -sfn ~/aegis/nodes/edge-gpu.yaml ~/aegis/node.yaml\n",
        "      - mkdir -p ~/aegis && ln -sfn ~/aegis/nodes/edge-gpu.yaml ~/aegis/node.yaml\n"
        "    worker_setup_commands:\n"
        "      - echo one\n"
        "      - echo two\n"
        "      - echo done: ok\n",
    )
    result = validate(path)
    assert_invalid(
        result,
        path,
        "node type edge-gpu: worker_setup_commands[2]",
        "a command parsed as a mapping (quote it",
    )


def test_ray_stop_in_start_commands_is_rejected(tmp_path: Path) -> None:
    path = broken(
        tmp_path,
        "  - aegis node stop --config ~/aegis/node.yaml --node-id '{id}-{host}'",
        "  - ray stop",
    )
    assert_invalid(validate(path), path, "worker_start_ray_commands[0]", "`ray stop`")


def test_resources_that_differ_from_the_node_config_are_rejected(tmp_path: Path) -> None:
    path = broken(tmp_path, "      CPU: 32\n", "      CPU: 16\n")
    assert_invalid(
        validate(path),
        path,
        "node type edge-gpu",
        "resources.CPU",
        "16, but `aegis node start` gives 32 for cluster_configs/nodes/edge-gpu.yaml",
    )


def test_labels_bad_for_ray_or_shared_node_id_are_rejected(tmp_path: Path) -> None:
    path = broken(
        tmp_path,
        "    labels: {aegis/role: edge, aegis/region: us-west-2}\n    # Selects",
        "    labels: {aegis/role: edge, aegis/region: us-west-2, 'aegis:x': y,"
        " aegis/node-id: edge-cpu-1}\n    # Selects",
    )
    result = validate(path)
    assert_invalid(result, path, "node type edge-cpu", "labels.aegis:x", "Invalid label key")
    assert_invalid(result, path, "node type edge-cpu", "labels.aegis/node-id", "every instance")


def test_autoscaled_type_without_per_instance_node_id_is_rejected(tmp_path: Path) -> None:
    # Only on the stop command: `aegis node stop` would look for the wrong node.
    path = broken(
        tmp_path,
        "  - aegis node stop --config ~/aegis/node.yaml --node-id '{id}-{host}'",
        "  - aegis node stop --config ~/aegis/node.yaml",
    )
    assert_invalid(validate(path), path, "node type edge-cpu", "share one node id")


def test_node_type_without_its_node_config_is_rejected(tmp_path: Path) -> None:
    path = broken(tmp_path, "  edge-cpu:\n", "  edge-arm:\n")
    assert_invalid(
        validate(path), path, "node type edge-arm", "no NodeConfig cluster_configs/nodes/edge-arm"
    )


def test_ports_must_match_the_deployment_document(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes"
    shutil.copytree(CONFIGS / "nodes", nodes)
    orch = nodes / "orchestrator.yaml"
    text = orch.read_text().replace('bind: "0.0.0.0"', 'bind: "127.0.0.1"')
    orch.write_text(text.replace("rest_port: 8080", "rest_port: 9090"))
    path = broken(tmp_path, '"~/aegis/nodes": cluster_configs/nodes', f'"~/aegis/nodes": {nodes}')
    text = path.read_text().replace("FromPort: 50051", "FromPort: 50052")
    path.write_text(text)
    result = validate(path)
    assert_invalid(result, path, "node type orchestrator", "spec.api.rest_port", "9090", "8080")
    assert_invalid(result, path, "node type orchestrator", "spec.api.bind", "loopback")
    assert_invalid(result, path, "worker_start_ray_commands[1]", "port 8080", "listens on 9090")
    assert_invalid(result, path, "provider.security_group.IpPermissions", "50051")


def test_a_security_group_that_opens_rays_ports_to_the_world_is_rejected(tmp_path: Path) -> None:
    rule = (
        "    IpPermissions:\n"
        "      - IpProtocol: tcp\n"
        "        FromPort: 6379\n"
        "        ToPort: 6379\n"
        "        IpRanges: [{CidrIp: 0.0.0.0/0}]\n"
        "      - IpProtocol: \"-1\"\n"
        "        Ipv6Ranges: [{CidrIpv6: \"::/0\"}]\n"
    )
    path = broken(tmp_path, "    IpPermissions:\n", rule)
    result = validate(path)
    assert_invalid(result, path, "IpPermissions[0]", "6379 (Ray GCS)", "0.0.0.0/0")
    assert_invalid(result, path, "IpPermissions[1]", "Ray workers", "::/0")


def test_onprem_hosts_need_addresses_and_their_node_configs(tmp_path: Path) -> None:
    path = broken(
        tmp_path,
        "worker_ips: [10.0.0.11, 10.0.0.12]",
        "worker_ips: [10.0.0.11, 10.0.0.13, edge-3.lan]",
        source=CONFIGS / "onprem.yaml",
    )
    result = validate(path)
    assert_invalid(result, path, "host 10.0.0.13", "no NodeConfig")
    assert_invalid(result, path, "host edge-3.lan", "must be an IP address")


def test_unreadable_yaml_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("cluster_name: [unclosed\n")
    assert_invalid(validate(path), path, "YAML error")
    assert validate(tmp_path / "missing.yaml").exit_code == 2


# ---------------------------------------------------------------- node ids, secrets


def test_instance_node_id_fills_id_and_short_host_name() -> None:
    host = "ip-10-0-1-23.us-west-2.compute.internal"
    assert instance_node_id("{id}-{host}", "edge-gpu-1", host) == "edge-gpu-1-ip-10-0-1-23"
    assert instance_node_id("{id}", "edge-gpu-1", host) == "edge-gpu-1"
    long = instance_node_id("{id}-{host}", "edge-gpu-1", "x" * 80 + ".lan")
    assert len(long) == 63 and long.startswith("edge-gpu-1-xxx")
    with pytest.raises(ValueError, match=r"\{zone\}"):
        instance_node_id("{id}-{zone}", "edge-gpu-1", host)


def test_overrides_are_validated_like_the_node_config() -> None:
    cfg = node_config(CONFIGS / "nodes" / "edge-cpu.yaml")
    mine = with_overrides(
        cfg,
        source="edge-cpu.yaml",
        node_id="edge-cpu-1-h1",
        orchestrator_url="http://10.0.0.5:8080",
    )
    assert mine.spec.node.id == "edge-cpu-1-h1"
    assert mine.spec.runtime.orchestrator_url == "http://10.0.0.5:8080"
    assert ray_start_args(mine).labels[LABEL_NODE_ID] == "edge-cpu-1-h1"
    with pytest.raises(ManifestError) as err:
        with_overrides(cfg, source="edge-cpu.yaml", node_id="Edge_1")
    assert "spec.node.id" in str(err.value) and "Edge_1" in str(err.value)


def test_node_start_rejects_a_bad_instance_id_before_starting_anything(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "node", "start", "--config", str(CONFIGS / "nodes" / "edge-cpu.yaml"),
            "--node-id", "{id}_{host}",
        ],
        env={"AEGIS_HOME": str(tmp_path), "AEGIS_JOIN_TOKEN": "x" * 20},
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "spec.node.id" in result.output
    assert not (tmp_path / "nodes").exists()


def test_a_join_token_on_the_command_line_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    """`ps` shows every process's arguments to every user: secrets come from files or the
    environment only (issue 12, item 8)."""
    result = runner.invoke(
        app,
        [
            "node", "start", "--config", str(CONFIGS / "nodes" / "edge-cpu.yaml"),
            "--join-token", "x" * 20,
        ],
        env={"AEGIS_HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "--join-token" in result.output and "AEGIS_JOIN_TOKEN" in result.output
    assert "x" * 20 not in result.output
    assert not any(tmp_path.iterdir())


def test_join_token_file_too_short_exits_2(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("short\n")
    result = runner.invoke(
        app,
        [
            "node", "start", "--config", str(CONFIGS / "nodes" / "edge-cpu.yaml"),
            "--join-token-file", str(token),
        ],
        env={"AEGIS_HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "--join-token-file" in result.output and "16 characters" in result.output


def test_cluster_secret_writes_a_private_file_once(tmp_path: Path) -> None:
    path = tmp_path / ".aegis" / "cluster-join-secret"
    result = runner.invoke(app, ["cluster", "secret", str(path)])
    assert result.exit_code == 0, result.output
    first = path.read_text().strip()
    assert len(first) >= 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = runner.invoke(app, ["cluster", "secret", str(path)])
    assert again.exit_code == 0 and "kept" in again.output
    assert path.read_text().strip() == first
    printed = runner.invoke(app, ["cluster", "secret"]).output.strip()
    assert printed.startswith("aegis_") and printed != first


def test_edges_with_a_join_secret_need_a_head_that_accepts_it(tmp_path: Path) -> None:
    path = broken(tmp_path, "    --join-secret-file ~/aegis/cluster-join-secret\n", "")
    assert_invalid(validate(path), path, "head_start_ray_commands", "--join-secret-file")


@pytest.mark.parametrize(
    "url", ["https://$RAY_HEAD_IP:${AEGIS_API_PORT:-8080}", "http://$RAY_HEAD_IP"]
)
def test_orchestrator_url_must_be_plain_http_with_the_api_port(tmp_path: Path, url: str) -> None:
    path = broken(tmp_path, "http://$RAY_HEAD_IP:${AEGIS_API_PORT:-8080}", url)
    assert_invalid(validate(path), path, "worker_start_ray_commands[1]", "--orchestrator-url")


# ---------------------------------------------------------------- several orchestrators (HA)

_NO_MORE_ORCHESTRATORS = """  orchestrator-2:
    min_workers: 0
    max_workers: 0"""


def _orchestrators(low: int, high: int) -> str:
    return f"  orchestrator-2:\n    min_workers: {low}\n    max_workers: {high}"


def test_more_orchestrators_need_replicas_and_shared_services(tmp_path: Path) -> None:
    path = broken(tmp_path, _NO_MORE_ORCHESTRATORS, _orchestrators(1, 1))
    result = validate(path)
    assert_invalid(result, path, "node type orchestrator", "spec.api.orchestrators", "1, but")
    assert_invalid(result, path, "node type orchestrator", "spec.database.url", "PostgreSQL")
    assert_invalid(result, path, "node type orchestrator", "spec.temporal.address")
    assert_invalid(result, path, "node type orchestrator", "spec.secrets.address", "OpenBao")


def test_ha_layout_validates_with_its_first_orchestrators_config(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes"
    shutil.copytree(CONFIGS / "nodes", nodes)
    shutil.copy(nodes / "orchestrator-ha.yaml", nodes / "orchestrator.yaml")
    text = AWS.read_text().replace(_NO_MORE_ORCHESTRATORS, _orchestrators(1, 1))
    text = text.replace('"~/aegis/nodes": cluster_configs/nodes', f'"~/aegis/nodes": {nodes}')
    path = tmp_path / "aws.yaml"
    path.write_text(text)
    result = validate(path)
    assert result.exit_code == 0, result.output
    assert "2 orchestrators: put a load balancer" in result.output
    # One more orchestrator than the first one's config says.
    path.write_text(text.replace(_orchestrators(1, 1), _orchestrators(2, 2)))
    assert_invalid(validate(path), path, "spec.api.orchestrators", "3 orchestrator(s)")


@pytest.mark.parametrize(
    ("low", "high", "fragment"), [(1, 2, "not autoscaled"), (3, 3, "4 orchestrators: 1 to 3")]
)
def test_orchestrator_counts_are_fixed_and_at_most_three(
    tmp_path: Path, low: int, high: int, fragment: str
) -> None:
    path = broken(tmp_path, _NO_MORE_ORCHESTRATORS, _orchestrators(low, high))
    assert_invalid(validate(path), path, fragment)


def _start(tmp_path: Path, text: str, *args: str, **extra: str) -> Any:
    path = tmp_path / "node.yaml"
    path.write_text(text)
    home = tmp_path / "home"
    env = {"AEGIS_HOME": str(home), "AEGIS_OPENBAO_SECRET_ID": "x"} | extra
    result = runner.invoke(app, ["node", "start", "--config", str(path), *args], env=env)
    assert not (home / "up.json").exists() and not (home / "nodes").exists()  # nothing started
    return result


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ('  database:\n    url: "postgresql://aegis@db.internal:5432/aegis"', "  database:\n"
         '    url: "postgresql://aegis@127.0.0.1:5432/aegis"', "loopback address (127.0.0.1"),
        ('  temporal:\n    address: "temporal.internal:7233"\n', "", "Temporal; set spec.temporal"),
        ('  secrets:\n    address: "https://openbao.internal:8200"\n    approle: {role_id: '
         '"aegis-control-plane", secret_id_env: AEGIS_OPENBAO_SECRET_ID}\n', "", "OpenBao; set"),
        ('bind: "0.0.0.0"', 'bind: "127.0.0.1"', "spec.api.bind is 127.0.0.1"),
    ],
)  # fmt: skip
def test_first_of_several_orchestrators_refuses_what_one_machine_only_reaches(
    tmp_path: Path, old: str, new: str, fragment: str
) -> None:
    text = (CONFIGS / "nodes" / "orchestrator-ha.yaml").read_text()
    assert text.count(old) == 1
    result = _start(tmp_path, text.replace(old, new))
    assert result.exit_code == 2, result.output
    assert "spec.api.orchestrators is 2" in result.output and fragment in result.output


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('  database: {url: "postgresql://aegis@db.internal:5432/aegis"}\n', "spec.database"),
        ("  api: {rest_port: 9090}\n", "spec.api"),
    ],
)
def test_joining_orchestrator_names_no_services_or_ports_of_its_own(
    tmp_path: Path, extra: str, key: str
) -> None:
    text = (CONFIGS / "nodes" / "orchestrator-2.yaml").read_text() + extra
    result = _start(tmp_path, text, AEGIS_JOIN_TOKEN="x" * 20)
    assert result.exit_code == 2, result.output
    assert f"{key}: set on the first orchestrator" in result.output


def test_rays_tls_on_the_head_needs_it_on_every_worker(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes"
    shutil.copytree(CONFIGS / "nodes", nodes)
    head = nodes / "orchestrator.yaml"
    files = "{cert_file: /etc/aegis/ray.pem, key_file: /etc/aegis/ray.key, ca_file: /etc/ca.pem}"
    head.write_text(head.read_text().replace("\n  api:", f"\n  ray_tls: {files}\n  api:", 1))
    assert node_config(head).spec.ray_tls is not None
    text = AWS.read_text()
    text = text.replace('"~/aegis/nodes": cluster_configs/nodes', f'"~/aegis/nodes": {nodes}')
    path = tmp_path / "aws.yaml"
    path.write_text(text)
    assert_invalid(validate(path), path, "node type edge-cpu", "spec.ray_tls", "missing")
