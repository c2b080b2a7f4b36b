"""Ray's own TLS (issue 12, item 7): spec.ray_tls / AEGIS_RAY_TLS_*, checked, then in the
environment of every Ray process and driver aegis starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from aegis_ray.adapters.ray.head import RayAuth, RayTls
from aegis_ray.core.models.loading import ManifestError, parse_node_config
from aegis_ray.node.services import ServiceConfigError, head_settings, ray_tls
from aegis_ray.settings import Settings
from tests.e2e.certs import Pki, make_pki


def _node(ray_tls: dict[str, str] | None) -> dict[str, object]:
    spec: dict[str, object] = {"node": {"id": "e", "type": "orchestrator"}}
    if ray_tls is not None:
        spec["ray_tls"] = ray_tls
    return {"apiVersion": "100monkeys.ai/v1", "kind": "NodeConfig",
            "metadata": {"name": "e"}, "spec": spec}  # fmt: skip


def _files(pki: Pki) -> dict[str, str]:
    return {"cert_file": str(pki.cert_file), "key_file": str(pki.key_file),
            "ca_file": str(pki.ca_file)}  # fmt: skip


def test_the_section_is_strict_and_needs_all_three_files() -> None:
    with pytest.raises(ManifestError, match=r"spec.ray_tls.certfile"):
        parse_node_config(_node({"certfile": "/c", "key_file": "/k", "ca_file": "/a"}))
    with pytest.raises(ManifestError, match=r"spec.ray_tls.ca_file"):
        parse_node_config(_node({"cert_file": "/c", "key_file": "/k"}))


def test_off_by_default_and_nothing_added_to_rays_environment(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert ray_tls(settings, parse_node_config(_node(None))) is None
    assert RayAuth("token", "/t").env() == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": "/t"}


def test_the_node_configs_files_become_rays_tls_environment(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    node = parse_node_config(_node(_files(pki)))
    for settings in (Settings(home=tmp_path), head_settings(Settings(home=tmp_path), node)):
        tls = ray_tls(settings, node)
        assert tls == RayTls(str(pki.cert_file), str(pki.key_file), str(pki.ca_file))
        assert RayAuth("disabled", tls=tls).env() == {
            "RAY_AUTH_MODE": "disabled",
            "RAY_USE_TLS": "1",
            "RAY_TLS_SERVER_CERT": str(pki.cert_file),
            "RAY_TLS_SERVER_KEY": str(pki.key_file),
            "RAY_TLS_CA_CERT": str(pki.ca_file),
        }


def test_the_environment_wins_and_a_partial_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, theirs = make_pki(tmp_path / "mine"), make_pki(tmp_path / "theirs")
    node = parse_node_config(_node(_files(theirs)))
    for name, path in (("CERT", mine.cert_file), ("KEY", mine.key_file), ("CA", mine.ca_file)):
        monkeypatch.setenv(f"AEGIS_RAY_TLS_{name}_FILE", str(path))
    tls = ray_tls(Settings(home=tmp_path), node)
    assert tls is not None and tls.cert_file == str(mine.cert_file)
    monkeypatch.delenv("AEGIS_RAY_TLS_CA_FILE")
    with pytest.raises(ServiceConfigError, match=r"AEGIS_RAY_TLS_CA_FILE not set"):
        ray_tls(Settings(home=tmp_path))


def test_unusable_files_are_refused_naming_the_field(tmp_path: Path) -> None:
    a, b = make_pki(tmp_path / "a"), make_pki(tmp_path / "b")
    settings = Settings(home=tmp_path)

    def check(**files: Path) -> None:
        given = {"cert_file": a.cert_file, "key_file": a.key_file, "ca_file": a.ca_file} | files
        ray_tls(settings, parse_node_config(_node({k: str(v) for k, v in given.items()})))

    with pytest.raises(ServiceConfigError, match=r"spec.ray_tls.cert_file: .*nope.pem: no such"):
        check(cert_file=tmp_path / "nope.pem")
    with pytest.raises(ServiceConfigError, match=r"spec.ray_tls: .* not a PEM certificate"):
        check(key_file=b.key_file)
    with pytest.raises(ServiceConfigError, match=r"spec.ray_tls.ca_file: .* not a readable PEM"):
        check(ca_file=a.key_file)
    a.key_file.chmod(0o644)
    with pytest.raises(ServiceConfigError, match=r"spec.ray_tls.key_file: .* mode 0644"):
        check()
