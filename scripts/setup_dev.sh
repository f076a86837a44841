#!/usr/bin/env bash
# Creates .venv with penet_tf and everything the test suite needs (idempotent).
# Used by the README's test command and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev,torch,convert]'
