#!/usr/bin/env bash
# Creates .tfjs-venv with the TensorFlow.js converter (idempotent).
#
# tensorflowjs pins an older TensorFlow (it installs TF 2.19 through
# tensorflow-decision-forests), so it lives in its own virtualenv, used only by
# `python -m penet_tf.convert --to tfjs`. ydf==0.13.0 fixes its protobuf import error.
#
# Usage: scripts/make_tfjs_venv.sh [VENV_DIR]   (default: .tfjs-venv in the repository)
set -euo pipefail
# The venv's Python is its own install: a PYTHONPATH naming another's packages (a `pip
# install --target` deployment) gave it TensorFlow 2.21 ("undefined symbol"), as in
# penet_tf.convert, which runs the converter without these too.
unset PYTHONPATH PYTHONHOME PYTHONUSERBASE PYTHONSTARTUP
# A relative VENV_DIR is relative to where the script is run (it was taken from the
# repository, where `convert --tfjs-venv DIR` then did not look).
# (Python's abspath, not GNU `realpath -m`: macOS' realpath has no -m and stopped here.)
python="${PYTHON:-python3}"
venv="$("$python" -c 'import os, sys; print(os.path.abspath(sys.argv[1]))' "${1:-$(dirname "$0")/../.tfjs-venv}")"
cd "$(dirname "$0")/.."
if [ -x "$venv/bin/tensorflowjs_converter" ] && "$venv/bin/python" -c "import tensorflowjs" 2>/dev/null; then
  echo "$venv: tensorflowjs already installed"
  exit 0
fi
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "tensorflowjs==4.22.0" "ydf==0.13.0"
"$venv/bin/python" -c "import tensorflowjs, tensorflow as tf; print('tensorflowjs', tensorflowjs.__version__, 'tensorflow', tf.__version__)"
echo "$venv: ready ($venv/bin/tensorflowjs_converter)"
