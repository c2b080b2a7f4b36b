"""Container spec validation, launch errors and log decoding: pure, no engine needed."""

from __future__ import annotations

import io
import pickle
import struct

import pytest

from aegis_ray.adapters.docker.container import (
    LABEL_EXECUTION_ID,
    LABEL_MANAGED,
    ContainerSpec,
    LaunchError,
)
from aegis_ray.adapters.docker.logs import LineAssembler, frames, parse_stamp, replay


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
        ({"timeout_s": 0}, ["timeout_s", "0"]),
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


def test_engine_timestamp_becomes_unix_seconds() -> None:
    ts = parse_stamp(b"2026-01-02T03:04:05.123456789Z")
    assert ts == pytest.approx(1767323045.123456789)
    short = parse_stamp(b"2026-01-02T03:04:05.5Z")
    assert short is not None and ts is not None and short > ts
    assert parse_stamp(b"2026-01-02T04:04:05+01:00") == pytest.approx(1767323045.0)
    assert parse_stamp(b"not-a-time") is None


def _feed(assembler: LineAssembler, data: list[bytes], stream: str = "stdout") -> list[str]:
    return [ln.text for frame in data for ln in assembler.feed(stream, frame)]


def test_split_long_line_is_joined_under_its_first_timestamp() -> None:
    assembler = LineAssembler()
    got = [
        ln
        for frame in (
            b"2026-01-02T03:04:05.000000001Z aaa",
            b"2026-01-02T03:04:05.000000002Z bbb\n",
            b"2026-01-02T03:04:05.000000003Z next\r\n",
        )
        for ln in assembler.feed("stdout", frame)
    ]
    assert [ln.text for ln in got] == ["aaabbb", "next"]
    assert [ln.seq for ln in got] == [0, 1]
    assert got[0].ts == parse_stamp(b"2026-01-02T03:04:05.000000001Z")


def test_unterminated_last_line_is_kept_only_when_flushing() -> None:
    data = [b"2026-01-02T03:04:05.000000001Z done\n", b"2026-01-02T03:04:05.000000002Z tail"]
    assembler = LineAssembler()
    assert _feed(assembler, data) == ["done"]
    assert [ln.text for ln in assembler.flush()] == ["tail"]
    assert assembler.flush() == []


def test_partial_lines_of_the_two_streams_do_not_mix() -> None:
    assembler = LineAssembler()
    out = assembler.feed("stdout", b"2026-01-02T03:04:05.1Z out-")
    out += assembler.feed("stderr", b"2026-01-02T03:04:05.2Z err\n")
    out += assembler.feed("stdout", b"2026-01-02T03:04:05.3Z end\n")
    assert [(ln.seq, ln.stream, ln.text) for ln in out] == [
        (0, "stderr", "err"),
        (1, "stdout", "out-end"),
    ]


def _multiplexed(*items: tuple[int, bytes]) -> io.BytesIO:
    return io.BytesIO(b"".join(struct.pack(">BxxxL", k, len(p)) + p for k, p in items))


def test_multiplexed_frames_keep_their_stream_and_a_cut_frame_ends_the_stream() -> None:
    raw = _multiplexed((1, b"2026-01-02T03:04:05Z a\n"), (2, b"2026-01-02T03:04:05Z b\n"))
    assert list(frames(raw)) == [
        ("stdout", b"2026-01-02T03:04:05Z a\n"),
        ("stderr", b"2026-01-02T03:04:05Z b\n"),
    ]
    cut = io.BytesIO(_multiplexed((1, b"whole\n"), (2, b"cut short")).getvalue()[:-3])
    assert list(frames(cut)) == [("stdout", b"whole\n")]


def test_a_second_read_numbers_lines_alike_and_replay_hands_out_only_the_new_ones() -> None:
    data = [
        (("stdout", "stderr")[i % 2], f"2026-01-02T03:04:05Z line {i}\n".encode()) for i in range(6)
    ]
    first = LineAssembler()
    seen = [ln for stream, frame in data[:4] for ln in first.feed(stream, frame)]
    # The follow ended after four frames; the full re-read hands out only the rest.
    rest = replay(first, data)
    again = LineAssembler()
    everything = [ln for stream, frame in data for ln in again.feed(stream, frame)]
    assert seen + rest == everything
    assert [ln.seq for ln in everything] == list(range(6))


@pytest.mark.parametrize(
    ("mode", "network"), [("none", "none"), ("deny", "none"), ("allow", "bridge")]
)
def test_deny_means_no_network_and_allow_goes_to_the_nodes_network(mode: str, network: str) -> None:
    """`deny` has no egress at all (Docker's `none`); `allow` is handed to the node agent, which
    puts the container on its node's network (aegis-agents unless the NodeConfig says)."""
    from aegis_ray.core.models.loading import parse_agent
    from aegis_ray.workflows.container import container_spec

    manifest = parse_agent(
        {
            "apiVersion": "100monkeys.ai/v1",
            "kind": "Agent",
            "metadata": {"name": "n"},
            "spec": {
                "runtime": {"image": "busybox"},
                "task": {"instruction": "x"},
                "security": {"network": {"mode": mode}},
            },
        }
    )
    assert container_spec(manifest, "e" * 32, 1, placement_group_id="").network_mode == network
