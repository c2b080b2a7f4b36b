"""An attempt's secrets at launch: the wrapping tokens the node agent redeems, and the
refusals that end the attempt before any container starts.

Called by `run_attempt` once the attempt is placed, so the tokens (one minute to live) reach the
agent at once. Nothing here returns or records a value: the activity's inputs, results and
errors (Temporal's history) carry references, tokens never leave this process but to the agent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aegis_ray.adapters.openbao.client import SecretNotFound, SecretsUnavailable
from aegis_ray.adapters.openbao.store import SecretStore
from aegis_ray.core.models.agent import AgentManifest
from aegis_ray.core.secrets import Reference, SecretDelivery, SecretEnv, SecretFile

# How long a launch waits for an unreachable or sealed OpenBao before the attempt fails.
SECRETS_WAIT_S = 60.0
RETRY_EVERY_S = 2.0


class SecretsRefused(Exception):
    """The attempt cannot get its secrets: `reason` is "secret_not_found: ..." or
    "secrets_unavailable: ..." (the execution's reason as it ends FAILED)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.reason = f"{code}: {message}"


async def delivery(
    store: SecretStore | None,
    tenant_id: str,
    manifest: AgentManifest,
    *,
    waiting: Callable[[str], Awaitable[object]],
    wait_s: float = SECRETS_WAIT_S,
) -> SecretDelivery | None:
    """The secret delivery of an attempt (None if its manifest references no secret).

    While OpenBao is unreachable or sealed, `waiting(why)` is told and the call retries for up
    to `wait_s`; a secret or key that no longer exists refuses at once."""
    refs = manifest.spec.secret_references()
    if not refs:
        return None
    if store is None:
        raise SecretsRefused(
            "secrets_unavailable", "this control plane has no OpenBao configured"
        )
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return await asyncio.to_thread(_deliver, store, tenant_id, manifest, refs)
        except SecretsUnavailable as err:
            if time.monotonic() >= deadline:
                raise SecretsRefused("secrets_unavailable", str(err)) from None
            await waiting(f"waiting for OpenBao: {err}")
        await asyncio.sleep(RETRY_EVERY_S)


def _deliver(
    store: SecretStore, tenant_id: str, manifest: AgentManifest, refs: list[Reference]
) -> SecretDelivery:
    names = sorted({r.ref.name for r in refs})
    for name in names:
        keys = store.keys(tenant_id, name)
        for r in refs:
            if r.ref.name != name:
                continue
            if keys is None:
                raise SecretsRefused(
                    "secret_not_found", f"{r.field}: secret {name!r} no longer exists"
                )
            if r.ref.key not in keys:
                raise SecretsRefused(
                    "secret_not_found", f"{r.field}: secret {name!r} has no key {r.ref.key!r}"
                )
    try:
        wrapped = tuple(store.wrap(tenant_id, name) for name in names)
    except SecretNotFound as err:  # deleted between the two reads
        raise SecretsRefused("secret_not_found", f"secret {err.name!r} no longer exists") from None
    spec = manifest.spec
    return SecretDelivery(
        address=store.address,
        ca_pem=store.access.ca_pem(),
        wrapped=wrapped,
        env=tuple(SecretEnv(name, ref) for name, ref in spec.secret_env().items()),
        files=tuple(SecretFile(f.path, f.ref) for f in spec.secret_files),
    )
