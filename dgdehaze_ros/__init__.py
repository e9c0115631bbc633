"""The ROS 2 side of dgdehaze: message conversion, parameters and the lifecycle node, thin over dgdehaze_core;
`tools` holds what runs around the node (bag replay, the node benchmark, the QoS probe).

Importing it bounds glibc's heap arenas to HEAP_ARENAS for the process. glibc gives each new thread its own arena
(up to 8 per core), and every configure/cleanup cycle of the node starts threads (worker, loader, ONNX Runtime's)
whose freed memory then stays in a new arena: the process grew by tens of MB per cycle until the cap. With two
arenas it stays flat (tests/test_ros_lifecycle_memory.py); the node's threads rarely allocate at once. This runs
at import, before the heavy libraries start their threads.
"""
from __future__ import annotations

from dgdehaze_core.process_memory import cap_heap_arenas

HEAP_ARENAS = 2

cap_heap_arenas(HEAP_ARENAS)
