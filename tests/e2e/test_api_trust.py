"""Issue 12 on the real stack: join tokens that cannot take the cluster, heartbeats only from the
node itself, stream limits, body limits before the body is read, revocation everywhere at
once, and what one tenant sees of the nodes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import psutil
import pytest

from aegis_ray.adapters.postgres.tokens import TokenStore
from aegis_ray.adapters.ray import head as ray_head
from aegis_ray.node.stack import UpState
from tests.e2e.conftest import Stack
from tests.e2e.manifests import agent_yaml
from tests.e2e.test_executions import wait_state

pytestmark = pytest.mark.e2e
PREFIX = "trust-"
NOT_ADMIN_FIELDS = ("address", "version", "last_heartbeat", "ray_node_id")
API_PORT = 28080  # the session stack's REST port (conftest)
GRPC_ADDRESS = "127.0.0.1:28051"


def _db(stack: Stack) -> str:
    state = UpState.load(stack.home / "up.json")
    assert state is not None and state.database_url
    return state.database_url


def _sql(stack: Stack, query: str, *args: Any) -> Any:
    async def run() -> Any:
        conn = await asyncpg.connect(_db(stack))
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api_url, timeout=30) as c:
        yield c
    # The nodes registered here never ran: leave the registry as the other modules expect it.
    _sql(stack, "DELETE FROM nodes WHERE id LIKE $1", PREFIX + "%")
    _sql(stack, "DELETE FROM cluster_events WHERE node_id LIKE $1", PREFIX + "%")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_token(api: httpx.Client, stack: Stack, **body: Any) -> dict[str, Any]:
    r = api.post("/v1/tokens", json=body, headers=bearer(stack.token))
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def identity(node_id: str, **extra: Any) -> dict[str, Any]:
    return {"node": {"id": node_id, "type": "edge", "tags": ["trust"]}, **extra}


def test_a_join_token_registers_its_own_node_once_and_hands_out_a_node_credential(
    stack: Stack, api: httpx.Client
) -> None:
    a, b = f"{PREFIX}a-{uuid.uuid4().hex[:6]}", f"{PREFIX}b-{uuid.uuid4().hex[:6]}"
    join = new_token(api, stack, role="join", node_id=a, node_type="edge")
    assert join["ttl_s"] <= 900 and join["node_id"] == a
    # A token for node A cannot register node B, nor A as another node type.
    r = api.post("/v1/nodes/register", json=identity(b), headers=bearer(join["token"]))
    assert r.status_code == 403 and f"for node {a!r}" in r.json()["message"], r.text
    other_type = identity(a)
    other_type["node"]["type"] = "hybrid"
    r = api.post("/v1/nodes/register", json=other_type, headers=bearer(join["token"]))
    assert r.status_code == 403 and "edge node" in r.json()["message"], r.text

    r = api.post("/v1/nodes/register", json=identity(a), headers=bearer(join["token"]))
    assert r.status_code == 200, r.text
    first = r.json()
    credential = first["credential"]
    assert credential and first["node"]["id"] == a
    if first["ray"]["auth_mode"] == "token":
        assert first["ray"]["token"]
    # The same join token a second time: refused.
    r = api.post("/v1/nodes/register", json=identity(a), headers=bearer(join["token"]))
    assert r.status_code in (401, 403), r.text
    # A fresh join token cannot take over a node that has its credential.
    again = new_token(api, stack, role="join", node_id=a)
    r = api.post("/v1/nodes/register", json=identity(a), headers=bearer(again["token"]))
    assert r.status_code == 403 and "credential" in r.json()["message"], r.text
    # The node itself re-registers with its credential; it has Ray's token: none is sent.
    r = api.post(
        "/v1/nodes/register",
        json=identity(a, has_ray_token=True, address="10.9.9.9"),
        headers=bearer(credential),
    )
    assert r.status_code == 200, r.text
    assert "credential" not in r.json() and r.json()["ray"].get("token") is None
    assert r.json()["node"]["address"] == "10.9.9.9"
    # ... and only itself.
    r = api.post("/v1/nodes/register", json=identity(b), headers=bearer(credential))
    assert r.status_code == 403, r.text
    # Only hashes are stored.
    rows = _sql(stack, "SELECT token_hash FROM api_tokens WHERE node_id = $1", a)
    assert rows and all(credential not in row["token_hash"] for row in rows)


def test_only_the_node_itself_may_heartbeat(stack: Stack, api: httpx.Client) -> None:
    a, b = f"{PREFIX}hb-a-{uuid.uuid4().hex[:6]}", f"{PREFIX}hb-b-{uuid.uuid4().hex[:6]}"
    creds = {}
    for node in (a, b):
        join = new_token(api, stack, role="join", node_id=node)
        r = api.post("/v1/nodes/register", json=identity(node), headers=bearer(join["token"]))
        assert r.status_code == 200, r.text
        creds[node] = r.json()["credential"]
    r = api.post(f"/v1/nodes/{a}/heartbeat", headers=bearer(creds[a]))
    assert r.status_code == 200 and r.json()["id"] == a, r.text
    r = api.post(f"/v1/nodes/{a}/heartbeat", headers=bearer(creds[b]))
    assert r.status_code == 403, r.text
    other_tenant = new_token(api, stack, role="user", tenant_id="trust-other")
    r = api.post(f"/v1/nodes/{a}/heartbeat", headers=bearer(other_tenant["token"]))
    assert r.status_code == 403, r.text
    join_for_b = new_token(api, stack, role="join", node_id=b, tenant_id="trust-other")
    r = api.post(f"/v1/nodes/{a}/heartbeat", headers=bearer(join_for_b["token"]))
    assert r.status_code == 403, r.text
    r = api.post(f"/v1/nodes/{a}/heartbeat", headers=bearer(stack.token))  # an admin may
    assert r.status_code == 200, r.text


def test_the_ray_up_join_secret_admits_each_node_of_its_types_once_until_rotated(
    stack: Stack, api: httpx.Client
) -> None:
    secret = "aegis_" + uuid.uuid4().hex + uuid.uuid4().hex
    kind = f"{PREFIX}edge{uuid.uuid4().hex[:4]}"

    async def register_secret() -> None:
        pool = await asyncpg.create_pool(_db(stack), min_size=1, max_size=1)
        try:
            await TokenStore(pool).ensure(
                secret, role="join", description="test secret", node_types=[kind]
            )
        finally:
            await pool.close()

    asyncio.run(register_secret())
    one = f"{kind}-host1"
    r = api.post("/v1/nodes/register", json=identity(one), headers=bearer(secret))
    assert r.status_code == 200 and r.json()["credential"], r.text
    r = api.post("/v1/nodes/register", json=identity(one), headers=bearer(secret))
    assert r.status_code == 403, r.text  # once per node id (it has its credential now)
    r = api.post("/v1/nodes/register", json=identity(f"{PREFIX}stranger"), headers=bearer(secret))
    assert r.status_code == 403 and "node types" in r.json()["message"], r.text

    rotated = "aegis_" + uuid.uuid4().hex + uuid.uuid4().hex
    r = api.post("/v1/tokens/join-secret", json={"secret": rotated}, headers=bearer(stack.token))
    assert r.status_code == 200 and r.json()["node_types"] == [kind], r.text
    r = api.post("/v1/nodes/register", json=identity(f"{kind}-host2"), headers=bearer(secret))
    assert r.status_code == 401, r.text  # the old secret is revoked
    r = api.post("/v1/nodes/register", json=identity(f"{kind}-host2"), headers=bearer(rotated))
    assert r.status_code == 200, r.text
    listed = api.get("/v1/tokens", headers=bearer(stack.token)).json()["items"]
    secret_id = next(t["id"] for t in listed if t.get("node_types") == [kind])
    r = api.post(f"/v1/tokens/{secret_id}/revoke", headers=bearer(stack.token))
    assert r.json() == {"id": secret_id, "revoked": True}, r.text
    r = api.post("/v1/nodes/register", json=identity(f"{kind}-host3"), headers=bearer(rotated))
    assert r.status_code == 401, r.text


def test_eternal_and_overlong_tokens_need_saying_so(stack: Stack, api: httpx.Client) -> None:
    auth = bearer(stack.token)
    r = api.post("/v1/tokens", json={"role": "join", "node_id": "x1", "ttl_s": 86400}, headers=auth)
    assert r.status_code == 422 and r.json()["problems"][0]["path"] == "body.ttl_s", r.text
    r = api.post("/v1/tokens", json={"role": "join"}, headers=auth)
    assert r.status_code == 422 and r.json()["problems"][0]["path"] == "body.node_id", r.text
    r = api.post("/v1/tokens", json={"role": "user", "ttl_s": None}, headers=auth)
    assert r.status_code == 201 and r.json()["ttl_s"] == 3600, r.text
    r = api.post("/v1/tokens", json={"role": "user", "eternal": True}, headers=auth)
    assert r.status_code == 201 and r.json()["ttl_s"] is None, r.text


def test_a_revoked_token_stops_working_at_once_whoever_revokes_it(
    stack: Stack, api: httpx.Client
) -> None:
    user = new_token(api, stack, role="user", description="to revoke")
    assert api.get("/v1/executions", headers=bearer(user["token"])).status_code == 200  # cached
    # Revoked by another process (this one, straight in PostgreSQL): the API's cache would
    # trust the token for 10 s; the notification drops it at once.
    started = time.monotonic()
    _sql(stack, "UPDATE api_tokens SET revoked_at = now() WHERE id = $1", uuid.UUID(user["id"]))
    deadline = started + 10
    while api.get("/v1/executions", headers=bearer(user["token"])).status_code == 200:
        assert time.monotonic() < deadline, "the revoked token still works after 10 s"
        time.sleep(0.05)
    took = time.monotonic() - started
    print(f"\nrevoked token refused after {took:.3f}s (cache TTL 10 s)")
    assert took < 5, took  # generous: the notification, not the cache's expiry

    # The CLI: list shows it revoked; revoke another one by id.
    second = new_token(api, stack, role="user", description="cli revoke")
    assert api.get("/v1/executions", headers=bearer(second["token"])).status_code == 200
    listed = json.loads(stack.aegis("token", "list", "--all", "-o", "json", check=True).stdout)
    mine = next(t for t in listed["items"] if t["id"] == user["id"])
    assert mine["revoked_at"] and mine["role"] == "user" and "token" not in mine
    done = stack.aegis("token", "revoke", second["id"], check=True)
    assert "revoked" in done.stdout
    assert api.get("/v1/executions", headers=bearer(second["token"])).status_code == 401
    over_grpc = stack.aegis("--api", "grpc", "token", "list", "-o", "json", check=True)
    assert second["id"] not in over_grpc.stdout  # revoked: not among the live ones


def test_rotating_an_admin_token_revokes_the_old_one(stack: Stack, api: httpx.Client) -> None:
    tenant = f"trust-adm-{uuid.uuid4().hex[:6]}"

    async def admin_of_tenant() -> str:
        pool = await asyncpg.create_pool(_db(stack), min_size=1, max_size=1)
        try:
            return await TokenStore(pool).create(tenant_id=tenant, role="admin")
        finally:
            await pool.close()

    old = asyncio.run(admin_of_tenant())
    r = api.post("/v1/tokens/rotate-admin", headers=bearer(old))
    assert r.status_code == 200 and r.json()["tenant_id"] == tenant, r.text
    new = r.json()["token"]
    assert api.get("/v1/tokens", headers=bearer(old)).status_code == 401
    assert api.get("/v1/tokens", headers=bearer(new)).status_code == 200
    # The stack's own admin token (another tenant) still works.
    assert api.get("/v1/tokens", headers=bearer(stack.token)).status_code == 200


def test_one_token_cannot_hold_every_stream_and_others_stay_served(
    stack: Stack, api: httpx.Client
) -> None:
    flood = new_token(api, stack, role="user", tenant_id="trust-flood")["token"]
    calm = new_token(api, stack, role="user", tenant_id="trust-calm")["token"]
    per_token = 16  # Settings.api_streams_per_token's default (the session stack's)

    async def main() -> None:
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as c:
            streams = []
            try:
                for _ in range(per_token):
                    req = c.build_request(
                        "GET", "/v1/events", params={"follow": "true"}, headers=bearer(flood)
                    )
                    resp = await c.send(req, stream=True)
                    assert resp.status_code == 200
                    streams.append(resp)
                r = await c.get("/v1/events", params={"follow": "true"}, headers=bearer(flood))
                assert r.status_code == 429, r.text
                assert int(r.headers["retry-after"]) >= 1 and r.json()["error"] == "rate_limited"
                latencies = []
                for _ in range(20):
                    t0 = time.perf_counter()
                    ok = await c.get("/v1/executions", headers=bearer(calm))
                    latencies.append(time.perf_counter() - t0)
                    assert ok.status_code == 200
                health = await c.get("/health")
                assert health.status_code == 200
                latencies.sort()
                print(
                    f"\nwith {per_token} streams open by one token: another tenant's list"
                    f" p50 {latencies[10] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms"
                )
                # The calm tenant may stream too.
                r2 = c.build_request(
                    "GET", "/v1/events", params={"follow": "true"}, headers=bearer(calm)
                )
                calm_stream = await c.send(r2, stream=True)
                assert calm_stream.status_code == 200
                await calm_stream.aclose()
            finally:
                for s in streams:
                    await s.aclose()
            # Slots come back when clients go (the replica notices the disconnect).
            deadline = time.monotonic() + 30
            while True:
                r = c.build_request(
                    "GET", "/v1/events", params={"follow": "true"}, headers=bearer(flood)
                )
                again = await c.send(r, stream=True)
                await again.aclose()
                if again.status_code == 200:
                    break
                assert time.monotonic() < deadline, "stream slots were not given back"
                await asyncio.sleep(0.5)

    asyncio.run(main())


def _serve_processes(stack: Stack) -> dict[str, psutil.Process]:
    """This stack's Serve HTTP proxy and API replica (by process title, in its Ray session)."""
    state = UpState.load(stack.home / "up.json")
    assert state is not None and state.ray_session
    found: dict[str, psutil.Process] = {}
    for pid in ray_head.session_pids(state.ray_session):
        try:
            title = " ".join(psutil.Process(pid).cmdline())
        except psutil.Error:
            continue
        if "ProxyActor" in title:
            found["proxy"] = psutil.Process(pid)
        elif "ServeReplica" in title and "AegisAPI" in title:
            found["replica"] = psutil.Process(pid)
    assert set(found) == {"proxy", "replica"}, found
    return found


