"""Container spec validation, launch errors and log framing: pure, no engine needed."""

from __future__ import annotations

import pickle

import pytest

from aegis_ray.adapters.docker.container import (
    LABEL_EXECUTION_ID,
    LABEL_MANAGED,
    ContainerSpec,
    LaunchError,
)
from aegis_ray.adapters.docker.runtime import _lines_of, _parse_stamp


def spec(**kw: object) -> ContainerSpec:
    fields: dict[str, object] = dict(
        execution_id="0f4e2d7c-1111-2222-3333-444455556666",
        attempt=2,
        image="aegis-examples/agent:latest",
        command=("sh", "-c", "true"),
        env={"A": "1"},
        cpu_millis=250,
        memory_bytes=64 << 20,
    )
    fields.update(kw)
    return ContainerSpec(**fields)  # type: ignore[arg-type]


def test_valid_spec_gets_its_name_and_the_reserved_labels() -> None:
    s = spec(labels={"team": "x"})
    s.validate()
    assert s.container_name == "aegis-0f4e2d7c-111-a2"
    labels = s.all_labels()
    assert labels["team"] == "x"
    assert labels[LABEL_EXECUTION_ID] == s.execution_id and labels[LABEL_MANAGED] == "true"


@pytest.mark.parametrize(
    ("bad", "needles"),
    [
        ({"cpu_millis": 0}, ["cpu_millis", "0"]),
        ({"memory_bytes": 4096}, ["memory_bytes", "4096"]),
        ({"pids_limit": -1}, ["pids_limit", "-1"]),
        ({"network_mode": "host"}, ["network_mode", "'host'"]),
        ({"network_mode": "container:abc"}, ["network_mode", "container:abc"]),
        ({"pull_policy": "always"}, ["pull_policy", "'always'", "IfNotPresent"]),
        ({"image": ""}, ["image", "''"]),
        ({"env": {"A=B": "x"}}, ["env", "A=B"]),
        ({"labels": {LABEL_MANAGED: "false"}}, ["labels", LABEL_MANAGED]),
        ({"hard_deadline_s": 0}, ["hard_deadline_s", "0"]),
    ],
)
def test_invalid_spec_names_the_field_and_the_value(
    bad: dict[str, object], needles: list[str]
) -> None:
    with pytest.raises(LaunchError) as err:
        spec(**bad).validate()
    assert err.value.code == "invalid_spec"
    for needle in needles:
        assert needle in err.value.message


def test_launch_error_survives_pickling_with_code_and_message() -> None:
    err = pickle.loads(pickle.dumps(LaunchError("image_not_found", "image x missing")))
    assert isinstance(err, LaunchError)
    assert (err.code, err.message) == ("image_not_found", "image x missing")
    assert str(err) == "image_not_found: image x missing"


def test_engine_timestamp_becomes_unix_seconds_and_a_sortable_key() -> None:
    key, ts = _parse_stamp(b"2026-01-02T03:04:05.123456789Z") or (b"", 0.0)
    assert ts == pytest.approx(1767323045.123456789)
    short = _parse_stamp(b"2026-01-02T03:04:05.5Z")
    assert short is not None and short[0] > key
    assert _parse_stamp(b"not-a-time") is None


def test_split_long_line_is_joined_under_its_first_timestamp() -> None:
    got = list(
        _lines_of(
            iter(
                [
                    b"2026-01-02T03:04:05.000000001Z aaa",
                    b"2026-01-02T03:04:05.000000002Z bbb\n",
                    b"2026-01-02T03:04:05.000000003Z next\r\n",
                ]
            )
        )
    )
    assert [text for _, _, text in got] == ["aaabbb", "next"]
    assert got[0][0] == b"2026-01-02T03:04:05.000000001"


def test_unterminated_last_line_is_kept_only_when_flushing() -> None:
    data = [b"2026-01-02T03:04:05.000000001Z done\n", b"2026-01-02T03:04:05.000000002Z tail"]
    assert [t for _, _, t in _lines_of(iter(data))] == ["done", "tail"]
    assert [t for _, _, t in _lines_of(iter(data), flush_partial=False)] == ["done"]
