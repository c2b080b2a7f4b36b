"""The operator's CLI without a cluster: contexts, help with examples, tables that fit a
terminal, durations, the cluster feed's wording, and the metrics' definitions."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from aegis_ray import Client
from aegis_ray.adapters import metrics
from aegis_ray.cli import render
from aegis_ray.cli.executions import seconds
from aegis_ray.cli.main import app
from aegis_ray.core.registry import status_change
from aegis_ray.sdk.contexts import ContextError, load

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _env(tmp_path: Path) -> dict[str, str]:
    return {"AEGIS_CONFIG": str(tmp_path / "config.yaml"), "AEGIS_HOME": str(tmp_path / "home")}


def test_context_set_use_list_and_the_client_uses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _env(tmp_path)
    token = tmp_path / "lab.token"
    token.write_text("secret-of-lab\n")
    done = runner.invoke(
        app,
        ["context", "set", "lab", "--api-url", "http://10.9.9.9:8080", "--token-file", str(token)],
        env=env,
    )
    assert done.exit_code == 0, done.output
    runner.invoke(
        app, ["context", "set", "edge", "--api", "grpc", "--grpc-address", "h:1"], env=env
    )
    listed = runner.invoke(app, ["context", "list"], env=env).output
    assert re.search(r"^\*\s+lab\s", listed, re.M) and "edge" in listed
    assert runner.invoke(app, ["context", "use", "edge"], env=env).exit_code == 0
    assert runner.invoke(app, ["context", "use", "nope"], env=env).exit_code == 4
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AEGIS_API_URL", raising=False)
    monkeypatch.delenv("AEGIS_API_TOKEN", raising=False)
    monkeypatch.delenv("AEGIS_API", raising=False)
    lab = Client.from_env(context="lab")
    assert lab.transport.target == "http://10.9.9.9:8080"
    assert lab.transport.http.headers["Authorization"] == "Bearer secret-of-lab"
    monkeypatch.setenv("AEGIS_API_URL", "http://127.0.0.2:1")  # the environment wins
    assert Client.from_env(context="lab").transport.target == "http://127.0.0.2:1"
    monkeypatch.setenv("AEGIS_API_TOKEN", "t")
    assert Client.from_env().transport.target == "gRPC h:1"  # the current context: edge


def test_unknown_context_keys_are_refused_with_file_key_and_value(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("contexts:\n  lab:\n    api_urll: http://x:8080\n")
    with pytest.raises(ContextError) as err:
        load(config)
    text = str(err.value)
    assert str(config) in text and "contexts.lab.api_urll" in text and "http://x:8080" in text
    done = runner.invoke(app, ["list"], env=_env(tmp_path))
    assert done.exit_code == 2 and "api_urll" in done.output


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            out += _commands(cmd, (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


def test_every_command_has_examples_in_its_help() -> None:
    commands = _commands(typer.main.get_command(app))  # type: ignore[arg-type]
    assert len(commands) > 25
    missing = [c for c in commands if "Examples" not in (runner.invoke(app, [*c, "--help"]).output)]
    assert missing == []


def test_version_and_completion_are_there() -> None:
    assert runner.invoke(app, ["--version"]).output.startswith("aegis ")
    assert "--install-completion" in runner.invoke(app, ["--help"]).output


def test_tables_fit_the_terminal_by_cutting_only_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import UTC, datetime, timedelta

    monkeypatch.setattr(render, "console", Console(width=80, force_terminal=True))
    # An age that does not grow with the clock ("30s"): the columns' widths stay the same.
    created = (datetime.now(UTC) - timedelta(seconds=30)).isoformat()
    rec = {
        "id": "7a3f2feb-1111-4222-8333-444455556666",
        "name": "hello-agent",
        "state": "FAILED",
        "node_id": "worker-node-with-a-long-name",
        "exit_code": 3,
        "created_at": created,
        "reason": "exit code 3 " + "and a very long explanation " * 5,
    }
    with render.console.capture() as out:
        render.console.print(render.executions_table([rec]))
    lines = [line for line in out.get().splitlines() if line.strip()]
    plain = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in lines]
    assert all(len(line) <= 80 for line in plain), plain
    assert plain[1].startswith("7a3f2feb ") and "worker-node-with-a-long-name" in plain[1]
    assert plain[1].rstrip().endswith("…")
    # Piped: nothing is cut.
    monkeypatch.setattr(render, "console", Console(width=render._UNLIMITED))
    with render.console.capture() as out:
        render.console.print(render.executions_table([rec], render.Output.wide))
    assert rec["reason"].strip() in out.get() and rec["id"] in out.get()


def test_ages_and_durations() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
    assert render.age("2026-11-30T11:59:18+00:00", now) == "42s"
    assert render.age("2026-11-30T11:55:00+00:00", now) == "5m"
    assert render.age("2026-11-30T09:00:00+00:00", now) == "3h"
    assert render.age("2026-11-27T12:00:00+00:00", now) == "3d"
    assert seconds("90", "--x") == 90 and seconds("5m", "--x") == 300
    assert seconds("1.5h", "--x") == 5400
    with pytest.raises(typer.Exit):
        seconds("soon", "--x")


def test_node_changes_are_worded_for_the_feed() -> None:
    assert status_change(None, "ready") == "joined"
    assert status_change("ready", "down").startswith("lost")
    assert status_change("down", "ready").startswith("back")
    assert status_change("ready", "draining").startswith("draining")
    assert status_change("draining", "ready").startswith("undrained")
    assert status_change("down", "gone").startswith("gone")


def test_pending_reasons_are_a_small_vocabulary() -> None:
    assert metrics.pending_reason(None) == "placing"
    assert metrics.pending_reason("waiting for capacity: 1 node fits, busy") == "capacity"
    assert metrics.pending_reason("attempt 1 lost (node n1 lost); retrying") == "retrying"


def test_metrics_are_exposed_in_prometheus_text() -> None:
    metrics.FINISHED.inc(state="SUCCEEDED", tenant="unit")
    metrics.API_REQUESTS.observe(0.02, transport="rest", route="/v1/x", code="200")
    body, content_type = metrics.exposition()
    text = body.decode()
    assert content_type.startswith("text/plain")
    assert 'aegis_executions_finished_total{state="SUCCEEDED",tenant="unit"}' in text
    assert 'aegis_api_request_seconds_bucket{code="200",le="0.025",route="/v1/x"' in text


def test_the_grafana_dashboard_asks_only_for_metrics_that_exist() -> None:
    dashboard = json.loads((REPO / "monitoring/grafana/aegis-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    names = set()
    for m in vars(metrics).values():
        if isinstance(m, metrics.Metric):
            base = m.name
            names |= {base, f"{base}_bucket", f"{base}_count", f"ray_{base}"}
    used = {n for e in exprs for n in re.findall(r"\b(?:ray_)?aegis_\w+", e)}
    assert used and used <= names, used - names


def test_rest_latency_is_measured_by_route_template_and_status() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from aegis_ray.api.rest import TimedRequests

    api = FastAPI()
    api.add_middleware(TimedRequests)

    @api.get("/v1/things/{thing_id}")
    def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    client = TestClient(api)
    for n in range(3):
        assert client.get(f"/v1/things/{n}").status_code == 200
    assert client.get("/nowhere").status_code == 404
    text = metrics.exposition()[0].decode()
    assert 'aegis_api_request_seconds_count{code="200",route="/v1/things/{thing_id}"' in text
    assert re.search(r'route="/v1/things/\{thing_id\}",transport="rest"\} 3\.0', text)
    assert 'code="404",route="unmatched"' in text
