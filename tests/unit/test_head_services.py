"""Which PostgreSQL, Temporal and API address a head uses: environment, then NodeConfig, then
the embedded defaults; and the settings read from the environment in one place."""

import copy
import os
from pathlib import Path
from typing import Any

import pytest

from aegis_ray.adapters.files import write_private
from aegis_ray.adapters.ray import head as ray_head
from aegis_ray.core.models.loading import parse_node_config
from aegis_ray.node import stack
from aegis_ray.node.services import ServiceConfigError, external_database_url, head_settings
from aegis_ray.settings import Settings

HEAD: dict[str, Any] = {
    "apiVersion": "100monkeys.ai/v1",
    "kind": "NodeConfig",
    "metadata": {"name": "orch"},
    "spec": {
        "node": {"id": "orch-1", "type": "orchestrator"},
        "database": {"url": "postgresql://aegis@db.internal:5432/aegis"},
        "temporal": {
            "address": "temporal.internal:7233",
            "namespace": "prod",
            "task_queue": "aegis-prod",
        },
        "api": {"bind": "0.0.0.0", "rest_port": 9080, "grpc_port": 9051},
    },
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """An environment with no AEGIS_* variable but AEGIS_HOME (a fresh folder)."""
    for key in list(os.environ):
        if key.startswith("AEGIS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AEGIS_HOME", str(tmp_path / "home"))
    return monkeypatch


def test_the_node_config_names_the_external_services_and_the_api(env: pytest.MonkeyPatch) -> None:
    s = head_settings(Settings(), parse_node_config(HEAD))
    assert s.database_url == "postgresql://aegis@db.internal:5432/aegis"
    assert (s.temporal_address, s.temporal_namespace, s.task_queue) == (
        "temporal.internal:7233",
        "prod",
        "aegis-prod",
    )
    assert (s.api_host, s.api_port, s.grpc_port) == ("0.0.0.0", 9080, 9051)
    assert external_database_url(s) == "postgresql://aegis@db.internal:5432/aegis"


def test_the_environment_wins_over_the_node_config(env: pytest.MonkeyPatch) -> None:
    env.setenv("AEGIS_DATABASE_URL", "postgresql://other@db2/aegis")
    env.setenv("AEGIS_TEMPORAL_NAMESPACE", "staging")
    env.setenv("AEGIS_API_PORT", "28080")
    s = head_settings(Settings(), parse_node_config(HEAD))
    assert s.database_url == "postgresql://other@db2/aegis"
    assert (s.temporal_address, s.temporal_namespace) == ("temporal.internal:7233", "staging")
    assert (s.api_host, s.api_port) == ("0.0.0.0", 28080)


def test_without_service_sections_everything_is_embedded(env: pytest.MonkeyPatch) -> None:
    doc = copy.deepcopy(HEAD)
    del doc["spec"]["database"], doc["spec"]["temporal"]
    s = head_settings(Settings(), parse_node_config(doc))
    assert s.database_url is None and s.temporal_address is None
    assert external_database_url(s) is None
    assert stack.temporal(s).namespace == "default"


def test_the_password_comes_from_the_environment(env: pytest.MonkeyPatch) -> None:
    env.setenv("AEGIS_DATABASE_PASSWORD", "p@ss/w:rd")
    s = head_settings(Settings(), parse_node_config(HEAD))
    assert external_database_url(s) == "postgresql://aegis:p%40ss%2Fw%3Ard@db.internal:5432/aegis"
    assert "p@ss" not in repr(s)  # a secret in settings is never shown


def test_the_password_comes_from_a_private_file(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "db.password"
    write_private(path, "from-file\n")
    env.setenv("AEGIS_DATABASE_PASSWORD_FILE", str(path))
    s = head_settings(Settings(), parse_node_config(HEAD))
    assert external_database_url(s) == "postgresql://aegis:from-file@db.internal:5432/aegis"
    path.chmod(0o644)
    with pytest.raises(ServiceConfigError, match=r"AEGIS_DATABASE_PASSWORD_FILE .*mode 0644"):
        external_database_url(s)


@pytest.mark.parametrize(
    ("variables", "fragment"),
    [
        ({"AEGIS_DATABASE_PASSWORD": "x"}, "no external database"),
        (
            {"AEGIS_DATABASE_URL": "postgresql://u:a@db/x", "AEGIS_DATABASE_PASSWORD": "b"},
            "already holds a password",
        ),
        (
            {"AEGIS_DATABASE_URL": "postgresql://db/x", "AEGIS_DATABASE_PASSWORD": "b"},
            "name the user",
        ),
        (
            {"AEGIS_DATABASE_PASSWORD": "a", "AEGIS_DATABASE_PASSWORD_FILE": "/etc/x"},
            "both AEGIS_DATABASE_PASSWORD and AEGIS_DATABASE_PASSWORD_FILE",
        ),
    ],
)
def test_contradicting_database_settings_are_refused_before_anything_starts(
    env: pytest.MonkeyPatch, variables: dict[str, str], fragment: str
) -> None:
    for key, value in variables.items():
        env.setenv(key, value)
    settings = Settings()
    with pytest.raises(ServiceConfigError, match=fragment):
        stack.up(settings, None, lambda _: None)
    assert not settings.home.exists()  # nothing was started, not even AEGIS_HOME made


def test_settings_read_once_from_the_environment(env: pytest.MonkeyPatch) -> None:
    assert (Settings().register_wait_s, Settings().orphan_grace_s) == (300.0, 60.0)
    assert Settings().ray_arg_list == []
    env.setenv("AEGIS_REGISTER_WAIT_S", "12.5")
    env.setenv("AEGIS_ORPHAN_GRACE_S", "5")
    env.setenv("AEGIS_RAY_ARGS", "--port=31379 --labels='a=b c'")
    s = Settings()
    assert (s.register_wait_s, s.orphan_grace_s) == (12.5, 5.0)
    assert s.ray_arg_list == ["--port=31379", "--labels=a=b c"]


def test_a_ray_token_from_the_environment_is_kept_under_aegis_home(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env.setenv("HOME", str(tmp_path / "user"))
    env.setenv("RAY_AUTH_MODE", "token")
    env.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    env.setenv("RAY_AUTH_TOKEN", "t0ken")
    home = Settings().home
    auth = ray_head.auth_for_existing_cluster(home)
    assert auth == ray_head.RayAuth("token", str(home / "ray_auth_token.attached"))
    assert Path(str(auth.token_path)).read_text() == "t0ken"
    assert not (tmp_path / "user" / ".aegis").exists()
