"""Fog density, visibility and metric depth from a transmission map and a camera of known mounting.

Under uniform fog t = exp(-beta r), r being the distance along the pixel's ray, so the optical depth -ln t of a
road pixel, whose distance the camera's height, pitch and intrinsics give (flat ground), measures beta:
beta = -ln(t) / r. Per frame, beta is the median of that ratio over the road region's pixels below the horizon,
after leaving out pixels whose ratio lies far from the median (a car on the road is nearer than the ground behind
it, so its ratio is low). `VisibilityEstimator` smooths beta over time (exponentially, with a time constant in
seconds of the frames' stamps) and gives:
- visibility = 3.912 / beta (Koschmieder, 2 % contrast; the WMO's 5 % MOR is 2.996 / beta), NaN when there is no
  fog to measure (beta below 3.912 / max_visibility) or no road to measure it on, never a huge number; where the
  fog hides the road in view (most of it at the transmission's floor), the most the visibility can be (`bound`);
- metric depth (Z along the optical axis, REP-118) = cos(ray) * -ln(t) / beta, NaN where it is not trustworthy:
  t near 1 (no haze signal), t near the pipeline's floor T_MIN, beyond the visibility, and where the frame's
  contrast against the airlight is below Koschmieder's 2 % (the sky, and whatever the fog hides: there the
  transmission is the method's guess, whatever floor the method clips it at).

Conventions: the camera frame is REP-103's optical frame (x right, y down, z forward); `pitch` is the rotation of
the camera about its x axis seen from the vehicle, positive nose down (REP-103's pitch, positive about y-left);
the road region is a rectangle in fractions of the image's width and height. Every reading carries the reason
when it has no value.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import cv2
import numpy as np

from dgdehaze_core.physics.dark_channel import dark_channel, estimate_airlight
from dgdehaze_core.physics.lens import Lens, lens_of
from dgdehaze_core.physics.scattering import T_MIN

KOSCHMIEDER = 3.912
"""-ln(0.02): visibility = KOSCHMIEDER / beta is where a black object's contrast falls to 2 %."""
T_SIGNAL_MAX = 0.95
"""Above this transmission the haze signal is lost in the transmission's noise: no beta, no metric depth."""
FLOOR_MARGIN = 1.2
T_FLOOR = T_MIN * FLOOR_MARGIN
"""At or below this transmission (the networks' pipeline clips t at T_MIN; a method with a higher floor, such as
DCP's t0, has its own: `usable_floor`) a pixel is sky or beyond what the fog lets through: no beta, no metric
depth."""
MIN_CONTRAST = 0.02
"""A pixel whose colour lies within this fraction of the airlight in every channel shows nothing but fog."""
MIN_ROAD_PIXELS = 200
"""Fewest road pixels with a haze signal for a beta of the frame."""
OUTLIER_MADS = 3.0
"""A road pixel whose beta lies more than this many (normal-scaled) median absolute deviations from the median is
left out: cars, people and road markings that do not lie on the flat ground or fit the haze."""
DEFAULT_MAX_VISIBILITY = 200.0
"""Thinnest fog measured by default (m): the shipped methods read a clear road's grey asphalt as fog of about this
visibility or more, so a longer visibility cannot be told from a clear day (docs/ROS.md, "Fog", gives the drives it
was chosen on and what they read)."""
MAX_CAMERA_HEIGHT = 20.0
"""Highest camera above the road (m) a mounting may give, the node's `camera_height` and bag-eval's alike: a mast or
a gantry's; more is a height given in centimetres (165 for 1.65 m)."""
MAX_CAMERA_PITCH = 1.5
"""Most a mounting's pitch may be (rad, either way), the node's `camera_pitch` and bag-eval's alike: just short of a
camera looking straight down (pi/2)."""
MAX_ROLL = 0.3
"""Most roll (rad) of a camera about its optical axis that the flat-road geometry, which assumes none, tolerates:
on a synthetic road the visibility reads 1 % low at 0.2 rad, 5 % at 0.4, 45 % at pi/2, and a camera mounted
upside down (pi) reads its sky as fog that hides the road."""
MAX_UPWARD_LOOK = math.pi / 4
"""Most a camera's optical axis may point above the horizon in TF (rad): beyond it the road region holds no road, and
the pose is that of a body frame (x forward, z up: its z axis up) stamped on the images instead of the optical
frame's."""
IN_DEGREES = "Or were TF's angles given in degrees? They are radians (1 degree is 0.017 rad)"
"""The other cause of a mounting `height_and_pitch` refuses as rolled or looking up: a static transform's pitch given
in degrees (2 or 5, in radians a camera turned past the vertical)."""
MAX_HOLD_CONSTANTS = 3.0
"""A smoothed beta without a new measurement is kept this many time constants (at least 1 s), then dropped."""
OUT_OF_ORDER_S = 1.0
"""A frame stamped at most this much before the newest one is out of order (a multi-threaded camera driver
publishing two frames swapped), and leaves what was smoothed over the stream as it was; one stamped further back
starts a new stream (a bag played with --loop starting again, a camera's clock set back)."""


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels (camera_info's P or K): each pixel's ray is P's straight ray, as a rectified
    image's; with a `lens`, the frames are the raw image, each pixel's ray its undistorted one (`lens.Lens`)."""

    fx: float
    fy: float
    cx: float
    cy: float
    lens: Lens | None = None

    @classmethod
    def from_k(cls, k: Sequence[float]) -> "Intrinsics":
        """From a row-major 3x3 K; ValueError when the focal lengths are not positive (an unset camera_info) or any
        of fx, fy, cx, cy is not finite (a broken one)."""
        intrinsics = cls(float(k[0]), float(k[4]), float(k[2]), float(k[5]))
        if not (intrinsics.fx > 0 and intrinsics.fy > 0):
            raise ValueError(f"camera intrinsics need positive focal lengths, got fx {k[0]}, fy {k[4]}")
        if not all(map(math.isfinite, (intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy))):
            raise ValueError(f"camera intrinsics must be finite, got fx {k[0]}, fy {k[4]}, cx {k[2]}, cy {k[5]}")
        return intrinsics

    def point_at(self, u: float, v: float, depth: float) -> tuple[float, float, float]:
        """The point seen at pixel (u, v) at `depth` along the optical axis: (x, y, z) in the camera's optical
        frame (REP-103: x right, y down, z forward), in `depth`'s units; NaN where `depth` is, or the pixel has no
        ray (a fisheye's beyond 90 degrees: `lens.FISHEYE_MAX_ANGLE`)."""
        if self.lens is None:
            return ((u - self.cx) / self.fx * depth, (v - self.cy) / self.fy * depth, depth)
        x, y = (float(ray[0]) for ray in self.lens.rays(np.array([u], np.float64), np.array([v], np.float64)))
        return (x * depth, y * depth, depth) if math.isfinite(x) else (math.nan, math.nan, math.nan)


def intrinsics_of(info: Any, shape: tuple[int, int] | None = None, raw: bool = False) -> Intrinsics | None:
    """A sensor_msgs/CameraInfo's intrinsics (any message with its `p` or `k`, `width` and `height`: rclpy's or a
    bag reader's) for the image it describes: its region of interest and binning applied as REP-104 (and
    image_geometry) do, then scaled to a frame of `shape` (height, width) when that image has another size; None
    when neither P nor K is set (zero focal lengths) or the frame has another aspect ratio (`size_mismatch`).
    `raw`: the frames are the camera's raw image, whose lens distortion (`lens.lens_of`) their rays undo, in the
    CameraInfo's own pixels."""
    try:
        intrinsics = _projection(info)
    except ValueError:
        return None
    if shape is not None and size_mismatch(info, shape):
        return None
    mapping = _PixelMapping.of(info, shape)
    (binning_x, binning_y), (left, top), (sx, sy) = mapping.binning, mapping.offset, mapping.resize
    intrinsics = Intrinsics(intrinsics.fx / binning_x * sx, intrinsics.fy / binning_y * sy,
                            (intrinsics.cx - left) / binning_x * sx, (intrinsics.cy - top) / binning_y * sy)
    lens = lens_of(info)[0] if raw else None
    if lens is None:
        return intrinsics
    return dataclasses.replace(intrinsics, lens=dataclasses.replace(lens, scale=mapping.scale,
                                                                    offset=(float(left), float(top))))


RESIZE_ASPECT_TOLERANCE = 0.04
"""How far a resize's x and y scales may differ, relative to the larger: a network's input size changes a camera's
aspect a little (KITTI's 1242x375 to 640x192, 416x128 or 1024x320: 0.6, 1.9 and 3.5 %), and image_proc's resize
scales K per axis; an undeclared crop of a few rows within it reads as a resize, one of more (a bonnet cut off, or
another camera's calibration: 4:3 against 16:9 is 25 %) as no copy of the image."""


def size_mismatch(info: Any, shape: tuple[int, int]) -> str:
    """Why a CameraInfo does not describe a frame of `shape` (height, width): the image it describes has another
    aspect ratio (a crop that its region of interest does not declare, or another camera's calibration), so no
    scaling maps one onto the other; "" when it does describe it (the same size, or scaled in x and y alike within
    RESIZE_ASPECT_TOLERANCE)."""
    sx, sy = _PixelMapping.of(info, shape).resize
    if abs(sx - sy) <= RESIZE_ASPECT_TOLERANCE * max(sx, sy):
        return ""
    width, height = described_size(info)
    return (f"camera_info describes a {width}x{height} image but the frames are {shape[1]}x{shape[0]}, of another "
            "aspect ratio (a crop its region of interest does not declare?)")


def resized_calibration(info: Any, shape: tuple[int, int]) -> tuple[list[float], list[float]] | None:
    """K and P (row-major, 9 and 12 values) of a CameraInfo for a frame of `shape` (height, width) that is a resized
    copy of the image it describes: its region of interest and binning applied as `intrinsics_of` applies them, then
    both scaled to the frame as image_proc's resize scales them, for a CameraInfo of the frame's size without
    region of interest or binning. None when it needs none (it gives no image size or describes this frame's) or
    fits no resized copy (`size_mismatch`). A K or P of zeros (uncalibrated) stays zeros."""
    mapping = _PixelMapping.of(info, shape)
    if mapping.resize == (1.0, 1.0) or size_mismatch(info, shape):
        return None
    (scale_x, scale_y), (left, top) = mapping.scale, mapping.offset
    to_frame = np.array([[scale_x, 0.0, -left * scale_x], [0.0, scale_y, -top * scale_y], [0.0, 0.0, 1.0]])
    k = to_frame @ np.asarray(info.k, np.float64).reshape(3, 3)
    p = to_frame @ np.asarray(info.p, np.float64).reshape(3, 4)
    return k.ravel().tolist(), p.ravel().tolist()


NO_ROI = {"x_offset": 0, "y_offset": 0, "height": 0, "width": 0, "do_rectify": False}
"""A sensor_msgs/RegionOfInterest's fields for none: the full image."""


def resized_camera_info(info: Any, shape: tuple[int, int]) -> dict[str, Any] | None:
    """The fields of a CameraInfo that, set on a copy of `info`, describe a frame of `shape` (height, width) resized
    from the image `info` describes: K and P as `resized_calibration` gives them (float64 arrays), the frame's
    height and width, no binning, and `roi` (NO_ROI's fields) none; D, R and the rest hold as `info` has them (for
    any pixel scale). None where `resized_calibration` is None: `info` describes the frame as it is (or gives no
    size) or fits no resized copy. The node's ~/camera_info (rclpy's message) and bag-eval's (the bag writer's) set
    them on their own message types."""
    resized = resized_calibration(info, shape)
    if resized is None:
        return None
    height, width = shape
    return {"k": np.array(resized[0]), "p": np.array(resized[1]), "height": height, "width": width,
            "binning_x": 0, "binning_y": 0, "roi": dict(NO_ROI)}


def _projection(info: Any) -> Intrinsics:
    """The camera matrix of P, the projection that image_geometry and depth_image_proc take (the rectified image's:
    for a rectified camera such as KITTI's it differs from K, the raw image's), or K when P is unset."""
    p = [] if getattr(info, "p", None) is None else [float(v) for v in info.p]
    if len(p) == 12 and p[0] > 0 and p[5] > 0:
        return Intrinsics.from_k([p[0], p[1], p[2], p[4], p[5], p[6], p[8], p[9], p[10]])
    return Intrinsics.from_k(info.k)


@dataclass(frozen=True)
class _PixelMapping:
    """How a frame's pixels lie on a CameraInfo's own (REP-104, as image_geometry maps them): frame pixel =
    (camera_info pixel - `offset`) / `binning` * `resize`. `offset`: the corner of its region of interest (0, 0
    without one); `binning`: 1 where unset; `resize`: the frame's size over the image it describes (x, y), 1 where
    either is unknown. The one reader of a CameraInfo's region of interest, binning and scale to a frame."""

    offset: tuple[int, int]
    binning: tuple[int, int]
    resize: tuple[float, float]

    @classmethod
    def of(cls, info: Any, shape: tuple[int, int] | None = None) -> "_PixelMapping":
        """The mapping onto a frame of `shape` (height, width; None: the image `info` describes)."""
        width, height = described_size(info)
        resize = (shape[1] / width, shape[0] / height) if shape is not None and width and height else (1.0, 1.0)
        offset = (info.roi.x_offset, info.roi.y_offset) if _cropped(info) else (0, 0)
        return cls(offset, _binning(info), resize)

    @property
    def scale(self) -> tuple[float, float]:
        """Frame pixels per CameraInfo pixel (x, y): `resize` / `binning`."""
        return self.resize[0] / self.binning[0], self.resize[1] / self.binning[1]


def _binning(info: Any) -> tuple[int, int]:
    return tuple(max(int(getattr(info, name, 0) or 0), 1) for name in ("binning_x", "binning_y"))  # type: ignore


def _cropped(info: Any) -> bool:
    roi = getattr(info, "roi", None)
    return roi is not None and roi.width > 0 and roi.height > 0


def described_size(info: Any) -> tuple[int, int]:
    """(width, height) of the image a CameraInfo describes: its region of interest, binned (REP-104)."""
    binning_x, binning_y = _binning(info)
    width, height = (info.roi.width, info.roi.height) if _cropped(info) else (info.width, info.height)
    return width // binning_x, height // binning_y


def field_of_view(info: Any, shape: tuple[int, int] | None = None) -> float:
    """The horizontal field of view (rad) of the image a CameraInfo describes (its region of interest and binning
    applied, as `intrinsics_of`), or of the frame of `shape` (height, width) it is for, which also serves a
    CameraInfo that gives no image size; 0 when unknown."""
    intrinsics = intrinsics_of(info, shape) if info is not None else None
    if intrinsics is None:
        return 0.0
    width = shape[1] if shape is not None else described_size(info)[0]
    return 2.0 * math.atan(width / (2.0 * intrinsics.fx)) if width else 0.0


@dataclass(frozen=True)
class Mounting:
    """Where the camera sits and where it sees road: `height` (m) above a flat road, `pitch` (rad, positive nose
    down), the road region (left, top, right, bottom) as fractions of the image's width and height, and the
    farthest road (m along the ray) measured: the transmission maps of the pipelines are smoothed over tens of
    pixels, which near the horizon mixes road 20 m and 200 m away, so only the nearer road is measured."""

    height: float
    pitch: float
    road_region: tuple[float, float, float, float] = (0.3, 0.5, 0.7, 1.0)
    road_max_distance: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.height < math.inf:
            raise ValueError(f"camera height must be positive and finite (m above the road), got {self.height}")
        if not abs(self.pitch) < math.pi / 2:
            raise ValueError(f"camera pitch must lie within +-pi/2 rad, got {self.pitch}")
        left, top, right, bottom = self.road_region
        if not (0.0 <= left < right <= 1.0 and 0.0 <= top < bottom <= 1.0):
            raise ValueError("road region must be [left, top, right, bottom] fractions of the image with "
                             f"0 <= left < right <= 1 and 0 <= top < bottom <= 1, got {list(self.road_region)}")
        if not self.road_max_distance > 0:
            raise ValueError(f"road max distance must be positive (m), got {self.road_max_distance}")


def height_and_pitch(translation: Sequence[float], rotation: Sequence[float]) -> tuple[float, float]:
    """The camera's height (m) and pitch (rad, positive nose down) from the pose of its optical frame (REP-103:
    z forward, x right, y down) in a frame on the road plane with z up (REP-105 base_footprint): `translation`
    (x, y, z) and `rotation` (x, y, z, w), as TF's transform from the camera frame to the road frame gives them.
    The road pixels' distances assume no roll about the optical axis: ValueError, with the roll, beyond MAX_ROLL;
    and one for an optical axis looking up more than MAX_UPWARD_LOOK, which sees no road: the pose of a body frame
    (camera_link, z up) given where the optical frame's belongs."""
    x, y, z, w = (float(v) for v in rotation)
    norm = math.sqrt(x * x + y * y + z * z + w * w)
    if not norm > 0:
        raise ValueError(f"rotation must be a unit quaternion (x, y, z, w), got {list(rotation)}")
    x, y, z, w = x / norm, y / norm, z / norm, w / norm
    forward = (2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y))  # the optical z axis, rotated
    if forward[2] > math.sin(MAX_UPWARD_LOOK):
        raise ValueError(f"the camera's optical axis (z) points {math.degrees(math.asin(min(forward[2], 1.0))):.0f} "
                         "degrees above the horizon: is the image's frame_id a body frame (camera_link: x forward, "
                         "z up) rather than the camera's optical frame (REP-103: z forward, x right, y down, as "
                         f"camera_optical_frame)? Stamp the images with the optical frame. {IN_DEGREES}")
    # the up components of the optical x (right) and y (down) axes: 0 and -cos(pitch) for a camera without roll
    right_up, down_up = 2 * (x * z - w * y), 2 * (y * z + w * x)
    roll = math.atan2(-right_up, -down_up)
    if abs(roll) > MAX_ROLL and math.hypot(right_up, down_up) > 1e-9:  # none looking straight down: Mounting says
        raise ValueError(f"the camera is rolled {roll:.2f} rad about its optical axis (at most {MAX_ROLL:g}: the "
                         "road's distances assume a camera without roll, and one upside down sees sky where the road "
                         f"should be). {IN_DEGREES}")
    return float(translation[2]), math.atan2(-forward[2], math.hypot(forward[0], forward[1]))


def pixel_rays(shape: tuple[int, int], intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """x/z and y/z of each pixel's ray in the optical frame: P's straight rays, a row (1, width) and a column
    (height, 1); through a lens (raw frames), each (height, width), computed once per calibration and size."""
    if intrinsics.lens is not None:
        return intrinsics.lens.pixel_rays(shape)
    height, width = shape
    x = (np.arange(width, dtype=np.float64) - intrinsics.cx) / intrinsics.fx
    y = (np.arange(height, dtype=np.float64) - intrinsics.cy) / intrinsics.fy
    return x[None, :], y[:, None]


def ray_norms(shape: tuple[int, int], intrinsics: Intrinsics) -> np.ndarray:
    """|(x/z, y/z, 1)| of each pixel's ray: distance along the ray = Z * this."""
    x, y = pixel_rays(shape, intrinsics)
    return np.sqrt(1.0 + x ** 2 + y ** 2)


def road_depth(y: np.ndarray | float, mounting: Mounting) -> np.ndarray:
    """Z (m) where rays of y/z `y` (optical frame; an array, or one ray's) meet the flat road `mounting.height` below
    the camera; NaN at and above the horizon and where `y` is NaN (no ray). A ray (x, y, 1) falls by
    y cos(pitch) + sin(pitch) per unit of Z, so it meets the road at Z = height / that."""
    fall = np.asarray(y, np.float64) * math.cos(mounting.pitch) + math.sin(mounting.pitch)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(fall > 1e-9, mounting.height / np.maximum(fall, 1e-9), np.nan)


def horizon_outside(shape: tuple[int, int], intrinsics: Intrinsics, mounting: Mounting) -> str:
    """Where the horizon lies for a frame of `shape` when it is not in view: "above" the frame where every pixel's
    ray meets the road (a camera pitched down past half its field of view: the sky, if any, is taken as road), "below"
    where none does (pitched up past it: no road in view), "" where it lies within the frame."""
    _, y = pixel_rays(shape, intrinsics)
    fall = np.asarray(y, np.float64) * math.cos(mounting.pitch) + math.sin(mounting.pitch)  # as `road_depth`'s
    fall = fall[np.isfinite(fall)]
    if not fall.size:
        return ""
    return "above" if fall.min() > 1e-9 else "below" if fall.max() <= 1e-9 else ""


def pitch_words(pitch: float, decimals: int = 0) -> str:
    """A pitch (rad, positive nose down) in degrees for a person, to `decimals`: "3 degrees nose down", "level" where
    it rounds to 0 (the two logs that say it agree on a level camera)."""
    degrees = round(abs(math.degrees(pitch)), decimals)
    if degrees == 0:
        return "level"
    return f"{degrees:.{decimals}f} degrees nose {'down' if pitch > 0 else 'up'}"


@functools.lru_cache(maxsize=8)
def horizon_note(shape: tuple[int, int], intrinsics: Intrinsics, mounting: Mounting, source: str = "") -> str:
    """What to say once where `mounting` puts the horizon outside a frame of `shape` (`horizon_outside`), "" where
    it is in view: a road camera sees its horizon, and a pitch that hides it is mostly one given in degrees
    (camera_pitch 1.0 for 1 degree: 57 degrees nose down, whose distances come out a fraction of the true ones).
    `source`: where the pitch came from, when not the parameters (" from TF (...)"). Cached: a node's and a bag's
    frames ask it of every frame, with one mounting and camera."""
    where = horizon_outside(shape, intrinsics, mounting)
    if not where:
        return ""
    tilt = pitch_words(mounting.pitch)
    what = ("every pixel, the sky's too, is taken as road near the camera, and the visibility, metric depth and "
            "detection distances come out too short") if where == "above" else \
        "no road is in view, so there is no visibility, metric depth or detection distance"
    return (f"camera pitch {mounting.pitch:g} rad{source} ({tilt}) puts the horizon {where} the {shape[1]}x{shape[0]} "
            f"frame: {what}. The pitch is in radians, as TF's angles are (1 degree is 0.017 rad): was it given in "
            "degrees?")


def ground_range(shape: tuple[int, int], intrinsics: Intrinsics, mounting: Mounting) -> np.ndarray:
    """Distance (m) along each pixel's ray to a flat road `mounting.height` below the camera (`road_depth` along
    the ray); NaN at and above the horizon."""
    _, y = pixel_rays(shape, intrinsics)
    return road_depth(y, mounting) * ray_norms(shape, intrinsics)


def road_mask(shape: tuple[int, int], region: tuple[float, float, float, float]) -> np.ndarray:
    """Boolean mask of the road region's rectangle."""
    height, width = shape
    left, top, right, bottom = region
    mask = np.zeros(shape, bool)
    mask[int(round(top * height)):int(round(bottom * height)), int(round(left * width)):int(round(right * width))] = 1
    return mask


@dataclass(frozen=True)
class BetaMeasurement:
    """One frame's beta (1/m; NaN with `reason` when the frame gives none) and what it rests on: `source` "road"
    (the road pixels' transmission; `pixels` of them) or "objects" (the dark undersides of road users,
    `dark_objects.measure_objects_beta`; `pixels` objects). `bound`: the fog hides the road in view, so beta is only
    the least it can be (from the nearest hidden road)."""

    beta: float
    pixels: int
    reason: str = ""
    bound: bool = False
    source: str = "road"


def usable_floor(transmission_floor: float) -> float:
    """The transmission at or below which a method whose least transmission is `transmission_floor` tells nothing
    (`DehazeResult.transmission_floor`): the floor and a margin for the refinement's smoothing around it."""
    return transmission_floor * FLOOR_MARGIN


def measure_beta(transmission: np.ndarray, distance: np.ndarray, road: np.ndarray,
                 min_pixels: int = MIN_ROAD_PIXELS, t_floor: float = T_FLOOR) -> BetaMeasurement:
    """Robust beta from the road pixels (`road` mask, `distance` along the ray in m, NaN above the horizon).

    beta = 0 (a clear frame) is a measurement: most road pixels show no haze signal. Most road pixels at or below
    `t_floor` is fog denser than the road in view can measure: beta is at least -ln(t_floor) / r over those
    pixels, the bound taken at the nearest of them (their 5th percentile of r), and the measurement says `bound`.
    NaN with a reason when the region has no road below the horizon or too few pixels with a usable transmission.
    """
    if transmission.shape != distance.shape or road.shape != distance.shape:
        raise ValueError(f"transmission {transmission.shape}, distance {distance.shape} and road mask {road.shape} "
                         "must have the same shape")
    on_road = road & np.isfinite(distance) & np.isfinite(transmission)
    ground = int(on_road.sum())
    if ground < min_pixels:
        return BetaMeasurement(math.nan, ground, "no road below the horizon in the road region" if ground == 0
                               else f"only {ground} road pixels below the horizon (need {min_pixels})")
    t = transmission[on_road].astype(np.float64)
    if np.mean(t >= T_SIGNAL_MAX) > 0.5:
        return BetaMeasurement(0.0, ground)
    usable = (t > t_floor) & (t < T_SIGNAL_MAX)
    hidden = t <= t_floor
    if usable.sum() < min_pixels and np.mean(hidden) > 0.5:
        nearest = float(np.percentile(distance[on_road][hidden], 5))
        return BetaMeasurement(-math.log(t_floor) / nearest, int(hidden.sum()), bound=True)
    if usable.sum() < min_pixels:
        return BetaMeasurement(math.nan, int(usable.sum()),
                               f"only {int(usable.sum())} road pixels with a usable transmission (need {min_pixels})")
    ratios = -np.log(t[usable]) / distance[on_road][usable]
    centre = float(np.median(ratios))
    spread = 1.4826 * float(np.median(np.abs(ratios - centre)))
    kept = ratios[np.abs(ratios - centre) <= OUTLIER_MADS * spread] if spread > 0 else ratios
    return BetaMeasurement(float(np.median(kept)), int(kept.size))


def fog_contrast(frame: np.ndarray) -> np.ndarray:
    """max over the channels of |I - A| / A for a uint8 BGR frame, A being the colour of its haziest pixels (the
    dark channel's brightest, He et al.'s airlight, found on a quarter-size copy): the networks' own airlight is a
    few per cent off, as much as the contrast tested."""
    height, width = frame.shape[:2]
    small = cv2.resize(frame, (max(1, width // 4), max(1, height // 4)), interpolation=cv2.INTER_AREA)
    airlight = np.maximum(estimate_airlight(small, dark_channel(small, patch=5)), 1e-3)
    contrast = None
    for channel, light in zip(cv2.split(frame), airlight):
        difference = cv2.absdiff(channel, np.full_like(channel, int(round(light * 255.0))))
        scaled = difference.astype(np.float32) * np.float32(1.0 / (255.0 * light))
        contrast = scaled if contrast is None else cv2.max(contrast, scaled)
    return contrast


def metric_depth(transmission: np.ndarray, beta: float, norms: np.ndarray,
                 contrast: np.ndarray | None = None, t_floor: float = T_FLOOR) -> np.ndarray:
    """Z (m, along the optical axis) = -ln(t) / beta / |ray|, NaN where untrustworthy (module docstring; at or
    below `t_floor`; the contrast test only when `contrast`, from `fog_contrast`, is given) or when beta is not a
    positive number. T_FLOOR > exp(-KOSCHMIEDER) = 0.02, so every pixel it keeps lies within the visibility."""
    if not (math.isfinite(beta) and beta > 0):
        return np.full(transmission.shape, np.nan, np.float32)
    t = np.ascontiguousarray(transmission, dtype=np.float32)
    depth = cv2.log(np.maximum(t, np.float32(t_floor)))
    depth *= np.float32(-1.0 / beta)
    np.divide(depth, norms, out=depth, casting="unsafe")
    invalid = (t <= t_floor) | (t >= T_SIGNAL_MAX)
    if contrast is not None:
        invalid |= contrast < MIN_CONTRAST
    depth[invalid] = np.nan
    return depth


def visibility_of(beta: float, max_visibility: float) -> float:
    """KOSCHMIEDER / beta in metres; NaN when beta is NaN or the fog is too thin to measure (beyond max_visibility)."""
    if not math.isfinite(beta) or beta * max_visibility < KOSCHMIEDER:
        return math.nan
    return KOSCHMIEDER / beta


@dataclass(frozen=True)
class VisibilityReading:
    """A frame's result: the smoothed beta (1/m), the visibility (m) and the metric depth, each NaN when unknown;
    `reason` says why there is no visibility; `measurement` is the frame's own beta."""

    beta: float
    visibility: float
    depth: np.ndarray
    measurement: BetaMeasurement
    reason: str = ""

    @property
    def at_most(self) -> bool:
        """The fog hides the road in view: the visibility is the most it can be, not a measurement of it."""
        return self.measurement.bound and math.isfinite(self.visibility)


@dataclass
class VisibilityEstimator:
    """Per-camera state: the mounting, the smoothing time constant (s; 0: none) and the fog too thin to measure
    (`max_visibility`, m). `update` takes each frame's transmission, intrinsics and stamp (s)."""

    mounting: Mounting
    time_constant: float = 2.0
    max_visibility: float = DEFAULT_MAX_VISIBILITY
    _beta: float = field(default=math.nan, init=False)
    _stamp: float = field(default=math.nan, init=False)
    _geometry: tuple[tuple[int, int], Intrinsics, np.ndarray, np.ndarray, np.ndarray, np.ndarray, str] | None = field(
        default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.time_constant) and self.time_constant >= 0):
            raise ValueError(f"time constant must be a finite number of seconds >= 0, got {self.time_constant}")
        if not (math.isfinite(self.max_visibility) and self.max_visibility > 0):
            raise ValueError(f"max visibility must be a positive number of metres, got {self.max_visibility}")

    def remount(self, mounting: Mounting) -> None:
        """A new mounting (read from TF, say) for the next frames; the smoothed fog density is kept."""
        if mounting != self.mounting:
            self.mounting, self._geometry = mounting, None

    def _frame_geometry(self, shape: tuple[int, int], intrinsics: Intrinsics) -> tuple[Any, ...]:
        """Per frame size and intrinsics (cached): each pixel's road distance, the road pixels measured, the rays'
        norms, the flat road's Z at each pixel (infinite at and above the horizon, so that it bounds no depth there;
        one column for straight rays), and why the road region holds no road pixel when its geometry, not the
        horizon, is the reason (a region too small for a pixel, or road only beyond road_max_distance; "" otherwise)."""
        if self._geometry is None or self._geometry[:2] != (shape, intrinsics):
            distance = ground_range(shape, intrinsics, self.mounting)
            region = road_mask(shape, self.mounting.road_region)
            with np.errstate(invalid="ignore"):
                road = region & (distance <= self.mounting.road_max_distance)
            road_z = road_depth(pixel_rays(shape, intrinsics)[1], self.mounting)
            self._geometry = (shape, intrinsics, distance, road, ray_norms(shape, intrinsics).astype(np.float32),
                              np.where(np.isnan(road_z), np.inf, road_z).astype(np.float32),
                              self._no_road_because(shape, region, distance, road))
        return self._geometry[2:]

    def _no_road_because(self, shape: tuple[int, int], region: np.ndarray, distance: np.ndarray,
                         road: np.ndarray) -> str:
        if road.any():
            return ""
        if not region.any():
            return f"the road region {list(self.mounting.road_region)} holds no pixel of a {shape[1]}x{shape[0]} frame"
        seen = distance[region & np.isfinite(distance)]
        if seen.size:
            return (f"the road region's nearest road is {float(seen.min()):.0f} m away, beyond road_max_distance "
                    f"({self.mounting.road_max_distance:g} m)")
        return ""  # all of it above the horizon: measure_beta says so itself

    def _smooth(self, beta: float, stamp: float) -> float:
        """The exponentially smoothed beta after a measurement (NaN: none) at `stamp`.

        Smoothing and holding run on the frames' stamps. A frame out of order (up to OUT_OF_ORDER_S before the
        newest) is older than what was smoothed: the smoothed beta stands, held or not. A stamp that does not advance
        otherwise (frames stamped 0, or a bag that loops back) gives no time to smooth or hold over, so the frame's own
        measurement stands (NaN included).
        """
        age = stamp - self._stamp if math.isfinite(self._stamp) else math.inf
        if -OUT_OF_ORDER_S <= age < 0:
            if math.isnan(self._beta):
                self._beta = beta
            return self._beta
        if math.isnan(beta):
            if age <= 0 or age > max(1.0, MAX_HOLD_CONSTANTS * self.time_constant):
                self._beta = math.nan
            return self._beta
        if math.isnan(self._beta) or self.time_constant == 0 or age <= 0:
            self._beta = beta
        else:
            self._beta += (1.0 - math.exp(-age / self.time_constant)) * (beta - self._beta)
        self._stamp = stamp
        return self._beta

    def update(self, transmission: np.ndarray, intrinsics: Intrinsics, stamp: float,
               contrast: np.ndarray | None = None, transmission_floor: float = T_MIN,
               objects: BetaMeasurement | None = None) -> VisibilityReading:
        """Measure this frame, smooth, and derive the visibility and the metric depth (`contrast`: see
        `metric_depth`; `transmission_floor`: the method's least transmission, `DehazeResult.transmission_floor`).
        `objects`: the frame's beta from its road users (`dark_objects.measure_objects_beta`), taken instead of the
        road's where it has one, unless the fog hides the road in view (and so the objects on it)."""
        distance, road, norms, road_z, no_road = self._frame_geometry(transmission.shape[:2], intrinsics)
        t_floor = usable_floor(transmission_floor)
        measurement = measure_beta(transmission, distance, road, t_floor=t_floor)
        if no_road:
            measurement = dataclasses.replace(measurement, reason=no_road)
        if objects is not None and math.isfinite(objects.beta) and not measurement.bound:
            measurement = objects
        beta = self._smooth(measurement.beta, stamp)
        # fog that hides the road is dense whatever its bound says: max_visibility is for telling thin fog from none.
        # The frame's own bound is the tighter one where the smoothed beta still carries thinner fog from before
        visibility = (KOSCHMIEDER / max(beta, measurement.beta) if measurement.bound
                      else visibility_of(beta, self.max_visibility))
        reason = ""
        if math.isnan(beta):
            reason = measurement.reason or "no recent road measurement"
        elif math.isnan(visibility):
            unhazed = ("the road users' dark undersides show" if measurement.source == "objects"
                       else "most of the road in view shows")
            reason = "no fog to measure (" + (f"{unhazed} no haze signal)" if beta == 0 else
                                              f"visibility beyond {self.max_visibility:g} m)")
        known = math.isfinite(visibility) and not measurement.bound  # a bound beta would read distances too far
        depth = metric_depth(transmission, beta if known else math.nan, norms, contrast, t_floor)
        np.minimum(depth, road_z, out=depth)  # nothing under the road plane (NaN stays NaN)
        return VisibilityReading(beta, visibility, depth, measurement, reason)
