"""Node replay at the recorded rate (`bag-eval --node --rate R`): frames go out when the recording says, as
`ros2 bag play --rate R` sends them, and the node drops the frames it cannot keep up with, as it would on the vehicle.

While frames are being sent, this process does as little as it can beside the node: each output the node publishes
is matched to the frame it answers by its header stamp, read from the CDR bytes (`header_stamp_ns`), and written
into a spool bag on disk (`OutputSpool`). Decoding, the hazy row's detections and the output bag's images come
afterwards, when `answers` reads the spool back frame by frame. A frame that repeats an earlier frame's stamp (an
unstamped camera's zeros) is sent with a stamp of its own (`UniqueStamps`), so that the late output of one frame is
never taken for a later one's; its outputs are spooled with the bag's stamp again.
`paced_note` says in the report what the node answered and, by its own /diagnostics counters
(`node_counts_between`), why it did not answer the rest.
"""
from __future__ import annotations

import logging
import math
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from rosbags.interfaces import Connection
from tqdm import tqdm

from dgdehaze_core.bags.disk_room import room_problem
from dgdehaze_core.bags.io import BagSource
from dgdehaze_core.bags.records import BagEvaluation
from dgdehaze_core.bags.writer import BagWriter

LOG = logging.getLogger(__name__)

QUIET_S = 0.5
"""After the last frame is answered, how long no output may come before the replay stops listening (the node
publishes a frame's outputs one after another, the detections last)."""


def header_stamp_ns(raw: bytes) -> int:
    """The header stamp (ns) of a serialized ROS 2 message whose first field is a std_msgs/Header (every stamped
    type), read from its CDR bytes without deserializing the rest; ValueError for bytes that are not CDR."""
    if len(raw) < 12 or raw[0] != 0 or raw[1] not in (0, 1):
        raise ValueError("not a CDR-serialized message (no encapsulation header)")
    sec, nanosec = struct.unpack_from("<iI" if raw[1] == 1 else ">iI", raw, 4)
    return sec * 1_000_000_000 + nanosec


def with_header_stamp(raw: bytes, stamp: int) -> bytes:
    """`raw` (CDR of a message whose first field is a std_msgs/Header, as `header_stamp_ns` reads) with its header
    stamp set to `stamp` ns; the same bytes when it holds that stamp already."""
    if header_stamp_ns(raw) == stamp:
        return bytes(raw)
    out = bytearray(raw)
    struct.pack_into("<iI" if out[1] == 1 else ">iI", out, 4, *divmod(stamp, 1_000_000_000))
    return bytes(out)


class UniqueStamps:
    """The stamps a replay sends its frames with: a frame's own, unless an earlier frame of the replay was sent with
    it (an unstamped camera stamps every frame 0; a driver may stamp two frames alike). Such a frame gets its log
    time (1 ns later while that is taken too): the node copies the stamp into its outputs, and the replay tells by
    it which frame an output answers. Its outputs are recorded with the bag's stamp again (`with_header_stamp`)."""

    def __init__(self) -> None:
        self._sent: set[int] = set()
        self.restamped = 0
        """How many frames were sent with a stamp other than their own."""

    def stamp_for(self, stamp: int, log_time: int) -> int:
        """The stamp to send the frame stamped `stamp` and logged at `log_time` with."""
        if stamp in self._sent:
            self.restamped += 1
            stamp = log_time
            while stamp in self._sent:
                stamp += 1
        self._sent.add(stamp)
        return stamp

    def note(self) -> str:
        """The report's note on the frames sent with a stamp of their own ("" when none was)."""
        if not self.restamped:
            return ""
        return (f"{self.restamped} frames repeat an earlier frame's header stamp (an unstamped camera?): the node's "
                "outputs are matched to frames by stamp, so each of them was sent to the node stamped with its log "
                "time instead, and its outputs are recorded with the stamp the bag gives it")


@dataclass
class SentFrame:
    """One frame of the bag as the paced replay sent it."""

    index: int
    stamp: int | None
    """Its header stamp; None when it was not sent, its bytes being no message the node could read."""
    log_time: int
    sent_stamp: int | None = None
    """The stamp it was sent with (`UniqueStamps`), which its outputs carry."""
    sent: float = math.nan
    """time.perf_counter() when it was published; NaN when it was not."""
    answered: int = 0
    """How many of the node's outputs for it are in the spool (0: the node dropped it)."""


