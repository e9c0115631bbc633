"""The ROS 2 side of dgdehaze: message conversion, parameters and the lifecycle node, thin over dgdehaze_core;
`tools` holds what runs around the node (bag replay, the node benchmark, the QoS probe).

Importing it puts every thread of the process on glibc's main heap (HEAP_ARENAS, one arena). glibc gives each new
thread its own arena (up to 8 per core), and every configure/cleanup cycle of the node starts threads (worker,
loader, ONNX Runtime's) whose freed memory then stays in a new arena: the process grew by tens of MB per cycle
until the cap (tests/test_ros_lifecycle_memory.py). And an arena other than the main one holds its memory in heaps
of at most 64 MiB, unmapped as soon as freeing empties one: the worker thread's work on a 1920x1080 frame (the
network's input and outputs, the transmission's refinement, the detector's) is more than that, so with a second
arena the worker landed there in some runs (one in three to five) and faulted a few MB in again on every frame;
the main heap, with `process_memory.keep_frame_memory`'s thresholds, keeps them (tests/test_process_memory.py).
The node's threads rarely allocate at once (the inversion's bands allocate nothing frame-sized after a frame's
first), so they seldom wait on the one arena's lock. This runs at import, before the heavy libraries start their
threads.
"""
from __future__ import annotations

from dgdehaze_core.process_memory import cap_heap_arenas

HEAP_ARENAS = 1

cap_heap_arenas(HEAP_ARENAS)
