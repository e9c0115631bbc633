"""The oldest Python setup.py's python_requires admits (3.10: ROS 2 Humble's, Ubuntu 22.04's and JetPack 6's) runs
the package: no module, launch file, tool or test uses a construct of a later Python (vermin reads them all here, on
the venv's newer Python), and where that Python is installed, a module that once failed on it runs."""
from __future__ import annotations

import glob
import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dgdehaze_core.datasets.paths import DEFAULT_DETECTOR, REPO_DIR

CHECKED = ("dgdehaze_core", "dgdehaze_ros", "launch", "tools", "tests", "setup.py")
"""What runs on the robot's Python: both packages, the launch file, the tools, the tests (`colcon test`), setup.py."""


def admitted_python() -> str:
    """The oldest Python setup.py's python_requires admits, e.g. '3.10'."""
    return re.search(r'python_requires=">=(\d+\.\d+)"', (REPO_DIR / "setup.py").read_text()).group(1)


def test_no_source_needs_a_python_newer_than_python_requires() -> None:
    """`hashlib.file_digest` (3.11) slipped in unseen: the venv runs 3.11, which has every construct of 3.10. vermin
    knows the Python version of each module, function, keyword argument and syntax of the standard library;
    annotations are evaluated (the modules without `from __future__ import annotations` evaluate theirs)."""
    pytest.importorskip("vermin", reason="vermin is pinned in requirements.txt (the venv of `make`)")
    run = subprocess.run([sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())",
                          f"--target={admitted_python()}-", "--violations", "--eval-annotations", "--no-tips",
                          "--no-config-file", "--processes=1", *CHECKED],
                         cwd=REPO_DIR, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def _oldest_python() -> str | None:
    """An interpreter of the oldest Python setup.py's python_requires admits, where one is installed."""
    version = admitted_python()
    found = [shutil.which(f"python{version}"),
             *sorted(glob.glob(str(Path.home() / ".pyenv" / "versions" / f"{version}.*" / "bin" / "python3")))]
    return next((python for python in found if python and subprocess.run([python, "-c", ""]).returncode == 0), None)


def test_a_file_digest_is_taken_on_the_oldest_python_the_package_admits() -> None:
    """file_sha256 called `hashlib.file_digest`, new in Python 3.11: on ROS 2 Humble's and JetPack 6's Python 3.10,
    which setup.py admits, naming any weights file (provenance, engine cache keys) raised AttributeError."""
    python = _oldest_python()
    if python is None:
        pytest.skip("no interpreter of the oldest Python the package admits is installed here")
    module = REPO_DIR / "dgdehaze_core" / "io" / "file_digest.py"
    code = "import runpy, sys; print(runpy.run_path(sys.argv[1])['file_sha256'](sys.argv[2]))"
    run = subprocess.run([python, "-c", code, str(module), str(DEFAULT_DETECTOR)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == hashlib.sha256(DEFAULT_DETECTOR.read_bytes()).hexdigest()
