#!/usr/bin/env bash
# The test command: installs what it needs (Python deps, Docker engine, example images), then
# lints, type-checks the pure core, checks that a wheel install works, and runs unit and
# end-to-end tests on the real stack.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff"
python3 -m ruff check aegis_ray tests scripts
echo "== import contract (.importlinter)"
lint-imports --no-cache
echo "== mypy (pure core)"
python3 -m mypy
echo "== wheel install (scripts/check_wheel.sh)"
bash scripts/check_wheel.sh
echo "== pytest"
exec python3 -m pytest -v -p no:cacheprovider "$@"
