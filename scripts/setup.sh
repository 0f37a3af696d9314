#!/usr/bin/env bash
# Install rlkd into ./.venv, with the Debian packages it needs for headless rendering.
#   bash scripts/setup.sh         the package (train, eval, report, ...)
#   bash scripts/setup.sh --dev   plus the test and lint tools
set -euo pipefail
cd "$(dirname "$0")/.."

# dm-control renders DeepMind Control frames headless through Mesa (MUJOCO_GL=osmesa or egl).
debs=(libosmesa6 libegl1 libegl-mesa0 libgl1-mesa-dri)
missing=()
for p in "${debs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
if [ "${1:-}" = "--dev" ]; then
  python -m pip install -q -e '.[dev]'
else
  python -m pip install -q -e .
fi
echo "rlkd installed in $(pwd)/.venv: activate it with '. .venv/bin/activate'"
