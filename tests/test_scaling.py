"""Beyond one process: bags evaluated as a fleet (Ray tasks, or one after the other without Ray) and training
data-parallel under torchrun (two CPU ranks on gloo)."""
from __future__ import annotations

import html
import itertools
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.parse
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import pytest
from test_bag_io import CUSTOM_TYPE, demo_frames, write_camera_bag, write_humble_bag

from dgdehaze_core.bags import fleet as bag_fleet
from dgdehaze_core.bags.fleet import (BagJob, BagOutcome, evaluate_job, fleet_figures, fleet_html, fleet_table,
                                      output_folders, remove_tasks_leftovers)
from dgdehaze_core.cli import main
from dgdehaze_core.inference.backends.selection import model_digest
from dgdehaze_core.io.checkpoints import read_checkpoint
from dgdehaze_core.models import build_model
from dgdehaze_core.training.distributed import Rank, Shard

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def three_bags(tmp_path: Path) -> list[Path]:
    """Two small camera bags (3 and 2 frames) and a corrupt one between them."""
    first, second, broken = tmp_path / "drive_a", tmp_path / "drive_b", tmp_path / "broken.mcap"
    write_camera_bag(first, "mcap", demo_frames(3), "bgr8")
    write_camera_bag(second, "sqlite3", demo_frames(2), "rgb8")
    broken.write_bytes(b"\x89MCAP0\r\n" + b"truncated in the middle of a record")
    return [first, broken, second]


class RayCluster(NamedTuple):
    address: str
    head: Path
    """The folder its workers run in."""


@pytest.fixture(scope="class")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    """A Ray cluster of one node (`ray start --head`, as on a cluster's head) whose workers run in a folder of their
    own, as a cluster's do; its address and that folder. It records itself in a temporary folder of its own, so that
    no other Ray started meanwhile takes it for this machine's cluster, and its processes are ended by their ids.
    Started once for the tests of one class (each submits its own bags and only reads the cluster), and ended after
    them, so that the module's later tests do not share the machine with it."""
    pytest.importorskip("ray", reason="Ray is the optional fleet extra (requirements-fleet.txt)")
    import psutil

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    head = tmp_path_factory.mktemp("head_node")
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths must fit 107 characters
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
         "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats",
         "--temp-dir", str(temp)], cwd=head, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"})  # a driver given an address sends no token
    try:
        deadline = time.monotonic() + 120
        while not (list(temp.glob("session_*/sockets/raylet*")) or time.monotonic() > deadline):
            assert process.poll() is None, "ray start --head failed"
            time.sleep(0.2)
        yield RayCluster(f"127.0.0.1:{port}", head)
    finally:
        started = psutil.Process(process.pid).children(recursive=True)  # the cluster's servers and its workers
        for child in started:
            child.kill()
        process.kill()
        process.wait()
        psutil.wait_procs(started, timeout=20)
        shutil.rmtree(temp, ignore_errors=True)


def check_fleet(out: Path, bags: list[Path], runner: str) -> None:
    fleet = json.loads((out / "fleet.json").read_text())
    assert fleet["runner"] == runner and fleet["bags"] == 3 and fleet["failed"] == 1
    per_bag = {Path(o["input_bag"]).name: o for o in fleet["per_bag"]}
    assert [Path(o["input_bag"]) for o in fleet["per_bag"]] == bags  # in the order given
    assert not per_bag["broken.mcap"]["ok"] and per_bag["broken.mcap"]["error"]
    for name, frames in (("drive_a", 3), ("drive_b", 2)):
        assert per_bag[name]["ok"] and per_bag[name]["figures"]["frames"] == frames
        assert (out / name / "report.html").is_file() and (out / name / "summary.json").is_file()
        assert (out / name / "bag").is_dir()
    assert fleet["all"]["frames"] == 5
    index = (out / "index.html").read_text()
    assert 'href="drive_a/report.html"' in index and 'href="drive_b/report.html"' in index and "failed" in index


