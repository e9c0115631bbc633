"""Shared fixtures: the real-data folder (tests that need it skip with a reason where it is absent), scenes from it,
the shipped detector, a read-only folder, a small disk that fills up, a ROS session per test module, and the files
a test opens; ROS discovery kept on this machine."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from dgdehaze_core.datasets.paths import shared_data_dir


class FirstFailures:
    """Names the first failure of each test module in one line as it happens, between the progress dots: a CI log
    that keeps only the progress of a run in which a module's set-up failed (every test of it an E) still says why."""

    def __init__(self, reporter: pytest.TerminalReporter) -> None:
        self.reporter, self.modules = reporter, set()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        module = report.nodeid.split("::")[0]
        if not report.failed or module in self.modules:
            return
        self.modules.add(module)
        crash = getattr(getattr(report.longrepr, "reprcrash", None), "message", None)
        lines = [line for line in report.longreprtext.splitlines() if line.strip()]
        reason = crash.splitlines()[0] if crash else (lines[-1] if lines else "")
        self.reporter.write_line(f"\n{report.nodeid} ({report.when}) failed first in its module: {reason[:300]}")


@pytest.hookimpl(trylast=True)  # after the terminal reporter is registered
def pytest_configure(config: pytest.Config) -> None:
    """Every ROS participant of the tests, in this process, its xdist workers and the processes they start, finds
    others on this machine only: at its default (SUBNET) a test's node and probe would take frames from, and send
    frames to, any machine on the network using the same domain (a robot, another machine's test run). The exports
    the tests make go to an engine cache of the run's own (DGDEHAZE_ENGINE_CACHE, shared by its workers, removed at
    its end), not to the user's: a developer's run neither fills theirs nor is sped up by it, as a fresh CI machine
    is not. The run's own terminal (not an xdist worker's) names each module's first failure (`FirstFailures`).
    Each xdist worker runs torch on its share of the cores (`_worker_threads`)."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.pop("ROS_STATIC_PEERS", None)
    if hasattr(config, "workerinput"):
        _worker_threads(int(config.workerinput["workercount"]))
        return
    engines = Path(tempfile.mkdtemp(prefix="dgdehaze-test-engines-"))
    os.environ["DGDEHAZE_ENGINE_CACHE"] = str(engines)
    config.add_cleanup(lambda: shutil.rmtree(engines, ignore_errors=True))
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        config.pluginmanager.register(FirstFailures(reporter), "first-failures")


def _worker_threads(workers: int) -> None:
    """torch's threads in this xdist worker and the processes it starts (OMP_NUM_THREADS, which they inherit): the
    worker's share of the cores this process may use, unless OMP_NUM_THREADS was given. At torch's default, a thread
    per core in every worker, the workers asked for more threads than the host has, and each parallel operation
    waited on threads not running: on two cores a test's network ran several times slower beside the other
    worker's."""
    from dgdehaze_core.cpu_threads import available_cpus

    if "OMP_NUM_THREADS" in os.environ:
        return
    threads = max(1, available_cpus() // workers)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:  # torch reads OMP_NUM_THREADS on import: only set it where it came first
        sys.modules["torch"].set_num_threads(threads)


class SmallDisk:
    """`folder`, on which `run` mounts a tmpfs of a given size for the command it runs, as a disk that fills up."""

    def __init__(self, folder: Path, unshare: str) -> None:
        self.folder, self._unshare = folder, unshare

    def run(self, argv: list[str], size: str, **options) -> subprocess.CompletedProcess:
        """`argv` run (text output captured; `options` as subprocess.run's) with a tmpfs of `size` on `folder`, in a
        user and mount namespace of its own, where root needs no privilege."""
        mount = f"mount -t tmpfs -o size={size} tmpfs {self.folder}"
        return subprocess.run([self._unshare, "--user", "--map-root-user", "--mount", "sh", "-c",
                               f'{mount} && exec "$@"', "sh", *argv], capture_output=True, text=True, **options)


@pytest.fixture()
def small_disk(tmp_path: Path) -> SmallDisk:
    """A `SmallDisk` on tmp_path/disk; the test skips where the kernel allows no unprivileged mount namespace."""
    folder = tmp_path / "disk"
    folder.mkdir()
    unshare = shutil.which("unshare")
    disk = SmallDisk(folder, unshare or "unshare")
    if unshare is None or disk.run(["true"], "1m").returncode:
        pytest.skip("no unprivileged mount namespace to make a small file system in")
    return disk


@pytest.fixture(scope="session")
def shared_data() -> Path:
    data = shared_data_dir()
    if data is None:
        pytest.skip("../shared/data is absent: real-data tests need it (set DGDEHAZE_DATA to point elsewhere)")
    return data


@pytest.fixture(scope="session")
def detector():
    """The shipped detector as the node runs it, loaded once (read-only: tests do not change its settings)."""
    from dgdehaze_core.detection.detector import Detector

    return Detector()


_OPENED: list[str] | None = None
"""The files opened while `opened` counts them (a process's audit hooks cannot be removed: it stays installed)."""


def _count_open(event: str, args: tuple) -> None:
    if event == "open" and _OPENED is not None and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.path.basename(os.fsdecode(args[0])))


