"""The node agent's core against the real local Docker engine (no Ray): start, follow, exit,
limits, pull policies, stop, remove, deadline, take-over after a restart, backpressure."""

from __future__ import annotations

import asyncio
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
)
from aegis_ray.adapters.docker.runtime import DockerRuntime
from aegis_ray.node_agent import agent as agent_module
from aegis_ray.node_agent.agent import Batch, NodeAgent
from tests.e2e.runtime_images import busybox_image

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024


class Agent:
    """A NodeAgent driven from synchronous tests, on a loop of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.core = NodeAgent(DockerRuntime(), node_name="test-node")

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def start(self, spec: ContainerSpec) -> str:
        return str(self.run(self.core.start(spec)))

    def follow(self, spec: ContainerSpec, after: int = -1, wait_s: float = 1.0) -> Batch:
        call = self.core.follow(spec.execution_id, spec.attempt, after_seq=after, wait_s=wait_s)
        batch: Batch = self.run(call)
        return batch

    def run_to_end(self, spec: ContainerSpec, timeout: float = 30) -> tuple[list[LogLine], Batch]:
        """Follow the attempt's container until its last line, as the workflow does."""
        lines: list[LogLine] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = self.follow(spec, lines[-1].seq if lines else -1)
            lines += batch.lines
            if batch.done:
                return lines, batch
        raise AssertionError(f"{spec.container_name} still running after {timeout}s")

    def close(self) -> None:
        self.core.close()
        self.loop.close()


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


@pytest.fixture
def agent(runtime: DockerRuntime) -> Iterator[Agent]:
    a = Agent()
    yield a
    a.close()


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


@pytest.mark.parametrize("exit_code", [0, 3])
def test_stdout_and_stderr_lines_arrive_on_their_streams_with_the_exit_code(
    agent: Agent, image: str, exit_code: int
) -> None:
    script = f'echo "out $GREETING"; echo "err one" >&2; echo out2; printf tail; exit {exit_code}'
    spec = make_spec(image, script)
    agent.start(spec)
    lines, result = agent.run_to_end(spec)
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
    agent: Agent, image: str
) -> None:
    script = (
        "id -u; ls /sys/class/net; cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
        "touch /rootfile 2>/dev/null || echo root-read-only; "
        'echo "$AEGIS_EXECUTION_ID/$AEGIS_ATTEMPT" > /tmp/x && cat /tmp/x; '
        "cat <<EOF\nheredoc in $HOME\nEOF"
    )
    spec = make_spec(image, script)
    agent.start(spec)
    lines, result = agent.run_to_end(spec)
    assert result.exit_code == 0
    assert [ln.text for ln in lines if ln.stream == "stdout"] == [
        "65534",
        "lo",
        str(64 * MiB),
        "root-read-only",
        f"{spec.execution_id}/1",
        "heredoc in /tmp",
    ]


def test_pids_limit_stops_a_fork_storm(agent: Agent, image: str) -> None:
    spec = make_spec(
        image, "for i in $(seq 40); do sleep 5 & done; echo all-started", pids_limit=16
    )
    agent.start(spec)
    lines, result = agent.run_to_end(spec)
    assert result.exit_code != 0
    assert "all-started" not in [ln.text for ln in lines]
    assert any("can't fork" in ln.text for ln in lines if ln.stream == "stderr")


def test_memory_hog_is_killed_and_reported_as_out_of_memory(
    agent: Agent, image: str
) -> None:
    spec = make_spec(image, "head -c 200000000 /dev/zero | sort > /dev/null", memory_bytes=16 * MiB)
    agent.start(spec)
    _, result = agent.run_to_end(spec)
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


def test_stop_ends_a_sleeping_container_promptly(agent: Agent, image: str) -> None:
    spec = make_spec(image, "echo sleeping; sleep 300")
    agent.start(spec)
    first = agent.follow(spec, wait_s=10)
    assert not first.done and [ln.text for ln in first.lines] == ["sleeping"]
    started = time.monotonic()
    agent.run(agent.core.stop(spec.execution_id, spec.attempt, grace_s=5))
    lines, result = agent.run_to_end(spec, timeout=15)
    # The init process forwards SIGTERM, so this ends well before the grace period runs out.
    assert time.monotonic() - started < 4
    assert result.exit_code == 143
    assert [ln.text for ln in lines] == ["sleeping"]  # the first batch comes again until acked
    agent.run(agent.core.stop(spec.execution_id, spec.attempt))  # already stopped: no error


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


def test_starting_an_attempt_again_takes_over_its_running_container(
    agent: Agent, image: str
) -> None:
    spec = make_spec(image, "echo first; sleep 2; echo still-the-same")
    cid = agent.start(spec)
    # A second start of the same attempt (a retried activity) must not run the agent twice.
    other = Agent()
    try:
        assert other.start(spec) == cid
        lines, result = other.run_to_end(spec)
    finally:
        other.close()
    assert result.exit_code == 0
    assert [ln.text for ln in lines] == ["first", "still-the-same"]
    assert agent.start(spec) == cid


def test_two_thousand_lines_arrive_complete_and_in_order(agent: Agent, image: str) -> None:
    spec = make_spec(image, "seq 1 2000; printf last")
    agent.start(spec)
    lines, result = agent.run_to_end(spec)
    assert result.exit_code == 0
    assert [ln.text for ln in lines] == [str(i) for i in range(1, 2001)] + ["last"]
    assert [ln.ts for ln in lines] == sorted(ln.ts for ln in lines)


