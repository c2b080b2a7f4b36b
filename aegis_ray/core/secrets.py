"""Secrets as the rest of aegis sees them: names, keys, references and where a tenant's live.

A secret is a NAME holding KEY=VALUE pairs in OpenBao's KV v2 store, under a path of its
tenant's own. Manifests refer to one value as "NAME#KEY"; values never travel with a manifest,
an execution row or a workflow. At launch the node agent gets a `SecretDelivery`: where OpenBao
is, one single-use wrapping token per referenced secret, and which env variable or file each
reference becomes. Plain data only: it crosses processes (activity -> node agent).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

# Names and keys: letters, digits, '_', '.', '-', starting with a letter or digit. No '/' (a
# name is one path segment of the store) and no '#' (the separator of a reference).
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_TENANT = re.compile(r"[A-Za-z0-9_.-]{1,128}")
SEPARATOR = "#"
REFERENCE_FORM = "NAME#KEY"
# Limits of what one secret may hold (OpenBao takes far more; an agent's key needs far less).
MAX_KEYS = 60
MAX_VALUE_BYTES = 64 * 1024
# Where every tenant's secrets live inside the KV v2 mount.
STORE_PREFIX = "aegis/tenants"


def check_word(value: str, what: str) -> str:
    """`value` if it is a valid secret name or key (`what` says which), else ValueError."""
    if not _WORD.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} must be 1-128 letters, digits, '_', '.' or '-', starting with "
            "a letter or digit"
        )
    return value


def check_name(name: str) -> str:
    return check_word(name, "secret name")


def check_key(key: str) -> str:
    return check_word(key, "secret key")


@dataclass(frozen=True, order=True)
class SecretRef:
    """One value of a secret: "NAME#KEY"."""

    name: str
    key: str

    def __str__(self) -> str:
        return f"{self.name}{SEPARATOR}{self.key}"

    @classmethod
    def parse(cls, text: str) -> SecretRef:
        """A reference from "NAME#KEY"; ValueError naming what is wrong."""
        name, sep, key = text.partition(SEPARATOR)
        if not sep:
            raise ValueError(f"{text!r} is not a secret reference {REFERENCE_FORM}")
        try:
            return cls(check_name(name), check_key(key))
        except ValueError as err:
            why = f"{text!r} is not a secret reference {REFERENCE_FORM}: {err}"
            raise ValueError(why) from None


def check_reference(text: str) -> str:
    """Pydantic field check for a reference kept as its text."""
    SecretRef.parse(text)
    return text


def check_secret_data(data: dict[str, str]) -> list[str]:
    """Every problem with KEY=VALUE pairs to store, naming the key, never echoing a value."""
    problems: list[str] = []
    if not data:
        problems.append("no KEY=VALUE pairs: a secret holds at least one")
    if len(data) > MAX_KEYS:
        problems.append(f"{len(data)} keys: a secret holds at most {MAX_KEYS}")
    for key, value in data.items():
        try:
            check_key(key)
        except ValueError as err:
            problems.append(str(err))
            continue
        if not isinstance(value, str):
            problems.append(f"value of key {key!r} must be a string (got {type(value).__name__})")
        elif not value:
            problems.append(f"value of key {key!r} is empty")
        elif len(value.encode()) > MAX_VALUE_BYTES:
            problems.append(f"value of key {key!r} is over {MAX_VALUE_BYTES // 1024} KiB")
    return problems


def tenant_segment(tenant_id: str) -> str:
    """The tenant's path segment in the store: its id where that is path-safe, else an
    unambiguous encoding of it (so that no tenant id can reach another tenant's path)."""
    if _TENANT.fullmatch(tenant_id) and tenant_id not in (".", ".."):
        return tenant_id
    encoded = base64.urlsafe_b64encode(tenant_id.encode()).decode().rstrip("=")
    return f"~{encoded}"  # '~' never starts a plain segment


def tenant_prefix(tenant_id: str) -> str:
    """Path (inside the KV v2 mount) under which a tenant's secrets live, with a final '/'."""
    return f"{STORE_PREFIX}/{tenant_segment(tenant_id)}/"


def secret_path(tenant_id: str, name: str) -> str:
    """Path (inside the KV v2 mount) of one of a tenant's secrets."""
    return tenant_prefix(tenant_id) + check_name(name)


@dataclass(frozen=True)
class WrappedSecret:
    """A single-use, short-lived OpenBao wrapping token holding one secret's KV read."""

    name: str
    creation_path: str  # what OpenBao must report the token was made for (checked first)
    token: str


@dataclass(frozen=True)
class SecretEnv:
    """An environment variable of the container that gets a secret's value."""

    env: str
    ref: SecretRef


@dataclass(frozen=True)
class SecretFile:
    """A read-only file in the container that holds a secret's value."""

    path: str
    ref: SecretRef


@dataclass(frozen=True)
class SecretDelivery:
    """What the node agent redeems to give a container its secrets (no value in here)."""

    address: str  # OpenBao's API, as the node reaches it
    ca_pem: str | None  # the CA certificate of an https address (public data)
    wrapped: tuple[WrappedSecret, ...]
    env: tuple[SecretEnv, ...] = ()
    files: tuple[SecretFile, ...] = ()

    @property
    def refs(self) -> list[SecretRef]:
        return sorted({*(e.ref for e in self.env), *(f.ref for f in self.files)})


@dataclass(frozen=True)
class Reference:
    """Where a manifest refers to a secret: the field path, and the reference."""

    field: str  # e.g. "spec.env.OPENAI_API_KEY", "spec.secret_files[0].secret"
    ref: SecretRef
