"""The `dgdehaze_node` executable (`ros2 run`, the launch file; `python -m dgdehaze_ros.executable`, and
`python -m dgdehaze_ros.node`, which runs this module): `node.main`,
with the node's libraries (rclpy, torch, OpenCV: seconds) loaded inside it, so that a Ctrl-C, `ros2 launch`'s SIGINT
or systemd's SIGTERM while they load ends the process with code 0, as one later does (rclpy's handlers), instead of
an import's KeyboardInterrupt traceback or a death by SIGTERM."""
from __future__ import annotations

import sys

from dgdehaze_core.exits import sigterm_interrupts, skip_exit_collection


def main(args: list[str] | None = None) -> int:
    skip_exit_collection()
    try:
        with sigterm_interrupts():  # SIGTERM's default handler is back before rclpy.init installs its own
            from dgdehaze_ros import node
    except KeyboardInterrupt:
        return 0
    return node.main(args)


if __name__ == "__main__":
    sys.exit(main())
