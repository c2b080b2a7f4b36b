"""TLS settings of the APIs: refused with the field and the file when unusable (issue 12, 7)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from pathlib import Path

import pytest

from aegis_ray.adapters.tls import TlsConfigError, _serve, server_context
from aegis_ray.core.models.loading import ManifestError, parse_node_config
from tests.e2e.certs import make_pki


def test_a_usable_pair_gives_a_context(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    assert isinstance(server_context(pki.cert_file, pki.key_file), ssl.SSLContext)


def test_missing_world_readable_and_mismatched_files_are_refused(tmp_path: Path) -> None:
    a, b = make_pki(tmp_path / "a"), make_pki(tmp_path / "b")
    with pytest.raises(TlsConfigError, match=r"spec.api.tls.cert_file: .*nope.pem: no such file"):
        server_context(tmp_path / "nope.pem", a.key_file)
    a.key_file.chmod(0o644)
    with pytest.raises(TlsConfigError, match=r"spec.api.tls.key_file: .* mode 0644"):
        server_context(a.cert_file, a.key_file)
    with pytest.raises(TlsConfigError, match=r"spec.api.tls: .* not a PEM certificate and its key"):
        server_context(a.cert_file, b.key_file)


def _node(tls: dict[str, str]) -> dict[str, object]:
    return {
        "apiVersion": "100monkeys.ai/v1",
        "kind": "NodeConfig",
        "metadata": {"name": "o"},
        "spec": {
            "node": {"id": "o", "type": "orchestrator"},
            "api": {"bind": "0.0.0.0", "tls": tls},
        },
    }


def test_node_config_tls_section_is_strict() -> None:
    cfg = parse_node_config(_node({"cert_file": "/c.pem", "key_file": "/k.pem"}))
    assert cfg.spec.api.tls is not None and cfg.spec.api.tls.ca_file is None
    with pytest.raises(ManifestError, match=r"spec.api.tls.certfile"):
        parse_node_config(_node({"certfile": "/c.pem", "key_file": "/k.pem"}))
    with pytest.raises(ManifestError, match=r"spec.api.tls.key_file"):
        parse_node_config(_node({"cert_file": "/c.pem"}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_grpc_front_passes_bytes_over_tls_and_refuses_another_ca(tmp_path: Path) -> None:
    """The front alone, in front of an echo server: TLS with ALPN h2 outside, plain inside."""
    pki, other = make_pki(tmp_path / "pki"), make_pki(tmp_path / "other", cn="another CA")
    backend = socket.create_server(("127.0.0.1", 0))
    backend_port = backend.getsockname()[1]

    def echo() -> None:
        conn, _ = backend.accept()
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    front = _free_port()
    ctx = server_context(pki.cert_file, pki.key_file)
    ctx.set_alpn_protocols(["h2"])
    loop = asyncio.new_event_loop()
    task = loop.create_task(_serve(("127.0.0.1", front), backend_port, ctx))
    threading.Thread(target=loop.run_forever, daemon=True).start()
    try:
        client = ssl.create_default_context(cafile=str(pki.ca_file))
        client.set_alpn_protocols(["h2"])
        for _ in range(50):  # until the front listens (bounded)
            try:
                raw = socket.create_connection(("127.0.0.1", front), timeout=5)
                break
            except ConnectionRefusedError:
                threading.Event().wait(0.1)
        with client.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.selected_alpn_protocol() == "h2"
            tls.sendall(b"PRI * HTTP/2.0")
            assert tls.recv(1024) == b"PRI * HTTP/2.0"
        wrong = ssl.create_default_context(cafile=str(other.ca_file))
        with (
            socket.create_connection(("127.0.0.1", front), timeout=5) as raw2,
            pytest.raises(ssl.SSLCertVerificationError),
        ):
            wrong.wrap_socket(raw2, server_hostname="localhost")
    finally:
        loop.call_soon_threadsafe(task.cancel)
        loop.call_soon_threadsafe(loop.stop)
        backend.close()


def test_an_edge_registers_with_an_https_orchestrator_only_under_the_right_ca(
    tmp_path: Path,
) -> None:
    """`aegis node start` (edge) checks the orchestrator's certificate against its CA file."""
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from aegis_ray.node.stack import JoinRefused, _register

    pki, other = make_pki(tmp_path / "pki"), make_pki(tmp_path / "other", cn="another CA")

    class Orchestrator(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"ray": {"address": "127.0.0.1:6379"}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Orchestrator)
    server.socket = server_context(pki.cert_file, pki.key_file).wrap_socket(
        server.socket, server_side=True
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}"
    edge = parse_node_config(
        {
            "apiVersion": "100monkeys.ai/v1",
            "kind": "NodeConfig",
            "metadata": {"name": "e"},
            "spec": {
                "node": {"id": "e", "type": "edge", "resources": {"cpu_cores": 1, "memory_gb": 1}},
                "runtime": {"orchestrator_url": url, "orchestrator_ca_file": str(pki.ca_file)},
            },
        }
    )
    try:
        joined = _register(url, "t" * 20, edge, wait_s=0, has_ray_token=False, ca_file=pki.ca_file)
        assert joined["ray"]["address"] == "127.0.0.1:6379"
        with pytest.raises(JoinRefused, match="CERTIFICATE_VERIFY_FAILED"):
            _register(url, "t" * 20, edge, wait_s=0, has_ray_token=False, ca_file=other.ca_file)
    finally:
        server.shutdown()
