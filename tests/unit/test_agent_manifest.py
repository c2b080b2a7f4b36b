import copy
from pathlib import Path
from typing import Any

import pytest

from aegis_ray.core.models.agent import AgentManifest, validate_image
from aegis_ray.core.models.loading import ManifestError, load_file, parse_agent

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

GOOD: dict[str, Any] = {
    "apiVersion": "100monkeys.ai/v1",
    "kind": "Agent",
    "metadata": {"name": "summarizer", "version": "1.2.0", "labels": {"team": "ml"}},
    "spec": {
        "runtime": {"image": "registry.local:5000/agents/summarizer:1.0", "command": ["run"]},
        "task": {"instruction": "Summarise", "input": {"urls": ["a", "b"], "depth": None}},
        "env": {"LOG_LEVEL": "debug"},
        "security": {
            "resources": {"cpu": 500, "memory": "512Mi", "disk": "2Gi", "gpu": 1},
            "network": {"mode": "allow"},
        },
        "execution": {"target_tags": ["gpu", "large-memory"], "timeout": "10m", "max_retries": 2},
    },
}


def with_(path: str, value: Any) -> dict[str, Any]:
    """GOOD with one dotted key replaced."""
    doc = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    node[last] = value
    return doc


def error_of(doc: dict[str, Any] | str) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        parse_agent(doc, source="agent.yaml")
    return info.value


def test_full_manifest_parses_to_canonical_units() -> None:
    m = parse_agent(GOOD)
    res = m.spec.security.resources
    assert (res.cpu, res.memory, res.disk, res.gpu) == (500, 512 * 2**20, 2 * 2**30, 1)
    assert m.spec.execution.timeout == 600.0
    assert m.spec.execution.target_tags == ["gpu", "large-memory"]
    assert m.spec.task.input == {"urls": ["a", "b"], "depth": None}


def test_minimal_manifest_gets_documented_defaults() -> None:
    m = parse_agent(
        "apiVersion: 100monkeys.ai/v1\nkind: Agent\nmetadata: {name: tiny}\n"
        "spec: {runtime: {image: busybox}}\n"
    )
    assert m.metadata.version == "0.1.0"
    assert m.spec.runtime.image_pull_policy == "IfNotPresent"
    assert m.spec.security.resources.cpu == 500
    assert m.spec.security.resources.memory == 256 * 2**20
    assert m.spec.security.network.mode == "none"
    assert (m.spec.execution.timeout, m.spec.execution.max_retries) == (600.0, 0)


def test_to_document_round_trips() -> None:
    m = parse_agent(GOOD)
    doc = m.to_document()
    assert doc["apiVersion"] == "100monkeys.ai/v1"
    assert doc["spec"]["security"]["resources"]["memory"] == 512 * 2**20
    assert parse_agent(doc) == m


def test_models_are_frozen() -> None:
    m = parse_agent(GOOD)
    with pytest.raises(ValueError):
        m.metadata.name = "other"  # type: ignore[misc]


def test_example_manifests_are_valid() -> None:
    files = sorted(EXAMPLES.glob("*agent*.yaml"))
    assert files, "examples/ should hold agent manifests"
    for path in files:
        assert isinstance(load_file(path), AgentManifest), path