@pytest.fixture()
def opened() -> list[str]:
    """The base names of the files Python opens in this process during the test, in order (its audit events)."""
    global _OPENED
    if not getattr(_count_open, "installed", False):
        sys.addaudithook(_count_open)
        _count_open.installed = True
    _OPENED = []
    yield _OPENED
    _OPENED = None


@pytest.fixture()
def read_only_folder(tmp_path: Path):
    """A read-only tmpfs (root can write anywhere else, so only a read-only mount makes writes fail)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture(scope="module")
def session():
    """A ROS session (tests/ros_harness.py: an rclpy context and a background executor) for one test module."""
    from ros_harness import RosSession

    ros = RosSession()
    yield ros
    ros.close()


@pytest.fixture(scope="module")
def node(session):
    """A dcp node on /camera/image and /camera/camera_info (reliable input, /diagnostics every 0.2 s), configured and
    active, shared by one module's tests: a test that changes a parameter sets it back."""
    from ros_harness import camera_node

    dgdehaze = camera_node(session)
    yield dgdehaze
    session.remove(dgdehaze)


@pytest.fixture(scope="module")
def probe(session, node):
    """The probe node of `node`: publishes its camera, records its outputs (tests/ros_harness.py)."""
    from ros_harness import Probe

    probe = Probe(session.context)
    session.add(probe)
    probe.connect()
    return probe


@pytest.fixture(scope="session")
def foggy_road(shared_data: Path) -> np.ndarray:
    """A real DAWN fog photo of a road with cars the detector finds (uint8 BGR; tests must not write to it)."""
    from dgdehaze_core.io.images import read_image

    return read_image(shared_data / "detection" / "dawn-fog" / "foggy-001.jpg")


@pytest.fixture(scope="session")
def middlebury_scene(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """Middlebury 2003 'cones' left view (uint8 BGR) and its dense true depth in metres (NaN unknown).

    The disparity file stores 4 x disparity in pixels; Z = f * B / d with f = 935 px and B = 0.16 m at this size.
    """
    scene = shared_data / "depth" / "middlebury2003" / "cones"
    image = cv2.imread(str(scene / "im2.png"), cv2.IMREAD_COLOR)
    disparity = cv2.imread(str(scene / "disp2.pgm"), cv2.IMREAD_UNCHANGED).astype(np.float32) / 4.0
    depth = np.where(disparity > 0, 935.0 * 0.16 / np.maximum(disparity, 1e-6), np.nan).astype(np.float32)
    return image, depth


@pytest.fixture()
def sots_pairs(shared_data: Path, tmp_path: Path) -> Path:
    """One SOTS-indoor scene (nine chairs and a table) at its light and dense haze level: two pairs."""
    source = shared_data / "paired" / "sots-indoor"
    root = tmp_path / "sots4"
    (root / "clear").mkdir(parents=True)
    (root / "hazy").mkdir()
    shutil.copy(source / "clear" / "1400.png", root / "clear")
    for level in ("2", "7"):
        shutil.copy(source / "hazy" / f"1400_{level}.png", root / "hazy")
    return root


@pytest.fixture(autouse=True)
def thread_settings_kept():
    """torch's and OpenCV's thread counts and OMP_NUM_THREADS as each test found them, put back after it: tests set
    torch's threads for figures they compare (and Ultralytics' exporter sets them), and `--dist loadfile` runs
    modules in an order that changes from run to run, so the next test of a worker ran on whatever the last left."""
    from dgdehaze_core.cpu_threads import threads_kept

    with threads_kept():
        yield


@pytest.fixture()
def terminal_signals():
    """SIGINT and SIGTERM as a run started from a terminal has them (an earlier test's libraries may have left
    SIGINT ignored, which a training run rightly leaves so); restored after the test."""
    import signal

    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for signum, handler in saved.items():
        signal.signal(signum, signal.SIG_DFL if handler is None else handler)


@pytest.fixture()
def smoke_recipe(shared_data: Path):
    """training/smoke.yaml: the few-iteration recipe of the training tests (its data is the shared folder's)."""
    from dgdehaze_core.datasets.paths import REPO_DIR
    from dgdehaze_core.training.recipe import load_recipe

    return load_recipe(REPO_DIR / "training" / "smoke.yaml")
