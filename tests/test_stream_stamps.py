"""The node's new-stream rule on frame stamps (dgdehaze_core.detection.stream_stamps), apart from ROS;
tests/test_ros_tracking.py checks that the node's tracks follow it."""
from __future__ import annotations

from dgdehaze_core.detection.stream_stamps import StreamStamps
from dgdehaze_core.physics.visibility import OUT_OF_ORDER_S

SECOND = 1_000_000_000
NEWEST = 1_700_002_000 * SECOND + 800_000_000


def stamps_at(newest_ns: int) -> StreamStamps:
    stamps = StreamStamps()
    assert not stamps.starts_stream(newest_ns)
    return stamps


def test_the_bound_is_out_of_order_s_to_the_nanosecond() -> None:
    assert OUT_OF_ORDER_S == 1.0
    assert not stamps_at(NEWEST).starts_stream(NEWEST - SECOND), "exactly 1 s back is out of order"
    assert stamps_at(NEWEST).starts_stream(NEWEST - SECOND - 1), "1 s and 1 ns back starts a new stream"
    assert stamps_at(NEWEST).starts_stream(NEWEST - 1_200_000_000), "1.2 s back starts a new stream"


def test_an_out_of_order_frame_leaves_the_newest_and_a_later_one_advances_it() -> None:
    stamps = stamps_at(NEWEST)
    assert not stamps.starts_stream(NEWEST - 10_000_000)
    assert stamps.newest_ns == NEWEST
    assert not stamps.starts_stream(NEWEST - SECOND), "still judged from the newest, not the out-of-order frame"
    assert not stamps.starts_stream(NEWEST + 100_000_000)
    assert stamps.newest_ns == NEWEST + 100_000_000


def test_a_frame_after_a_loop_back_is_judged_from_the_loop_s_stamp() -> None:
    stamps = stamps_at(NEWEST)
    looped = NEWEST - 1_200_000_000
    assert stamps.starts_stream(looped)
    assert stamps.newest_ns == looped, "the new stream's newest is its first frame, though older than the last's"
    assert not stamps.starts_stream(looped + 100_000_000), "newer than the loop's first: the same stream"
    assert stamps.newest_ns == looped + 100_000_000
    assert stamps.starts_stream(looped + 100_000_000 - SECOND - 1)


def test_a_restart_forgets_the_newest_and_frames_stamped_zero_never_start_one() -> None:
    stamps = stamps_at(NEWEST)
    stamps.restart()
    assert not stamps.starts_stream(NEWEST - 5 * SECOND)
    zeros = StreamStamps()
    assert not zeros.starts_stream(0) and not zeros.starts_stream(0)
