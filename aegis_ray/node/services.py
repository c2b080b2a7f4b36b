"""What a head uses: PostgreSQL, Temporal, OpenBao, the API address, and where the Ray head keeps
its state (Redis or memory).

Each value comes from the environment (``AEGIS_*``) if set there, else from the NodeConfig
(``spec.database``, ``spec.temporal``, ``spec.secrets``, ``spec.api``), else the default: an
embedded PostgreSQL, a Temporal dev server and an OpenBao server under ``AEGIS_HOME``, the API
on loopback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import ValidationError

from aegis_ray.adapters.files import read_private
from aegis_ray.adapters.openbao.client import OpenBaoAccess
from aegis_ray.adapters.ray.head import RayTls
from aegis_ray.core.models.node import GcsSection, NodeConfig, gcs_problems
from aegis_ray.settings import Settings


class ServiceConfigError(RuntimeError):
    """The services' settings contradict each other or name an unusable file."""


def head_settings(settings: Settings, node: NodeConfig | None) -> Settings:
    """`settings` with the NodeConfig's choices filled in where the environment made none."""
    if node is None:
        return settings
    spec = node.spec
    chosen: dict[str, Any] = {
        "api_host": spec.api.bind,
        "api_port": spec.api.rest_port,
        "grpc_port": spec.api.grpc_port,
        "orchestrators": spec.api.orchestrators,
    }
    if spec.database is not None:
        chosen["database_url"] = spec.database.url
        chosen["database_pool_size"] = spec.database.pool_size
    if spec.temporal is not None:
        chosen["temporal_address"] = spec.temporal.address
        chosen["temporal_namespace"] = spec.temporal.namespace
        chosen["task_queue"] = spec.temporal.task_queue
    if spec.api.tls is not None:
        chosen["tls_cert_file"] = Path(spec.api.tls.cert_file)
        chosen["tls_key_file"] = Path(spec.api.tls.key_file)
        chosen["ca_file"] = Path(spec.api.tls.ca_file or spec.api.tls.cert_file)
    chosen |= _ray_tls_settings(node)
    if spec.gcs is not None:
        chosen["gcs_store"] = spec.gcs.store
        chosen["gcs_redis_url"] = spec.gcs.redis_url
        if spec.gcs.redis_password_file is not None:
            chosen["gcs_redis_password_file"] = Path(spec.gcs.redis_password_file)
        if "bind" in spec.gcs.model_fields_set:
            chosen["gcs_redis_bind"] = spec.gcs.bind
    unset = {k: v for k, v in chosen.items() if k not in settings.model_fields_set}
    return settings.model_copy(update=unset)


def _ray_tls_settings(node: NodeConfig) -> dict[str, Any]:
    tls = node.spec.ray_tls
    if tls is None:
        return {}
    return {
        "ray_tls_cert_file": Path(tls.cert_file),
        "ray_tls_key_file": Path(tls.key_file),
        "ray_tls_ca_file": Path(tls.ca_file),
    }


def ray_tls(settings: Settings, node: NodeConfig | None = None) -> RayTls | None:
    """Ray's TLS for this node's Ray processes and drivers (AEGIS_RAY_TLS_* wins over the
    NodeConfig's spec.ray_tls), its files checked; None: off. ServiceConfigError names the
    field and file that cannot be used."""
    from aegis_ray.adapters.tls import TlsConfigError, check_ca_file, server_context

    given = _ray_tls_settings(node) if node is not None else {}
    files = given | {k: v for k in RAY_TLS_FIELDS if (v := getattr(settings, k)) is not None}
    if not files:
        return None
    if len(files) < len(RAY_TLS_FIELDS):
        missing = ", ".join(f"AEGIS_{k.upper()}" for k in RAY_TLS_FIELDS if k not in files)
        raise ServiceConfigError(
            f"Ray's TLS needs a certificate, its key and the CA: {missing} not set "
            "(spec.ray_tls or AEGIS_RAY_TLS_CERT_FILE / _KEY_FILE / _CA_FILE)"
        )
    cert, key, ca = (Path(files[k]).absolute() for k in RAY_TLS_FIELDS)
    try:
        server_context(cert, key, field="spec.ray_tls")
        check_ca_file(ca, field="spec.ray_tls.ca_file")
    except TlsConfigError as err:
        raise ServiceConfigError(str(err)) from None
    return RayTls(str(cert), str(key), str(ca))


RAY_TLS_FIELDS = ("ray_tls_cert_file", "ray_tls_key_file", "ray_tls_ca_file")
LOOPBACK = ("127.", "localhost", "::1")


