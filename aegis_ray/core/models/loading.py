"""Reading manifests from YAML/JSON text, files or dicts, with errors that name what is wrong.

Every problem is reported with its source (file name or request), the dotted path of the key
("spec.security.resources.memory", "spec.execution.target_tags[1]"), the value found and what
would be accepted.
"""

from __future__ import annotations

import json
import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from aegis_ray.core.models.agent import AgentManifest
from aegis_ray.core.models.base import API_VERSION, FIELD_ERROR, UNION_MEMBERS
from aegis_ray.core.models.node import NodeConfig

KINDS: dict[str, type[AgentManifest] | type[NodeConfig]] = {
    "Agent": AgentManifest,
    "NodeConfig": NodeConfig,
}
M = TypeVar("M", AgentManifest, NodeConfig)
_MISSING = object()
#: The largest manifest the API takes (and the CLI checks before sending one).
MAX_MANIFEST_BYTES = 1 << 20
#: How deeply a document may nest mappings and lists (a manifest needs a handful of levels;
#: parsers and PostgreSQL give up somewhere past a thousand).
MAX_DEPTH = 100
# PostgreSQL text holds neither NUL nor lone surrogates (which are not UTF-8 either).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


@dataclass
class Problem:
    path: str  # dotted, list indexes as [i]; "" for the document itself
    value: Any
    message: str
    missing: bool = False  # the key is absent: there is no value to show

    def render(self, source: str) -> str:
        where = f"{source}: {self.path}: " if self.path else f"{source}: "
        shown = _short_repr(self.value)
        # Validators that already quote the value (validate_tag does) need no second copy.
        got = "" if self.missing or shown in self.message else f" (got {shown})"
        return f"{where}{self.message}{got}"


class ManifestError(ValueError):
    """A manifest or node config that cannot be used, with every problem found in it."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(p.render(self.source) for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description for API error bodies."""
        return {
            "error": "invalid_manifest",
            "source": self.source,
            "problems": [
                {"path": p.path, "value": _json_safe(p.value), "message": p.message}
                for p in self.problems
            ],
        }


def parse_agent(data: dict[str, Any] | str | bytes, source: str = "<input>") -> AgentManifest:
    """An Agent manifest from a dict or YAML/JSON text; raises ManifestError."""
    return _validate(AgentManifest, _document(data, source), source)


def parse_node_config(data: dict[str, Any] | str | bytes, source: str = "<input>") -> NodeConfig:
    """A NodeConfig from a dict or YAML/JSON text; raises ManifestError."""
    return _validate(NodeConfig, _document(data, source), source)


def parse_document(
    data: dict[str, Any] | str | bytes, source: str = "<input>"
) -> AgentManifest | NodeConfig:
    """An Agent manifest or a NodeConfig, whichever `kind` says; raises ManifestError."""
    doc = _document(data, source)
    kind = doc.get("kind")
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ManifestError(source, _header_problems(doc, None))
    if model is AgentManifest:
        return _validate(AgentManifest, doc, source)
    return _validate(NodeConfig, doc, source)


