"""glibc's malloc keeps a frame's buffers for the next frame in the `dgdehaze` command and the node
(dgdehaze_core/process_memory.py), read from glibc's own accounting (mallinfo2) in fresh processes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dgdehaze_core.process_memory import glibc

pytestmark = pytest.mark.skipif(glibc() is None or not hasattr(glibc(), "mallinfo2"),
                                reason="needs glibc 2.33 or later (mallinfo2)")

FRAMES = """
import ctypes, json, sys
import numpy as np

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
exec(sys.argv[1])
frames = []
start = libc.mallinfo2()
for _ in range(3):  # each frame: ten 2 MiB buffers, as the dark channel prior allocates at 640x480
    before = libc.mallinfo2()
    buffers = [np.ones(2 << 20, np.uint8) for _ in range(10)]
    alive = libc.mallinfo2()
    del buffers
    freed = libc.mallinfo2()
    frames.append({"mapped": alive.hblkhd - before.hblkhd, "kept": freed.fordblks - start.fordblks})
print(json.dumps(frames))
"""
MIB = 1 << 20


def frames_after(start: str, **environment: str) -> list[dict[str, int]]:
    """mallinfo2 over three frames of buffers in a fresh Python that first runs `start`: the bytes mapped apart
    from the heap while a frame's buffers are alive, and the free bytes the heap keeps once they are freed, beside
    what the process held before the frame (mapped) and before the first frame (kept)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    done = subprocess.run([sys.executable, "-c", FRAMES, start], capture_output=True, text=True, timeout=120,
                          env={**env, **environment}, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def test_glibc_by_itself_maps_and_returns_every_frames_buffers() -> None:
    """What the setting changes: without it the first frame's buffers are mappings of their own, and every frame's
    freed buffers go back to the system, to be faulted in again by the next frame."""
    frames = frames_after("")
    assert frames[0]["mapped"] >= 20 * MIB
    assert all(frame["kept"] < 2 * MIB for frame in frames)


@pytest.mark.parametrize("start", [
    "from dgdehaze_core.cli import main\nassert main(['dehaze', '/nonexistent/a.png', '--out', '/nonexistent/b']) == 2",
    "from dgdehaze_ros.node import main\nmain(['--help'])",
], ids=["dgdehaze dehaze", "dgdehaze_node"])
def test_the_frame_commands_and_the_node_keep_a_frames_buffers(start: str) -> None:
    frames = frames_after(start + "\nprint('started', file=sys.stderr)")
    assert all(frame["mapped"] == 0 for frame in frames)
    assert all(frame["kept"] >= 16 * MIB for frame in frames)


def test_training_keeps_glibcs_own_rule() -> None:
    """`dgdehaze train`'s memory is no frame's: its freed buffers go back to the system as glibc's rule has it."""
    frames = frames_after("from dgdehaze_core.cli import main\n"
                          "assert main(['train', '--config', '/nonexistent.yaml']) == 2")
    assert frames[0]["mapped"] >= 20 * MIB
    assert all(frame["kept"] < 2 * MIB for frame in frames)


def test_a_users_malloc_setting_wins() -> None:
    """MALLOC_TRIM_THRESHOLD_ given by the user: glibc's own (a small trim threshold returns the buffers), not ours."""
    frames = frames_after("from dgdehaze_core.process_memory import keep_frame_memory\nassert not keep_frame_memory()",
                          MALLOC_TRIM_THRESHOLD_=str(MIB))
    assert all(frame["kept"] < 2 * MIB for frame in frames)


NODE_START = "import dgdehaze_ros\nfrom dgdehaze_core.process_memory import keep_frame_memory\nkeep_frame_memory()"
"""How the node starts: importing dgdehaze_ros caps glibc's heap arenas, then `keep_frame_memory`."""
WORKER_FRAMES = """
import resource, sys, threading
exec(sys.argv[1])
import numpy as np
faults = []

def frames():
    for _ in range(5):  # each frame: seven 8 MiB buffers held while a chain of 8 MiB steps runs, each step's input
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt  # freed as its output is made, and the last
        held = [np.ones(8 << 20, np.uint8) for _ in range(7)]  # step's kept until the next frame's: over 64 MiB
        step = np.ones(8 << 20, np.uint8)
        for _ in range(8):
            step = step + 1
        result = step  # noqa: F841
        del held
        faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)

thread = threading.Thread(target=frames)
thread.start()
thread.join()
print(faults)
"""


def test_the_nodes_worker_thread_keeps_a_frame_over_64_mib() -> None:
    """A thread of the node whose frame holds more than 64 MiB at once (lite's at 1920x1080) allocates from the main
    heap, which keeps it: with a second arena, whose heaps hold 64 MiB at most and are unmapped once emptied, frames
    after the second faulted 1000 to 2000 pages in again."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    done = subprocess.run([sys.executable, "-c", WORKER_FRAMES, NODE_START], capture_output=True, text=True,
                          timeout=120, env=env, check=True)
    faults = json.loads(done.stdout.splitlines()[-1])
    assert max(faults[2:]) < 64, faults


LITE_FRAMES = """
import resource, sys, threading
import cv2
exec(sys.argv[1])
from dgdehaze_core.io.images import read_image
from dgdehaze_core.inference.pipeline import load_pipeline

pipeline = load_pipeline("lite", backend="onnxruntime", threads=2)  # two bands of the inversion on any machine
if sys.argv[3] == "worker":  # the node's work on each frame: dehazing, then the shipped detector
    from dgdehaze_core.detection.detector import Detector
    from dgdehaze_core.inference.frame_chain import FrameChain
    pipeline = FrameChain.build(pipeline, Detector())
road = read_image(sys.argv[2])
faults = []

def frames():
    for size, count in (((640, 480), 3), ((1280, 720), 3), ((1920, 1080), 3)):  # smaller sizes first
        frame = cv2.resize(road, size, interpolation=cv2.INTER_AREA)
        for _ in range(count):
            pipeline(frame)
    for _ in range(4):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        pipeline(frame)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

if sys.argv[3] == "worker":
    thread = threading.Thread(target=frames)
    thread.start()
    thread.join()
else:
    frames()
print(faults)
"""


@pytest.mark.slow
@pytest.mark.parametrize(("start", "runs_in"), [
    ("from dgdehaze_core.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass", "main"),
    (NODE_START, "worker"),
], ids=["dgdehaze", "node's chain on its worker thread"])
def test_lite_takes_no_page_faults_per_1080p_frame_after_warm_up(shared_data, start: str, runs_in: str) -> None:
    """The physics inversion's band threads keep their work arrays: a 1920x1080 band's work (over 64 MiB, more than
    one of glibc's heaps of a thread other than the main one holds) was allocated each frame in a heap that its
    freeing unmapped, so each frame faulted 1000 to 4500 pages (4 to 18 MB) in again, depending on the sizes the
    process had run before. Counted with ru_minflt in a fresh process started as the `dgdehaze` command starts, and
    as the node starts, its chain (the pipeline, then the shipped detector) on a worker thread: with the node's
    former two heap arenas the worker's own 1080p frame, over 64 MiB too, faulted 1000 to 3000 pages in again in
    some runs (one in three to five)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    road = shared_data / "detection" / "dawn-fog" / "foggy-001.jpg"
    done = subprocess.run([sys.executable, "-c", LITE_FRAMES, start, str(road), runs_in], capture_output=True,
                          text=True, timeout=240, env=env, check=True)
    faults = json.loads(done.stdout.splitlines()[-1])
    assert max(faults) < 64, faults
