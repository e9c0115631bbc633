"""#21 items 3 and 6: configure/cleanup cycles do not grow the node's memory (models, ONNX Runtime sessions and the
detector are released at cleanup): after 20 cycles with frames, resident memory stays within 40 MB of the second
cycle's (the first one loads libraries and warms allocators); and huge frames do not leave it gigabytes larger."""
from __future__ import annotations

import gc
import time

import pytest

pytest.importorskip("rclpy", reason="needs ROS 2 (pip ros-* wheels or a ROS install)")

from dgdehaze_core.benchmarks.timing import hazy_test_frame  # noqa: E402
from dgdehaze_core.process_memory import return_freed_memory  # noqa: E402
from dgdehaze_ros.conversions import bgr8_to_image  # noqa: E402
from dgdehaze_ros.node import IncomingFrame, create_node  # noqa: E402

from ros_harness import Probe, RosSession, send_and_wait, stamped_header  # noqa: E402

pytestmark = pytest.mark.ros

CYCLES = 20


def resident_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS"))


def test_twenty_lifecycle_cycles_with_frames_do_not_grow_memory() -> None:
    """Frames enter where the subscription hands them over (the latest-frame worker), so every cycle runs the
    worker thread, the network's ONNX Runtime session and the publishers; the subscriptions themselves are created and
    destroyed by activate/deactivate as always, but nothing waits on DDS delivery to a re-created one."""
    session = RosSession()
    # detection off: loading the detector 20 times doubles the test's time, and the growth was the heap arenas
    # that every cycle's threads opened, which the network's cycles alone show (flat with detection too, measured)
    node = create_node({"model": "lite", "detection_enabled": False, "image_reliability": "reliable"}, name="cycled",
                       remappings={"image": "/camera/image", "camera_info": "/camera/camera_info"},
                       context=session.context, activate=False)
    session.add(node)
    after_cleanup = []
    # what was alive before the first cycle (torch, rclpy, the suite's modules) is none of the cycles' garbage:
    # frozen, each collection (the one below and the node's cleanup's) scans only the objects the cycles made, not
    # the whole process's; the cycles' garbage is still collected, and what a cycle keeps alive is still measured
    gc.freeze()
    try:
        for cycle in range(CYCLES):
            node.trigger_configure()
            node.trigger_activate()
            for index in range(2):
                frame = bgr8_to_image(hazy_test_frame(320, 240), "bgr8", stamped_header(1000 * cycle + index))
                node.worker.submit(IncomingFrame(frame, time.monotonic_ns()))
                assert node.worker.wait_idle(30.0), f"cycle {cycle}: frame {index} was not processed"
            node.trigger_deactivate()
            node.trigger_cleanup()
            gc.collect()
            # what this test's own garbage freed after the node's cleanup handed memory back stays in the heap, up
            # to glibc's trim threshold, for the next cycle (process_memory.TRIM_THRESHOLD): given back here too, so
            # that what is measured is what the cycles keep alive, and the arenas their threads open
            return_freed_memory()
            after_cleanup.append(resident_mb())
        assert node.worker.counts().processed == 2 * CYCLES
    finally:
        gc.unfreeze()
        session.remove(node)
        session.close()
    growth = after_cleanup[-1] - after_cleanup[1]
    assert growth <= 40.0, f"resident memory after cleanup grew {growth:.0f} MB over {CYCLES} cycles: {after_cleanup}"


def test_two_4k_frames_do_not_leave_the_node_gigabytes_larger() -> None:
    """#21 item 6: ONNX Runtime's arena kept the peak of a 4K frame (0.7 -> 2.2 GB after two, for good); now a
    frame above ARENA_KEEP_PIXELS gives its memory back once the stream is back to camera-sized frames."""
    session = RosSession()
    node = create_node({"model": "lite", "detection_enabled": False, "image_reliability": "reliable"},
                       name="huge", remappings={"image": "/camera/image", "camera_info": "/camera/camera_info"},
                       context=session.context)
    session.add(node)
    probe = Probe(session.context, node_path="/huge")
    session.add(probe)
    try:
        assert probe.wait_for_subscribers()
        assert probe.wait_for(lambda: probe.count_publishers("/huge/image_dehazed") > 0, 10.0)
        send_and_wait(probe, bgr8_to_image(hazy_test_frame(640, 480), "bgr8", stamped_header(1)), ("image_dehazed",))
        return_freed_memory()
        before = resident_mb()
        for index in range(2):
            send_and_wait(probe, bgr8_to_image(hazy_test_frame(3840, 2160), "bgr8", stamped_header(2 + index)),
                          ("image_dehazed",), 120.0)
        for index in range(10):  # VGA frames again: the DDS histories (node's 5, probe's 10) let go of the 4K ones
            send_and_wait(probe, bgr8_to_image(hazy_test_frame(640, 480), "bgr8", stamped_header(10 + index)),
                          ("image_dehazed",))
        probe.clear()
        gc.collect()
        # the probe's own 4K messages, freed now, stay in the heap up to glibc's trim threshold (raised by
        # keep_frame_memory) with whatever else the process ran before: given back, so that what is measured is
        # what the node keeps (the 20-cycle test above does the same)
        return_freed_memory()
        growth = resident_mb() - before
    finally:
        session.remove(probe)
        session.remove(node)
        session.close()
    # without the arena shrinkage 1.0-1.6 GB stays; with it 0.2-0.35 GB (heap fragments, the DDS endpoints' buffers)
    assert growth < 700.0, f"two 4K frames left the process {growth:.0f} MB larger"
