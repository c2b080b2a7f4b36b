"""TLS on REST and gRPC with a CA the test makes (issue 12, item 7).

One `aegis up` with `spec.api.tls` in its NodeConfig: REST (Serve's HTTPS) and gRPC (the TLS
front before Serve's gRPC proxy) answer clients that check the certificate against the CA;
plain HTTP and plain gRPC get nothing; a client trusting another CA refuses the server; Serve's
own gRPC port behind the front is closed to everything but loopback. The same stack runs Ray's
own mutual TLS (`spec.ray_tls`, issue 12 item 7's part between Ray's processes): an execution
runs through it, and Ray's GCS refuses a plain gRPC client and one with another CA's certificate.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from ray._private.services import get_node_ip_address
from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

from aegis_ray import Client
from aegis_ray.adapters import firewall
from aegis_ray.adapters.process import read_pid
from aegis_ray.node.stack import UpState
from aegis_ray.sdk.errors import ApiUnreachable
from tests.e2e.certs import Pki, make_pki
from tests.e2e.conftest import Stack, _stack_env, remove_home
from tests.e2e.manifests import agent_yaml
from tests.e2e.test_agent_network import probe_from_default_bridge
from tests.e2e.test_executions import wait_state

pytestmark = pytest.mark.e2e
REST, GRPC = 21080, 21051
PORTS = {
    "AEGIS_RAY_PORT": "21379",
    "AEGIS_RAY_DASHBOARD_PORT": "21265",
    "AEGIS_POSTGRES_PORT": "21432",
    "AEGIS_TEMPORAL_PORT": "21233",
    "AEGIS_TEMPORAL_UI_PORT": "21234",
    "AEGIS_OPENBAO_PORT": "21200",  # and 21201
}


@dataclass
class TlsStack:
    stack: Stack
    pki: Pki
    other: Pki  # another CA, that signed nothing of this stack


def _node_config(pki: Pki) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: 100monkeys.ai/v1
        kind: NodeConfig
        metadata: {{name: tls-node}}
        spec:
          node:
            id: tls-node
            type: hybrid
            tags: [local]
            resources: {{cpu_cores: 1, memory_gb: 1, disk_gb: 1}}
          api:
            bind: 127.0.0.1
            rest_port: {REST}
            grpc_port: {GRPC}
            tls: {{cert_file: {pki.cert_file}, key_file: {pki.key_file}, ca_file: {pki.ca_file}}}
          ray_tls: {{cert_file: {pki.cert_file}, key_file: {pki.key_file}, ca_file: {pki.ca_file}}}
        """
    )


@pytest.fixture(scope="module")
def tls() -> Iterator[TlsStack]:
    root = Path(tempfile.mkdtemp(prefix="aegis-tls-"))
    home = root / "home"
    # Ray's clients check the server's name: the certificate names the address Ray picks for
    # the node (its default route's), as a real node's would.
    pki = make_pki(root / "pki", ips=(get_node_ip_address(),))
    other = make_pki(root / "other", cn="another CA")
    config = root / "node.yaml"
    config.write_text(_node_config(pki))
    env = _stack_env(home)
    for key in ("AEGIS_API_PORT", "AEGIS_GRPC_PORT"):
        env.pop(key)
    env |= PORTS
    stack = Stack(home=home, env=env, api_url=f"https://127.0.0.1:{REST}", token="")
    up = stack.aegis("up", "--config", str(config), timeout=600)
    try:
        assert up.returncode == 0, f"aegis up failed:\n{up.stdout}\n{up.stderr}"
        stack.token = (home / "admin.token").read_text().strip()
        yield TlsStack(stack, pki, other)
    finally:
        down = stack.aegis("down", timeout=300)
        print(down.stdout, down.stderr)
        state_ports = [GRPC + 1]
        assert not any(
            firewall.installed("INPUT", firewall.loopback_only_rule(p)) for p in state_ports
        ), "aegis down left the loopback rule"
        remove_home(home)
        shutil.rmtree(root, ignore_errors=True)


def test_rest_and_grpc_round_trip_over_tls_checked_against_the_ca(tls: TlsStack) -> None:
    ca, token = str(tls.pki.ca_file), tls.stack.token
    rest = Client.rest(f"https://127.0.0.1:{REST}", token, ca_file=ca)
    grpc = Client.grpc(f"127.0.0.1:{GRPC}", token, ca_file=ca)
    for client in (rest, grpc):
        assert client.health().status == "ok"
        assert [n.node_id for n in client.nodes().items] == ["tls-node"]
    # The CLI finds the API, its scheme and the CA where `aegis up` recorded them.
    state = UpState.load(tls.stack.home / "up.json")
    assert state is not None and state.api_url.startswith("https://") and state.ca_file == ca
    for api in ("rest", "grpc"):
        done = tls.stack.aegis("--api", api, "nodes", "-o", "json", check=True)
        assert "tls-node" in done.stdout


