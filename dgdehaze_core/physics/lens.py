"""Lens distortion of a raw (unrectified) camera image: each pixel's ray as image_geometry's PinholeCameraModel gives
it (`rectifyPoint`, then `projectPixelTo3dRay`), and whether the frames on a topic are raw.

A sensor_msgs/CameraInfo describes the raw image: K its camera matrix, D its distortion (`distortion_model`
plumb_bob or rational_polynomial: OpenCV's pinhole model, 4 to 14 coefficients; equidistant: OpenCV's fisheye model,
4), R the rotation from the raw camera's frame to the rectified one, P the rectified image's projection. A pixel of
the rectified image lies on P's straight ray; a pixel of the raw image is undistorted with K, D and R first
(cv2.undistortPoints, cv2.fisheye.undistortPoints), which puts it on its ray of the rectified camera; a fisheye's
pixel that has no such ray (`FISHEYE_MAX_ANGLE`) has a ray of NaN. As in
image_geometry, a D of zeros has nothing to undo (the raw image is taken as its rectified one), and a model it does
not know is not undone (`lens_of` says why).

A rectified image keeps its camera's CameraInfo, D included, so D cannot tell whether the frames are raw: the user
says it (the node's `image_rectified`, bag-eval's `--image-rectified`), or by default the topic's name does as
image_proc and camera drivers name them (`frames_rectified`).
"""
from __future__ import annotations

import functools
import posixpath
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

PINHOLE_MODELS = ("plumb_bob", "rational_polynomial")
PINHOLE_COEFFICIENTS = (4, 5, 8, 12, 14)
"""The lengths of D that OpenCV's pinhole model takes (plumb_bob gives 5, rational_polynomial 8)."""
FISHEYE_MODEL = "equidistant"
FISHEYE_MAX_ANGLE = np.pi / 2
"""The angle off the axis (rad) at and beyond which an equidistant lens's pixel has no ray x/z: a lens wider than
180 degrees sees there what lies behind the image plane. cv2.fisheye.undistortPoints (image_geometry's) gives such a
pixel tan(angle), whose sign turns, and clamps the distorted angle (|K^-1 pixel|) at this value: rays as much as 180
degrees off. Such a pixel's ray is NaN (no road distance, depth or position), as is that of a pixel with a
distorted angle at or beyond this, and one beyond where the lens's calibration folds back (the distorted angle no
longer grows with the angle), which OpenCV marks (-1e6, -1e6)."""
UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-6)
"""Iterations of the pinhole undistortion (to 1e-6 px): OpenCV's default, 5, leaves pixels at the corners of
KITTI's raw camera 2 (D_02) up to 3 px off."""
RECTIFIED_SETTINGS = ("auto", "true", "false")
"""What the node's `image_rectified` (a string, or a boolean as YAML and `-p name:=false` give it) and bag-eval's
`--image-rectified` take."""
RECTIFIED_PREFIX = "image_rect"
"""How image_proc names a rectified image (`image_rect`, `image_rect_color`; a RealSense's `image_rect_raw`)."""
RAW_NAMES = ("image_raw", "image_mono", "image_color")
"""How camera drivers (`image_raw`) and image_proc's debayering (`image_mono`, `image_color`) name an image that
still holds its lens's distortion."""