def test_a_line_longer_than_the_engine_chunk_arrives_whole(agent: Agent, image: str) -> None:
    # The engine splits log lines at 16 KiB; the runtime joins the pieces again.
    script = "head -c 40000 /dev/zero | tr '\\0' x; echo; echo after"
    spec = make_spec(image, script)
    agent.start(spec)
    lines, _ = agent.run_to_end(spec)
    assert [ln.text for ln in lines] == ["x" * 40000, "after"]


def test_following_a_removed_container_says_it_is_gone(agent: Agent, image: str) -> None:
    spec = make_spec(image, "sleep 300")
    agent.start(spec)
    assert agent.run(agent.core.remove(spec.execution_id, spec.attempt)) is True
    result = agent.follow(spec)
    assert result.done and result.exit_code is None and result.gone is not None
    assert agent.run(agent.core.remove(spec.execution_id, spec.attempt)) is False  # no error


def test_missing_executable_ends_the_attempt_with_a_reason(
    agent: Agent, image: str
) -> None:
    # The init process starts, then fails to exec the agent: exit 127 and its message.
    spec = make_spec(image, "unused", command=("/bin/no-such-agent",))
    agent.start(spec)
    lines, result = agent.run_to_end(spec)
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


def test_the_agent_stops_a_container_at_its_deadline_and_says_so(agent: Agent, image: str) -> None:
    spec = make_spec(image, "echo begun; sleep 300", timeout_s=1.0)
    agent.start(spec)
    lines, result = agent.run_to_end(spec, timeout=30)
    assert result.timed_out is True
    assert result.exit_code == 143  # SIGTERM, forwarded by the init process
    assert [ln.text for ln in lines] == ["begun"]


def test_a_restarted_agent_takes_over_and_hands_out_every_line_exactly_once(
    agent: Agent, image: str
) -> None:
    spec = make_spec(image, "for i in $(seq 1 30); do echo line-$i; sleep 0.1; done")
    cid = agent.start(spec)
    first = agent.follow(spec, wait_s=10)
    assert first.lines and not first.done
    have = first.lines
    agent.close()  # the agent's process is gone; the container is not
    successor = Agent()
    try:
        assert successor.run(successor.core.adopt()) >= 1
        assert any(c.container_id == cid for c in successor.core.list())
        rest, result = successor.run_to_end(spec)
        # Resume from the last line the caller stored: nothing twice, nothing missing.
        rest = [ln for ln in rest if ln.seq > have[-1].seq]
    finally:
        successor.close()
    assert result.exit_code == 0
    got = [ln.text for ln in have + rest]
    assert got == [f"line-{i}" for i in range(1, 31)]
    assert [ln.seq for ln in have + rest] == list(range(30))


def test_a_chatty_agent_waits_for_its_caller_instead_of_filling_memory(
    agent: Agent, image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_module, "MAX_PENDING_LINES", 500)
    spec = make_spec(image, "seq 1 20000")
    agent.start(spec)
    lines: list[LogLine] = []
    most_pending = 0
    while True:
        batch = agent.follow(spec, lines[-1].seq if lines else -1, wait_s=5)
        lines += batch.lines
        sup = agent.core._supervised[(spec.execution_id, spec.attempt)]
        most_pending = max(most_pending, len(sup.lines))
        if batch.done:
            break
    assert [ln.text for ln in lines] == [str(i) for i in range(1, 20001)]
    # The reader stops at the bound (it may add one engine frame's lines past it).
    assert most_pending <= 500 + 64


def test_twenty_containers_at_once_all_run_to_their_end(agent: Agent, image: str) -> None:
    specs = [make_spec(image, f"echo agent-{n}; sleep 1; echo done-{n}") for n in range(20)]

    async def all_of_them() -> list[tuple[list[str], Batch]]:
        await asyncio.gather(*(agent.core.start(s) for s in specs))

        async def to_end(spec: ContainerSpec) -> tuple[list[str], Batch]:
            texts: list[str] = []
            cursor = -1
            while True:
                batch = await agent.core.follow(
                    spec.execution_id, spec.attempt, after_seq=cursor, wait_s=5
                )
                texts += [ln.text for ln in batch.lines]
                cursor = batch.lines[-1].seq if batch.lines else cursor
                if batch.done:
                    return texts, batch

        return list(await asyncio.gather(*(to_end(s) for s in specs)))

    results = agent.run(all_of_them())
    for n, (texts, batch) in enumerate(results):
        assert batch.exit_code == 0, batch
        assert texts == [f"agent-{n}", f"done-{n}"]


def test_allowed_network_goes_to_the_nodes_docker_network_and_none_stays_none(
    runtime: DockerRuntime, image: str
) -> None:
    engine = docker.from_env()
    name = f"aegis-test-net-{uuid.uuid4().hex[:8]}"
    network = engine.networks.create(name, driver="bridge")
    node = Agent()
    node.core.allowed_network = name  # as a NodeConfig's spec.runtime.docker_network_mode
    try:
        allowed = make_spec(image, "sleep 30", network_mode="bridge")  # the manifest allows
        closed = make_spec(image, "sleep 30", network_mode="none")
        modes = [runtime.inspect_limits(node.start(s))["NetworkMode"] for s in (allowed, closed)]
        assert modes == [name, "none"]
    finally:
        for s in (allowed, closed):
            node.run(node.core.remove(s.execution_id, s.attempt))
        node.close()
        network.remove()