class OutputSpool:
    """The node's outputs as they arrive, written untouched into a bag (topic `/<output>`, log time the arrival in
    perf_counter ns), each counted to the frame it answers. Use as a context manager."""

    def __init__(self, path: Path, types: Mapping[str, str], copied: Sequence[int]) -> None:
        self.path = path
        self.types = types
        self.copied = copied
        """The bytes the output bag copies from the input bag through each frame of the replay, every topic
        counted (`copied_bytes`)."""
        self._writer = BagWriter(path, "mcap")
        self._by_stamp: dict[int, SentFrame] = {}
        self.tags: dict[tuple[str, int], int] = {}
        """(output, arrival ns) -> the index of the frame it answers."""
        self.last_arrival = math.nan
        """perf_counter() of the last output spooled."""
        self.bytes = 0
        """The size of the outputs spooled so far."""
        self.frames = 0
        """How many frames were handed over to be sent so far, the one about to go out included."""

    def __enter__(self) -> OutputSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.close()

    def room_problem(self) -> str:
        """Why the spool must stop growing ("" while it need not): its disk would have no room left for an output
        bag holding what it spooled so far and its copy of the input bag up to the frame about to go out, every
        topic of it (`disk_room`)."""
        return room_problem(self.path, keep=self.bytes + (self.copied[self.frames - 1] if self.frames else 0))

    def sent(self, frame: SentFrame) -> None:
        """`frame` went out: outputs with its stamp answer it from now on."""
        if frame.sent_stamp is not None:
            self._by_stamp[frame.sent_stamp] = frame

    def receive(self, name: str, raw: bytes) -> None:
        """Spool output `name` (CDR) if it answers a frame sent, with that frame's stamp in the bag; other outputs
        (the warm-up's late ones) are dropped."""
        arrival = time.perf_counter_ns()
        try:
            frame = self._by_stamp.get(header_stamp_ns(raw))
        except ValueError:
            frame = None
        if frame is None or frame.stamp is None:
            return
        raw = with_header_stamp(raw, frame.stamp)
        self._writer.write_raw(f"/{name}", self.types[name], arrival, raw)
        self.bytes += len(raw)
        self.tags[(name, arrival)] = frame.index
        frame.answered += 1
        self.last_arrival = arrival / 1e9


def send_paced(messages: Iterator[tuple[Connection, int, bytes]], image_topic: str, count: int, rate: float,
               publish: Callable[[Connection, bytes], None], spin: Callable[[float], None],
               gone: Callable[[], str], spool: OutputSpool, timeout: float, progress: bool = True,
               passed_over: Callable[[Connection, int, str], None] | None = None,
               stamps: UniqueStamps | None = None) -> tuple[list[SentFrame], str]:
    """Publish the first `count` frames of `messages` on `image_topic` (and every other message handed in, e.g. the
    camera_info) at `rate` times their recorded pace, spinning `spin` for the outputs in between; then wait until
    the last frame sent is answered and no output came for QUIET_S, at most `timeout` s. `gone` says why sending
    must stop ("" while it need not: the node can still answer, the spool's disk has room), asked before each frame
    and while waiting: sending stops there. `publish` raises ValueError for a message that is none (bytes that do
    not deserialize): it is not sent, and a message other than a frame is handed to `passed_over` with its log time
    and the reason (logged when none is given). Each frame is sent with the stamp `stamps` gives it (a new
    `UniqueStamps` when None).

    Returns every frame up to the last one handed over, sent or not (a frame that is no message is not), in the
    bag's order, and why sending stopped early ("" when it did not).
    """
    frames: list[SentFrame] = []
    stopped = ""
    stamps = stamps if stamps is not None else UniqueStamps()
    first_log = first_sent = None
    bar = tqdm(total=count, desc=f"bag-eval (node, {rate:g}x recorded rate)", unit="frame", disable=not progress)
    try:
        for connection, log_time, raw in messages:
            is_frame = connection.topic == image_topic
            if is_frame and len(frames) >= count:
                break
            if first_log is None and is_frame:
                first_log, first_sent = log_time, time.perf_counter()
            if first_log is not None:
                _spin_until(first_sent + max(log_time - first_log, 0) / 1e9 / rate, spin)
            if not is_frame:
                try:
                    publish(connection, raw)
                except ValueError as exc:
                    if passed_over is None:
                        LOG.warning("a %s message on %s was not sent: %s", connection.msgtype, connection.topic, exc)
                    else:
                        passed_over(connection, log_time, str(exc))
                continue
            spool.frames = len(frames) + 1
            if stopped := gone():
                LOG.warning("stopped sending at frame %d: %s", len(frames), stopped)
                break
            frame = SentFrame(len(frames), None, log_time)
            try:
                stamp = header_stamp_ns(raw)
                sent_stamp = stamps.stamp_for(stamp, log_time)
                sent = time.perf_counter()
                publish(connection, with_header_stamp(raw, sent_stamp))
            except ValueError:  # no message the node could read either: the report lists it as not decodable
                pass
            else:
                frame.stamp, frame.sent_stamp, frame.sent = stamp, sent_stamp, sent
                spool.sent(frame)
            frames.append(frame)
            bar.update()
    finally:
        bar.close()
    last = next((f for f in reversed(frames) if f.stamp is not None), None)
    deadline = time.perf_counter() + timeout
    while last is not None and not stopped and time.perf_counter() < deadline:
        spin(0.01)
        if last.answered and time.perf_counter() - spool.last_arrival > QUIET_S:
            break
        stopped = gone()
    if last is not None and not last.answered and not stopped:
        LOG.warning("the node did not answer the last frame within %.1f s", timeout)
    return frames, stopped


