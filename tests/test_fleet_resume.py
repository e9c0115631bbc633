"""`bag-eval BAG BAG ... --resume`: a fleet stopped part way goes on, the bags it finished read back from their
folders, the others evaluated; refused where the folder's fleet ran with other settings or weights, or holds none."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_bag_io import demo_frames, write_camera_bag

from dgdehaze_core.cli import main
from dgdehaze_core.models import shipped_weights_path

OPTIONS = ["--no-detection", "--image-topic", "/cam/image_raw", "--workers", "1", "--no-progress"]


def fleet_command(bags: list[Path], out: Path, *options: str) -> list[str]:
    return ["bag-eval", *map(str, bags), "--out", str(out), *OPTIONS, *options]


def read_fleet(out: Path) -> dict:
    return json.loads((out / "fleet.json").read_text())


def summary_stamp(folder: Path) -> tuple[int, int]:
    status = (folder / "summary.json").stat()
    return status.st_ino, status.st_mtime_ns


def test_a_killed_fleet_resumed_reads_back_the_bag_it_finished_and_evaluates_the_rest(tmp_path: Path) -> None:
    first, long = tmp_path / "short", tmp_path / "long"
    write_camera_bag(first, "mcap", demo_frames(2), "bgr8")
    write_camera_bag(long, "mcap", demo_frames(20, (640, 360)), "bgr8")
    out = tmp_path / "fleet"
    command = fleet_command([first, long], out, "--method", "dcp")
    run = subprocess.Popen([sys.executable, "-m", "dgdehaze_core.cli", *command], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(p.name.startswith(".long~") for p in out.iterdir())):  # the short bag is done
        assert time.monotonic() < deadline and run.poll() is None, "the second bag was never under way"
        time.sleep(0.01)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    killed = read_fleet(out)
    assert killed["status"] == "running" and set(killed["jobs"]) == {"short", "long"}
    finished = summary_stamp(out / "short")

    assert main([*command, "--resume"]) == 0
    fleet = read_fleet(out)
    assert fleet["status"] == "done" and fleet["bags"] == 2 and fleet["bags_resumed"] == 1
    assert [(Path(b["out_dir"]).name, b["resumed"]) for b in fleet["per_bag"]] == [("short", True), ("long", False)]
    assert summary_stamp(out / "short") == finished, "the finished bag is read back, not evaluated again"
    assert fleet["per_bag"][0]["figures"]["frames"] == 2 and fleet["per_bag"][1]["figures"]["frames"] == 20
    assert fleet["all"]["frames"] == 22
    assert fleet["started_ns"] == killed["started_ns"], "a resume of this resume still counts the first run's bags"
    assert "1 bags read back from the run this one resumed" in (out / "index.html").read_text()

    assert main([*command, "--workers", "2", "--resume"]) == 0  # on Ray, were there any bag left to run
    fleet = read_fleet(out)
    assert fleet["bags_resumed"] == 2 and fleet["runner"] == "sequential", "no Ray started for a finished fleet"


@pytest.fixture()
def finished_fleet(tmp_path: Path) -> tuple[list[Path], Path]:
    """A fleet of two one-frame bags and a corrupt one, run to its end with dcp: ([bags], its --out)."""
    first, second, broken = tmp_path / "drive_a", tmp_path / "drive_b", tmp_path / "broken.mcap"
    write_camera_bag(first, "mcap", demo_frames(1), "bgr8")
    write_camera_bag(second, "mcap", demo_frames(1), "bgr8")
    broken.write_bytes(b"\x89MCAP0\r\n" + b"truncated in the middle of a record")
    out = tmp_path / "fleet"
    bags = [first, broken, second]
    assert main(fleet_command(bags, out, "--method", "dcp")) == 1
    return bags, out


def test_a_resume_evaluates_again_a_bag_that_failed_and_a_bag_new_to_the_fleet(
        finished_fleet: tuple[list[Path], Path], tmp_path: Path) -> None:
    bags, out = finished_fleet
    stamps = {name: summary_stamp(out / name) for name in ("drive_a", "drive_b")}
    third = tmp_path / "drive_c"
    write_camera_bag(third, "mcap", demo_frames(1), "bgr8")
    assert main(fleet_command([*bags, third], out, "--method", "dcp", "--resume")) == 1  # the corrupt bag again
    fleet = read_fleet(out)
    rows = {Path(b["out_dir"]).name: (b["ok"], b["resumed"]) for b in fleet["per_bag"]}
    assert rows == {"drive_a": (True, True), "broken": (False, False), "drive_b": (True, True),
                    "drive_c": (True, False)}
    assert {name: summary_stamp(out / name) for name in stamps} == stamps
    assert "drive_c" in fleet["jobs"] and fleet["all"]["frames"] == 3


def test_a_bag_whose_summary_is_older_than_the_run_resumed_is_evaluated_again(
        finished_fleet: tuple[list[Path], Path]) -> None:
    """A folder an earlier fleet (not the one resumed) wrote is no bag the resumed run finished."""
    bags, out = finished_fleet
    fleet = read_fleet(out)
    fleet["started_ns"] = time.time_ns()  # as if the run resumed began after drive_a's summary was written
    (out / "fleet.json").write_text(json.dumps(fleet))
    os.utime(out / "drive_b" / "summary.json")  # drive_b written since
    assert main(fleet_command(bags, out, "--method", "dcp", "--resume")) == 1
    rows = {Path(b["out_dir"]).name: b["resumed"] for b in read_fleet(out)["per_bag"] if b["ok"]}
    assert rows == {"drive_a": False, "drive_b": True}


def test_a_resume_with_other_settings_or_weights_is_refused_and_changes_nothing(
        finished_fleet: tuple[list[Path], Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bags, out = finished_fleet
    before = (out / "fleet.json").read_bytes()
    assert main(fleet_command(bags, out, "--method", "dcp", "--max-frames", "1", "--resume")) == 2
    assert "evaluated drive_a with other settings (they differ in max_frames)" in capsys.readouterr().err
    assert (out / "fleet.json").read_bytes() == before

    weights, other = tmp_path / "mine.pt", tmp_path / "other"
    shutil.copyfile(shipped_weights_path("lite"), weights)
    shutil.copyfile(bags[1], tmp_path / "broken_too.mcap")
    failing = [bags[1], tmp_path / "broken_too.mcap"]  # its record is written, no network runs
    assert main(fleet_command(failing, other, "--method", str(weights))) == 1
    before = (other / "fleet.json").read_bytes()
    shutil.copyfile(shipped_weights_path("lite_no_depth"), weights)  # the same path, trained again
    assert main(fleet_command(failing, other, "--method", str(weights), "--resume")) == 2
    assert "evaluated broken with other settings (they differ in weights_sha256)" in capsys.readouterr().err
    assert (other / "fleet.json").read_bytes() == before


def test_a_resume_without_a_fleet_to_resume_is_refused_saying_so(
        finished_fleet: tuple[list[Path], Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bags, out = finished_fleet
    assert main(fleet_command(bags, tmp_path / "new", "--method", "dcp", "--resume")) == 2
    assert "holds no fleet.json, so no fleet to resume (run without --resume)" in capsys.readouterr().err
    fleet = read_fleet(out)
    del fleet["started_ns"], fleet["jobs"]  # as an older dgdehaze wrote it
    (out / "fleet.json").write_text(json.dumps(fleet))
    assert main(fleet_command(bags, out, "--method", "dcp", "--resume")) == 2
    assert "holds no record of its run's settings (written by an older dgdehaze)" in capsys.readouterr().err
    assert main(["bag-eval", str(bags[0]), "--out", str(tmp_path / "one"), "--resume", "--method", "dcp"]) == 2
    assert "--resume are for several bags" in capsys.readouterr().err
