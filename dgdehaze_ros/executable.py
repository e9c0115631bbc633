"""The `dgdehaze_node` executable (`ros2 run`, the launch file; `python -m dgdehaze_ros.executable`): `node.main`,
with the node's libraries (rclpy, torch, OpenCV: seconds) loaded inside it, so that a Ctrl-C or `ros2 launch`'s
SIGINT while they load ends the process with code 0, as one later does, instead of an import's KeyboardInterrupt
traceback."""
from __future__ import annotations

import sys


def main(args: list[str] | None = None) -> int:
    try:
        from dgdehaze_ros import node
    except KeyboardInterrupt:
        return 0
    return node.main(args)


if __name__ == "__main__":
    sys.exit(main())
