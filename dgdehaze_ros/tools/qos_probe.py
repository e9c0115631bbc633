"""Input QoS frame loss between two processes: how many camera frames a subscriber actually receives.

A camera driver and the dgdehaze node are separate processes, so a frame crosses Fast DDS between them. This
probe runs a publisher process and a subscriber process on a private domain, sends `frames` bgr8 frames at
`rate_hz`, and counts what arrives, per subscriber reliability and per Fast DDS transport setting
(the default SHM + UDPv4, UDPv4 only, LARGE_DATA, and the shipped config/fastdds_large_images.xml profile).
docs/ROS.md records the results.

    python -m dgdehaze_ros.tools.qos_probe --sizes 640x360,1280x720 --frames 20 --json out/qos.json

`run_qos_probe(...)` returns the same rows for `dgdehaze bench`: {row: {published, received, lost_pct,
latency_ms_median}}, latency being publish stamp to the subscriber's callback. The publisher and subscriber
roles are the `publish` / `listen` subcommands of this module.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Sequence

import numpy as np

from dgdehaze_core.commands.argument_types import path_argument
from dgdehaze_ros.fastdds_profile import profile_variables, shipped_profile
from dgdehaze_ros.tools.child_process import log_tail, stop
from dgdehaze_ros.tools.environment import reserve_domain

LOG = logging.getLogger(__name__)

MODULE = "dgdehaze_ros.tools.qos_probe"
TOPIC = "/qos_probe/image"
RELIABILITIES = ("reliable", "best_effort")
TRANSPORTS: dict[str, dict[str, str] | None] = {
    "default": {},
    "udp_only": {"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"},
    "large_data": {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
    "shm_profile": None,
}
"""Fast DDS transport settings compared (environment of both processes, as for a whole robot); `shm_profile` is
config/fastdds_large_images.xml, a shared-memory segment larger than a frame, under the variables this Fast DDS
reads."""


def transport_env(transport: str) -> dict[str, str]:
    """The environment variables of one of TRANSPORTS."""
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
    settings = TRANSPORTS[transport]
    if settings is None:
        return {name: str(shipped_profile()) for name in profile_variables(os.environ)}
    return settings


MATCH_TIMEOUT_S = 20.0
READY_TIMEOUT_S = 60.0
"""Seconds the subscriber process gets to import rclpy and subscribe (it then prints "ready")."""
PUBLISHER_DEPTH = 5
"""The camera's history depth, as rclpy's sensor-data profile; the subscriber's is the node's image_qos_depth."""


def _qos(reliability: str, depth: int) -> Any:
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    policy = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST, reliability=policy)


def _publish(args: argparse.Namespace) -> dict[str, float]:
    """The camera: wait for the subscriber, send `frames` frames at `rate_hz`, linger for retransmissions."""
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init(domain_id=args.domain)
    node = rclpy.create_node("qos_probe_camera")
    try:
        publisher = node.create_publisher(Image, TOPIC, _qos(args.reliability, PUBLISHER_DEPTH))
        deadline = time.monotonic() + MATCH_TIMEOUT_S
        while publisher.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("no subscriber matched")
            time.sleep(0.05)
        time.sleep(1.0)  # let the subscriber side finish matching too
        width, height = args.width, args.height
        pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        msg = Image(width=width, height=height, encoding="bgr8", step=width * 3, data=pixels.tobytes())
        start = time.monotonic()
        for index in range(args.frames):
            msg.header.frame_id = str(index)
            msg.header.stamp = node.get_clock().now().to_msg()
            publisher.publish(msg)
            time.sleep(max(0.0, start + (index + 1) / args.rate - time.monotonic()))
        time.sleep(args.linger)
        return {"published": float(args.frames)}
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def _listen(args: argparse.Namespace) -> dict[str, float]:
    """The consumer: count distinct frames until all arrived, SIGTERM/SIGINT, or the time limit."""
    import rclpy
    from sensor_msgs.msg import Image

    from dgdehaze_ros.rclpy_compat import SubscriptionEventCallbacks

    stop = False

    def request_stop(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    rclpy.init(domain_id=args.domain, signal_handler_options=rclpy.SignalHandlerOptions.NO)
    node = rclpy.create_node("qos_probe_consumer")
    received: dict[str, float] = {}

    def on_image(msg: Image) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        received.setdefault(msg.header.frame_id, (node.get_clock().now().nanoseconds - stamp) / 1e6)

    lost = 0

    def on_lost(info: Any) -> None:
        nonlocal lost
        lost += info.total_count_change

    node.create_subscription(Image, TOPIC, on_image, _qos(args.reliability, args.depth),
                             event_callbacks=SubscriptionEventCallbacks(message_lost=on_lost))
    print("ready", flush=True)
    deadline = time.monotonic() + args.timeout
    try:
        while not stop and len(received) < args.frames and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    latencies = list(received.values())
    return {"received": float(len(received)), "lost_reported": float(lost),
            "latency_ms_median": float(np.median(latencies)) if latencies else float("nan")}


def measure_loss(width: int, height: int, *, reliability: str, publisher_reliability: str = "reliable",
                 transport: str = "default", subscriber_transport: str | None = None, frames: int = 20,
                 rate_hz: float = 30.0, depth: int = 1, domain: int | None = None) -> dict[str, float]:
    """One row: `frames` frames from a publisher process to a subscriber process, counted at the subscriber.
    `transport` is both processes' (as for a whole robot), unless `subscriber_transport` gives the subscriber's.
    RuntimeError when either process fails or the subscriber is not ready within READY_TIMEOUT_S; both processes
    have ended whenever this returns."""
    if reliability not in RELIABILITIES or publisher_reliability not in RELIABILITIES:
        raise ValueError(f"reliabilities are {', '.join(RELIABILITIES)}")
    if reliability == "reliable" and publisher_reliability == "best_effort":
        raise ValueError("a reliable subscriber never matches a best_effort publisher")
    if width < 1 or height < 1:
        raise ValueError("the frame size must be positive")
    check_rows(frames, rate_hz, (transport, subscriber_transport or transport))
    domain = domain if domain is not None else reserve_domain()
    env = {**os.environ, **transport_env(transport), "ROS_DOMAIN_ID": str(domain), "PYTHONUNBUFFERED": "1"}
    listener_env = {**os.environ, **transport_env(subscriber_transport or transport), "ROS_DOMAIN_ID": str(domain),
                    "PYTHONUNBUFFERED": "1"}
    common = ["--domain", str(domain), "--frames", str(frames), "--depth", str(depth)]
    send_s = frames / rate_hz
    listener_log = tempfile.TemporaryFile()
    listener = subprocess.Popen(
        [sys.executable, "-m", MODULE, "listen", *common, "--reliability", reliability,
         "--timeout", str(MATCH_TIMEOUT_S + send_s + 10.0)],
        env=listener_env, stdout=subprocess.PIPE, stderr=listener_log, text=True)
    watchdog = threading.Timer(READY_TIMEOUT_S, listener.kill)  # a killed listener's stdout ends: readline returns
    watchdog.start()
    try:
        assert listener.stdout is not None
        ready = listener.stdout.readline().strip() == "ready"
        watchdog.cancel()
        if not ready:
            stop(listener, signal.SIGKILL)
            raise RuntimeError(f"the subscriber process did not start: no \"ready\" within {READY_TIMEOUT_S:g} s "
                               f"(exit code {listener.returncode}): {log_tail(listener_log)}")
        publisher = subprocess.run(
            [sys.executable, "-m", MODULE, "publish", *common, "--reliability", publisher_reliability,
             "--width", str(width), "--height", str(height), "--rate", str(rate_hz), "--linger", "1.0"],
            env=env, capture_output=True, text=True, timeout=MATCH_TIMEOUT_S + send_s + 30.0)
        if publisher.returncode != 0:
            raise RuntimeError(f"the publisher process failed: {publisher.stderr[-2000:]}")
        stop(listener, signal.SIGTERM, 30.0)
        out = listener.stdout.read()
        if listener.returncode != 0:
            raise RuntimeError(f"the subscriber process failed (exit code {listener.returncode}): "
                               f"{log_tail(listener_log)}")
    finally:
        watchdog.cancel()
        stop(listener, signal.SIGKILL)
        listener.stdout.close()
        listener_log.close()
    sent = json.loads(publisher.stdout.strip().splitlines()[-1])
    got = json.loads(out.strip().splitlines()[-1])
    return {"published": sent["published"], "received": got["received"],
            "lost_pct": 100.0 * (sent["published"] - got["received"]) / sent["published"],
            "lost_reported": got["lost_reported"], "latency_ms_median": got["latency_ms_median"]}


def check_rows(frames: int, rate_hz: float, transports: Sequence[str]) -> None:
    """ValueError, before any row is measured, for settings a row would refuse: no frames, no rate, or a transport
    that is not one of TRANSPORTS."""
    if frames < 1 or not rate_hz > 0:
        raise ValueError(f"frames and rate must be positive, got {frames} frames at {rate_hz:g} Hz")
    for transport in transports:
        transport_env(transport)


PAIRS = (("reliable", "reliable"), ("reliable", "best_effort"), ("best_effort", "best_effort"))
"""(publisher, subscriber) reliabilities that match; a reliable subscriber never matches a best_effort publisher."""


def run_qos_probe(width: int = 640, height: int = 360, *, frames: int = 20, rate_hz: float = 30.0,
                  transports: Sequence[str] = tuple(TRANSPORTS), subscriber_transport: str | None = None,
                  pairs: Sequence[tuple[str, str]] = PAIRS) -> dict[str, dict[str, float]]:
    """Rows `<publisher>-><subscriber>/<transport>@WxH` for figures_table; with a `subscriber_transport` (the
    subscriber's, `transports` then the publisher's) `.../<transport>,subscriber:<subscriber_transport>@WxH`."""
    check_rows(frames, rate_hz, [*transports, *([subscriber_transport] if subscriber_transport else [])])
    table: dict[str, dict[str, float]] = {}
    suffix = f",subscriber:{subscriber_transport}" if subscriber_transport else ""
    for transport in transports:
        for publisher, subscriber in pairs:
            LOG.info("qos probe: %s -> %s, %s transport%s, %dx%d", publisher, subscriber, transport, suffix, width,
                     height)
            table[f"{publisher}->{subscriber}/{transport}{suffix}@{width}x{height}"] = measure_loss(
                width, height, reliability=subscriber, publisher_reliability=publisher, transport=transport,
                subscriber_transport=subscriber_transport, frames=frames, rate_hz=rate_hz)
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dgdehaze_ros.tools.qos_probe", description=__doc__.split("\n")[0])
    roles = parser.add_subparsers(dest="role", help=argparse.SUPPRESS)  # the probe's own processes, not the user's
    for role in ("publish", "listen"):
        sub = roles.add_parser(role, help=f"one side of the probe ({role}); started by the probe itself")
        sub.add_argument("--domain", type=int, required=True)
        sub.add_argument("--frames", type=int, required=True)
        sub.add_argument("--depth", type=int, default=1)
        sub.add_argument("--reliability", choices=RELIABILITIES, required=True)
        sub.add_argument("--width", type=int, default=640)
        sub.add_argument("--height", type=int, default=360)
        sub.add_argument("--rate", type=float, default=30.0)
        sub.add_argument("--linger", type=float, default=1.0)
        sub.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--sizes", default="640x360", help="comma-separated WIDTHxHEIGHT of the bgr8 frames")
    parser.add_argument("--frames", type=int, default=20, help="frames per row")
    parser.add_argument("--rate", type=float, default=30.0, help="publish rate in Hz")
    parser.add_argument("--transports", default=",".join(TRANSPORTS), help="comma-separated, of: "
                        + ", ".join(TRANSPORTS))
    parser.add_argument("--subscriber-transport", default=None, choices=tuple(TRANSPORTS),
                        help="the subscriber's transport; --transports are then the publisher's (default: both "
                             "processes use each of --transports)")
    parser.add_argument("--json", type=path_argument, default=None,
                        help="also write the table to this JSON file (-: to stdout, the table going to stderr)")
    args = parser.parse_args(argv)
    if args.role == "publish":
        print(json.dumps(_publish(args)), flush=True)
        return 0
    if args.role == "listen":
        print(json.dumps(_listen(args)), flush=True)
        return 0
    from dgdehaze_core.benchmarks.timing import comma_items, parse_sizes
    from dgdehaze_core.io.atomic_files import check_json_output
    from dgdehaze_core.io.json_stdout import json_on_stdout
    from dgdehaze_core.io.tables import emit

    transports = comma_items(args.transports)
    with json_on_stdout(args.json):  # --json -: the JSON alone on stdout, the table on stderr
        try:  # every row's settings, before the first row's minutes of measuring
            sizes = parse_sizes(args.sizes, "--sizes")
            check_rows(args.frames, args.rate, transports)
            if args.json is not None:
                check_json_output(args.json)
        except (ValueError, OSError) as exc:
            parser.error(str(exc))
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        table: dict[str, dict[str, float]] = {}
        for width, height in sizes:
            table.update(run_qos_probe(width, height, frames=args.frames, rate_hz=args.rate, transports=transports,
                                       subscriber_transport=args.subscriber_transport))
        emit(table, title=f"input QoS frame loss, publisher -> subscriber process, {args.frames} bgr8 frames at "
                          f"{args.rate:g} Hz", json_path=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
