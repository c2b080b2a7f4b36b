"""Between the REST API's JSON bodies (plain dicts) and the gRPC messages of protos/aegis/v1.

The server builds every reply with `to_message(rest_body, MessageType)`, strictly: a key the
message lacks is an error, so the two APIs cannot drift apart silently. Clients turn replies
back into the same dicts with `to_dict`, so the CLI renders both transports alike.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from aegis_ray.rpc import executions_pb2, nodes_pb2

M = TypeVar("M", bound=Message)

_MANIFEST = executions_pb2.AgentManifest.DESCRIPTOR.full_name
_JSON_TYPES = ("google.protobuf.Value", "google.protobuf.Struct", "google.protobuf.ListValue")
# Where a JSON number's int/float kind carries meaning (cpu: 500 millicores, 0.5 cores): every
# quantity of spec.security.resources, whatever the dimension, and the execution timeout.
# google.protobuf.Value keeps only doubles, so fractional numbers travel as strings.
_QUANTITY_MAPS: tuple[tuple[str, ...], ...] = (("spec", "security", "resources"),)
_QUANTITIES: tuple[tuple[str, ...], ...] = (("spec", "execution", "timeout"),)


def to_message(body: dict[str, Any], cls: type[M]) -> M:
    """A REST body as a gRPC message; unknown keys are an error (json_format.ParseError)."""
    return json_format.ParseDict(body, cls(), ignore_unknown_fields=False)


def manifest_message(doc: dict[str, Any]) -> executions_pb2.AgentManifest:
    """An Agent manifest document (as loaded from YAML) as the structured message."""
    doc = copy.deepcopy(doc)
    quantities: list[tuple[str, ...]] = list(_QUANTITIES)
    for path in _QUANTITY_MAPS:
        found: Any = doc
        for key in path:
            found = found.get(key) if isinstance(found, dict) else None
        if isinstance(found, dict):
            quantities += [(*path, name) for name in found]
    for path in quantities:
        parent: Any = doc
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        value = parent.get(path[-1]) if isinstance(parent, dict) else None
        if isinstance(value, float):
            assert isinstance(parent, dict)
            parent[path[-1]] = repr(value)
    return to_message(doc, executions_pb2.AgentManifest)


def to_dict(msg: Message, *, drop_unset: bool = False) -> dict[str, Any]:
    """A gRPC message as the REST API's JSON body: unset optional fields are None, times are
    ISO 8601 strings, 64-bit integers stay integers. A manifest comes back as a document
    (apiVersion, unset fields left out) that validates as the original did; `drop_unset` does
    the same for any message (request bodies, where absent means "the default")."""
    return _message(msg, document=drop_unset or msg.DESCRIPTOR.full_name == _MANIFEST)


def health_body(msg: nodes_pb2.Health) -> dict[str, Any]:
    return {"status": msg.status, "version": msg.version, **dict(msg.checks)}


def health_message(body: dict[str, Any]) -> nodes_pb2.Health:
    checks = {k: str(v) for k, v in body.items() if k not in ("status", "version")}
    return nodes_pb2.Health(status=body["status"], version=body["version"], checks=checks)


def _message(msg: Message, *, document: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        name = field.name
        value = getattr(msg, name)
        inner = document or (
            field.message_type is not None and field.message_type.full_name == _MANIFEST
        )
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            converted: Any = {k: _value(v, value_field, inner) for k, v in value.items()}
            if document and not converted:
                continue
        elif field.is_repeated:
            converted = [_value(v, field, inner) for v in value]
            if document and not converted:
                continue
        elif field.has_presence and not msg.HasField(name):
            if document:
                continue
            converted = None
        else:
            converted = _value(value, field, inner)
        out["apiVersion" if document and name == "api_version" else name] = converted
    return out


def _value(value: Any, field: Any, document: bool) -> Any:
    if field.message_type is None:
        return value
    full_name = field.message_type.full_name
    if full_name == "google.protobuf.Timestamp":
        return value.ToDatetime(tzinfo=dt.UTC).isoformat()
    if full_name in _JSON_TYPES:
        return _integral(json_format.MessageToDict(value))
    return _message(value, document=document or full_name == _MANIFEST)


def _integral(value: Any) -> Any:
    """JSON numbers come back as doubles: whole ones are ints again (cpu 250 = millicores)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value
