"""Secrets as the API shows them: names, keys and versions, never a value.

Values go one way, in a `SecretPut`; every reply about a secret carries its metadata only.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from aegis_ray.contract.body import Body, Timestamp


class SecretPut(BaseModel):
    """The body of `PUT /v1/secrets/{name}`: the secret's KEY -> VALUE pairs. A put replaces
    the keys the secret had (a new version), as `bao kv put` does."""

    model_config = ConfigDict(extra="forbid")
    data: dict[str, str] = Field(description="KEY -> VALUE; keys like api_key, values text")


class Secret(Body):
    """A secret of the caller's tenant: its name, key names and version; never its values."""

    name: str
    keys: list[str]
    version: int
    created_at: Timestamp | None = None
    updated_at: Timestamp | None = None


class SecretPage(Body):
    items: list[Secret]


class SecretDeleted(Body):
    name: str
    deleted: bool
