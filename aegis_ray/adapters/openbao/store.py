"""Tenants' secrets in OpenBao's KV v2 engine, as the control plane uses them.

Values go in and never come out: `put` writes them, every other call reads metadata only. The
key names of a secret are kept in its custom metadata, so that listing a secret or checking a
manifest's references never reads a value. At launch, `wrap` asks OpenBao for the secret's read
response-wrapped: a single-use token of short life that only the node agent redeems, so the
control plane never holds the value either.

The control plane logs in with AppRole; a token that expired or was revoked is replaced by a
fresh login once per call. hvac is synchronous: the API calls these methods in threads.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from hvac import exceptions as bao

from aegis_ray.adapters.openbao.client import (
    OpenBaoAccess,
    SecretNotFound,
    SecretsUnavailable,
    connect,
    mapped,
)
from aegis_ray.core.secrets import WrappedSecret, secret_path, tenant_prefix

T = TypeVar("T")
# How long a wrapping token may wait for the node agent: the launch follows within seconds.
WRAP_TTL_S = 60
CONTROL_PLANE_ROLE = "aegis-control-plane"


def control_plane_policy(mount: str) -> str:
    """What the control plane may do in OpenBao (HCL): its tenants' secrets, nothing else.
    `read` on data is what a response-wrapped read needs; aegis never reads a value itself."""
    return (
        f'path "{mount}/data/aegis/tenants/*" {{ capabilities = ["create", "update", "read"] }}\n'
        f'path "{mount}/metadata/aegis/tenants/*" '
        '{ capabilities = ["create", "update", "read", "list", "delete"] }\n'
    )


def _meta(name: str, data: dict[str, Any]) -> dict[str, Any]:
    """A secret as the API shows it: name, keys, version and times, never a value."""
    return {
        "name": name,
        "keys": sorted((data.get("custom_metadata") or {}).keys()),
        "version": int(data.get("current_version") or 0),
        "created_at": _time(data.get("created_time")),
        "updated_at": _time(data.get("updated_time")),
    }


def _time(text: str | None) -> str | None:
    """OpenBao's RFC 3339 time (nanoseconds, "Z") as the API writes times (ISO, microseconds)."""
    if not text:
        return None
    m = re.fullmatch(r"([^.Z+]+)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if m is None:
        return text
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    micro = (m.group(2) or "")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{m.group(1)}.{micro}{zone}").isoformat()


class SecretStore:
    def __init__(self, access: OpenBaoAccess) -> None:
        self.access = access
        self._lock = threading.Lock()
        self._client: Any = None

    @property
    def address(self) -> str:
        return self.access.address

    def _login(self) -> Any:
        a = self.access
        client = connect(a.address, verify=a.ca_file or True)
        try:
            client.auth.approle.login(
                role_id=a.role_id, secret_id=a.secret_id(), mount_point=a.approle_mount
            )
        except (bao.InvalidRequest, bao.Forbidden, bao.Unauthorized) as err:
            raise SecretsUnavailable(
                f"OpenBao at {a.address} refused the control plane's AppRole login "
                f"(role_id {a.role_id}, mount {a.approle_mount}): {err}"
            ) from None
        return client

    def _call(self, fn: Callable[[Any], T]) -> T:
        def run() -> T:
            for fresh in (False, True):
                with self._lock:
                    if self._client is None or fresh:
                        self._client = self._login()
                    client = self._client
                try:
                    return fn(client)
                except bao.Forbidden:
                    if fresh:
                        raise SecretsUnavailable(
                            f"OpenBao at {self.address} denies the control plane: check the "
                            f"policy of its AppRole (`aegis` needs: {self._policy_summary()})"
                        ) from None
            raise AssertionError("unreachable")

        return mapped(self.address, run)

    def _policy_summary(self) -> str:
        return " ".join(control_plane_policy(self.access.mount).split())

    # -- operations -------------------------------------------------------------------------

    def put(self, tenant_id: str, name: str, data: dict[str, str]) -> dict[str, Any]:
        """Write a new version of the secret holding exactly `data`; its metadata."""
        path, mount = secret_path(tenant_id, name), self.access.mount

        def write(c: Any) -> dict[str, Any]:
            c.secrets.kv.v2.create_or_update_secret(path, secret=data, mount_point=mount)
            keys = dict.fromkeys(data, "secret key")
            c.secrets.kv.v2.update_metadata(path, custom_metadata=keys, mount_point=mount)
            return self._read_meta(c, tenant_id, name)

        return self._call(write)

    def get(self, tenant_id: str, name: str) -> dict[str, Any]:
        """The secret's metadata; SecretNotFound if the tenant has none of that name."""
        return self._call(lambda c: self._read_meta(c, tenant_id, name))

    def list(self, tenant_id: str) -> list[dict[str, Any]]:
        def names(c: Any) -> list[str]:
            try:
                found = c.secrets.kv.v2.list_secrets(
                    tenant_prefix(tenant_id), mount_point=self.access.mount
                )
            except bao.InvalidPath:
                return []  # the tenant has none yet
            return sorted(k for k in found["data"]["keys"] if not k.endswith("/"))

        def read_all(c: Any) -> list[dict[str, Any]]:
            out = []
            for name in names(c):
                try:
                    out.append(self._read_meta(c, tenant_id, name))
                except SecretNotFound:
                    continue  # deleted meanwhile
            return out

        return self._call(read_all)

    def delete(self, tenant_id: str, name: str) -> None:
        """Remove every version of the secret; SecretNotFound if there is none."""

        def remove(c: Any) -> None:
            self._read_meta(c, tenant_id, name)
            c.secrets.kv.v2.delete_metadata_and_all_versions(
                secret_path(tenant_id, name), mount_point=self.access.mount
            )

        self._call(remove)

    def keys(self, tenant_id: str, name: str) -> set[str] | None:
        """The key names of a secret, None if the tenant has no secret of that name."""
        try:
            return set(self.get(tenant_id, name)["keys"])
        except SecretNotFound:
            return None

    def wrap(self, tenant_id: str, name: str, *, ttl_s: int = WRAP_TTL_S) -> WrappedSecret:
        """A response-wrapped read of the secret: single use, `ttl_s` seconds to redeem it."""
        path = secret_path(tenant_id, name)
        url = f"/v1/{self.access.mount}/data/{path}"

        def wrapped(c: Any) -> WrappedSecret:
            try:
                info = c.adapter.get(url, wrap_ttl=f"{ttl_s}s")["wrap_info"]
            except bao.InvalidPath:
                raise SecretNotFound(name) from None
            return WrappedSecret(name, info["creation_path"], info["token"])

        return self._call(wrapped)

    def health(self) -> str:
        """"ok", or why OpenBao cannot be used (for /health)."""
        try:
            status = mapped(
                self.address, lambda: connect(self.address, verify=self.access.ca_file or True)
                .sys.read_seal_status()
            )  # fmt: skip
        except SecretsUnavailable as err:
            return f"unavailable: {err}"
        return f"sealed: OpenBao at {self.address} is sealed" if status["sealed"] else "ok"

    def _read_meta(self, c: Any, tenant_id: str, name: str) -> dict[str, Any]:
        try:
            found = c.secrets.kv.v2.read_secret_metadata(
                secret_path(tenant_id, name), mount_point=self.access.mount
            )
        except bao.InvalidPath:
            raise SecretNotFound(name) from None
        return _meta(name, found["data"])
