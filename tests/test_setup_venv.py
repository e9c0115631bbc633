"""tools/setup_venv.sh (with tools/build_vision_msgs.sh), which `make demo` and `make test` run when .venv/.ready is
missing: a set-up cut short must not leave a venv that every later run fails on, or one taken as ready that is not.

The runs here give pip no package source, so that pip's install of the requirements fails at once, after the
venv step that is checked (a whole set-up takes minutes).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dgdehaze_core.datasets.paths import REPO_DIR


def _setup(venv: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """tools/setup_venv.sh building `venv` from this interpreter, run from `tmp_path`, pip offline with no wheels."""
    wheels = tmp_path / "no-wheels"
    wheels.mkdir(exist_ok=True)
    env = {**os.environ, "VENV": str(venv), "PYTHON": sys.executable, "PIP_CONFIG_FILE": os.devnull,
           "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}
    return subprocess.run(["bash", str(REPO_DIR / "tools" / "setup_venv.sh")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_a_venv_cut_short_before_pip_was_installed_is_completed_not_failed_on(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    (venv / "kept").write_text("venv deletes nothing")
    done = _setup(venv, tmp_path)
    assert "No module named pip" not in done.stderr
    assert subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "--version"], capture_output=True).returncode == 0
    assert (venv / "kept").is_file()
    assert done.returncode != 0 and not (venv / ".ready").exists()  # no package source: pip's install fails after it


def test_vision_msgs_cut_short_before_its_type_support_is_built_again_not_taken_as_built(tmp_path: Path) -> None:
    """The check was an import, which passes without the compiled type support: an install cut short before the
    .so files was taken as built, and the node failed on its first Detection2DArray."""
    spec = importlib.util.find_spec("vision_msgs")
    if spec is None or spec.origin is None:
        pytest.skip("vision_msgs is not built into this venv")
    shadow = tmp_path / "site"
    shutil.copytree(Path(spec.origin).parent, shadow / "vision_msgs", ignore=shutil.ignore_patterns("*typesupport*.so"))
    venv = tmp_path / "venv"  # this interpreter, its vision_msgs without type support
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(f'#!/bin/sh\nPYTHONPATH="{shadow}" exec "{sys.executable}" "$@"\n')
    (venv / "bin" / "python").chmod(0o755)
    done = subprocess.run(["bash", str(REPO_DIR / "tools" / "build_vision_msgs.sh")], env={**os.environ,
                          "VENV": str(venv)}, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "nothing to build" not in done.stdout
    assert done.returncode != 0  # it builds, and CMake finds no ROS 2 in this stand-in venv
    assert "ament_cmake" in done.stderr or "building vision_msgs needs" in done.stderr, done.stdout + done.stderr


def _sources_digest() -> str:
    """The digest build_vision_msgs.sh stamps: sha256sum's lines over tools/vision_msgs' files in byte order."""
    folder = REPO_DIR / "tools" / "vision_msgs"
    files = sorted((f"./{path.relative_to(folder)}" for path in folder.rglob("*") if path.is_file()),
                   key=lambda name: name.encode())
    lines = "".join(f"{hashlib.sha256((folder / name).read_bytes()).hexdigest()}  {name}\n" for name in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def test_vision_msgs_built_from_other_sources_are_built_again(tmp_path: Path) -> None:
    """An edited tools/vision_msgs/*.msg made `make` run the set-up again (the Makefile names the .msg files), but
    vision_msgs imported and serialized, so it said 'nothing to build' and the venv kept the old messages. Usable
    vision_msgs without a stamp (a ROS install's) are kept; a stamp of other sources builds them again."""
    if importlib.util.find_spec("vision_msgs") is None:
        pytest.skip("vision_msgs is not built into this venv")
    venv = tmp_path / "venv"  # this interpreter with its usable vision_msgs
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (venv / "bin" / "python").chmod(0o755)
    stamp = venv / "share" / "dgdehaze_vision_msgs_sources.sha256"
    stamp.parent.mkdir()

    def build() -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(REPO_DIR / "tools" / "build_vision_msgs.sh")],
                              env={**os.environ, "VENV": str(venv)}, cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)

    assert "nothing to build" in build().stdout  # no stamp: a ROS install's vision_msgs
    stamp.write_text(_sources_digest() + "\n")
    assert "nothing to build" in build().stdout
    stamp.write_text("0" * 64 + "\n")
    done = build()
    assert "changed since vision_msgs was built" in done.stdout and "nothing to build" not in done.stdout
    assert done.returncode != 0  # it builds, and CMake finds no ROS 2 in this stand-in venv
