"""Which PostgreSQL, Temporal and API address a head uses: environment, then NodeConfig, then
the embedded defaults; and the settings read from the environment in one place."""

import copy
from pathlib import Path
from typing import Any

import pytest

from aegis_ray.adapters.files import write_private
from aegis_ray.adapters.ray import head as ray_head
from aegis_ray.core.models.loading import parse_node_config
from aegis_ray.node import stack
from aegis_ray.node.services import (
    ServiceConfigError,
    external_database_url,
    external_openbao,
    head_settings,
)
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


SECRETS_SECTION: dict[str, Any] = {
    "address": "https://openbao.internal:8200",
    "approle": {"role_id": "aegis-role", "secret_id_env": "BAO_SECRET_ID"},
}


def test_no_openbao_configured_means_the_embedded_one(env: pytest.MonkeyPatch) -> None:
    assert external_openbao(Settings(), None) is None
    assert external_openbao(Settings(), parse_node_config(HEAD)) is None


def test_the_node_configs_openbao_is_used_with_its_approle(env: pytest.MonkeyPatch) -> None:
    doc = copy.deepcopy(HEAD)
    doc["spec"]["secrets"] = SECRETS_SECTION
    node = parse_node_config(doc)
    with pytest.raises(ServiceConfigError, match="BAO_SECRET_ID is not set"):
        external_openbao(Settings(), node)
    env.setenv("BAO_SECRET_ID", "the-secret-id")
    access = external_openbao(Settings(), node)
    assert access is not None
    assert (access.address, access.role_id, access.secret_id_env) == (
        "https://openbao.internal:8200",
        "aegis-role",
        "BAO_SECRET_ID",
    )
    assert access.secret_id() == "the-secret-id"
    assert "the-secret-id" not in str(stack.asdict(access))  # what travels names the variable


def test_the_environment_names_an_openbao_over_the_node_config(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret-id"
    secret_file.write_text("file-secret-id")
    secret_file.chmod(0o644)
    env.setenv("AEGIS_OPENBAO_ADDR", "https://bao.env:8200")
    with pytest.raises(ServiceConfigError, match="set AEGIS_OPENBAO_ROLE_ID too"):
        external_openbao(Settings(), None)
    env.setenv("AEGIS_OPENBAO_ROLE_ID", "env-role")
    with pytest.raises(ServiceConfigError, match="exactly one of AEGIS_OPENBAO_SECRET_ID"):
        external_openbao(Settings(), None)
    env.setenv("AEGIS_OPENBAO_SECRET_ID_FILE", str(secret_file))
    with pytest.raises(ServiceConfigError, match="mode 0644"):
        external_openbao(Settings(), None)
    secret_file.chmod(0o600)
    doc = copy.deepcopy(HEAD)
    doc["spec"]["secrets"] = SECRETS_SECTION
    access = external_openbao(Settings(), parse_node_config(doc))
    assert access is not None
    assert (access.address, access.role_id, access.secret_id_file) == (
        "https://bao.env:8200",
        "env-role",
        str(secret_file),
    )
    assert access.secret_id() == "file-secret-id"


def test_approle_settings_without_an_external_openbao_are_refused(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("AEGIS_OPENBAO_ROLE_ID", "role")
    with pytest.raises(ServiceConfigError, match="AEGIS_OPENBAO_ROLE_ID set but no external"):
        external_openbao(Settings(), None)