def _rss_mb(procs: dict[str, psutil.Process]) -> dict[str, float]:
    return {k: p.memory_info().rss / 2**20 for k, p in procs.items()}


def _raw_post(head: str, chunks: Iterator[bytes], *, wait_first: float) -> tuple[bytes, int]:
    """Send a request by hand, the body piece by piece until an answer comes or the server
    stops taking it (`wait_first`: seconds to wait for an answer before any body is sent);
    returns the answer and how many body bytes went out."""
    sent = 0
    with socket.create_connection(("127.0.0.1", API_PORT), timeout=10) as s:
        s.sendall(head.encode())
        wait = wait_first
        for chunk in chunks:
            if select.select([s], [], [], wait)[0]:
                break  # the answer (or the end of the connection) is there
            wait = 0
            try:
                s.sendall(chunk)
            except OSError:  # the server closed it
                break
            sent += len(chunk)
        answer = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in answer:
                more = s.recv(65536)
                if not more:
                    break
                answer += more
    return answer, sent


def test_a_64_mb_body_is_refused_before_it_is_read(stack: Stack, api: httpx.Client) -> None:
    procs = _serve_processes(stack)
    before = _rss_mb(procs)
    size = 64 << 20
    piece = b"x" * (1 << 16)
    head = (
        "POST /v1/executions HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {stack.token}\r\nContent-Type: application/yaml\r\n"
    )
    # Announced by Content-Length: the answer comes before a byte of the body is sent.
    answer, sent = _raw_post(
        head + f"Content-Length: {size}\r\n\r\n",
        (piece for _ in range(size // len(piece))),
        wait_first=10,
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    print(f"\nContent-Length {size}: 413 after {sent} body bytes sent")
    assert sent == 0  # answered before the body
    # Chunked, no Content-Length: read up to the limit, then refused.
    chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
    answer, sent = _raw_post(
        head + "Transfer-Encoding: chunked\r\n\r\n",
        (chunk for _ in range(size // len(piece))),
        wait_first=0,
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    print(f"chunked: 413 after {sent} body bytes sent")
    assert sent < size // 4
    after = _rss_mb(procs)
    print(
        "RSS MiB before/after: "
        + ", ".join(f"{k} {before[k]:.0f}/{after[k]:.0f}" for k in sorted(before))
    )
    for k in before:
        assert after[k] - before[k] < 32, (k, before[k], after[k])  # 64 MiB never held
    # A body under the limit is still served.
    assert api.get("/health").status_code == 200


def test_a_user_sees_nodes_without_addresses_or_other_tenants_activity(
    stack: Stack, api: httpx.Client
) -> None:
    admin = stack.client()
    eid = admin.submit(agent_yaml("trust-busy", "sleep 30", timeout="60s"), source="b.yaml").id
    try:
        placed = wait_state(admin, eid, {"RUNNING"})
        node = placed["node_id"]
        user = new_token(api, stack, role="user", tenant_id="trust-viewer")["token"]
        seen = api.get("/v1/nodes", headers=bearer(user)).json()["items"]
        mine = next(n for n in seen if n["node_id"] == node)
        assert mine["executions"] == 0, mine  # the admin tenant's execution is not shown
        assert all(f not in n for n in seen for f in NOT_ADMIN_FIELDS), seen
        assert set(mine) >= {"node_id", "tags", "total", "free", "status"}
        one = api.get(f"/v1/nodes/{node}", headers=bearer(user)).json()
        assert all(f not in one for f in NOT_ADMIN_FIELDS), one
        full = api.get("/v1/nodes", headers=bearer(stack.token)).json()["items"]
        theirs = next(n for n in full if n["node_id"] == node)
        assert theirs["executions"] >= 1 and theirs.get("address"), theirs
        shown = stack.aegis("--api", "grpc", "nodes", "-o", "json", check=True).stdout
        assert '"address"' in shown  # the CLI's admin token sees them over gRPC too
    finally:
        admin.cancel(eid)


def test_grpc_refuses_a_message_over_its_bound(stack: Stack) -> None:
    """Serve's gRPC proxy accepts 2 GiB by default; aegis bounds it (16 MiB)."""
    import grpc

    from aegis_ray.rpc import executions_pb2 as ex
    from aegis_ray.rpc.executions_pb2_grpc import ExecutionServiceStub

    options = [("grpc.max_send_message_length", 64 << 20)]
    with grpc.insecure_channel(GRPC_ADDRESS, options=options) as channel:
        stub = ExecutionServiceStub(channel)
        huge = ex.SubmitExecutionRequest(manifest=ex.ManifestInput(yaml="x" * (20 << 20)))
        with pytest.raises(grpc.RpcError) as err:
            stub.SubmitExecution(huge, metadata=[("authorization", f"Bearer {stack.token}")])
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value


def test_submissions_past_a_tokens_rate_are_refused_with_retry_after(
    stack: Stack, api: httpx.Client
) -> None:
    """20 at once, then 5 a second (Settings' defaults). Manifests no node can fit are refused
    after the rate is counted, so nothing runs."""
    user = new_token(api, stack, role="user", tenant_id="trust-rate")["token"]
    headers = bearer(user) | {"Content-Type": "application/yaml"}
    text = agent_yaml("trust-huge", "true", memory="3Ti")
    codes = []
    for _ in range(40):
        r = api.post("/v1/executions", content=text, headers=headers)
        codes.append(r.status_code)
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1 and r.json()["error"] == "rate_limited"
            break
    assert codes[:20] == [422] * 20 and codes[-1] == 429, codes
    other = new_token(api, stack, role="user", tenant_id="trust-rate")["token"]
    r = api.post("/v1/executions", content=text, headers=headers | bearer(other))
    assert r.status_code == 422, r.text  # another token has its own budget
