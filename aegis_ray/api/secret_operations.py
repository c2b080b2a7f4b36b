"""The control plane's secret operations (mixed into `ControlPlane`): a tenant's secrets in
OpenBao, and the check that a manifest's references resolve before anything is written.

Values go one way: a put carries them to OpenBao; nothing here reads one, and no refusal or
reply holds one (a refusal names the key, never the value).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aegis_ray.api.auth import Caller
from aegis_ray.api.context import Connections
from aegis_ray.api.errors import ApiProblem
from aegis_ray.core.models.agent import AgentManifest
from aegis_ray.core.secrets import check_name, check_secret_data


def secret_data(body: Any) -> dict[str, str]:
    """The KEY -> VALUE pairs of a put, checked; a refusal names keys and never a value."""
    data = body.get("data") if isinstance(body, dict) else None
    extra = sorted(set(body) - {"data"}) if isinstance(body, dict) else []
    if not isinstance(data, dict) or extra:
        why = f"unknown keys {extra}" if extra else "no `data` object"
        raise ApiProblem(
            "bad_request",
            f'body: {why}; send {{"data": {{"KEY": "VALUE", ...}}}}',
            problems=[{"path": "body.data", "message": why}],
        )
    problems = check_secret_data(data)
    if problems:
        raise ApiProblem(
            "bad_request",
            "body.data: " + "; ".join(problems),
            problems=[{"path": "body.data", "message": p} for p in problems],
        )
    return data


def _secret_name(name: str) -> str:
    try:
        return check_name(name)
    except ValueError as err:
        problems = [{"path": "name", "message": str(err)}]
        raise ApiProblem("bad_request", str(err), problems=problems) from None


class SecretOperations:
    conns: Connections

    async def _check_secret_references(self, who: Caller, manifest: AgentManifest) -> None:
        """Refuse a manifest naming a secret or key the tenant does not have (before anything
        is written); key names come from metadata, no value is read."""
        refs = manifest.spec.secret_references()
        if not refs:
            return
        store = self.conns.secrets()
        names = sorted({r.ref.name for r in refs})
        found = await asyncio.gather(
            *(asyncio.to_thread(store.keys, who.tenant_id, n) for n in names)
        )
        keys = dict(zip(names, found, strict=True))
        problems = []
        for r in refs:
            have = keys[r.ref.name]
            if have is None:
                why = f"this tenant has no secret {r.ref.name!r}"
            elif r.ref.key not in have:
                why = f"secret {r.ref.name!r} has no key {r.ref.key!r}"
            else:
                continue
            problems.append({"path": r.field, "message": why, "value": str(r.ref)})
        if problems:
            text = "; ".join(f"{p['path']}: {p['message']} ({p['value']})" for p in problems)
            raise ApiProblem("secret_not_found", text, problems=problems)

    async def put_secret(self, who: Caller, name: str, body: Any) -> dict[str, Any]:
        """Write a new version of a secret of the caller's tenant; its metadata."""
        name, data = _secret_name(name), secret_data(body)
        store = self.conns.secrets()
        return await asyncio.to_thread(store.put, who.tenant_id, name, data)

    async def list_secrets(self, who: Caller) -> dict[str, Any]:
        store = self.conns.secrets()
        return {"items": await asyncio.to_thread(store.list, who.tenant_id)}

    async def get_secret(self, who: Caller, name: str) -> dict[str, Any]:
        store = self.conns.secrets()
        return await asyncio.to_thread(store.get, who.tenant_id, _secret_name(name))

    async def delete_secret(self, who: Caller, name: str) -> dict[str, Any]:
        store = self.conns.secrets()
        await asyncio.to_thread(store.delete, who.tenant_id, _secret_name(name))
        return {"name": name, "deleted": True}
