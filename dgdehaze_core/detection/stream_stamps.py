"""When a frame's stamp starts a new stream of frames for the tracker: the node's rule, which bag-eval's offline
evaluation follows too."""
from __future__ import annotations

from dgdehaze_core.physics.visibility import OUT_OF_ORDER_S

OUT_OF_ORDER_NS = round(OUT_OF_ORDER_S * 1e9)


class StreamStamps:
    """The stamp of the newest frame of the stream (nanoseconds; 0 before any). A frame stamped more than
    OUT_OF_ORDER_S before it starts a new stream (a bag played with --loop, a camera's clock set back) and is that
    stream's newest; one stamped at most that much before it is out of order (a multi-threaded camera driver) and
    leaves it as it was; a later one advances it."""

    def __init__(self) -> None:
        self.newest_ns = 0

    def restart(self) -> None:
        """Forget the stream: the next frame advances from nothing (frames sent while the node was inactive)."""
        self.newest_ns = 0

    def starts_stream(self, stamp_ns: int) -> bool:
        """Take a frame's stamp; True when it starts a new stream."""
        back = stamp_ns < self.newest_ns - OUT_OF_ORDER_NS
        self.newest_ns = stamp_ns if back else max(stamp_ns, self.newest_ns)
        return back