def check_ha(
    settings: Settings, external_database: str | None, external_secrets: Any = None
) -> None:
    """Several orchestrators share one PostgreSQL, one Temporal and one OpenBao
    (`external_secrets`: the OpenBaoAccess, None for the embedded one) and are reached by a
    load balancer: refuse what only one machine could reach."""
    n = settings.orchestrators
    if n == 1:
        return
    why = f"spec.api.orchestrators is {n}: every orchestrator must reach"
    if external_database is None:
        raise ServiceConfigError(
            f"{why} PostgreSQL; set spec.database.url (or AEGIS_DATABASE_URL) to a shared server"
        )
    if settings.temporal_address is None:
        raise ServiceConfigError(
            f"{why} Temporal; set spec.temporal.address (or AEGIS_TEMPORAL_ADDRESS) to a "
            "shared server (the dev server `aegis up` starts serves its own machine only)"
        )
    if external_secrets is None:
        raise ServiceConfigError(
            f"{why} OpenBao; set spec.secrets (or AEGIS_OPENBAO_ADDR) to a shared server (the "
            "embedded one serves its own machine only)"
        )
    bao = str(external_secrets.address).split("://", 1)[-1]
    for what, address in (
        ("spec.database.url", external_database.rpartition("@")[2]),
        ("spec.temporal.address", settings.temporal_address),
        ("spec.secrets.address", bao),
    ):
        if address.startswith(LOOPBACK):
            raise ServiceConfigError(f"{why} it, but {what} is a loopback address ({address})")
    if settings.api_host.startswith(LOOPBACK):
        raise ServiceConfigError(
            f"spec.api.orchestrators is {n}: the load balancer must reach every orchestrator's "
            f"API, but spec.api.bind is {settings.api_host}; bind 0.0.0.0"
        )


def external_database_url(settings: Settings) -> str | None:
    """The external database's URL with its password filled in; None means embedded.

    The password comes from AEGIS_DATABASE_PASSWORD or the private file named by
    AEGIS_DATABASE_PASSWORD_FILE, so that it is in no config file and on no command line.
    """
    url = settings.database_url
    password = _password(settings)
    if url is None:
        if password is not None:
            raise ServiceConfigError(
                "a database password is set (AEGIS_DATABASE_PASSWORD or "
                "AEGIS_DATABASE_PASSWORD_FILE) but no external database: set spec.database.url "
                "in the NodeConfig or AEGIS_DATABASE_URL (the embedded one has its own password)"
            )
        return None
    if password is None:
        return url
    parts = urlsplit(url)
    if parts.password is not None:
        raise ServiceConfigError(
            "the database URL already holds a password and AEGIS_DATABASE_PASSWORD(_FILE) "
            "gives another: keep one"
        )
    if not parts.username:
        raise ServiceConfigError(
            f"database URL {url}: name the user the password is for, "
            "like postgresql://aegis@db.internal:5432/aegis"
        )
    netloc = f"{parts.username}:{quote(password, safe='')}@{parts.netloc.rpartition('@')[2]}"
    return parts._replace(netloc=netloc).geturl()


def _password(settings: Settings) -> str | None:
    given, path = settings.database_password, settings.database_password_file
    if given is not None and path is not None:
        raise ServiceConfigError(
            "both AEGIS_DATABASE_PASSWORD and AEGIS_DATABASE_PASSWORD_FILE are set: keep one"
        )
    if path is not None:
        try:
            return read_private(path, what="AEGIS_DATABASE_PASSWORD_FILE")
        except PermissionError as err:
            raise ServiceConfigError(str(err)) from None
    return given.get_secret_value() if given is not None else None


# The variable the control plane reads the AppRole secret id from when the environment gives it.
SECRET_ID_VARIABLE = "AEGIS_OPENBAO_SECRET_ID"


def external_openbao(settings: Settings, node: NodeConfig | None) -> OpenBaoAccess | None:
    """The external OpenBao and the control plane's AppRole; None means embedded.

    From AEGIS_OPENBAO_ADDR (with AEGIS_OPENBAO_ROLE_ID, AEGIS_OPENBAO_SECRET_ID or
    AEGIS_OPENBAO_SECRET_ID_FILE, AEGIS_OPENBAO_CA_FILE) if set, else the NodeConfig's
    spec.secrets. The secret id is checked to be readable here; only where it is travels on."""
    section = node.spec.secrets if node is not None else None
    if settings.openbao_addr is not None:
        access = _access_from_environment(settings)
    elif section is not None:
        role = section.approle
        access = OpenBaoAccess(
            address=section.address,
            role_id=role.role_id,
            secret_id_file=role.secret_id_file,
            secret_id_env=role.secret_id_env,
            ca_file=section.ca_file,
            mount=section.mount,
            approle_mount=role.mount,
        )
    else:
        given = [
            f"AEGIS_OPENBAO_{name.upper()}"
            for name in ("role_id", "secret_id_file", "ca_file")
            if getattr(settings, f"openbao_{name}") is not None
        ]
        if given:
            raise ServiceConfigError(
                f"{', '.join(given)} set but no external OpenBao: set AEGIS_OPENBAO_ADDR or "
                "spec.secrets in the NodeConfig (the embedded one has an AppRole of its own)"
            )
        return None
    _check_readable(access)
    return access


