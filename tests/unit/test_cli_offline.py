"""CLI commands that need no cluster: validation, schemas, and the exit code for bad input."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from aegis_ray.cli.main import app

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_config_validate_accepts_every_shipped_example() -> None:
    files = sorted((REPO / "examples").glob("*.yaml")) + sorted(
        (REPO / "cluster_configs" / "nodes").glob("*.yaml")
    )
    assert files
    for f in files:
        result = runner.invoke(app, ["config", "validate", str(f)])
        assert result.exit_code == 0, (f, result.output)
        assert "valid" in result.output


def test_config_validate_names_file_field_and_value_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "agent.yaml"
    text = (REPO / "examples" / "hello-agent.yaml").read_text()
    bad.write_text(text.replace("image_pull_policy: Never", "image_pull_policy: Sometimes"))
    result = runner.invoke(app, ["config", "validate", str(bad)])
    assert result.exit_code == 2
    assert str(bad) in result.output
    assert "spec.runtime.image_pull_policy" in result.output and "Sometimes" in result.output


def test_config_validate_missing_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2


def test_schema_prints_json_schema_for_both_kinds() -> None:
    for kind, prop in (("agent", "apiVersion"), ("node", "spec")):
        result = runner.invoke(app, ["schema", kind])
        assert result.exit_code == 0
        assert prop in json.loads(result.output)["properties"]
    assert runner.invoke(app, ["schema", "robot"]).exit_code == 2


def test_up_refuses_an_edge_node_config(tmp_path: Path) -> None:
    edge = tmp_path / "edge.yaml"
    edge.write_text(
        "apiVersion: 100monkeys.ai/v1\nkind: NodeConfig\nmetadata: {name: e}\nspec:\n"
        "  node: {id: e1, type: worker, resources: {cpu_cores: 1, memory_gb: 1}}\n"
        "  runtime: {orchestrator_url: 'http://127.0.0.1:8080'}\n"
    )
    result = runner.invoke(app, ["up", "--config", str(edge)], env={"AEGIS_HOME": str(tmp_path)})
    assert result.exit_code == 2
    assert "spec.node.type" in result.output and "edge" in result.output
    assert not (tmp_path / "up.json").exists()  # nothing was started


UNWIRED_HEAD = (
    "apiVersion: 100monkeys.ai/v1\nkind: NodeConfig\nmetadata: {name: o}\nspec:\n"
    "  node: {id: o1, type: orchestrator}\n"
    "  storage: {backend: local, path: /srv/aegis}\n"
)


def test_config_validate_refuses_a_key_nothing_reads_yet(tmp_path: Path) -> None:
    config = tmp_path / "orch.yaml"
    config.write_text(UNWIRED_HEAD)
    result = runner.invoke(app, ["config", "validate", str(config)])
    assert result.exit_code == 2
    assert f"{config}: spec.storage: not wired yet" in " ".join(result.output.split())


def test_up_and_node_start_refuse_unwired_keys_before_starting_anything(tmp_path: Path) -> None:
    config = tmp_path / "orch.yaml"
    config.write_text(UNWIRED_HEAD)
    home = {"AEGIS_HOME": str(tmp_path / "home")}
    for command in (["up", "--config", str(config)], ["node", "start", "--config", str(config)]):
        result = runner.invoke(app, command, env=home)
        assert result.exit_code == 2, (command, result.output)
        assert "spec.storage" in result.output and "not wired yet" in result.output
    assert not (tmp_path / "home").exists()  # nothing was started
