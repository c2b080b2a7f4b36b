"""The Docker container runtime against the real local engine (no Ray)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from aegis_ray.adapters.docker.container import (
    LABEL_ATTEMPT,
    LABEL_EXECUTION_ID,
    LABEL_MANAGED,
    ContainerSpec,
    LaunchError,
    LogLine,
    PollResult,
)
from aegis_ray.adapters.docker.runtime import DockerRuntime
from tests.e2e.runtime_images import busybox_image

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def image() -> str:
    return busybox_image(docker.from_env())


@pytest.fixture
def runtime() -> Iterator[DockerRuntime]:
    rt = DockerRuntime()
    yield rt
    # Only this test's containers: the engine is shared with other test sessions.
    for eid in _used_ids:
        rt.remove_for_execution(eid)
    _used_ids.clear()


_used_ids: list[str] = []


def make_spec(image: str, script: str, **overrides: Any) -> ContainerSpec:
    eid = str(uuid.uuid4())
    _used_ids.append(eid)
    fields: dict[str, Any] = dict(
        execution_id=eid,
        attempt=1,
        image=image,
        command=("sh", "-c", script),
        env={"GREETING": "hello"},
        cpu_millis=250,
        memory_bytes=64 * MiB,
        pull_policy="Never",
        labels={"ai.100monkeys.aegis/agent": "runtime-test"},
    )
    fields.update(overrides)
    return ContainerSpec(**fields)


def run_to_end(
    rt: DockerRuntime, cid: str, timeout: float = 30
) -> tuple[list[LogLine], PollResult]:
    lines: list[LogLine] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = rt.poll(cid)
        lines += result.lines
        if not result.running:
            return lines, result
        time.sleep(0.1)
    raise AssertionError(f"container {cid[:12]} still running after {timeout}s")


@pytest.mark.parametrize("exit_code", [0, 3])
def test_stdout_and_stderr_lines_arrive_on_their_streams_with_the_exit_code(
    runtime: DockerRuntime, image: str, exit_code: int
) -> None:
    script = f'echo "out $GREETING"; echo "err one" >&2; echo out2; printf tail; exit {exit_code}'
    cid = runtime.start(make_spec(image, script))
    lines, result = run_to_end(runtime, cid)
    assert result.exit_code == exit_code and not result.oom_killed and result.error is None
    got = [(ln.stream, ln.text) for ln in lines]
    assert [t for s, t in got if s == "stdout"] == ["out hello", "out2", "tail"]
    assert [t for s, t in got if s == "stderr"] == ["err one"]
    assert all(abs(ln.ts - time.time()) < 60 for ln in lines)


def test_engine_holds_the_container_to_its_limits_and_drops_every_privilege(
    runtime: DockerRuntime, image: str
) -> None:
    spec = make_spec(image, "sleep 30", cpu_millis=500, memory_bytes=48 * MiB, pids_limit=32)
    cid = runtime.start(spec)
    limits = runtime.inspect_limits(cid)
    assert limits["NanoCpus"] == 500_000_000
    assert limits["Memory"] == limits["MemorySwap"] == 48 * MiB
    assert limits["PidsLimit"] == 32
    assert limits["CapDrop"] == ["ALL"] and not limits["CapAdd"]
    assert limits["Privileged"] is False
    assert limits["SecurityOpt"] == ["no-new-privileges"]
    assert limits["NetworkMode"] == "none"
    assert limits["ReadonlyRootfs"] is True and "/tmp" in limits["Tmpfs"]
    assert limits["User"] == "65534:65534"
    assert limits["Mounts"] == []
    assert limits["Labels"][LABEL_EXECUTION_ID] == spec.execution_id
    assert limits["Labels"][LABEL_ATTEMPT] == "1"
    assert limits["Labels"][LABEL_MANAGED] == "true"
    assert limits["Labels"]["ai.100monkeys.aegis/agent"] == "runtime-test"


def test_agent_runs_as_nobody_without_network_on_a_read_only_root_with_writable_tmp(
    runtime: DockerRuntime, image: str
) -> None:
    script = (
        "id -u; ls /sys/class/net; cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
        "touch /rootfile 2>/dev/null || echo root-read-only; "
        'echo "$AEGIS_EXECUTION_ID/$AEGIS_ATTEMPT" > /tmp/x && cat /tmp/x; '
        "cat <<EOF\nheredoc in $HOME\nEOF"
    )
    spec = make_spec(image, script)
    lines, result = run_to_end(runtime, runtime.start(spec))
    assert result.exit_code == 0
    assert [ln.text for ln in lines if ln.stream == "stdout"] == [
        "65534",
        "lo",
        str(64 * MiB),
        "root-read-only",
        f"{spec.execution_id}/1",
        "heredoc in /tmp",
    ]


def test_pids_limit_stops_a_fork_storm(runtime: DockerRuntime, image: str) -> None:
    spec = make_spec(
        image, "for i in $(seq 40); do sleep 5 & done; echo all-started", pids_limit=16
    )
    lines, result = run_to_end(runtime, runtime.start(spec))
    assert result.exit_code != 0
    assert "all-started" not in [ln.text for ln in lines]
    assert any("can't fork" in ln.text for ln in lines if ln.stream == "stderr")


def test_memory_hog_is_killed_and_reported_as_out_of_memory(
    runtime: DockerRuntime, image: str
) -> None:
    spec = make_spec(image, "head -c 200000000 /dev/zero | sort > /dev/null", memory_bytes=16 * MiB)
    _, result = run_to_end(runtime, runtime.start(spec))
    assert result.oom_killed is True
    assert result.exit_code == 137


def test_pull_policy_never_with_a_missing_image_fails_with_image_not_found(
    runtime: DockerRuntime,
) -> None:
    spec = make_spec("aegis-test/does-not-exist:1.0", "true", pull_policy="Never")
    with pytest.raises(LaunchError) as err:
        runtime.ensure_image(spec)
    assert err.value.code == "image_not_found"
    assert "aegis-test/does-not-exist:1.0" in err.value.message
    assert "Never" in err.value.message


def test_pull_policy_always_names_the_image_and_the_registry_error(
    runtime: DockerRuntime, image: str
) -> None:
    spec = make_spec("registry.invalid/aegis/agent:1.0", "true", pull_policy="Always")
    started = time.monotonic()
    with pytest.raises(LaunchError) as err:
        runtime.ensure_image(spec)
    assert err.value.code == "image_pull_failed"
    assert "registry.invalid/aegis/agent:1.0" in err.value.message
    assert "registry.invalid" in err.value.message.split("failed:", 1)[1]
    assert time.monotonic() - started < 60


def test_if_not_present_uses_the_local_image_without_pulling(
    runtime: DockerRuntime, image: str
) -> None:
    # A pull would fail here (no registry), so success means no pull was attempted.
    runtime.ensure_image(make_spec(image, "true", pull_policy="IfNotPresent"))


def test_invalid_spec_is_refused_naming_every_bad_field(runtime: DockerRuntime, image: str) -> None:
    spec = make_spec(image, "true", memory_bytes=1024, network_mode="host", pull_policy="Sometimes")
    with pytest.raises(LaunchError) as err:
        runtime.start(spec)
    assert err.value.code == "invalid_spec"
    for needle in ("memory_bytes", "1024", "network_mode", "'host'", "pull_policy", "Sometimes"):
        assert needle in err.value.message


def test_stop_ends_a_sleeping_container_promptly(runtime: DockerRuntime, image: str) -> None:
    cid = runtime.start(make_spec(image, "echo sleeping; sleep 300"))
    first = runtime.poll(cid)
    assert first.running
    started = time.monotonic()
    runtime.stop(cid, grace_s=5)
    lines, result = run_to_end(runtime, cid, timeout=15)
    lines = first.lines + lines
    # The init process forwards SIGTERM, so this ends well before the grace period runs out.
    assert time.monotonic() - started < 4
    assert result.exit_code == 143
    assert [ln.text for ln in lines] == ["sleeping"]
    runtime.stop(cid)  # already stopped: no error


def test_remove_for_execution_removes_every_attempt(runtime: DockerRuntime, image: str) -> None:
    first = make_spec(image, "sleep 300")
    second = make_spec(image, "sleep 300", execution_id=first.execution_id, attempt=2)
    runtime.start(first)
    runtime.start(second)
    assert runtime.remove_for_execution(first.execution_id) == 2
    left = docker.from_env().containers.list(
        all=True, filters={"label": f"{LABEL_EXECUTION_ID}={first.execution_id}"}
    )
    assert left == []
    assert runtime.remove_for_execution(first.execution_id) == 0


def test_restarted_attempt_replaces_its_stale_container(runtime: DockerRuntime, image: str) -> None:
    spec = make_spec(image, "echo second-run")
    runtime.start(make_spec(image, "sleep 300", execution_id=spec.execution_id))
    # A new launcher of the same attempt (the old one died) takes over the container name.
    lines, result = run_to_end(runtime, runtime.start(spec))
    assert result.exit_code == 0 and [ln.text for ln in lines] == ["second-run"]


def test_two_thousand_lines_arrive_complete_and_in_order(
    runtime: DockerRuntime, image: str
) -> None:
    cid = runtime.start(make_spec(image, "seq 1 2000; printf last"))
    lines, result = run_to_end(runtime, cid)
    assert result.exit_code == 0
    assert [ln.text for ln in lines] == [str(i) for i in range(1, 2001)] + ["last"]
    assert [ln.ts for ln in lines] == sorted(ln.ts for ln in lines)


def test_a_line_longer_than_the_engine_chunk_arrives_whole(
    runtime: DockerRuntime, image: str
) -> None:
    # The engine splits log lines at 16 KiB; the runtime joins the pieces again.
    script = "head -c 40000 /dev/zero | tr '\\0' x; echo; echo after"
    lines, _ = run_to_end(runtime, runtime.start(make_spec(image, script)))
    assert [ln.text for ln in lines] == ["x" * 40000, "after"]


def test_poll_of_a_removed_container_says_it_is_gone(runtime: DockerRuntime, image: str) -> None:
    cid = runtime.start(make_spec(image, "sleep 300"))
    runtime.remove(cid)
    result = runtime.poll(cid)
    assert not result.running and result.exit_code is None
    assert result.error is not None and "no longer exists" in result.error
    runtime.remove(cid)  # already gone: no error


def test_missing_executable_ends_the_attempt_with_a_reason(
    runtime: DockerRuntime, image: str
) -> None:
    # The init process starts, then fails to exec the agent: exit 127 and its message.
    spec = make_spec(image, "unused", command=("/bin/no-such-agent",))
    lines, result = run_to_end(runtime, runtime.start(spec))
    assert result.exit_code == 127
    assert any("no-such-agent" in ln.text for ln in lines if ln.stream == "stderr")


def test_engine_not_running_gives_docker_unavailable_with_the_address(
    monkeypatch: pytest.MonkeyPatch, image: str
) -> None:
    # A Docker engine that is not running looks like this socket: nothing listens on it.
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/aegis-no-docker-here.sock")
    with pytest.raises(LaunchError) as err:
        DockerRuntime().ensure_image(make_spec(image, "true"))
    assert err.value.code == "docker_unavailable"
    assert "Docker engine not reachable" in err.value.message
