"""The `dgdehaze` command line on an installation that lacks a package one command needs (rosbags, on a machine
that only trains): that command says what to install, every other command works."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dgdehaze_core.datasets.paths import REPO_DIR

BLOCK_ROSBAGS = ("import sys; sys.modules['rosbags'] = None; from dgdehaze_core.cli import main; "
                 "sys.exit(main(sys.argv[1:]))")
"""Runs the CLI with `import rosbags` failing as it does where the package is not installed."""


def _cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_ROSBAGS, *arguments], cwd=REPO_DIR, capture_output=True,
                          text=True, timeout=120)


def test_a_command_whose_package_is_missing_says_what_to_install() -> None:
    listed = _cli("--help")
    assert listed.returncode == 0
    assert "bag-eval     (unavailable: needs the Python package 'rosbags')" in listed.stdout
    refused = _cli("bag-eval", "some.mcap", "--method", "dcp")
    assert refused.returncode == 2
    assert "needs the Python package 'rosbags'" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_the_other_commands_work_without_it(tmp_path: Path) -> None:
    trained = _cli("train", "--help")
    assert trained.returncode == 0 and "--resume" in trained.stdout
    refused = _cli("dehaze", "no-such-image.png", "--method", "dcp", "--out", str(tmp_path / "out.png"))
    assert refused.returncode == 2 and "no such input: no-such-image.png" in refused.stderr


def test_train_reads_a_bag_source_only_with_rosbags_and_says_so_without(tmp_path: Path) -> None:
    """The lent GPU machine has no rosbags: train works there, and a recipe naming a bag says what it needs."""
    recipe = (REPO_DIR / "training" / "smoke.yaml").read_text().replace(
        "    - path: ${DATA}/hazy-real/urhi", f"    - path: {REPO_DIR / 'data' / 'demo' / 'rural_fog_day'}")
    assert "rural_fog_day" in recipe
    (tmp_path / "bag.yaml").write_text(recipe)
    refused = _cli("train", "--config", str(tmp_path / "bag.yaml"), "--out", str(tmp_path / "run"), "--iterations",
                   "1", "--no-progress")
    assert refused.returncode == 2 and "needs the Python package 'rosbags'" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr

