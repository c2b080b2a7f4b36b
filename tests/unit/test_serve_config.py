"""The control plane's Serve config ships in the package; serve/aegis.yaml is the same file."""

from pathlib import Path

from aegis_ray.node import stack

REPO = Path(__file__).resolve().parents[2]


def test_serve_deploy_file_is_the_packaged_one() -> None:
    packaged = REPO / "aegis_ray" / "node" / stack.SERVE_CONFIG
    assert (REPO / "serve" / "aegis.yaml").read_bytes() == packaged.read_bytes()


def test_aegis_up_reads_the_packaged_serve_config() -> None:
    cfg = stack.serve_config()
    app = next(a for a in cfg["applications"] if a["name"] == stack.SERVE_APP)
    assert app["import_path"] == "aegis_ray.api.deployment:build_app"
    assert cfg["grpc_options"]["grpc_servicer_functions"]


def test_the_app_args_are_this_nodes_services() -> None:
    state = stack.UpState(
        database_url="postgresql://aegis@db.internal/aegis", temporal_address="t.internal:7233"
    )
    settings = stack.Settings(temporal_namespace="prod", task_queue="aegis-prod")
    args = stack.control_plane_args(state, settings)
    assert args["database_url"] == "postgresql://aegis@db.internal/aegis"
    assert (args["temporal_address"], args["temporal_namespace"], args["task_queue"]) == (
        "t.internal:7233",
        "prod",
        "aegis-prod",
    )