def _access_from_environment(settings: Settings) -> OpenBaoAccess:
    assert settings.openbao_addr is not None
    if not settings.openbao_addr.startswith(("http://", "https://")):
        raise ServiceConfigError(
            f"AEGIS_OPENBAO_ADDR={settings.openbao_addr!r}: not an http(s) URL like "
            "https://openbao.internal:8200"
        )
    if not settings.openbao_role_id:
        raise ServiceConfigError(
            "AEGIS_OPENBAO_ADDR names an external OpenBao: set AEGIS_OPENBAO_ROLE_ID too "
            "(the control plane's AppRole)"
        )
    value, path = settings.openbao_secret_id, settings.openbao_secret_id_file
    if (value is None) == (path is None):
        raise ServiceConfigError(
            "an external OpenBao needs the AppRole's secret id in exactly one of "
            f"{SECRET_ID_VARIABLE} and AEGIS_OPENBAO_SECRET_ID_FILE (mode 0600)"
        )
    return OpenBaoAccess(
        address=settings.openbao_addr,
        role_id=settings.openbao_role_id,
        secret_id_file=str(path) if path is not None else None,
        secret_id_env=SECRET_ID_VARIABLE if value is not None else None,
        ca_file=str(settings.openbao_ca_file) if settings.openbao_ca_file else None,
        mount=settings.openbao_mount,
    )


def _check_readable(access: OpenBaoAccess) -> None:
    if access.secret_id_file is not None:
        try:
            read_private(Path(access.secret_id_file), what="OpenBao AppRole secret id file")
        except PermissionError as err:
            raise ServiceConfigError(str(err)) from None
    elif access.secret_id_env is not None and not os.environ.get(access.secret_id_env):
        raise ServiceConfigError(
            f"OpenBao AppRole secret id: environment variable {access.secret_id_env} is not "
            "set (the control plane reads it from the environment of `aegis up`)"
        )
    if access.ca_file is not None and not Path(access.ca_file).is_file():
        raise ServiceConfigError(f"OpenBao CA file {access.ca_file}: no such file")


_GCS_ENV = {
    "gcs.redis_url": "AEGIS_GCS_REDIS_URL",
    "gcs.redis_password_file": "AEGIS_GCS_REDIS_PASSWORD_FILE",
    "gcs.bind": "AEGIS_GCS_REDIS_BIND",
}


@dataclass(frozen=True)
class GcsStore:
    """Where the head keeps Ray's cluster state: "memory" (Ray's default), an "embedded" Redis
    started under AEGIS_HOME, or an "external" one (its URL and password)."""

    kind: Literal["memory", "embedded", "external"]
    redis_url: str | None = None
    password: str = ""

    @property
    def redis_address(self) -> str:
        """As RAY_REDIS_ADDRESS takes it: host:port, or rediss://host:port for TLS."""
        assert self.redis_url is not None
        parts = urlsplit(self.redis_url)
        return self.redis_url if parts.scheme == "rediss" else parts.netloc


def gcs_store(settings: Settings) -> GcsStore:
    """The GCS store the environment (AEGIS_GCS_*) or the NodeConfig (spec.gcs) chose, checked
    by the same rules as spec.gcs; ServiceConfigError names what is wrong."""
    given: dict[str, Any] = {
        "store": settings.gcs_store,
        "redis_url": settings.gcs_redis_url,
        "redis_password_file": settings.gcs_redis_password_file
        and str(settings.gcs_redis_password_file),
    }
    if "gcs_redis_bind" in settings.model_fields_set:
        given["bind"] = settings.gcs_redis_bind
    try:
        section = GcsSection.model_validate(given)
    except ValidationError as err:  # the environment gave a value of the wrong kind
        raise ServiceConfigError(f"AEGIS_GCS_* / spec.gcs: {err}") from None
    problems = gcs_problems(section)
    if problems:
        raise ServiceConfigError(
            "; ".join(
                f"spec.{key} (or {_GCS_ENV[key]}): {why}"
                + (f" (got {value!r})" if value is not None else "")
                for key, why, value in problems
            )
        )
    if section.store == "memory":
        return GcsStore("memory")
    if section.redis_url is None:
        return GcsStore("embedded")
    password = ""
    if settings.gcs_redis_password_file is not None:
        try:
            password = read_private(
                settings.gcs_redis_password_file, what="AEGIS_GCS_REDIS_PASSWORD_FILE"
            )
        except PermissionError as err:
            raise ServiceConfigError(str(err)) from None
    return GcsStore("external", redis_url=section.redis_url, password=password)