class TestOneRayCluster:
    """Fleets on one cluster, started for these tests together."""

    def test_a_cluster_whose_workers_run_in_another_folder_finds_bags_and_outputs_given_relative(
            self, ray_cluster: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        here = tmp_path / "driver"
        here.mkdir()
        write_camera_bag(here / "drive_a", "mcap", demo_frames(2))
        write_camera_bag(here / "drive_b", "sqlite3", demo_frames(1))
        monkeypatch.chdir(here)
        code = main(["bag-eval", "drive_a", "drive_b", "--out", "fleet", "--ray", ray_cluster.address, "--method",
                     "dcp", "--no-detection", "--no-progress"])
        fleet = json.loads((here / "fleet" / "fleet.json").read_text())
        assert code == 0, fleet.get("per_bag", fleet)
        assert fleet["runner"] == "ray" and [o["figures"]["frames"] for o in fleet["per_bag"]] == [2, 1]
        assert (here / "fleet" / "drive_a" / "report.html").is_file() and (here / "fleet" / "drive_b" / "bag").is_dir()
        assert not (ray_cluster.head / "fleet").exists()

    def test_two_bags_on_a_local_ray_both_reported_and_a_corrupt_third_failed_alone_with_ray_address_set(
            self, ray_cluster: RayCluster, three_bags: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture) -> None:
        """A fleet without --ray runs on a Ray of its own, also where RAY_ADDRESS names a cluster (as in a shell set
        up for it): one local Ray start serves both checks."""
        monkeypatch.setenv("RAY_ADDRESS", ray_cluster.address)
        out, table = tmp_path / "fleet", tmp_path / "fleet_table.json"
        code = main(["bag-eval", *map(str, three_bags), "--out", str(out), "--method", "dcp", "--no-detection",
                     "--image-topic", "/cam/image_raw", "--workers", "2", "--json", str(table), "--no-progress"])
        assert code == 1  # one bag failed
        check_fleet(out, three_bags, "ray")
        assert json.loads((out / "fleet.json").read_text())["status"] == "done"
        rows = json.loads(table.read_text())
        assert rows["broken"]["status"] == "failed" and rows["drive_a"]["status"] == "ok"
        assert rows["all"]["frames"] == 5 and "drive_b" in capsys.readouterr().out


def test_a_runner_that_cannot_start_leaves_the_earlier_fleet_as_it_was(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is the optional fleet extra (requirements-fleet.txt)")
    for name in ("a", "b"):
        write_camera_bag(tmp_path / name, "mcap", demo_frames(1))
    command = ["bag-eval", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "fleet"), "--method",
               "dcp", "--no-detection", "--no-progress"]
    assert main([*command, "--workers", "1"]) == 0
    earlier = {name: (tmp_path / "fleet" / name).read_text() for name in ("fleet.json", "index.html")}
    assert main([*command, "--ray", "no-such-address"]) == 2  # Ray refuses the address
    assert {name: (tmp_path / "fleet" / name).read_text() for name in earlier} == earlier


def test_with_one_worker_the_fleet_runs_one_bag_after_the_other(three_bags: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "fleet"
    code = main(["bag-eval", *map(str, three_bags), "--out", str(out), "--method", "dcp", "--no-detection",
                 "--image-topic", "/cam/image_raw", "--workers", "1", "--no-progress"])
    assert code == 1
    check_fleet(out, three_bags, "sequential")


def _short_and_long_fleet(tmp_path: Path, method: str) -> tuple[Path, list[str]]:
    """A bag of 2 frames and one of 40 for a fleet run one after the other: (its --out, the bag-eval process's
    command line)."""
    first, long = tmp_path / "short", tmp_path / "long"
    write_camera_bag(first, "mcap", demo_frames(2), "bgr8")
    write_camera_bag(long, "mcap", demo_frames(40, (640, 360)), "bgr8")
    out = tmp_path / "fleet"
    return out, [sys.executable, "-m", "dgdehaze_core.cli", "bag-eval", str(first), str(long), "--out", str(out),
                 "--method", method, "--no-detection", "--image-topic", "/cam/image_raw", "--workers", "1",
                 "--no-progress"]


def _wait_for(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    """Poll `condition` until it holds; AssertionError after `timeout` s (a state the test never saw)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not seen within {timeout:g} s"
        time.sleep(0.01)


def test_a_fleet_killed_part_way_says_it_is_unfinished_and_runs_again_over_its_folder(tmp_path: Path) -> None:
    out, command = _short_and_long_fleet(tmp_path, "dcp")
    assert main(command[3:]) == 0  # an earlier, finished run
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # the first bag is being written again (not fleet.json, whose "running" comes first)
    _wait_for(lambda: any(".part" in p.name and not p.name.startswith(".fleet.json") for p in out.iterdir()))
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    assert json.loads((out / "fleet.json").read_text())["status"] == "running"
    assert not (out / "index.html").exists(), "no earlier run's index beside this run's bag outputs"
    assert main(command[3:]) == 0
    assert json.loads((out / "fleet.json").read_text())["status"] == "done" and (out / "index.html").is_file()


def test_a_fleet_interrupted_part_way_indexes_the_bags_it_finished(tmp_path: Path) -> None:
    """Ctrl-C during a rerun left fleet.json "running" and no index.html: the earlier run's summary was gone and the
    bags this run had finished were indexed nowhere."""
    out, command = _short_and_long_fleet(tmp_path, "lite")
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # the second bag is being evaluated: the first is done
    _wait_for(lambda: out.is_dir() and any(p.name.startswith(".long~") for p in out.iterdir()))
    os.kill(run.pid, signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode in (130, -signal.SIGINT), err[-2000:]  # a shell reads both as 130
    assert "interrupted after 1 of 2 bags" in err
    fleet = json.loads((out / "fleet.json").read_text())
    assert fleet["status"] == "interrupted" and (fleet["bags"], fleet["bags_given"]) == (1, 2)
    assert [Path(bag["out_dir"]).name for bag in fleet["per_bag"]] == ["short"] and fleet["per_bag"][0]["ok"]
    index = (out / "index.html").read_text()
    assert "(interrupted)" in index and 'href="short/report.html"' in index and "1 of 2 bags" in index


def test_a_fleet_interrupted_before_its_first_bag_ends_keeps_the_earlier_run_s_summary(tmp_path: Path) -> None:
    """Ctrl-C before a rerun had finished any bag left fleet.json "running" and no index.html beside the earlier
    run's bag outputs, which no bag of the rerun had replaced: the earlier summary was lost for nothing."""
    out, command = _short_and_long_fleet(tmp_path, "dcp")
    command[4], command[5] = command[5], command[4]  # the long bag first: the signal comes while it is evaluated
    assert main(command[3:]) == 0
    earlier = {name: (out / name).read_bytes() for name in ("fleet.json", "index.html")}
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: any(p.name.startswith(".long~") for p in out.iterdir()))
    os.kill(run.pid, signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode in (130, -signal.SIGINT), err[-2000:]
    assert {name: (out / name).read_bytes() for name in ("fleet.json", "index.html")} == earlier


def test_a_bag_written_whose_outcome_the_stop_cut_off_is_indexed_and_the_folder_runs_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM to a fleet on Ray just as a task had written its bag's folder, before its outcome reached the fleet,
    left that folder and no fleet.json (the run had 'finished no bag', so it put back the earlier run's files: none),
    and the same command then refused its own output ('holds files that are not an earlier evaluation's'); over an
    earlier run, the earlier fleet.json came back beside this run's report. The stop is raised as the first bag's
    outcome comes back: no timing lands a signal there every time."""
    for name in ("a", "b"):
        write_camera_bag(tmp_path / name, "mcap", demo_frames(1))
    out = tmp_path / "fleet"
    command = ["bag-eval", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out), "--method", "dcp",
               "--no-detection", "--workers", "1", "--no-progress"]
    evaluate = bag_fleet.evaluate_job

    def stopped_as_it_returns(job: BagJob) -> BagOutcome:
        evaluate(job)
        raise KeyboardInterrupt

    for run in ("first", "over an earlier run"):
        with monkeypatch.context() as patch:
            patch.setattr(bag_fleet, "evaluate_job", stopped_as_it_returns)
            assert main(command) == 130, run
        fleet = json.loads((out / "fleet.json").read_text())
        assert (fleet["status"], fleet["bags"], fleet["bags_given"]) == ("interrupted", 1, 2), run
        (bag,) = fleet["per_bag"]
        summary = json.loads((out / "a" / "summary.json").read_text())
        assert bag["ok"] and bag["figures"]["frames"] == 1, run
        assert bag["figures"]["haze_density"] == summary["figures"]["dehazed"]["haze_density"], run
        assert 'href="a/report.html"' in (out / "index.html").read_text(), run
        assert main(command) == 0, run


@pytest.mark.slow
def test_a_fleet_on_ray_stopped_by_sigterm_ends_as_terminated_and_leaves_nothing_half_written(
        tmp_path: Path) -> None:
    """ray.init takes SIGTERM over: a fleet on a local Ray stopped by SIGTERM (a process manager's stop) aborted
    (exit -6) with Ray's stack dump, its fleet.json left "running", and each bag's hidden half-written folder and
    lock beside its output, as Ctrl-C left them too (Ray ends its workers outright)."""
    pytest.importorskip("ray", reason="Ray is the optional fleet extra (requirements-fleet.txt)")
    out, command = _short_and_long_fleet(tmp_path, "lite")
    write_camera_bag(tmp_path / "long_too", "mcap", demo_frames(40, (640, 360)), "bgr8")
    command[command.index(str(tmp_path / "short"))] = str(tmp_path / "long_too")
    command[command.index("--workers") + 1] = "2"
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # a task is writing its output bag (both, unless a loaded host starts Ray's second worker late: a fleet run
    # waited 120 s for the two at once while they ran one after the other), the fleet's process waits in Ray
    _wait_for(lambda: out.is_dir() and any(p.name.startswith((".long~", ".long_too~")) and p.name.endswith(".part")
                                           for p in out.iterdir()))
    time.sleep(0.2)
    os.kill(run.pid, signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert err.splitlines()[-1] == "dgdehaze bag-eval: terminated (SIGTERM)" and "SIGTERM received" not in err
    assert list(out.iterdir()) == [], "no bag was done: nothing is left, no half-written output, no fleet.json"


def test_a_worker_still_ending_after_the_runner_closed_leaves_no_half_written_output(tmp_path: Path) -> None:
    """A fleet on Ray stopped by SIGTERM left a bag's half-written folder and lock file for good on a loaded host
    (the fresh-clone CI caught it): the Ray worker writing it was still ending when `ray.shutdown` returned, so the
    fleet's one look at the leftovers found the write's lock held. Here a real writer process holds its write of
    one bag's output and ends a second after the fleet looks."""
    out = tmp_path / "fleet" / "long"
    write = ("import sys, time; from pathlib import Path; from dgdehaze_core.io.atomic_files import atomic_path\n"
             "with atomic_path(Path(sys.argv[1])) as part:\n"
             "    part.mkdir(); print(part.name, flush=True); time.sleep(1.0)\n"
             "    import os, signal; os.kill(os.getpid(), signal.SIGKILL)\n")
    writer = subprocess.Popen([sys.executable, "-c", write, str(out)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None
    part = out.parent / writer.stdout.readline().strip()
    assert part.is_dir()
    remove_tasks_leftovers([out, tmp_path / "fleet" / "short"])
    assert writer.wait(30) == -signal.SIGKILL
    assert list(out.parent.iterdir()) == [], "the killed writer's part and lock file stayed"


def test_bags_with_a_custom_type_recorded_before_jazzy_are_evaluated_or_fail_alone_in_one_line(
        tmp_path: Path) -> None:
    """A Humble recording of a custom type stores no hash (an mcap still stores the definition, a Humble sqlite3
    bag none); the fleet evaluates the first, fails the second in one line and finishes."""
    described, undescribed = tmp_path / "described", tmp_path / "undescribed"
    write_humble_bag(described, "mcap", demo_frames(2))
    write_humble_bag(undescribed, "sqlite3", demo_frames(2), definitions=False)
    out = tmp_path / "fleet"
    code = main(["bag-eval", str(described), str(undescribed), "--out", str(out), "--method", "dcp",
                 "--no-detection", "--workers", "1", "--no-progress"])
    fleet = json.loads((out / "fleet.json").read_text())
    assert code == 1 and fleet["status"] == "done" and fleet["failed"] == 1
    first, second = fleet["per_bag"]
    assert first["ok"] and first["figures"]["frames"] == 2
    assert not second["ok"] and second["error"].startswith("BagError: ")
    assert CUSTOM_TYPE in second["error"] and "\n" not in second["error"]


def test_any_exception_of_a_bag_fails_that_bag_in_one_line(tmp_path: Path) -> None:
    write_camera_bag(tmp_path / "drive", "mcap", demo_frames(1))
    outcome = evaluate_job(BagJob(str(tmp_path / "drive"), str(tmp_path / "out"), method="dcp",
                                  detector={"weight": "yolo.pt"}))  # a setting Detector does not take
    assert not outcome.ok and outcome.error.startswith("TypeError: ") and "weight" in outcome.error
    assert outcome.traceback.startswith("Traceback") and "in evaluate_job" in outcome.traceback, \
        "the traceback travels in the outcome: a Ray worker's log does not reach the fleet's"
    write_camera_bag(tmp_path / "short", "mcap", demo_frames(1))
    (tmp_path / "short" / "short.mcap").write_bytes(b"\x89MCAP0\r\n")
    expected = evaluate_job(BagJob(str(tmp_path / "short"), str(tmp_path / "out2"), method="dcp", detector=None))
    assert not expected.ok and expected.error and not expected.traceback, "bad input is no bug: one line only"
    assert bag_fleet.one_line(LookupError("two\nlines")) == "LookupError: two lines"
    assert bag_fleet.one_line(MemoryError()) == "MemoryError"


def test_a_bag_that_fails_on_a_run_again_keeps_no_report_of_the_earlier_run(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_camera_bag(tmp_path / name, "mcap", demo_frames(1))
    out = tmp_path / "fleet"
    command = ["bag-eval", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out), "--method", "dcp",
               "--no-detection", "--workers", "1", "--no-progress"]
    assert main(command) == 0 and (out / "b" / "report.html").is_file()
    (tmp_path / "b" / "b.mcap").write_bytes(b"\x89MCAP0\r\n" + b"cut off")  # the bag is damaged since
    assert main(command) == 1
    assert not (out / "b").exists() and (out / "a" / "report.html").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["a", "fleet.json", "index.html"]


def test_the_fleets_mean_confidence_is_over_its_detections_and_its_haze_over_its_frames() -> None:
    def bag(frames: int, detections: int, confidence: float, haze: float, skipped: int = 0) -> BagOutcome:
        return BagOutcome("in", "out", True, 1.0, figures={
            "frames": frames, "frames_skipped": skipped, "frames_dropped": 0, "detections": detections,
            "mean_confidence": confidence,
            "haze_density": haze, "visibility_m": math.nan, "latency_ms_median": 5.0})

    figures = fleet_figures([bag(10, 1, 0.9, 0.2), bag(1, 9, 0.5, 0.8, skipped=2), bag(4, 0, math.nan, 0.5)])
    assert figures["frames"] == 15 and figures["detections"] == 10 and figures["frames_skipped"] == 2
    assert figures["mean_confidence"] == pytest.approx((0.9 * 1 + 0.5 * 9) / 10)
    assert figures["haze_density"] == pytest.approx((0.2 * 10 + 0.8 * 1 + 0.5 * 4) / 15)


def test_a_bag_whose_node_stopped_part_way_is_marked_stopped_with_its_reason_in_the_table_and_index(
        tmp_path: Path) -> None:
    figures = {"frames": 20, "frames_skipped": 0, "frames_dropped": 0, "detections": 3, "mean_confidence": 0.5,
               "haze_density": 0.4, "visibility_m": math.nan, "latency_ms_median": 30.0}
    outcomes = [BagOutcome("in/a", str(tmp_path / "a"), True, 1.0, figures=figures),
                BagOutcome("in/b", str(tmp_path / "b"), True, 1.0, figures=figures,
                           stopped="dgdehaze_node exited with code -9, at frame 20")]
    summary = {"per_bag": [asdict(o) for o in outcomes], "bags": 2, "bags_given": 2, "failed": 0,
               "all": fleet_figures(outcomes), "status": "done", "wall_seconds": 2.0, "runner": "sequential",
               "bags_per_minute": 60.0}
    table = fleet_table(summary)
    assert (table["a"]["status"], table["b"]["status"]) == ("ok", "stopped") and table["all"]["frames"] == 40
    assert "exited with code -9" in fleet_html(summary, tmp_path)


def test_index_links_reach_reports_of_bags_whose_names_are_no_plain_url(tmp_path: Path) -> None:
    names = ["drive#2", "fog 100%", "a?b"]
    for name in names:
        write_camera_bag(tmp_path / name, "mcap", demo_frames(1))
    out = tmp_path / "fleet"
    assert main(["bag-eval", *(str(tmp_path / name) for name in names), "--out", str(out), "--method", "dcp",
                 "--no-detection", "--workers", "1", "--no-progress"]) == 0
    links = re.findall(r'href="([^"]*)"', (out / "index.html").read_text())
    assert len(links) == 3
    for link in links:  # as a browser reads a relative link: path only, percent-decoded
        parsed = urllib.parse.urlsplit(link)
        assert not parsed.query and not parsed.fragment, link
        assert (out / urllib.parse.unquote(html.unescape(parsed.path))).is_file(), link


def test_a_ray_task_that_fails_outside_the_evaluation_is_one_line() -> None:
    ray = pytest.importorskip("ray", reason="Ray is the optional fleet extra (requirements-fleet.txt)")
    cause = ModuleNotFoundError("No module named 'dgdehaze_core'")  # a cluster node without this package
    traceback = "Traceback (most recent call last):\n" + '  File "worker.py", line 1\n' * 19 + repr(cause)
    failed = ray.exceptions.RayTaskError("evaluate_job", traceback, cause, "ray::evaluate_job", 1, "127.0.0.1")
    assert len(str(failed.as_instanceof_cause()).splitlines()) > 20
    assert bag_fleet.ray_error_line(failed.as_instanceof_cause()) == (
        "Ray task failed: ModuleNotFoundError: No module named 'dgdehaze_core'")
    assert bag_fleet.ray_error_line(ray.exceptions.WorkerCrashedError()) == (
        "Ray task failed: WorkerCrashedError: The worker died unexpectedly while executing this task. Check "
        "python-core-worker-*.log files for more information.")


def test_fleet_folders_are_named_after_the_bags_and_repeats_get_a_number(tmp_path: Path) -> None:
    bags = [tmp_path / "a" / "drive", tmp_path / "b" / "drive", tmp_path / "c.mcap", tmp_path / "all"]
    assert [p.name for p in output_folders(bags, tmp_path / "out")] == ["drive", "drive-2", "c", "all-2"]
    clashing = [tmp_path / "x" / "road", tmp_path / "y" / "road", tmp_path / "z" / "road-2", tmp_path / "all-2"]
    assert [p.name for p in output_folders(clashing, tmp_path / "out")] == ["road", "road-2", "road-2-2", "all-2"]
    # a ROS 1 bag's folder was named `old drive.bag`, as if it were a ROS 1 bag file
    ros1 = [tmp_path / "old drive.bag", tmp_path / "new" / "old drive"]
    assert [p.name for p in output_folders(ros1, tmp_path / "out")] == ["old drive", "old drive-2"]


def test_a_fleet_ends_naming_the_bags_that_failed_and_why(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A fleet with failed bags ended (exit 1) on its table, where they read `failed`, and the index's path: why
    they failed was in warnings among the many lines logged while the other bags ran, scrolled out of sight."""
    write_camera_bag(tmp_path / "drive", "mcap", demo_frames(1))
    (tmp_path / "empty.mcap").write_bytes(b"")
    with caplog.at_level("INFO"):
        assert main(["bag-eval", str(tmp_path / "empty.mcap"), str(tmp_path / "drive"), "--out", str(tmp_path / "out"),
                     "--method", "dcp", "--no-detection", "--workers", "1", "--no-progress"]) == 1
    messages = [record.getMessage() for record in caplog.records]
    end = messages[messages.index(f"fleet summary: {tmp_path / 'out' / 'index.html'}") + 1:]
    assert end == [f"{tmp_path / 'empty.mcap'} failed, no report: BagError: bag {tmp_path / 'empty.mcap'} is empty "
                   "(0 bytes): nothing was recorded in it, and no repair adds any"]


def test_files_a_glob_caught_beside_the_bags_fail_as_no_bag_files_without_repair_advice(tmp_path: Path) -> None:
    """`bag-eval drive/* notes.txt old.bag` failed a rosbag2 folder's metadata.yaml, a notes file and a .bag file of
    no ROS 1 bag as bags 'corrupt, truncated or not a bag?', 'Unrecognized storage format', to be 'repaired with
    `ros2 bag reindex` first'."""
    drive = tmp_path / "drive"
    write_camera_bag(drive, "mcap", demo_frames(1))
    (tmp_path / "notes.txt").write_text("fog from 12:00")
    (tmp_path / "old.bag").write_bytes(b"\x00" * 64)  # no ROS 1 bag's header
    shouted = tmp_path / "DRIVE.MCAP"  # a bag file named in capitals: rosbags reads none
    shouted.write_bytes((drive / "drive.mcap").read_bytes())
    out = tmp_path / "fleet"
    assert main(["bag-eval", str(drive / "metadata.yaml"), str(drive / "drive.mcap"), str(tmp_path / "notes.txt"),
                 str(tmp_path / "old.bag"), str(shouted), "--out", str(out), "--method", "dcp", "--no-detection",
                 "--workers", "1", "--no-progress"]) == 1
    metadata, data, notes, old, capitals = json.loads((out / "fleet.json").read_text())["per_bag"]
    assert data["ok"] and not metadata["ok"] and not notes["ok"] and not old["ok"] and not capitals["ok"]
    assert capitals["error"] == (f"BagError: {shouted}: a bag file is read by its lower-case suffix (rosbags'), "
                                 ".mcap: rename it to DRIVE.mcap")
    assert metadata["error"] == (f"BagError: {drive / 'metadata.yaml'} is a rosbag2 folder's description, not a bag: "
                                 f"give its folder, {drive}")
    assert notes["error"] == (f"BagError: {tmp_path / 'notes.txt'} is no bag: a bag is a rosbag2 folder (with "
                              "metadata.yaml), a file named *.mcap or *.db3, or a ROS 1 bag file")
    assert old["error"] == (f"BagError: {tmp_path / 'old.bag'} does not begin as a ROS 1 bag does (#ROSBAG V2.0): "
                            "no bag, or one damaged at its start")


def test_the_index_names_the_bag_of_each_row_where_two_bags_share_a_name(tmp_path: Path) -> None:
    """Monday's and Tuesday's drive.mcap were indexed as `drive` and `drive-2`, and nothing on the page said which
    was which."""
    bags = [tmp_path / "monday" / "drive", tmp_path / "tuesday" / "drive"]
    for bag in bags:
        write_camera_bag(bag, "mcap", demo_frames(1))
    out = tmp_path / "fleet"
    assert main(["bag-eval", *map(str, bags), "--out", str(out), "--method", "dcp", "--no-detection", "--workers",
                 "1", "--no-progress"]) == 0
    rows = {re.sub("<[^>]+>", "", row.split("</td>")[0]): row
            for row in (out / "index.html").read_text().split("<tr><td>")[1:]}
    assert f"<td>{bags[0]}</td>" in rows["drive"] and f"<td>{bags[1]}</td>" in rows["drive-2"]


def test_a_bag_named_as_a_fleet_s_own_file_gets_a_folder_of_another_name(tmp_path: Path) -> None:
    """A bag folder named index.html took OUT/index.html, and the fleet failed writing its index over that folder
    ("Is a directory", exit 2, no index)."""
    for name in ("index.html", "fleet.json"):
        write_camera_bag(tmp_path / name, "mcap", demo_frames(1))
    out = tmp_path / "out"
    assert main(["bag-eval", str(tmp_path / "index.html"), str(tmp_path / "fleet.json"), "--out", str(out),
                 "--method", "dcp", "--no-detection", "--no-progress", "--workers", "1"]) == 0
    assert (out / "index.html").is_file() and json.loads((out / "fleet.json").read_text())["failed"] == 0
    assert (out / "index.html-2" / "summary.json").is_file() and (out / "fleet.json-2" / "summary.json").is_file()


def test_a_bag_given_as_dot_dot_dot_or_a_link_gets_the_folder_of_its_own_name_not_out_or_the_target(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "drive" / "inner").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "drive" / "inner")
    bags = [Path("."), Path(".."), Path("../inner/.."), Path(str(tmp_path / "drive" / "inner") + "/.")]
    assert [p.name for p in output_folders(bags, tmp_path / "out")] == ["inner", "drive", "drive-2", "inner-2"]
    (tmp_path / "recordings").mkdir()
    (tmp_path / "monday.mcap").symlink_to(tmp_path / "recordings" / "run-0001.mcap")
    (tmp_path / "tuesday").symlink_to(tmp_path / "recordings", target_is_directory=True)
    links = [tmp_path / "monday.mcap", tmp_path / "tuesday"]
    assert [p.name for p in output_folders(links, tmp_path / "out")] == ["monday", "tuesday"], \
        "a link is named by itself, not by its target"


def test_one_bag_s_output_and_a_fleet_s_given_for_each_other_are_refused_naming_what_they_are(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A fleet's --out given for one bag (and one bag's for a fleet) was refused as a folder that 'holds files that
    are not an earlier evaluation's', which it is: the user went looking for files of someone else's."""
    for name in ("a", "b"):
        write_camera_bag(tmp_path / name, "mcap", demo_frames(1))
    common = ["--method", "dcp", "--no-detection", "--no-progress"]
    fleet, single = tmp_path / "fleet", tmp_path / "single"
    assert main(["bag-eval", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(fleet), "--workers", "1",
                 *common]) == 0
    assert main(["bag-eval", str(tmp_path / "a"), "--out", str(single), *common]) == 0
    capsys.readouterr()
    assert main(["bag-eval", str(tmp_path / "a"), "--out", str(fleet), *common]) == 2
    assert f"output folder {fleet} is a fleet's output (fleet.json), not one bag's: give a new folder" in \
        capsys.readouterr().err
    assert main(["bag-eval", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(single), "--workers", "1",
                 *common]) == 2
    assert f"output folder {single} is one bag's output (summary.json), not a fleet's: give a new folder" in \
        capsys.readouterr().err
    assert (fleet / "index.html").is_file() and (single / "report.html").is_file()


def test_fleet_options_are_refused_where_they_do_not_apply(three_bags: list[Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    """A fleet through the node given workers was refused only after the detector had loaded (or built its float
    rebuild, seconds): a missing detector file was named instead."""
    assert main(["bag-eval", str(three_bags[0]), "--out", str(tmp_path / "one"), "--workers", "2"]) == 2
    assert main(["bag-eval", *map(str, three_bags), "--out", str(tmp_path / "many"), "--node", "--workers", "2",
                 "--detector", str(tmp_path / "missing.pt")]) == 2
    assert "a fleet through the node runs one bag after the other" in capsys.readouterr().err
    assert main(["bag-eval", *map(str, three_bags), "--out", str(tmp_path / "many"), "--workers", "0"]) == 2
    assert not (tmp_path / "one").exists() and not (tmp_path / "many").exists()
    folder = three_bags[0].parent
    kept = sorted(path for path in folder.rglob("*"))
    assert main(["bag-eval", *map(str, three_bags), "--out", str(folder), "--method", "dcp", "--no-detection",
                 "--workers", "1", "--no-progress"]) == 2, "an --out holding the input bags is refused"
    assert sorted(path for path in folder.rglob("*")) == kept


def test_each_rank_takes_its_own_batches_and_together_they_are_the_one_process_stream() -> None:
    one = list(Shard(0, 8, 3, Rank()))
    ranks = [list(Shard(0, 4, 3, Rank(r, 2, r))) for r in range(2)]
    assert not set(ranks[0]) & set(ranks[1])
    assert sorted(ranks[0] + ranks[1]) == one
    assert list(Shard(2, 4, 3, Rank(1, 2, 1))) == ranks[1][6:]  # a resumed rank goes on where it stopped


@pytest.mark.parametrize("first, iterations, batch_size, rank", [
    (0, 8, 3, Rank()), (5, 17, 4, Rank()), (0, 6, 2, Rank(0, 3, 0)), (3, 11, 5, Rank(2, 3, 2)),
    (7, 7, 2, Rank(1, 2, 1)), (9, 4, 2, Rank())])
def test_a_shard_draws_the_indices_of_the_listed_stream(first: int, iterations: int, batch_size: int,
                                                        rank: Rank) -> None:
    listed = [(iteration * rank.world_size + rank.rank) * batch_size + item
              for iteration in range(first, iterations) for item in range(batch_size)]
    drawn = Shard(first, iterations, batch_size, rank)
    assert list(drawn) == listed and len(drawn) == len(listed)


def test_a_shard_of_a_very_long_run_holds_no_list_of_its_indices() -> None:
    tracemalloc.start()
    try:
        drawn = Shard(1_000, 30_000_000, 8, Rank(1, 4, 1))
        head = list(itertools.islice(drawn, 3))
        held = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(drawn) == (30_000_000 - 1_000) * 8 and head == [32_008, 32_009, 32_010]
    assert held < 100_000, f"{held} bytes for the sampler of a 30 M-iteration run"


@pytest.mark.parametrize("environment", [{"RANK": "2", "WORLD_SIZE": "2"}, {"RANK": "x"}])
def test_an_inconsistent_torchrun_environment_is_refused(environment: dict[str, str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match="RANK|rank"):
        Rank.from_environment()


def _torchrun_train(tmp_path: Path, run: Path, *options: str, script: Path | None = None) -> str:
    """`train` of the smoke recipe by torchrun on two CPU ranks into `run` (through `script`, a stand-in for the
    dgdehaze command, where given); its log (the run must succeed)."""
    program = [str(script)] if script else ["-m", "dgdehaze_core.cli"]
    process = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *program, "train",
         "--config", str(ROOT / "training" / "smoke.yaml"), "--out", str(run), "--threads", "1", "--no-progress",
         *options], capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    log = process.stdout + process.stderr
    assert process.returncode == 0, log[-3000:]
    return log


TWO_RANK_OPTIONS = ("--iterations", "2", "--set", "val_every=100", "--set", "checkpoint_every=1", "--set",
                    "net_depth_after=1", "--set", "net_depth_fraction=1", "--set", "loss.adversarial=0.05")
"""The two-rank runs' settings: the haze synthesis's depth network from iteration 1 (each rank's batch-norm
statistics move on its own batch), the adversarial discriminator (it trains outside DDP), and a checkpoint after
each iteration."""

COPIED_AT_ITERATION_1 = """
import shutil, sys
import dgdehaze_core.commands.train as train_command
from dgdehaze_core.cli import main
from dgdehaze_core.training.trainer import Trainer


class CopiedAtIteration1(Trainer):
    def _checkpoint(self, logs):
        saved = super()._checkpoint(logs)
        if self.iteration == 1 and self.rank.writer:
            shutil.copytree(self.run_dir, self.run_dir.with_name("cut"), ignore=shutil.ignore_patterns(".lock"))
        return saved


train_command.Trainer = CopiedAtIteration1
sys.exit(main(sys.argv[1:]))
"""
"""`dgdehaze train` whose rank 0 copies the run folder, as its checkpoint of iteration 1 left it, to `cut` beside
it: the folder of a job cut off right after that checkpoint."""


class TwoRankRun(NamedTuple):
    folder: Path
    log: str
    cut: Path
    """The run folder as the run's checkpoint of iteration 1 left it."""


@pytest.fixture(scope="module")
def straight_two_rank_run(tmp_path_factory: pytest.TempPathFactory) -> TwoRankRun:
    """Two iterations of the smoke recipe by torchrun on two CPU ranks (TWO_RANK_OPTIONS), not interrupted, its
    folder copied as its first checkpoint left it: read by the tests of what the ranks end with and of a resume,
    which continues that copy in a job of its own and compares its weights with the straight run's."""
    tmp_path = tmp_path_factory.mktemp("torchrun")
    (tmp_path / "train_copying.py").write_text(COPIED_AT_ITERATION_1)  # not copy.py, the name of a module
    log = _torchrun_train(tmp_path, tmp_path / "straight", *TWO_RANK_OPTIONS, script=tmp_path / "train_copying.py")
    return TwoRankRun(tmp_path / "straight", log, tmp_path / "cut")


def test_a_resumed_torchrun_job_continues_the_run_it_was_cut_from(straight_two_rank_run: TwoRankRun,
                                                                  tmp_path: Path) -> None:
    """last.pt held rank 0's haze generator alone, so a resumed job reseeded every rank and drew other haze than an
    uninterrupted one; it now keeps every rank's random state. The haze synthesis's depth network (from iteration 1
    here) read rank 0's batch-norm statistics on every rank of the resumed job, where each rank of the straight one
    read its own (moved on its own batch): the weights differed after the resume; each rank's buffers are now kept
    too. The discriminator trains here as well: one not resumed as it was would step the network otherwise. The job
    cut off after its checkpoint of iteration 1 is the straight run's own copy (a job of its own would repeat the
    straight run's first iteration)."""
    cut = straight_two_rank_run.cut
    assert read_checkpoint(cut / "last.pt")["training"]["iteration"] == 1
    log = _torchrun_train(tmp_path, cut, *TWO_RANK_OPTIONS, "--resume")
    assert "reseeded" not in log
    straight = read_checkpoint(straight_two_rank_run.folder / "last.pt")
    resumed = read_checkpoint(cut / "last.pt")
    assert resumed["training"]["iteration"] == 2 and len(resumed["training"]["rank_random_states"]) == 2
    different = [name for name, value in straight["state_dict"].items()
                 if not value.equal(resumed["state_dict"][name])]
    assert not different, different[:5]


def test_two_cpu_ranks_train_with_one_writer_and_end_with_the_same_weights(straight_two_rank_run: TwoRankRun) -> None:
    """The model and the adversarial discriminator (which trains outside DDP) end alike on both ranks, though
    each rank learned from its own batches."""
    run, log, _ = straight_two_rank_run
    digests = dict(re.findall(r"rank (\d) of 2: weights sha256 ([0-9a-f]{64})", log))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], log[-3000:]
    discriminators = dict(re.findall(r"rank (\d) of 2: discriminator sha256 ([0-9a-f]{64})", log))
    assert set(discriminators) == {"0", "1"} and discriminators["0"] == discriminators["1"], log[-3000:]
    written = sorted(p.name for p in run.iterdir())
    assert written == ["best.pt", "last.pt", "recipe.yaml", "train.csv", "val.csv"]
    rows = (run / "train.csv").read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == ["1", "2"]  # one writer: each iteration logged once
    state = read_checkpoint(run / "last.pt")
    model = build_model(state["config"], depth_guidance=state["depth_guidance"])
    model.load_state_dict(state["state_dict"])
    assert model_digest(model) == digests["0"]  # the checkpoint holds the weights both ranks ended with


STOP_ON_ONE_RANK = """
import os, signal, torch
from dgdehaze_core.training import distributed
from dgdehaze_core.training.run_control import StepBoundaryStop
rank, cpu = distributed.Rank.from_environment(), torch.device("cpu")
distributed.start(rank, cpu)
try:
    with StepBoundaryStop(lambda asked: distributed.step_boundary_agreement(asked, False, rank, cpu)[0]) as stop:
        if rank.rank == 0:
            os.kill(os.getpid(), signal.SIGTERM)
        stop.after_step(1, lambda: None)
except BaseException as exc:
    os.write(1, f"rank {rank.rank}: {type(exc).__name__}\\n".encode())  # one write: the ranks share the pipe
finally:
    distributed.stop(rank)
"""
"""A step boundary of a torchrun job where rank 0 alone got a SIGTERM: what each rank raises."""


def test_a_rank_that_got_no_signal_stops_with_the_job_as_on_ctrl_c(tmp_path: Path) -> None:
    """A signal to one rank of a torchrun job (`kill` of its process) stops every rank at the step boundary; a rank
    that got none looked its signal up by the name None and ended in a KeyError traceback."""
    (tmp_path / "stop.py").write_text(STOP_ON_ONE_RANK)
    process = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                              str(tmp_path / "stop.py")], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    said = sorted(line for line in process.stdout.splitlines() if line.startswith("rank "))
    assert said == ["rank 0: Terminated", "rank 1: KeyboardInterrupt"], process.stdout + process.stderr[-3000:]


WORKER_KILLED_ON_RANK_1 = """
import os, signal, sys, time
import dgdehaze_core.commands.train as train_command
from dgdehaze_core.cli import main
from dgdehaze_core.training.trainer import Trainer


class WorkerKilledOnRank1(Trainer):
    def synthesize(self, clear, known_depth=None):
        haze = super().synthesize(clear, known_depth)
        if self.iteration == 1 and self.rank.rank == 1:
            pid = self.loader_workers.processes[0].pid
            os.kill(pid, signal.SIGKILL)
            while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                time.sleep(0.005)
        return haze


train_command.Trainer = WorkerKilledOnRank1
sys.exit(main(sys.argv[1:]))
"""
"""`dgdehaze train` whose rank 1 kills a worker of its own data loader (SIGKILL) in the middle of step 2."""


def test_a_loader_worker_killed_on_one_rank_stops_every_rank_at_the_step_boundary_with_last_pt_saved(
        tmp_path: Path) -> None:
    """A worker killed on one rank of a torchrun job: that rank raised at its next fetch, the other waited in DDP's
    all-reduce until torchrun tore the job down, and every step since the last checkpoint was lost. The stop
    agreement now carries the death: every rank saves the step reached and ends with one line and exit 2."""
    (tmp_path / "kill.py").write_text(WORKER_KILLED_ON_RANK_1)
    run = tmp_path / "run"
    options = ["--config", str(ROOT / "training" / "smoke.yaml"), "--out", str(run), "--threads", "1",
               "--no-progress", "--set", "val_every=100", "--set", "checkpoint_every=100"]
    process = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                              str(tmp_path / "kill.py"), "train", "--iterations", "3", "--set", "num_workers=1",
                              *options], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    log = process.stdout + process.stderr
    # the ranks share the pipe, where two lines written at once may interleave at their newlines
    lines = sorted(re.findall(r"dgdehaze train: error: .*?continues from it", log))
    assert len(lines) == 2, log[-3000:]
    assert re.fullmatch(r"dgdehaze train: error: a data loader worker \(pid \d+\) was killed by SIGKILL, .*; rank 0 "
                        r"saved \S+last.pt at iteration 2: --resume continues from it", lines[0]), lines
    assert re.fullmatch(r"dgdehaze train: error: a data loader worker of rank 1 died \(that rank's line names it\); "
                        r"saved \S+last.pt at iteration 2: --resume continues from it", lines[1]), lines
    assert log.count("Traceback") == 1, log[-3000:]  # torchrun's own ChildFailedError, none from a rank
    # the first rank to end exits 2 (torchrun may SIGTERM the other as it ends: its line is written by then)
    assert re.search(r"Root Cause \(first observed failure\):\n\[\d\]:\n(.*\n){3}  exitcode  : 2 ", log), log[-3000:]
    assert read_checkpoint(run / "last.pt")["training"]["iteration"] == 2
    assert main(["train", "--iterations", "3", "--resume", *options]) == 0  # one process: a torchrun job more is slow
    assert read_checkpoint(run / "last.pt")["training"]["iteration"] == 3
