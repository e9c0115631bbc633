"""Evaluation output bags without a ROS install: a new ROS 2 bag (rosbag2 folder, mcap or sqlite3) that copies an
input bag's topics and adds the node's outputs as typed messages of `io.typestore` (vision_msgs included), its
images raw, as image_transport's compressed topics, or left out.
"""
from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from rosbags.interfaces import Connection
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

from dgdehaze_core.bags.io import (BAG_VERSION, COMPRESSED_IMAGE_TYPE, HAZE_CLASS, HAZE_TYPE, IMAGE_TYPE, RANGE_TYPE,
                                   STORAGES, BagError, output_definition, typestore)
from dgdehaze_core.io.camera_frames import compress_frame
from dgdehaze_core.io.compressed_depth import compress_depth

IMAGE_TRANSPORTS = ("auto", "raw", "compressed", "none")
"""How an evaluation writes its images into the output bag: raw (sensor_msgs/Image), compressed (image_transport's
`compressed` and `compressedDepth` topics), none (left out: the bag holds the other outputs), or auto: compressed
where the camera topic is."""


def output_images(transport: str, frame_type: str) -> str:
    """"raw", "compressed" or "none": `transport` (IMAGE_TRANSPORTS) for a camera topic of type `frame_type`."""
    if transport not in IMAGE_TRANSPORTS:
        raise ValueError(f"output image transport must be one of {', '.join(IMAGE_TRANSPORTS)}, got {transport!r}")
    if transport == "auto":
        return "compressed" if frame_type == COMPRESSED_IMAGE_TYPE else "raw"
    return transport


@contextmanager
def _storage_errors(path: Path) -> Iterator[None]:
    """A write the sqlite3 storage could not make within the block (a full disk: "database or disk is full", a file
    size limit: "disk I/O error", a message over its size limit: "string or blob too big") as the OSError any other
    failed write is, so that it ends a command with one line, not a traceback. Its errors of use (ProgrammingError,
    IntegrityError: a bug here or in rosbags) pass as they are."""
    try:
        yield
    except (sqlite3.OperationalError, sqlite3.DataError) as exc:
        raise OSError(f"cannot write bag {path}: {exc}") from exc


