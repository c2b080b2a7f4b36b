"""The node agent's side: redeem the wrapping tokens of a launch for the values it needs.

Each token is looked up first: OpenBao must say it was made for the read of exactly the path
the control plane named (a token made for anything else is refused, unredeemed). Then it is
unwrapped: that spends it, so a token someone else redeemed first fails here, loudly. Only the
referenced keys are kept; the rest of each secret is dropped at once.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any

from hvac import exceptions as bao

from aegis_ray.adapters.openbao.client import SecretNotFound, SecretsUnavailable, connect, mapped
from aegis_ray.core.secrets import SecretDelivery, WrappedSecret


class MissingKey(SecretNotFound):
    def __init__(self, name: str, key: str) -> None:
        LookupError.__init__(self, f"secret {name!r} has no key {key!r}")
        self.name = name


def redeem(delivery: SecretDelivery) -> dict[str, str]:
    """{"NAME#KEY": value} for every reference of the delivery."""
    with _verify(delivery.ca_pem) as verify:
        secrets = {
            w.name: _unwrap(delivery.address, verify, w) for w in delivery.wrapped
        }
    out: dict[str, str] = {}
    for ref in delivery.refs:
        data = secrets.get(ref.name)
        if data is None:
            raise SecretNotFound(ref.name)
        if ref.key not in data:
            raise MissingKey(ref.name, ref.key)
        out[str(ref)] = str(data[ref.key])
    return out


def _unwrap(address: str, verify: str | bool, wrapped: WrappedSecret) -> dict[str, Any]:
    client = connect(address, verify=verify)

    def run() -> dict[str, Any]:
        try:
            info = client.adapter.post("/v1/sys/wrapping/lookup", json={"token": wrapped.token})
        except bao.InvalidRequest:
            raise SecretsUnavailable(
                f"the wrapping token for secret {wrapped.name!r} was already redeemed or has "
                "expired (each is single-use and short-lived)"
            ) from None
        made_for = info["data"]["creation_path"]
        if made_for != wrapped.creation_path:
            raise SecretsUnavailable(
                f"the wrapping token for secret {wrapped.name!r} was made for {made_for!r}, "
                f"not {wrapped.creation_path!r}: refused"
            )
        client.token = wrapped.token
        try:
            data: dict[str, Any] = client.sys.unwrap()["data"]["data"]
        except bao.InvalidRequest:
            raise SecretsUnavailable(
                f"the wrapping token for secret {wrapped.name!r} was redeemed by someone else "
                "between its lookup and its use"
            ) from None
        return data

    return mapped(address, run)


@contextlib.contextmanager
def _verify(ca_pem: str | None) -> Iterator[str | bool]:
    """What requests verifies the server with: the delivery's CA (it wants a file), or the
    system's CAs."""
    if ca_pem is None:
        yield True
        return
    fd, path = tempfile.mkstemp(prefix="aegis-openbao-ca-", suffix=".pem")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(ca_pem)
        yield path
    finally:
        os.unlink(path)
