#!/usr/bin/env bash
# Installs what the conversion and browser tests need on a fresh Debian machine (idempotent):
#   * Debian's chromium (/usr/bin/chromium): npm's own browser downloads are not used;
#   * Node.js >= 18 and npm (Debian's, when no node is installed);
#   * demos/web/node_modules from package-lock.json (TF.js, its wasm backend, playwright-core);
#   * .tfjs-venv with the TF.js converter (scripts/make_tfjs_venv.sh).
# Uses sudo for apt-get only when not run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
packages=()
[ -x /usr/bin/chromium ] || packages+=(chromium)
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
if [ "${#packages[@]}" -gt 0 ]; then
  echo "apt-get install ${packages[*]}"
  $sudo apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}"
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 18 ]; then
  echo "Node.js $(node --version) is too old: the demo's packages need Node.js >= 18" >&2
  exit 1
fi

# npm ci only when package-lock.json changed since the last install.
lock_hash=$(sha256sum demos/web/package-lock.json | cut -d' ' -f1)
stamp=demos/web/node_modules/.penet-lock.sha256
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_hash" ]; then
  echo "demos/web/node_modules: up to date"
else
  (cd demos/web && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_hash" > "$stamp"
fi

scripts/make_tfjs_venv.sh
echo "browser tests ready: $(/usr/bin/chromium --version 2>/dev/null | head -1), node $(node --version)"