def test_reference_security_timeout_becomes_execution_timeout() -> None:
    doc = with_("spec.security.resources", {"cpu": 500, "memory": "64Mi", "timeout": "90s"})
    del doc["spec"]["execution"]["timeout"]
    assert parse_agent(doc).spec.execution.timeout == 90.0
    conflicting = with_("spec.security.resources", {"timeout": "90s"})
    err = error_of(conflicting)
    assert err.problems[0].path == "spec.security.resources.timeout"
    assert "conflicts with spec.execution.timeout" in str(err)


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        ("metadata.name", "My_Agent", "not a DNS label"),
        ("metadata.name", "-x", "not a DNS label"),
        ("spec.security.resources.cpu", -100, "must be millicores"),
        ("spec.security.resources.cpu", 2, "at least 10 millicores"),
        ("spec.security.resources.cpu", 10**9, "at most 256000 millicores"),
        ("spec.security.resources.memory", "-1Gi", "must be a size like 512Mi"),
        ("spec.security.resources.memory", "1Mi", "at least 6Mi"),
        ("spec.security.resources.memory", "900Ti", "at most 4Ti"),
        ("spec.security.resources.disk", "200Ti", "at most 100Ti"),
        ("spec.security.resources.gpu", 17, "at most 16"),
        ("spec.execution.timeout", "0s", "at least 1s"),
        ("spec.execution.timeout", "30d", "at most 7d"),
        ("spec.execution.max_retries", 11, "at most 10"),
        ("spec.runtime.image_pull_policy", "Sometimes", "'Always', 'IfNotPresent' or 'Never'"),
        ("spec.security.network.mode", "open", "'none', 'allow' or 'deny'"),
        ("spec.runtime.command", [], "at least 1 item"),
    ],
)
def test_bad_values_name_path_value_and_rule(path: str, value: Any, fragment: str) -> None:
    err = error_of(with_(path, value))
    text = str(err)
    assert text.startswith(f"agent.yaml: {path}: ")
    assert fragment in text
    assert repr(value) in text
    assert [p.path for p in err.problems] == [path]


@pytest.mark.parametrize(
    "image",
    [
        "Ubuntu:22.04",
        "ubuntu 22.04",
        "",
        "ubuntu:",
        "registry:5000/Foo",
        "repo@sha256:abc",
        "a//b",
        "-bad/name",
    ],
)
def test_bad_image_references_are_rejected(image: str) -> None:
    err = error_of(with_("spec.runtime.image", image))
    assert err.problems[0].path == "spec.runtime.image"
    assert "is not an image reference" in str(err)


@pytest.mark.parametrize(
    "image",
    [
        "busybox",
        "busybox:1.36",
        "library/busybox:latest",
        "ghcr.io/org/agent:v1.0-rc.1",
        "localhost:5000/a/b",
        "[::1]:5000/img",
        "aegis-examples/agent:latest",
        "img@sha256:" + "a" * 64,
        "my.registry/a_b/c__d/e-f:tag",
    ],
)
def test_good_image_references_are_accepted(image: str) -> None:
    assert validate_image(image) == image


@pytest.mark.parametrize(
    ("tags", "path", "fragment"),
    [
        (["gpu", "a_group_1"], "spec.execution.target_tags[1]", "_group_"),
        (["GPU"], "spec.execution.target_tags[0]", "lowercase"),
        (["memory"], "spec.execution.target_tags[0]", "reserved Ray resource name"),
        (["gpu", "gpu"], "spec.execution.target_tags", "duplicate 'gpu'"),
        (["x" * 64], "spec.execution.target_tags[0]", "1-63"),
    ],
)
def test_bad_target_tags_are_rejected_with_index(tags: list[str], path: str, fragment: str) -> None:
    err = error_of(with_("spec.execution.target_tags", tags))
    assert [p.path for p in err.problems] == [path]
    assert fragment in str(err)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"AEGIS_TOKEN": "x"}, "reserved prefix AEGIS_"),
        ({"1BAD": "x"}, "letters, digits"),
        ({"BAD-NAME": "x"}, "letters, digits"),
        ({"N": 3}, "valid string"),
    ],
)
def test_bad_env_is_rejected(env: dict[str, Any], fragment: str) -> None:
    err = error_of(with_("spec.env", env))
    assert err.problems[0].path == f"spec.env.{next(iter(env))}"
    assert fragment in str(err)


@pytest.mark.parametrize(
    ("path", "accepted"),
    [
        ("bogus", "apiVersion, kind, metadata, spec"),
        ("metadata.owner", "name, version, labels"),
        ("spec.resources", "runtime, task, env, secret_files, security, execution"),
        ("spec.security.resources.cpus", "cpu, memory, disk, gpu, timeout"),
        ("spec.execution.tags", "target_tags, timeout, max_retries"),
    ],
)
def test_unknown_keys_at_any_depth_list_the_accepted_ones(path: str, accepted: str) -> None:
    err = error_of(with_(path, 1))
    assert [p.path for p in err.problems] == [path]
    assert f"agent.yaml: {path}: unknown key (accepted: {accepted}) (got 1)" == str(err)