def test_plain_http_and_plain_grpc_get_nothing(tls: TlsStack) -> None:
    token = tls.stack.token
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{REST}/health", timeout=10)
    with pytest.raises(ApiUnreachable):
        Client.grpc(f"127.0.0.1:{GRPC}", token, timeout=10).health()


def test_a_client_trusting_another_ca_refuses_the_server(tls: TlsStack) -> None:
    wrong, token = str(tls.other.ca_file), tls.stack.token
    for client in (
        Client.rest(f"https://127.0.0.1:{REST}", token, ca_file=wrong, timeout=10),
        Client.grpc(f"127.0.0.1:{GRPC}", token, ca_file=wrong, timeout=10),
    ):
        with pytest.raises(ApiUnreachable):
            client.health()
    done = tls.stack.aegis("--ca-file", wrong, "nodes")
    assert done.returncode == 3, done.stdout + done.stderr


def test_serves_own_grpc_port_behind_the_front_is_loopback_only(tls: TlsStack) -> None:
    state = UpState.load(tls.stack.home / "up.json")
    assert state is not None and state.loopback_ports == [GRPC + 1]
    assert read_pid(tls.stack.home / "grpc-tls.pid") is not None
    node_ip = state.ray_address.rsplit(":", 1)[0]
    seen = probe_from_default_bridge([f"{node_ip}:{GRPC + 1}"])
    assert seen.split() == ["closed", f"{node_ip}:{GRPC + 1}"]


def test_the_tls_front_costs_little_per_call(tls: TlsStack) -> None:
    """Figures only (no timing assertion): health calls over gRPC through the TLS front, and
    straight to Serve's proxy on its loopback-only port, one channel each."""
    token = tls.stack.token
    paths = {
        "TLS front": Client.grpc(f"127.0.0.1:{GRPC}", token, ca_file=str(tls.pki.ca_file)),
        "Serve direct": Client.grpc(f"127.0.0.1:{GRPC + 1}", token),
    }
    medians = {}
    for name, client in paths.items():
        client.health()  # connect (and handshake) first
        times = []
        for _ in range(30):
            start = time.perf_counter()
            assert client.health().status == "ok"
            times.append(time.perf_counter() - start)
        medians[name] = statistics.median(times) * 1000
    print("gRPC health, median of 30: " + ", ".join(f"{k} {v:.2f} ms" for k, v in medians.items()))


def _gcs_call(channel: grpc.Channel) -> grpc.StatusCode:
    """The status of one call to the GCS (listing nodes) over `channel`."""
    stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
    try:
        stub.GetAllNodeInfo(gcs_service_pb2.GetAllNodeInfoRequest(), timeout=10)
    except grpc.RpcError as err:
        return err.code()  # type: ignore[no-any-return]
    finally:
        channel.close()
    return grpc.StatusCode.OK


def _mtls(pki: Pki) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca_file.read_bytes(),
        private_key=pki.key_file.read_bytes(),
        certificate_chain=pki.cert_file.read_bytes(),
    )


def test_ray_runs_with_its_own_tls_an_execution_succeeds(tls: TlsStack) -> None:
    state = UpState.load(tls.stack.home / "up.json")
    assert state is not None and state.ray_tls == {
        "cert_file": str(tls.pki.cert_file),
        "key_file": str(tls.pki.key_file),
        "ca_file": str(tls.pki.ca_file),
    }
    c = Client.rest(f"https://127.0.0.1:{REST}", tls.stack.token, ca_file=str(tls.pki.ca_file))
    text = agent_yaml("ray-tls", "echo over-ray-tls; exit 0")
    rec = wait_state(c, c.submit(text, source="ray-tls.yaml").id, {"SUCCEEDED", "FAILED"}, 180)
    assert rec["state"] == "SUCCEEDED", rec


def test_rays_gcs_refuses_plain_grpc_and_another_cas_certificate(tls: TlsStack) -> None:
    gcs = UpState.load(tls.stack.home / "up.json").ray_address  # type: ignore[union-attr]
    # A client with a certificate of the cluster's CA gets through the handshake (the token
    # interceptor may then refuse it: the call was heard, which is all this checks).
    heard = _gcs_call(grpc.secure_channel(gcs, _mtls(tls.pki)))
    assert heard != grpc.StatusCode.UNAVAILABLE, heard
    assert _gcs_call(grpc.insecure_channel(gcs)) == grpc.StatusCode.UNAVAILABLE
    # Mutual TLS: a client certificate another CA signed is refused, too.
    foreign = grpc.secure_channel(
        gcs,
        grpc.ssl_channel_credentials(
            root_certificates=tls.pki.ca_file.read_bytes(),
            private_key=tls.other.key_file.read_bytes(),
            certificate_chain=tls.other.cert_file.read_bytes(),
        ),
    )
    assert _gcs_call(foreign) == grpc.StatusCode.UNAVAILABLE
