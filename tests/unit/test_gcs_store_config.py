"""Where the Ray head keeps its state (GCS fault tolerance): NodeConfig spec.gcs and AEGIS_GCS_*,
checked by the same rules, and what `ray start --head` is given for it."""

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from aegis_ray.adapters.files import write_private
from aegis_ray.adapters.ray.head import GcsStoreArgs, reconnect_env
from aegis_ray.core.models.loading import ManifestError, parse_node_config
from aegis_ray.node import stack
from aegis_ray.node.services import GcsStore, ServiceConfigError, gcs_store, head_settings
from aegis_ray.settings import Settings

HEAD: dict[str, Any] = {
    "apiVersion": "100monkeys.ai/v1",
    "kind": "NodeConfig",
    "metadata": {"name": "orch"},
    "spec": {"node": {"id": "orch-1", "type": "orchestrator"}},
}


def head(gcs: dict[str, Any] | None = None, **node: Any) -> dict[str, Any]:
    doc = copy.deepcopy(HEAD)
    doc["spec"]["node"] |= node
    if gcs is not None:
        doc["spec"]["gcs"] = gcs
    return doc


def problems(doc: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ManifestError) as err:
        parse_node_config(doc)
    return [(p.path, p.message) for p in err.value.problems]


def test_by_default_the_state_is_in_an_embedded_redis(env: pytest.MonkeyPatch) -> None:
    s = head_settings(Settings(), parse_node_config(head()))
    assert gcs_store(s) == GcsStore("embedded")
    assert (s.redis_port, s.gcs_redis_bind, s.gcs_reconnect_timeout_s) == (6380, "127.0.0.1", 120)
    assert stack.redis(s).address == "127.0.0.1:6380"


def test_the_node_config_names_an_external_redis_and_its_password_file(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "redis.password"
    write_private(secret, "s3cret\n")
    doc = head({"redis_url": "rediss://redis.internal:6380", "redis_password_file": str(secret)})
    store = gcs_store(head_settings(Settings(), parse_node_config(doc)))
    assert store == GcsStore("external", "rediss://redis.internal:6380", "s3cret")
    assert store.redis_address == "rediss://redis.internal:6380"  # TLS: Ray takes the URL
    plain = GcsStore("external", "redis://redis.internal:6379")
    assert plain.redis_address == "redis.internal:6379"
    secret.chmod(0o644)
    with pytest.raises(ServiceConfigError, match="mode 0644"):
        gcs_store(head_settings(Settings(), parse_node_config(doc)))


def test_the_environment_wins_and_is_checked_like_the_node_config(
    env: pytest.MonkeyPatch,
) -> None:
    doc = parse_node_config(head({"redis_url": "redis://a:6379"}))
    env.setenv("AEGIS_GCS_REDIS_URL", "redis://b:6379")
    assert gcs_store(head_settings(Settings(), doc)) == GcsStore("external", "redis://b:6379")
    env.setenv("AEGIS_GCS_STORE", "memory")  # and the URL the config gives is then not used
    with pytest.raises(ServiceConfigError, match=r"spec.gcs.redis_url \(or AEGIS_GCS_REDIS_URL\)"):
        gcs_store(head_settings(Settings(), doc))
    env.delenv("AEGIS_GCS_REDIS_URL")
    assert gcs_store(head_settings(Settings(), parse_node_config(head()))) == GcsStore("memory")
    env.delenv("AEGIS_GCS_STORE")
    env.setenv("AEGIS_GCS_REDIS_URL", "http://r:6379")
    with pytest.raises(ServiceConfigError, match="not a Redis address"):
        gcs_store(Settings())


@pytest.mark.parametrize(
    ("gcs", "path", "fragment"),
    [
        ({"redis_url": "redis.internal:6379"}, "spec.gcs.redis_url", "not a Redis address"),
        ({"redis_url": "redis://r:6379/2"}, "spec.gcs.redis_url", "database 0"),
        ({"redis_password_file": "/etc/p"}, "spec.gcs.redis_password_file", "only an external"),
        ({"store": "memory", "redis_url": "redis://r:1"}, "spec.gcs.redis_url", "store: memory"),
        ({"store": "memory", "bind": "0.0.0.0"}, "spec.gcs.bind", "store: memory"),
        ({"redis_url": "redis://r:6379", "bind": "0.0.0.0"}, "spec.gcs.bind", "none is started"),
        ({"store": "rocksdb"}, "spec.gcs.store", "'redis' or 'memory'"),
        ({"url": "redis://r:1"}, "spec.gcs.url", "unknown key"),
    ],
)
def test_gcs_sections_that_would_not_be_used_as_written_are_refused(
    gcs: dict[str, Any], path: str, fragment: str
) -> None:
    found = problems(head(gcs))
    assert [p for p, _ in found] == [path]
    assert fragment in found[0][1]


def test_a_password_in_the_redis_url_is_refused_and_not_echoed() -> None:
    doc = head({"redis_url": "redis://:hunter2@r:6379"})
    with pytest.raises(ManifestError) as err:
        parse_node_config(doc)
    assert [p.path for p in err.value.problems] == ["spec.gcs.redis_url"]
    assert "hunter2" not in str(err.value) and "hunter2" not in json.dumps(err.value.to_dict())


def test_an_edge_refuses_a_gcs_section_it_would_never_use() -> None:
    doc = head({"store": "memory"}, type="edge", resources={"cpu_cores": 1, "memory_gb": 1})
    doc["spec"]["runtime"] = {"orchestrator_url": "http://orch:8080"}
    assert [p for p, _ in problems(doc)] == ["spec.gcs"]


def test_ray_start_gets_the_redis_address_namespace_and_reconnect_timeout() -> None:
    args = GcsStoreArgs("127.0.0.1:6380", "pw", "aegis_ab12", 120)
    assert args.args() == ["--redis-password", "pw"]
    assert args.env() == {
        "RAY_REDIS_ADDRESS": "127.0.0.1:6380",
        "RAY_external_storage_namespace": "aegis_ab12",
        "RAY_gcs_rpc_server_reconnect_timeout_s": "120",
    }
    assert GcsStoreArgs("r:6379", "", "n", 60).args() == []  # a Redis without a password
    assert reconnect_env(None) == {}


def test_a_gcs_store_chosen_for_an_attached_head_is_refused(env: pytest.MonkeyPatch) -> None:
    env.setenv("AEGIS_RAY_ADDRESS", "10.0.0.5:6379")
    env.setenv("AEGIS_GCS_REDIS_PORT", "7000")
    settings = Settings()
    with pytest.raises(ServiceConfigError, match="AEGIS_GCS_REDIS_PORT: aegis attaches"):
        stack._refuse_gcs_store_when_attaching(settings, None)
    env.delenv("AEGIS_GCS_REDIS_PORT")
    stack._refuse_gcs_store_when_attaching(Settings(), None)  # nothing chosen: fine
    node = parse_node_config(head({"store": "memory"}))
    with pytest.raises(ServiceConfigError, match="spec.gcs: aegis attaches"):
        stack._refuse_gcs_store_when_attaching(Settings(), node)
