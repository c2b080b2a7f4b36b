"""Talking to OpenBao with hvac: how to reach it, and its failures as aegis's two errors.

`SecretsUnavailable` is anything that keeps aegis from using OpenBao (unreachable, sealed,
refusing the control plane's credentials); `SecretNotFound` a secret that is not there.
Neither message ever holds a value: hvac's errors name the URL and OpenBao's error text only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import hvac
import requests
from hvac import exceptions as bao

from aegis_ray.adapters.files import read_private

T = TypeVar("T")
TIMEOUT_S = 10


class SecretsUnavailable(RuntimeError):
    """OpenBao cannot be used now (`sealed` says why, where that is the reason)."""

    def __init__(self, message: str, *, sealed: bool = False) -> None:
        super().__init__(message)
        self.sealed = sealed

    def __reduce__(self) -> tuple[object, ...]:
        return (_unavailable, (str(self), self.sealed))


def _unavailable(message: str, sealed: bool) -> SecretsUnavailable:
    return SecretsUnavailable(message, sealed=sealed)


class SecretNotFound(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no secret {name!r}")
        self.name = name


@dataclass(frozen=True)
class OpenBaoAccess:
    """Where OpenBao is and how the control plane logs in (AppRole). The secret id is read
    from a private file or from an environment variable of the reading process, so that it
    never travels in a config, an argument or Ray's state."""

    address: str
    role_id: str
    secret_id_file: str | None = None
    secret_id_env: str | None = None
    ca_file: str | None = None
    mount: str = "secret"  # the KV version 2 engine
    approle_mount: str = "approle"

    def secret_id(self) -> str:
        if self.secret_id_file is not None:
            try:
                return read_private(Path(self.secret_id_file), what="OpenBao AppRole secret id")
            except PermissionError as err:
                raise SecretsUnavailable(str(err)) from None
        if self.secret_id_env is None:
            raise SecretsUnavailable("OpenBao AppRole: no secret id file or variable configured")
        value = os.environ.get(self.secret_id_env)
        if not value:
            raise SecretsUnavailable(
                f"OpenBao AppRole secret id: environment variable {self.secret_id_env} is not "
                f"set in the control plane's process (pid {os.getpid()})"
            )
        return value

    def ca_pem(self) -> str | None:
        """The CA certificate's text, for nodes that redeem wrapped secrets."""
        if self.ca_file is None:
            return None
        try:
            return Path(self.ca_file).read_text()
        except OSError as err:
            raise SecretsUnavailable(f"OpenBao CA file {self.ca_file}: {err.strerror}") from None


def connect(address: str, *, verify: str | bool = True, token: str | None = None) -> hvac.Client:
    """An hvac client of `address` (`verify`: a CA file, or True for the system's CAs)."""
    return hvac.Client(url=address, token=token, verify=verify, timeout=TIMEOUT_S)


def mapped(address: str, call: Callable[[], T]) -> T:
    """`call()` with OpenBao's failures as SecretsUnavailable / SecretNotFound (for 404s the
    caller knows the name: the error is raised with the path)."""
    try:
        return call()
    except bao.InvalidPath as err:
        raise SecretNotFound(_path_of(err)) from None
    except bao.VaultDown as err:
        sealed = "sealed" in str(err).lower()
        why = "is sealed: unseal it (`bao operator unseal`)" if sealed else f"is down: {err}"
        raise SecretsUnavailable(f"OpenBao at {address} {why}", sealed=sealed) from None
    except bao.VaultNotInitialized:
        raise SecretsUnavailable(f"OpenBao at {address} is not initialised") from None
    except (requests.ConnectionError, requests.Timeout) as err:
        raise SecretsUnavailable(f"OpenBao not reachable at {address}: {_short(err)}") from None
    except (bao.InternalServerError, bao.BadGateway, bao.RateLimitExceeded) as err:
        raise SecretsUnavailable(f"OpenBao at {address} failed: {err}") from None


def _path_of(err: bao.VaultError) -> str:
    return (err.url or "").rsplit("/", 1)[-1]


def _short(err: Exception) -> str:
    # requests' messages nest the whole retry history; its last part says what went wrong.
    text = str(err)
    return text.rsplit(": ", 1)[-1].rstrip("')\"") if len(text) > 160 else text
