#!/usr/bin/env bash
# Benchmark on a two-edge cluster: an orchestrator and two edges started with `aegis node start`
# as separate raylets on this host (own ports and AEGIS_HOME each; 1 CPU per edge, the
# orchestrator runs no containers), then scripts/bench_throughput.py against the orchestrator,
# then everything stopped again.
#
# It prints, besides throughput and the per-component CPU table, the edges' CPU per execution:
# the edge raylets' process trees (raylet, node agent, dashboard/runtime-env agents, log monitor,
# Serve proxy if any) plus what Docker spends (dockerd, containerd, the containers' shims and
# processes), next to bare Docker's CPU per run (the same Docker components plus the SDK client).
# Target (issue 10): <= 1.2x. All nodes share this host's one Docker engine, as bare does.
#
# Command (under the e2e lock on a shared machine; the arguments go to bench_throughput.py):
#     flock /tmp/aegis-e2e.lock bash scripts/bench_two_edges.sh -n 40 -c 4
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d /tmp/aegis-bench-XXXX)
API=58080
export AEGIS_RAY_ATTACH=false

node_config() {  # id type tags cpu
    cat <<YAML
apiVersion: 100monkeys.ai/v1
kind: NodeConfig
metadata: {name: $1}
spec:
  node: {id: $1, type: $2, tags: $3, resources: {cpu_cores: $4, memory_gb: 4, disk_gb: 10}}
YAML
    if [ "$2" = edge ]; then
        echo "  runtime: {orchestrator_url: 'http://127.0.0.1:$API'}"
    else
        echo "  api: {bind: 127.0.0.1, rest_port: $API, grpc_port: 58052}"
    fi
}

ports() {  # base: ports of an extra raylet on this host
    local b=$1
    echo --ray-arg=--node-manager-port=$b --ray-arg=--object-manager-port=$((b + 1)) \
        --ray-arg=--dashboard-agent-grpc-port=$((b + 2)) \
        --ray-arg=--dashboard-agent-listen-port=$((b + 3)) \
        --ray-arg=--metrics-export-port=$((b + 4)) --ray-arg=--runtime-env-agent-port=$((b + 5)) \
        --ray-arg=--min-worker-port=$((b + 10)) --ray-arg=--max-worker-port=$((b + 400))
}

node_config orch-1 orchestrator '[primary]' 1 >"$WORK/orch.yaml"
node_config edge-a edge '[cpu]' 1 >"$WORK/edge-a.yaml"
node_config edge-b edge '[cpu]' 1 >"$WORK/edge-b.yaml"
ORCH_ENV=(AEGIS_HOME="$WORK/orch" AEGIS_RAY_PORT=56379 AEGIS_RAY_DASHBOARD_PORT=58265
          AEGIS_POSTGRES_PORT=55433 AEGIS_TEMPORAL_PORT=57233 AEGIS_TEMPORAL_UI_PORT=58233)

cleanup() {
    env AEGIS_HOME="$WORK/edge-a" aegis node stop --config "$WORK/edge-a.yaml" >/dev/null 2>&1 || true
    env AEGIS_HOME="$WORK/edge-b" aegis node stop --config "$WORK/edge-b.yaml" >/dev/null 2>&1 || true
    env "${ORCH_ENV[@]}" aegis node stop --config "$WORK/orch.yaml" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

env "${ORCH_ENV[@]}" aegis node start --config "$WORK/orch.yaml"
# One join token per edge: each is for that node id and works once.
env "${ORCH_ENV[@]}" aegis token create --join --node-id edge-a >"$WORK/edge-a.join"
env "${ORCH_ENV[@]}" aegis token create --join --node-id edge-b >"$WORK/edge-b.join"
# shellcheck disable=SC2046
env AEGIS_HOME="$WORK/edge-a" aegis node start --config "$WORK/edge-a.yaml" --join-token-file "$WORK/edge-a.join" $(ports 51000)
# shellcheck disable=SC2046
env AEGIS_HOME="$WORK/edge-b" aegis node start --config "$WORK/edge-b.yaml" --join-token-file "$WORK/edge-b.join" $(ports 52000)
sleep 5
env "${ORCH_ENV[@]}" aegis nodes
if [ $# -eq 0 ]; then set -- -n 40 -c 4; fi
env "${ORCH_ENV[@]}" python3 scripts/bench_throughput.py "$@"
