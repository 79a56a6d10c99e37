#!/usr/bin/env bash
# Idempotent set-up of ./.venv: torch pinned to the CPU wheel first, then the project with constraints.txt.
# `--with-browser` (used by scripts/test.sh) also installs Debian's chromium for the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

# System libraries of the web front-end: Mesa's software GL for off-screen rendering (EGL: libegl1
# libegl-mesa0 libgl1-mesa-dri; OSMesa: libosmesa6) and, for the browser tests, Debian's chromium (never a
# browser downloaded by a tool). Checked on every run (dpkg -s is fast); without apt-get or root they are
# only reported, and the browser tests then skip, saying why.
apt_packages="libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6"
if [ "${1:-}" = "--with-browser" ]; then apt_packages="$apt_packages chromium"; fi
missing=""
if command -v dpkg >/dev/null 2>&1; then
  for package in $apt_packages; do dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"; done
fi
if [ -n "$missing" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "[setup] apt-get install$missing" >&2
    { DEBIAN_FRONTEND=noninteractive apt-get update -q \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing; } >&2 \
      || echo "[setup] apt-get failed; the web front-end may not render and its browser tests will skip" >&2
  else
    echo "[setup] not installed:$missing (as root: apt-get install$missing); the web front-end may not" \
         "render and its browser tests will skip" >&2
  fi
fi

stamp=.venv/.setup-stamp
want=$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c "import kidneytumorseg, kidneytumorseg_training, KidneyTumorSegLib, kidneytumorseg_web" 2>/dev/null; then
  exit 0
fi
echo "[setup] creating .venv and installing the project (torch pinned by constraints.txt)" >&2
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel -c constraints.txt
# torch first, pinned, so nothing later can replace it with a CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev,mrml,web]" -c constraints.txt
echo "$want" > "$stamp"
echo "[setup] done" >&2
