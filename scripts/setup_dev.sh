#!/usr/bin/env bash
# Creates .venv with penet_tf and everything the test suite needs (idempotent): the
# Python extras, then Chromium, the web demo's node packages and the TF.js converter's
# own virtualenv (scripts/setup_browser_tests.sh). Used by the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev,torch,convert]'
scripts/setup_browser_tests.sh
