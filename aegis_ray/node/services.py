"""What a head's control plane uses: PostgreSQL, Temporal and the API's address.

Each value comes from the environment (``AEGIS_*``) if set there, else from the NodeConfig
(``spec.database``, ``spec.temporal``, ``spec.api``), else the default: an embedded PostgreSQL
and a Temporal dev server under ``AEGIS_HOME``, the API on loopback.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

from aegis_ray.adapters.files import read_private
from aegis_ray.core.models.node import NodeConfig
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
    }
    if spec.database is not None:
        chosen["database_url"] = spec.database.url
    if spec.temporal is not None:
        chosen["temporal_address"] = spec.temporal.address
        chosen["temporal_namespace"] = spec.temporal.namespace
        chosen["task_queue"] = spec.temporal.task_queue
    unset = {k: v for k, v in chosen.items() if k not in settings.model_fields_set}
    return settings.model_copy(update=unset)


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
