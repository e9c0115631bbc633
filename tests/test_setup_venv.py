"""tools/setup_venv.sh, which `make demo` and `make test` run when .venv/.ready is missing: a set-up cut short must
not leave a venv that every later run fails on.

The runs here give pip no package source, so that pip's install of the requirements fails at once, after the
venv step that is checked (a whole set-up takes minutes).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
