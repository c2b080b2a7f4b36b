#!/usr/bin/env bash
# Prepare a fresh Debian machine (as root, Python 3.11) to run aegis-ray: Docker engine, the
# package itself, and the example agent image. Idempotent: steps already done are skipped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
DOCKERD_LOG=/var/log/aegis-dockerd.log

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null || die "apt-get not found; install $* by hand"
    if [ "$APT_UPDATED" = 0 ]; then
        say "apt-get update"
        apt-get update -qq
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# 1. Packages: the Docker engine, a static busybox for the offline example image, Prometheus.
if command -v dockerd >/dev/null && command -v docker >/dev/null; then
    say "docker engine installed"
else
    apt_install docker.io
fi
if [ -x /bin/busybox ]; then
    say "busybox installed"
else
    apt_install busybox-static
fi
# Prometheus for `aegis up --monitoring` and the metrics test (started by them, never as a
# service; without recommends: no node exporter).
if command -v prometheus >/dev/null; then
    say "prometheus installed"
else
    apt_install --no-install-recommends prometheus
fi
# HAProxy: the load balancer in front of several orchestrators (cluster_configs/lb/haproxy.cfg),
# started by the HA test itself, never as a service.
if command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ]; then
    say "haproxy installed"
else
    apt_install --no-install-recommends haproxy
fi

# 2. A running Docker engine.
if docker info >/dev/null 2>&1; then
    say "docker engine running"
else
    say "starting dockerd (log: $DOCKERD_LOG)"
    # Own session: a Ctrl-C on this script must not reach the daemon.
    setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
    for _ in $(seq 1 60); do
        if [ -S /var/run/docker.sock ] && docker info >/dev/null 2>&1; then
            break
        fi
        sleep 1
    done
    docker info >/dev/null 2>&1 || die "dockerd did not come up within 60 s; see $DOCKERD_LOG"
    say "docker engine running"
fi

# 3. The aegis-ray package (editable) with its test tools; redone when pyproject.toml changes.
STAMP_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/aegis-ray"
STAMP="$STAMP_DIR/setup-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12).pip"
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] \
    && "$PYTHON" -c "import aegis_ray" >/dev/null 2>&1; then
    say "aegis-ray installed"
else
    say "pip install -e .[test]"
    PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install -q --disable-pip-version-check -e ".[test]"
    mkdir -p "$STAMP_DIR"
    printf '%s\n' "$WANT" >"$STAMP"
fi

# 4. The example agent image.
bash "$ROOT/scripts/build_images.sh"

say "done: try \`aegis up\`, then \`aegis submit examples/hello-agent.yaml\`"
