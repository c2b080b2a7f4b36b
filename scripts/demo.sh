#!/usr/bin/env bash
# The main job on a fresh machine: set everything up, start a hybrid node (`aegis up`), submit
# the hello agent and stream its states and output. Leaves the node running: `aegis down`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
aegis up
aegis submit examples/hello-agent.yaml --follow
echo
echo "The node is still up: try \`aegis list\`, \`aegis status\`, the Ray dashboard on :8265;"
echo "stop it with \`aegis down\`."
