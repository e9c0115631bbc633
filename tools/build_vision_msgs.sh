#!/usr/bin/env bash
# Generate vision_msgs (the 4.x 2D detection messages, Classification and LabelInfo, tools/vision_msgs/) into the venv from the pip-installed ROS 2
# build tools, so the node can publish vision_msgs/Detection2DArray without a ROS install.
# Idempotent: does nothing when vision_msgs is already usable (a real ROS install, or an earlier run of the same
# sources).
# Needs cmake, make and a C/C++ compiler (Debian: cmake g++ make). See ../shared/notes/vision-msgs-from-pip.md.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
VENV=$(cd "$VENV" && pwd)
PY="$VENV/bin/python"
# Usable: the messages serialize, which loads their compiled type support (an import alone does not, and passes on
# an install cut short before the .so files).
usable="from rclpy.serialization import serialize_message
from vision_msgs.msg import Classification, Detection2DArray, LabelInfo
for message in (Classification(), Detection2DArray(), LabelInfo()):
    serialize_message(message)"
# What was built, by the sources it was built from: usable vision_msgs with no stamp come from a ROS install (or an
# earlier set-up), and are kept; a stamp of other sources (a .msg edited since) builds them again.
stamp="$VENV/share/dgdehaze_vision_msgs_sources.sha256"
sources=$(cd tools/vision_msgs && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum \
  | cut -d' ' -f1)
if "$PY" -c "$usable" 2>/dev/null; then
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" = "$sources" ]; then
    echo "dgdehaze: vision_msgs already importable; nothing to build"
    exit 0
  fi
  echo "dgdehaze: tools/vision_msgs changed since vision_msgs was built into $VENV: building it again"
fi
for tool in cmake make c++; do
  command -v "$tool" >/dev/null || { echo "dgdehaze: building vision_msgs needs $tool (Debian: apt-get install cmake g++ make)" >&2; exit 1; }
done
# The ros-*-msgs wheels' CMake exports name the wheel builder's Python and numpy include folders; point them here.
"$PY" - "$VENV" <<'PY'
import re
import sys
import sysconfig
from pathlib import Path

import numpy

venv = Path(sys.argv[1])
python_include = sysconfig.get_paths()["include"]
numpy_include = numpy.get_include()


def local(path: str) -> str:
    if Path(path).exists():
        return path
    if re.search(r"numpy/(_core|core)/include$", path):
        return numpy_include
    if re.search(r"/include/python3\.\d+$", path):
        return python_include
    return path


for export in sorted(venv.glob("share/*/cmake/export_*__rosidl_generator_pyExport.cmake")):
    text = export.read_text()
    fixed = re.sub(r'(INTERFACE_INCLUDE_DIRECTORIES ")([^"]*)(")',
                   lambda m: m[1] + ";".join(local(p) for p in m[2].split(";")) + m[3], text)
    if fixed != text:
        export.write_text(fixed)
        print(f"dgdehaze: rewrote include paths in {export.relative_to(venv)}")
PY
BUILD=$(mktemp -d "${TMPDIR:-/tmp}/vision_msgs_build.XXXXXX")
trap 'rm -rf "$BUILD"' EXIT
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export PATH="$VENV/bin:$PATH"
cmake -S tools/vision_msgs -B "$BUILD" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY" \
  -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release >"$BUILD/configure.log" 2>&1 \
  || { cat "$BUILD/configure.log" >&2; exit 1; }
cmake --build "$BUILD" -j "$(nproc)" >"$BUILD/build.log" 2>&1 || { tail -50 "$BUILD/build.log" >&2; exit 1; }
cmake --install "$BUILD" >/dev/null
"$PY" -c "$usable"
mkdir -p "$(dirname "$stamp")" && echo "$sources" > "$stamp"
echo "dgdehaze: vision_msgs built into $VENV"
