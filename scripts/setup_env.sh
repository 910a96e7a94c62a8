#!/usr/bin/env bash
# Create the project-local virtual environment (.venv) if needed and install the project into it.
#
# Torch: if this machine carries a local CPU wheel of torch 2.13.0 (pip's find-links, as on the
# project's CI machines), that wheel is used, so no multi-GB CUDA build is downloaded. Otherwise pip
# installs an ordinary torch from PyPI (CUDA-enabled on Linux). Set TORCH_SPEC to choose yourself,
# e.g. TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu".
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
STAMP="$VENV/.installed"

if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ]; then
  exit 0
fi
if [ ! -x "$PY" ]; then
  echo ">> creating virtual environment in $VENV"
  python3 -m venv "$VENV"
fi
export NO_ALBUMENTATIONS_UPDATE=1
if ! "$PY" -c "import torch" 2>/dev/null; then
  if [ -n "${TORCH_SPEC:-}" ]; then
    echo ">> installing torch: $TORCH_SPEC"
    # shellcheck disable=SC2086
    "$PY" -m pip install $TORCH_SPEC
  elif "$PY" -m pip install -q --no-index --no-deps "torch==2.13.0" 2>/dev/null; then
    echo ">> using the local CPU wheel of torch 2.13.0"
  else
    echo ">> installing torch from PyPI (no local wheel found)"
  fi
fi
echo ">> installing tutorial_lib and its dependencies (editable, with dev extras)"
"$PY" -m pip install -q -e ".[dev]"
touch "$STAMP"
