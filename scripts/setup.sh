#!/usr/bin/env bash
# Set up everything the project needs in ./.venv on a fresh machine (idempotent: a second run with the
# same pyproject.toml and constraints.txt returns at once).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
stamp=.venv/.setup-stamp
want=$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c "import kidneytumorseg, kidneytumorseg_training, KidneyTumorSegLib" 2>/dev/null; then
  exit 0
fi
echo "[setup] creating .venv and installing the project (torch pinned by constraints.txt)" >&2
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel -c constraints.txt
# torch first, pinned, so nothing later can replace it with a CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev,mrml]" -c constraints.txt
echo "$want" > "$stamp"
echo "[setup] done" >&2