def load_file(path: str | Path) -> AgentManifest | NodeConfig:
    """Read and validate a manifest or node config file (the error source is `path` as given)."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        problem = Problem("", source, f"cannot read file: {exc.strerror}")
        raise ManifestError(source, [problem]) from None
    return parse_document(raw, source)


def json_schema(kind: Literal["agent", "node"]) -> dict[str, Any]:
    """JSON Schema of a document kind, for editors (YAML key names)."""
    models: dict[str, type[BaseModel]] = {"agent": AgentManifest, "node": NodeConfig}
    if kind not in models:
        raise ValueError(f"unknown schema {kind!r} (accepted: agent, node)")
    schema = models[kind].model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


# --- text to document ---------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and aliases (no billion-laughs expansion)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in manifests", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool | None):
                # A list or mapping as a key (`? [a, b]`): no manifest key is one.
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a plain value, not a list or mapping",
                    key_node.start_mark,
                )  # fmt: skip
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def _document(data: dict[str, Any] | str | bytes, source: str) -> dict[str, Any]:
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ManifestError(
                source, [Problem("", None, f"not UTF-8 text (byte {exc.start})", missing=True)]
            ) from None
    doc = _parse_text(data, source) if isinstance(data, str) else data
    if problems := unstorable(doc):
        raise ManifestError(source, problems)
    if not isinstance(doc, dict):
        what = "empty document" if doc is None else f"a {type(doc).__name__}"
        message = f"expected a mapping with apiVersion, kind, metadata, spec; got {what}"
        raise ManifestError(source, [Problem("", doc, message, missing=doc is None)])
    return doc


def unstorable(doc: Any) -> list[Problem]:
    """What no manifest may hold anywhere, whatever the field: nesting deeper than MAX_DEPTH,
    NaN or infinity, NUL or a lone surrogate in a key or a string (one problem for each)."""
    problems: list[Problem] = []
    # Iterative, so that a deep document cannot exhaust Python's stack here either.
    todo: list[tuple[Any, str, int]] = [(doc, "", 0)]
    while todo:
        value, path, depth = todo.pop()
        if isinstance(value, dict | list) and depth >= MAX_DEPTH:
            message = f"nested deeper than {MAX_DEPTH} levels"
            problems.append(Problem(path, None, message, missing=True))
        elif isinstance(value, dict):
            for key, item in reversed(list(value.items())):
                where = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and _UNSTORABLE.search(key):
                    message = "key holds a NUL character or a lone surrogate"
                    problems.append(Problem(where, key, message))
                else:
                    todo.append((item, where, depth + 1))
        elif isinstance(value, list):
            for i, item in reversed(list(enumerate(value))):
                todo.append((item, f"{path}[{i}]", depth + 1))
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(Problem(path, str(value), "must be a finite number"))
        elif isinstance(value, str) and _UNSTORABLE.search(value):
            message = "holds a NUL character or a lone surrogate"
            problems.append(Problem(path, value, message))
    return problems


def _parse_text(text: str, source: str) -> Any:
    try:
        return _parse_text_of_any_depth(text, source)
    except RecursionError:
        message = f"nested too deeply (a manifest may nest {MAX_DEPTH} levels)"
        raise ManifestError(source, [Problem("", None, message, missing=True)]) from None


def _parse_text_of_any_depth(text: str, source: str) -> Any:
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text, object_pairs_hook=_no_duplicates)
        except ValueError:
            pass  # YAML flow style is not JSON: let the YAML parser have it (and explain)
    try:
        docs = [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]
    except yaml.MarkedYAMLError as exc:
        raise ManifestError(source, [Problem("", None, _yaml_message(exc), missing=True)]) from None
    except yaml.YAMLError as exc:
        raise ManifestError(
            source, [Problem("", None, f"YAML error: {exc}", missing=True)]
        ) from None
    if len(docs) > 1:
        message = f"{len(docs)} YAML documents; give one manifest per file"
        raise ManifestError(source, [Problem("", None, message, missing=True)])
    return docs[0] if docs else None


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    what = " ".join(p for p in (exc.context, exc.problem) if p)
    return f"YAML syntax error{where}: {what}"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


# --- document to model --------------------------------------------------------------------


def _header_problems(doc: dict[str, Any], expected: str | None) -> list[Problem]:
    accepted_kinds = expected or ", ".join(KINDS)
    problems = []
    version = doc.get("apiVersion", _MISSING)
    if version is _MISSING:
        problems.append(Problem("apiVersion", None, f"required ({API_VERSION})", missing=True))
    elif version != API_VERSION:
        problems.append(
            Problem("apiVersion", version, f"unsupported apiVersion (accepted: {API_VERSION})")
        )
    kind = doc.get("kind", _MISSING)
    if kind is _MISSING:
        message = f"required (accepted: {accepted_kinds})"
        problems.append(Problem("kind", None, message, missing=True))
    elif expected is not None and kind != expected:
        message = f"expected kind {expected} here (accepted: {accepted_kinds})"
        problems.append(Problem("kind", kind, message))
    elif expected is None and kind not in KINDS:
        problems.append(Problem("kind", kind, f"unknown kind (accepted: {accepted_kinds})"))
    return problems


def _validate(model: type[M], doc: dict[str, Any], source: str) -> M:
    kind = "Agent" if model is AgentManifest else "NodeConfig"
    problems = _header_problems(doc, kind)
    if any(p.path == "kind" for p in problems):
        raise ManifestError(source, problems)  # the rest would be checked against the wrong kind
    try:
        result = model.model_validate(doc)
    except ValidationError as exc:
        problems += [p for p in problems_of(exc, model) if p.path not in ("apiVersion", "kind")]
    if problems:
        raise ManifestError(source, problems)
    return result


def problems_of(exc: ValidationError, model: type[BaseModel]) -> list[Problem]:
    """Pydantic errors as Problems with YAML key paths."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        kind = err["type"]
        if kind == FIELD_ERROR:
            for item in (err.get("ctx") or {}).get("fields", []):
                sub = tuple(item["field"].split("."))
                value = item["value"]
                problems.append(
                    Problem(_dotted(loc + sub), value, item["message"], missing=value is None)
                )
        elif kind == "extra_forbidden":
            keys = _accepted_keys(model, loc[:-1])
            message = f"unknown key (accepted: {', '.join(keys)})" if keys else "unknown key"
            problems.append(Problem(_dotted(loc), err["input"], message))
        elif kind == "missing":
            problems.append(Problem(_dotted(loc), None, "required", missing=True))
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
            problems.append(Problem(_dotted(loc), err["input"], message))
    return problems


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            continue  # pydantic's marker for "the key itself is wrong"; the message names it
        elif part in UNION_MEMBERS:
            continue  # which member of a union was tried: the key's path is the same
        else:
            out += f".{part}" if out else str(part)
    return out


def _accepted_keys(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the model at `loc` accepts (aliases where they exist)."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = next(
                (f for name, f in current.model_fields.items() if part in (name, f.alias)), None
            )
            if field is None:
                return []
            current = field.annotation
        elif typing.get_origin(current) in (list, dict):
            current = typing.get_args(current)[-1]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional from a type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_safe(value: Any) -> Any:
    try:
        # Error bodies are JSON in UTF-8: no NaN, no lone surrogate.
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError):
        return repr(value)
    return value
