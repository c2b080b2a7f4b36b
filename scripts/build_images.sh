#!/usr/bin/env bash
# Build the example agent image offline (FROM scratch + the host's static busybox).
# Idempotent: a rebuild with nothing changed is served from the docker build cache.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONTEXT="$ROOT/examples/images/agent"
IMAGE="aegis-examples/agent"
VERSION="0.1.0"
BUSYBOX="${BUSYBOX:-/bin/busybox}"

say() { printf '[build_images] %s\n' "$*"; }
die() { printf '[build_images] error: %s\n' "$*" >&2; exit 1; }

[ -x "$BUSYBOX" ] || die "static busybox not found at $BUSYBOX (apt-get install busybox-static)"
# A dynamically linked busybox would not run in an image without a libc.
if ldd "$BUSYBOX" >/dev/null 2>&1; then
    die "$BUSYBOX is dynamically linked; install busybox-static or set BUSYBOX=<static binary>"
fi
docker info >/dev/null 2>&1 || die "Docker engine not reachable (start it with \`dockerd\`)"

# The binary is copied at build time, never committed (see examples/images/agent/.gitignore).
cmp -s "$BUSYBOX" "$CONTEXT/busybox" || cp "$BUSYBOX" "$CONTEXT/busybox"

say "building $IMAGE:latest and $IMAGE:$VERSION"
# Output only on failure (the CLI also nags about the legacy builder on stderr).
if ! log="$(docker build --quiet -t "$IMAGE:latest" -t "$IMAGE:$VERSION" "$CONTEXT" 2>&1)"; then
    die "docker build failed:
$log"
fi

out="$(docker run --rm --network none -e AEGIS_TASK_INSTRUCTION=smoke-test "$IMAGE:latest" \
    /bin/aegis-hello 2>/dev/null)"
grep -q "instruction: smoke-test" <<<"$out" || die "smoke test of $IMAGE:latest failed: $out"
say "ok: $IMAGE:latest ($(docker image inspect -f '{{.Id}}' "$IMAGE:latest" | cut -c8-19))"