def test_every_problem_is_reported_not_just_the_first() -> None:
    doc = with_("metadata.name", "Bad Name")
    doc["spec"]["security"]["resources"]["memory"] = "lots"
    doc["spec"]["extra"] = True
    err = error_of(doc)
    assert {p.path for p in err.problems} == {
        "metadata.name",
        "spec.security.resources.memory",
        "spec.extra",
    }
    assert len(str(err).splitlines()) == 3


def test_missing_required_field_has_no_value_to_show() -> None:
    doc = copy.deepcopy(GOOD)
    del doc["spec"]["runtime"]["image"]
    err = error_of(doc)
    assert str(err) == "agent.yaml: spec.runtime.image: required"
    assert err.to_dict()["problems"] == [
        {"path": "spec.runtime.image", "value": None, "message": "required"}
    ]


SECRET_SPEC = {
    "env": {"OPENAI_API_KEY": {"secret": "openai#api_key"}, "LOG_LEVEL": "debug"},
    "secret_files": [{"secret": "tls#key", "path": "/run/secrets/tls.key"}],
}


def test_env_takes_secret_references_beside_plain_strings() -> None:
    doc = copy.deepcopy(GOOD)
    doc["spec"] |= SECRET_SPEC
    m = parse_agent(doc)
    assert m.spec.plain_env() == {"LOG_LEVEL": "debug"}
    assert [(r.field, str(r.ref)) for r in m.spec.secret_references()] == [
        ("spec.env.OPENAI_API_KEY", "openai#api_key"),
        ("spec.secret_files[0].secret", "tls#key"),
    ]
    # Stored and shown as written: references only.
    assert m.to_document()["spec"]["env"] == SECRET_SPEC["env"]
    assert parse_agent(m.to_document()) == m


@pytest.mark.parametrize(
    ("path", "value", "where", "fragment"),
    [
        ("spec.env", {"K": {"secret": "openai"}}, "spec.env.K.secret", "NAME#KEY"),
        ("spec.env", {"K": {"secret": "a#b", "x": 1}}, "spec.env.K.x", "unknown key"),
        ("spec.env", {"K": {"secret": "a#b/c"}}, "spec.env.K.secret", "secret key 'b/c'"),
        ("spec.secret_files", [{"secret": "a#b"}], "spec.secret_files[0].path", "required"),
        ("spec.secret_files", [{"secret": "a#b", "path": "x"}], "spec.secret_files[0].path",
         "absolute file path"),
        ("spec.secret_files", [{"secret": "a#b", "path": "/run/../etc/x"}],
         "spec.secret_files[0].path", "without '.' or '..'"),
        ("spec.secret_files", [{"secret": "a#b", "path": "/proc/x"}],
         "spec.secret_files[0].path", "under /proc"),
        ("spec.secret_files", [{"secret": "a#b", "path": "/run/s"}, {"secret": "a#c",
         "path": "/run/s/t"}], "spec.secret_files[1].path", "clashes with the secret file"),
    ],
)  # fmt: skip
def test_bad_secret_references_name_the_field(
    path: str, value: Any, where: str, fragment: str
) -> None:
    err = error_of(with_(path, value))
    assert [p.path for p in err.problems] == [where]
    assert fragment in str(err)


def test_the_schema_offers_a_string_or_a_secret_reference_for_env() -> None:
    from aegis_ray.core.models.loading import json_schema

    schema = json_schema("agent")
    env = schema["$defs"]["AgentSpec"]["properties"]["env"]["additionalProperties"]
    assert {"type": "string"} in env["oneOf"]
    assert "SecretFileSpec" in schema["$defs"]
