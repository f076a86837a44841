#!/usr/bin/env bash
# Launch TF Serving for the exported PEN-Net model(s): gRPC on 8500, REST on 8501.
#
#   serving/run_tf_serving.sh            # Docker image tensorflow/serving (default)
#   serving/run_tf_serving.sh --local    # a tensorflow_model_server binary on PATH
#
# Serves savedmodels/<name>/<version>/ as listed in serving/models.config (model
# "demo" = savedmodels/demo), with batching (serving/batching_parameters.txt) and the
# export's warm-up requests. Environment overrides:
#   TF_SERVING_IMAGE  Docker image (default tensorflow/serving:2.20.0)
#   MODELS_DIR        the savedmodels folder (default: <repo>/savedmodels)
#   BATCHING          batching parameters file (default: serving/batching_parameters.txt)
#   GRPC_PORT / REST_PORT  host ports (default 8500 / 8501)
# Extra arguments go to tensorflow_model_server, e.g. --tensorflow_intra_op_parallelism=8.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
image="${TF_SERVING_IMAGE:-tensorflow/serving:2.20.0}"
absolute() {  # an absolute path, existing or not (macOS' realpath has no -m: it stopped here)
  if [[ -d "$(dirname "$1")" ]]; then
    printf '%s/%s\n' "$(cd "$(dirname "$1")" && pwd -P)" "$(basename "$1")"
  else
    case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac
  fi
}
models="$(absolute "${MODELS_DIR:-$repo/savedmodels}")"
batching="$(absolute "${BATCHING:-$here/batching_parameters.txt}")"
grpc_port="${GRPC_PORT:-8500}"
rest_port="${REST_PORT:-8501}"

mode=docker
if [[ "${1:-}" == "--local" ]]; then
  mode=local
  shift
fi

if [[ ! -d "$models" ]]; then
  echo "error: no model folder $models; export first:" >&2
  echo "  python -m penet_tf.export --weights runs/demo/generator.weights.h5 --out savedmodels/demo" >&2
  exit 2
fi
for file in "$here/models.config" "$batching"; do
  [[ -f "$file" ]] || { echo "error: missing $file" >&2; exit 2; }
done

# Flags shared by both modes; paths are filled in below.
flags=(
  --enable_batching=true
  --enable_model_warmup=true
  --model_config_file_poll_wait_seconds=60
  --file_system_poll_wait_seconds=30
  --rest_api_timeout_in_ms=60000
)

if [[ "$mode" == docker ]]; then
  command -v docker >/dev/null || { echo "error: docker not found (or use --local)" >&2; exit 2; }
  exec docker run --rm --init \
    -p "$grpc_port:8500" -p "$rest_port:8501" \
    -v "$models:/models:ro" \
    -v "$here/models.config:/config/models.config:ro" \
    -v "$batching:/config/batching_parameters.txt:ro" \
    --entrypoint tensorflow_model_server \
    "$image" \
    --port=8500 --rest_api_port=8501 \
    --model_config_file=/config/models.config \
    --batching_parameters_file=/config/batching_parameters.txt \
    "${flags[@]}" "$@"
fi

command -v tensorflow_model_server >/dev/null || {
  echo "error: tensorflow_model_server not on PATH (see serving/README.md, or drop --local)" >&2
  exit 2
}
# models.config names container paths (/models/...): point them at the host folder, in a
# copy made now (edit serving/models.config, then restart to apply it). The path is
# escaped for sed (a folder named a&b wrote the match itself into base_path).
# Stopping the launcher (a supervisor's TERM, Ctrl-C) stops the server, then removes the
# copy (the server was left running, its config already deleted). Set before either
# exists: a TERM just after the start, before the trap, left the server running. ($! is
# the server once it has started, unset before: `set -u` would stop the trap; a trap
# runs between commands.)
config=
trap 'if [ -n "${!:-}" ]; then kill -TERM "$!" 2>/dev/null; wait "$!" || true; fi; rm -f "${config:-}"; exit 143' TERM INT HUP
config="$(mktemp "${TMPDIR:-/tmp}/penet-models.XXXXXX.config")"
escaped="$(printf '%s' "$models" | sed 's/[\\&#]/\\&/g')"
sed "s#base_path: \"/models/#base_path: \"$escaped/#" "$here/models.config" > "$config"
tensorflow_model_server \
  --port="$grpc_port" --rest_api_port="$rest_port" \
  --model_config_file="$config" \
  --batching_parameters_file="$batching" \
  "${flags[@]}" "$@" &
server=$!
status=0
wait "$server" || status=$?
rm -f "$config"
exit "$status"