@dataclass(frozen=True)
class Lens:
    """A raw image's distortion: CameraInfo's `model`, K, D and R (row-major), and how a frame's pixels map onto the
    CameraInfo's own: frame pixel = (camera_info pixel - offset) * scale (its region of interest, binning and any
    resize, as `visibility.resized_calibration` maps K), so the distortion is undone in the CameraInfo's pixels."""

    model: str
    k: tuple[float, ...]
    d: tuple[float, ...]
    r: tuple[float, ...]
    scale: tuple[float, float] = (1.0, 1.0)
    offset: tuple[float, float] = (0.0, 0.0)

    def rays(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x/z and y/z of the rays through frame pixels (`u`, `v`: arrays of one shape, float) in the rectified
        camera's optical frame (R applied), each of that shape."""
        shape = np.shape(u)
        points = np.stack([np.asarray(u, np.float64) / self.scale[0] + self.offset[0],
                           np.asarray(v, np.float64) / self.scale[1] + self.offset[1]], axis=-1).reshape(-1, 1, 2)
        k, r, d = np.array(self.k).reshape(3, 3), np.array(self.r).reshape(3, 3), np.array(self.d)
        if self.model == FISHEYE_MODEL:
            normal = _fisheye_rays(points, k, d, r)
        elif hasattr(cv2, "undistortPointsIter"):  # OpenCV 4 (a ROS distribution's); 5 takes criteria in the next
            normal = cv2.undistortPointsIter(points, k, d, r, None, UNDISTORT_CRITERIA)
        else:
            normal = cv2.undistortPoints(points, k, d, R=r, criteria=UNDISTORT_CRITERIA)
        normal = normal.reshape(*shape, 2)
        return normal[..., 0], normal[..., 1]

    def pixel_rays(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """x/z and y/z of each pixel's ray of a frame of `shape` (height, width), each (height, width), read-only:
        computed once per lens and size (a few hundred ms for a megapixel frame), then cached."""
        return _pixel_rays(self, (int(shape[0]), int(shape[1])))


def _fisheye_rays(points: np.ndarray, k: np.ndarray, d: np.ndarray, r: np.ndarray) -> np.ndarray:
    """x/z and y/z (N x 1 x 2) of the rays through an equidistant lens's `points` (N x 1 x 2, camera_info pixels),
    rotated by R; NaN where it has none (FISHEYE_MAX_ANGLE), and where R turns a ray 90 degrees or more off the
    axis."""
    y = (points[:, 0, 1] - k[1, 2]) / k[1, 1]
    x = (points[:, 0, 0] - k[0, 2] - k[0, 1] * y) / k[0, 0]  # the distorted angle's direction, |(x, y)| the angle
    normal = cv2.fisheye.undistortPoints(points, k, d).reshape(-1, 2)
    rays = np.column_stack([normal, np.ones(len(normal))]) @ r.T
    ahead = ((np.hypot(x, y) < FISHEYE_MAX_ANGLE) & (normal[:, 0] * x + normal[:, 1] * y >= 0)
             & ~np.all(normal == -1e6, axis=1) & (rays[:, 2] > 0))
    rays[~ahead] = np.nan
    return (rays[:, :2] / rays[:, 2:]).reshape(-1, 1, 2)


@functools.lru_cache(maxsize=2)
def _pixel_rays(lens: Lens, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    v, u = np.indices(shape, dtype=np.float64)
    rays = lens.rays(u, v)
    for ray in rays:
        ray.flags.writeable = False
    return rays


def lens_of(info: Any) -> tuple[Lens | None, str]:
    """The distortion a CameraInfo (rclpy's or a bag reader's, whose D is a numpy array) gives its raw image, as
    image_geometry takes it: (Lens, "") for a D not all zero of a model it undoes; (None, "") for a D of zeros, which
    has nothing to undo; (None, why) for a model image_geometry does not know, a D of a length its model does not
    take, or no K. An unset R (zeros) is taken as the identity (a monocular camera's)."""
    return _lens(*_lens_fields(info))


def _lens_fields(info: Any) -> tuple[str, tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """What `lens_of` reads of a CameraInfo, hashable (the key its calibration's `distortion_note` is cached by): the
    distortion model ("" unset), K, D and R as tuples of floats (R () where the message has none); a D all zero (or
    none) alone, the rest unread, as it has nothing to undo."""
    coefficients = getattr(info, "d", None)
    d = () if coefficients is None else tuple(float(c) for c in coefficients)
    if not any(d):
        return "", (), d, ()
    rotation = getattr(info, "r", None)
    return (info.distortion_model or "", tuple(float(v) for v in info.k), d,
            () if rotation is None else tuple(float(v) for v in rotation))


def _lens(model: str, k: tuple[float, ...], d: tuple[float, ...], r: tuple[float, ...]) -> tuple[Lens | None, str]:
    """`lens_of` of a CameraInfo's `_lens_fields`."""
    if not any(d):
        return None, ""
    lengths = PINHOLE_COEFFICIENTS if model in PINHOLE_MODELS else (4,) if model == FISHEYE_MODEL else ()
    if not lengths:
        return None, (f"camera_info's distortion model {model!r} is none that image_geometry undoes (plumb_bob, "
                      "rational_polynomial, equidistant)")
    if len(d) not in lengths:
        return None, (f"camera_info's D has {len(d)} coefficients, which {model} does not take "
                      f"({', '.join(map(str, lengths))})")
    if not (k[0] > 0 and k[4] > 0):
        return None, "camera_info gives lens distortion but no K to undo it with"
    if len(r) != 9 or not any(r):
        r = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    return Lens(model, k, d, r), ""


def frames_rectified(image_topic: str, setting: str | bool = "auto") -> bool | None:
    """Whether the frames on `image_topic` are rectified, by `setting` (RECTIFIED_SETTINGS, or a boolean): "true"
    and "false" say it; "auto" tells it from the topic's name (`/compressed` aside) as image_proc and camera drivers
    name images: RECTIFIED_PREFIX rectified, RAW_NAMES raw, any other name None (unknown)."""
    if isinstance(setting, bool):
        return setting
    if setting != "auto":
        return setting == "true"
    name = posixpath.basename(image_topic.removesuffix("/compressed"))
    if name.startswith(RECTIFIED_PREFIX):
        return True
    return False if name in RAW_NAMES else None


def distortion_note(info: Any, image_topic: str, rectified: bool | None) -> str:
    """What to say once of the lens distortion of the frames on `image_topic` (`rectified` as `frames_rectified`
    gives it; raw frames are undistorted where `lens_of` gives a Lens): a distortion kept in frames whose topic does
    not say whether they are rectified (with what to set, or why it cannot be undone), or one of raw frames that
    cannot be undone; "" where there is nothing to say (no distortion, rectified frames, raw frames undistorted).
    Its callers ask it of each frame's CameraInfo: it is worked out once per calibration, topic and setting (cached
    by what `lens_of` reads), as a raw calibration's rays are (`Lens.pixel_rays`)."""
    return _distortion_note(_lens_fields(info), image_topic, rectified)


@functools.lru_cache(maxsize=8)
def _distortion_note(fields: tuple[str, tuple[float, ...], tuple[float, ...], tuple[float, ...]], image_topic: str,
                     rectified: bool | None) -> str:
    """`distortion_note` of a CameraInfo's `_lens_fields`."""
    lens, problem = _lens(*fields)
    if rectified is True or (lens is None and not problem):
        return ""
    if rectified is None:
        remedy = (f"its distortion cannot be undone ({problem})" if problem else
                  "set image_rectified to false (bag-eval: --image-rectified false) and its distortion is undone")
        return (f"camera_info gives lens distortion ({fields[0] or 'no model'}, D not zero) and the "
                f"frames on {image_topic} are taken as rectified, which their topic's name does not say (image_proc "
                f"names a rectified image image_rect, a driver its raw image image_raw): if they are the camera's raw "
                f"image, {remedy}; else set image_rectified to true")
    if problem:
        return (f"{problem}: the distortion of the raw frames on {image_topic} is not undone, so detection "
                "positions, depth in metres and visibility are off, most toward the frame's sides")
    return ""