def _spin_until(when: float, spin: Callable[[float], None]) -> None:
    while (left := when - time.perf_counter()) > 0:
        spin(min(left, 0.005))


def answers(spool: OutputSpool, frames: list[SentFrame]) -> Iterator[tuple[SentFrame, dict[str, tuple[float, bytes]]]]:
    """Each answered frame, in the bag's order, with its outputs read back from the closed spool: {output: (arrival
    as perf_counter s, CDR)}, the first of each name where the node sent one twice."""
    pending: dict[int, dict[str, tuple[float, bytes]]] = {}
    got: dict[int, int] = {}
    with BagSource(spool.path) as source:
        messages = source.raw_messages()
        for frame in (f for f in frames if f.answered):
            while got.get(frame.index, 0) < frame.answered:
                connection, arrival, raw = next(messages)
                name = connection.topic[1:]
                index = spool.tags[(name, arrival)]
                pending.setdefault(index, {}).setdefault(name, (arrival / 1e9, raw))
                got[index] = got.get(index, 0) + 1
            got.pop(frame.index)
            yield frame, pending.pop(frame.index)


def sent_rate(frames: list[SentFrame]) -> float | None:
    """The camera rate (Hz) at which the frames sent went out, by this process's clock; None for fewer than two."""
    sent = [f.sent for f in frames if f.stamp is not None]
    return (len(sent) - 1) / (sent[-1] - sent[0]) if len(sent) > 1 and sent[-1] > sent[0] else None


def pace_shortfall(frames: list[SentFrame], rate: float, slack: float = 0.1) -> str:
    """"" when the frames went out at the pace asked for (within `slack` of the recording's rate at `rate`), else a
    note that this process could not keep it, with the camera rates asked for and sent: the node then met a slower
    camera than the recording's."""
    sent = [f for f in frames if f.stamp is not None]
    span = (sent[-1].log_time - sent[0].log_time) / 1e9 / rate if len(sent) > 1 else 0.0
    achieved = sent_rate(frames)
    if span <= 0 or achieved is None:
        return ""
    asked = (len(sent) - 1) / span
    if achieved * (1 + slack) >= asked:
        return ""
    return (f"this process could not send the frames at the pace asked for: {achieved:.1f} Hz where "
            f"{rate:g}x the recording is {asked:.1f} Hz, so the node met a slower camera than that")


def node_counts_between(before: dict[str, str], after: dict[str, str]) -> dict[str, int]:
    """The node's frame counters (/diagnostics) gained between two reports; {} without both."""
    names = ("frames_received", "frames_dropped", "frames_failed")
    if not all(name in report for report in (before, after) for name in names):
        return {}
    return {name: int(float(after[name])) - int(float(before[name])) for name in names}


def paced_note(rate: float, answered: int, sent: int, counts: dict[str, int]) -> str:
    """The report's note on a paced replay: what the node answered, and by its own counters why not the rest."""
    note = (f"frames sent at {rate:g}x the recorded pace: the node answered {answered} of {sent}; the dehazed row's "
            "fps is the frames it answered per second, and a frame's latency includes its wait for the node. ")
    if not counts:
        return note + "The node sent no /diagnostics counters to tell why it did not answer the others."
    missing = sent - counts["frames_received"]
    return note + (f"By its /diagnostics, the node's callback received {counts['frames_received']} of them, its "
                   f"latest-frame worker dropped {counts['frames_dropped']} (a newer frame came while it was busy) "
                   f"and {counts['frames_failed']} failed; {missing} never reached its callback (replaced in its "
                   "input's history while the node was busy, or lost on the way: docs/ROS.md, \"Input QoS\").")


def window_frames(source: BagSource, evaluation: BagEvaluation, with_info: bool) -> Iterator[tuple[Any, int, bytes]]:
    """The bag's frames within the window, with its camera_info where the node gets it from the replay."""
    wanted = {evaluation.image_topic, *([evaluation.camera_info_topic] if with_info else [])}
    return source.raw_messages([c for c in source.connections if c.topic in wanted])


def copied_bytes(source: BagSource, image_topic: str, count: int) -> list[int]:
    """The bytes the output bag copies from `source` (`evaluation.copied_messages`: every topic of its window, IMU,
    TF, lidar and the frames alike) through each of its first `count` frames on `image_topic`, cumulative: what a
    paced replay that stops before frame k+1 still writes beside the node's outputs. rosbags gives a message's size
    only with its bytes, so this reads the window's messages once, undecoded."""
    copied: list[int] = []
    total = 0
    for connection, _, raw in source.raw_messages():
        total += len(raw)
        if connection.topic == image_topic:
            copied.append(total)
            if len(copied) == count:
                break
    return copied
