"""What `aegis up` leaves on the host is its user's only (issue 12, item 8)."""

from __future__ import annotations

import os
import stat

from aegis_ray.adapters.postgres.embedded import SERVER_ROOT, EmbeddedPostgres
from tests.e2e.conftest import Stack
from tests.e2e.test_agent_network import probe_from_default_bridge


def test_aegis_home_and_everything_in_it_are_private(stack: Stack) -> None:
    assert stat.S_IMODE(stack.home.stat().st_mode) == 0o700
    exposed = []
    for root, dirs, files in os.walk(stack.home):
        for name in (*dirs, *files):
            st = os.lstat(os.path.join(root, name))
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
                exposed.append(f"{stat.S_IMODE(st.st_mode):04o} {os.path.join(root, name)}")
    print(f"{sum(len(f) for _, _, f in os.walk(stack.home))} files checked")
    assert exposed == [], "readable or writable by others:\n" + "\n".join(exposed)
    for name in ("temporal/temporal.db", "admin.token", "up.json", "ray_auth_token"):
        mode = stat.S_IMODE((stack.home / name).stat().st_mode)
        assert mode == 0o600, f"{name}: {mode:04o}"
    assert any((stack.home / "logs").iterdir())


def test_directories_above_aegis_home_keep_their_modes(stack: Stack) -> None:
    now = {p: p.stat().st_mode for p in stack.parent_modes}
    changed = {str(p): f"{m:o} -> {now[p]:o}" for p, m in stack.parent_modes.items() if now[p] != m}
    assert changed == {}


def test_postgres_under_root_keeps_its_files_in_its_own_user_directory(stack: Stack) -> None:
    pg = EmbeddedPostgres(stack.home / "postgres")
    assert pg.is_running()
    if os.geteuid() != 0:
        assert pg.server_dir == pg.data_dir
        return
    # The server user reaches its files through its own directory, not through AEGIS_HOME.
    assert pg.server_dir.parent == SERVER_ROOT
    assert stat.S_IMODE(SERVER_ROOT.stat().st_mode) == 0o700
    assert SERVER_ROOT.stat().st_uid == pg.pgdata.stat().st_uid != 0
    assert (pg.data_dir / "server-dir").read_text().strip() == str(pg.server_dir)


def test_grpc_of_aegis_up_answers_on_loopback_only(stack: Stack) -> None:
    """Serve's gRPC proxy binds every address; `aegis up` (API on loopback) keeps it there
    with an iptables rule: a container on Docker's bridge finds it closed, Ray's port open."""
    from aegis_ray.adapters import firewall
    from aegis_ray.node.stack import UpState

    state = UpState.load(stack.home / "up.json")
    assert state is not None
    grpc_port = int(stack.env["AEGIS_GRPC_PORT"])
    assert state.loopback_ports == [grpc_port]
    assert firewall.installed("INPUT", firewall.loopback_only_rule(grpc_port))
    node_ip, ray_port = state.ray_address.rsplit(":", 1)
    seen = probe_from_default_bridge([f"{node_ip}:{grpc_port}", f"{node_ip}:{ray_port}"])
    assert seen.split() == ["closed", f"{node_ip}:{grpc_port}", "open", f"{node_ip}:{ray_port}"]
    assert stack.client().health().status == "ok"  # over REST; gRPC tests use 127.0.0.1