class BagWriter:
    """A new ROS 2 bag (rosbag2 folder, mcap or sqlite3) that copies input topics and adds typed messages; its
    images (`write_image`) go raw, with `images` "compressed" as image_transport's compressed transports, or with
    "none" nowhere. A write that fails (a full disk) raises OSError, for either storage."""

    def __init__(self, path: str | Path, storage: str = "mcap", images: str = "raw") -> None:
        if storage not in STORAGES:
            raise ValueError(f"bag storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        if images not in IMAGE_TRANSPORTS[1:]:
            raise ValueError(f"bag images are raw, compressed or none, got {images!r}")
        self.path = Path(path)
        self.images = images
        self.store = typestore()
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        try:
            self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=plugin)
            with _storage_errors(self.path):
                self._writer.open()
        except WriterError as exc:
            raise BagError(f"cannot create bag {self.path}: {exc}") from None
        self._connections: dict[tuple[str, str], Connection] = {}
        """The connection of each (topic, message type) written: a topic may carry several types, each its own."""
        self._copied: dict[int, Connection] = {}

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._writer.storage is not None:
            with _storage_errors(self.path):
                self._writer.close()

    @property
    def types(self) -> Any:
        """Message classes by type name, e.g. `writer.types['sensor_msgs/msg/Image']`."""
        return self.store.types

    def copy(self, connection: Connection, log_time_ns: int, raw: bytes) -> None:
        """Write a message of an input bag unchanged, on a topic of the same name, type and QoS."""
        with _storage_errors(self.path):
            out = self._copied.get(connection.id)
            if out is None:
                msgdef, digest = output_definition(connection, self.store)
                out = self._writer.add_connection(
                    connection.topic, connection.msgtype, msgdef=msgdef, rihs01=digest,
                    offered_qos_profiles=getattr(connection.ext, "offered_qos_profiles", ()))
                self._copied[connection.id] = out
            self._writer.write(out, log_time_ns, raw)

    def write(self, topic: str, msgtype: str, log_time_ns: int, msg: Any) -> None:
        """Serialize `msg` (a message of `self.types`) and write it to `topic`."""
        self.write_raw(topic, msgtype, log_time_ns, self.store.serialize_cdr(msg, msgtype))

    def write_raw(self, topic: str, msgtype: str, log_time_ns: int, raw: bytes) -> None:
        """Write an already serialized (CDR) message, e.g. one received over DDS."""
        with _storage_errors(self.path):
            connection = self._connections.get((topic, msgtype))
            if connection is None:
                connection = self._writer.add_connection(topic, msgtype, typestore=self.store)
                self._connections[topic, msgtype] = connection
            self._writer.write(connection, log_time_ns, raw)

    def write_image(self, topic: str, log_time_ns: int, header: Any, image: np.ndarray,
                    pixels: np.ndarray | None = None, encoding: str = "bgr8") -> None:
        """A bgr8 frame (uint8 HxWx3) or a 32FC1 depth image (float32 HxW) on `topic`, or in a bag of compressed
        images on `topic`/compressed (JPEG, as the node's ~/image_dehazed/compressed; a frame published in another
        encoding compresses as that one: its `pixels` in `encoding`) or `topic`/compressedDepth; nothing in a bag
        without images."""
        if self.images == "none":
            return
        if self.images == "raw":
            self.write(topic, IMAGE_TYPE, log_time_ns, self.image_msg(header, image))
            return
        if image.dtype == np.float32:
            topic, (fmt, data) = f"{topic}/compressedDepth", compress_depth(image)
        else:
            topic, (fmt, data) = f"{topic}/compressed", compress_frame(image, image if pixels is None else pixels,
                                                                       encoding)
        message = self.types[COMPRESSED_IMAGE_TYPE](header=header, format=fmt, data=np.frombuffer(data, np.uint8))
        self.write(topic, COMPRESSED_IMAGE_TYPE, log_time_ns, message)

    # Message builders over the typestore's classes.

    def header(self, stamp: int, frame_id: str) -> Any:
        time_type = self.types["builtin_interfaces/msg/Time"]
        return self.types["std_msgs/msg/Header"](
            stamp=time_type(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000), frame_id=frame_id)

    def copy_header(self, header: Any) -> Any:
        """`header` (any std_msgs/Header, a read bag's) as this writer's, its stamp's sec and nanosec as they are: an
        output carries its input's header exactly, a nanosec of 1e9 or more (a driver's unnormalised stamp)
        included, so a consumer matching by stamp finds it."""
        time_type = self.types["builtin_interfaces/msg/Time"]
        stamp = time_type(sec=int(header.stamp.sec), nanosec=int(header.stamp.nanosec))
        return self.types["std_msgs/msg/Header"](stamp=stamp, frame_id=str(header.frame_id))

    def image_msg(self, header: Any, image: np.ndarray) -> Any:
        """A bgr8 (uint8 HxWx3) or 32FC1 (float32 HxW) sensor_msgs/Image."""
        if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
            encoding = "bgr8"
        elif image.dtype == np.float32 and image.ndim == 2:
            encoding = "32FC1"
        else:
            raise ValueError(f"image messages are bgr8 or 32FC1; got {image.dtype} {image.shape}")
        image = np.ascontiguousarray(image.astype(image.dtype.newbyteorder("<"), copy=False))
        height, width = image.shape[:2]
        return self.types[IMAGE_TYPE](header=header, height=height, width=width, encoding=encoding,
                                      is_bigendian=0, step=image.nbytes // height,
                                      data=np.frombuffer(image.tobytes(), np.uint8))

    def range_msg(self, header: Any, visibility: float, max_visibility: float, field_of_view: float) -> Any:
        """~/visibility as the node publishes it (sensor_msgs/Range: the visibility in metres as `range`)."""
        return self.types[RANGE_TYPE](header=header, radiation_type=1, field_of_view=float(field_of_view),
                                      min_range=0.0, max_range=float(max_visibility), range=float(visibility),
                                      variance=0.0)

    def haze_msg(self, header: Any, density: float) -> Any:
        """~/haze_density as the node publishes it (HAZE_TYPE)."""
        hypothesis = self.types["vision_msgs/msg/ObjectHypothesis"](class_id=HAZE_CLASS, score=float(density))
        return self.types[HAZE_TYPE](header=header, results=[hypothesis])
