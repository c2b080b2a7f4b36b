#!/usr/bin/env bash
# A wheel install works: build the wheel from a clean copy of the tree, install it alone into a
# fresh venv, and from a folder outside the repo run what an operator runs first: `aegis --help`,
# `aegis config validate`, and the code `aegis up` uses to read its Serve config and migrations.
# The venv sees the system's site-packages for the dependencies (no network needed); the wheel
# is installed over them without deps, and the check proves aegis_ray is imported from it.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
say() { printf '[wheel] %s\n' "$*"; }

# A copy of what git tracks (or would track): a build in the tree leaves build/ behind, whose
# stale files setuptools would pack into the next wheel.
mkdir "$WORK/src" "$WORK/dist" "$WORK/run"
git -C "$REPO" ls-files -z --cached --others --exclude-standard \
    | tar -C "$REPO" --null -T - --ignore-failed-read -cf - 2>/dev/null \
    | tar -C "$WORK/src" -xf -

say "build"
"$PYTHON" -m pip wheel -q --no-deps --no-build-isolation -w "$WORK/dist" "$WORK/src" >/dev/null
WHEEL="$(ls "$WORK"/dist/aegis_ray-*.whl)"

# Every file of the package that is not Python source must be in the wheel.
(cd "$REPO" && git ls-files aegis_ray | grep -v '\.py$' || true) > "$WORK/data.txt"
"$PYTHON" - "$WHEEL" "$WORK/data.txt" <<'EOF'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
missing = [p for p in open(sys.argv[2]).read().split() if p not in names]
if missing:
    sys.exit("the wheel lacks package data (pyproject.toml [tool.setuptools.package-data]): "
             + ", ".join(missing))
EOF

say "install into a fresh venv"
"$PYTHON" -m venv --system-site-packages --without-pip "$WORK/venv"
"$PYTHON" -m pip --python "$WORK/venv/bin/python" install -q --no-deps --force-reinstall \
    --no-warn-script-location "$WHEEL" 2>&1 | grep -v "outside environment" || true

cp "$REPO/examples/hello-agent.yaml" "$REPO/cluster_configs/nodes/orchestrator.yaml" "$WORK/run/"
cd "$WORK/run"
run() { env -u PYTHONPATH -u AEGIS_HOME HOME="$WORK/run" "$@"; }

say "aegis_ray comes from the wheel"
run "$WORK/venv/bin/python" - "$WORK/venv" "$REPO" <<'EOF'
import sys
from pathlib import Path
import aegis_ray
where = Path(aegis_ray.__file__).resolve()
print(f"[wheel] aegis_ray at {where}")
venv, repo = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
if not where.is_relative_to(venv) or where.is_relative_to(repo):
    sys.exit(f"aegis_ray was imported from {where}, not from the wheel in {venv}")
EOF

say "aegis --help"
run "$WORK/venv/bin/aegis" --help >/dev/null
say "aegis config validate"
run "$WORK/venv/bin/aegis" config validate hello-agent.yaml
run "$WORK/venv/bin/aegis" config validate orchestrator.yaml

say "the Serve config and migrations aegis up reads"
run "$WORK/venv/bin/python" - "$(ls "$REPO"/aegis_ray/adapters/postgres/migrations | wc -l)" <<'EOF'
import importlib, sys
from aegis_ray.adapters.postgres.migrations import available
from aegis_ray.node.stack import SERVE_APP, serve_config
cfg = serve_config()
app = next(a for a in cfg["applications"] if a["name"] == SERVE_APP)
module, _, name = app["import_path"].partition(":")
assert callable(getattr(importlib.import_module(module), name)), app["import_path"]
for path in cfg["grpc_options"]["grpc_servicer_functions"]:
    module, _, name = path.rpartition(".")
    assert callable(getattr(importlib.import_module(module), name)), path
assert len(available()) == int(sys.argv[1]), available()
print(f"[wheel] Serve app {app['import_path']}, {len(available())} migration(s)")
EOF
say "ok"
