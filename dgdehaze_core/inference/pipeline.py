"""One object that turns a camera frame into a dehazed frame, depth and transmission, whatever the method.

`load_pipeline(method)` takes a method name ("dcp", a model configuration such as "lite", or a weights path:
`.pt` checkpoint, `.onnx` export or TensorRT `.engine`) and returns a `DehazePipeline`. The CLI, the ROS node and
bag evaluation all call it, so they run the same code.

The network pipeline runs the network at a working resolution: the input's own size by default, or
`working_size=(w, h)` (one of the two 0: that side follows the input's aspect ratio), padded by reflection to a
multiple of the network's stride and cropped back (a frame a few pixels high or wide at a size whose padding holds
at most `PADDING_BUDGET` times its pixels); a fixed-size export or engine runs at its own size, whatever the
input's. Its image
output is chosen by `output`:
- "decoder": the network's decoder image (resized to the input's size when the working size differs);
- "physics": J = (I - A) / t + A at the input's full resolution, fine detail amplified at most `MAX_DETAIL_GAIN`
  times so that dense fog does not turn into grain (`scattering.invert_scattering_detail_limited`);
- "auto" (default): physics. On every real paired set the shipped lite scores a higher SSIM through the physics
  path than through its decoder, at full and at reduced resolution (docs/RESULTS.md, "Image output"); "decoder"
  stays available.
The transmission, at any working size, is refined (and lifted to the input's size) by a fast guided filter on the
full-resolution gray frame (`refine_transmission`): edges follow the image at any working size, and the network's
pixel-scale noise, which costs a detector more than it costs PSNR, is smoothed away (docs/RESULTS.md,
"Transmission refinement"). It is then raised to the boundary constraint (`boundary_constraint`): no less than
the inversion needs to keep every channel of the physics image within [`radiance_floor`, 1], so that the network's
transmission does not crush dark pixels to black or blow bright ones out, and where a frame's dark pixels show it
has no fog it is left nearly as it is (docs/RESULTS.md, "The boundary constraint"; `radiance_floor` None: the
network's alone). The transmission returned is the raised one in either output mode (the node's fog measurement
reads it); the decoder's image does not depend on it.
A network loaded for the physics path is run (or exported) without the decoder's image branch, which it does not
use: a third of lite's time at 640x480.
A gray frame (its three channels equal: a mono camera's, a gray image file's) comes out gray in either mode: the
physics path inverts it with the mean of the network's three airlight values (they differ by up to 0.01, which
tinted it), the decoder's image is made gray.
Depth and transmission are always returned at the input's size; depth is NaN where the network gave no valid
value. A network without the scattering model (the paper's released one: image and depth only) runs the decoder
path, and its transmission and airlight are the dark channel prior's (what the node's fog measurement reads), held
at the prior's own t0 rather than raised to the boundary constraint.
"""
from __future__ import annotations

import logging
import math
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence

import cv2
import numpy as np

from dgdehaze_core.inference.backends import (DECODER_OUTPUTS, OUTPUT_NAMES, PHYSICS_OUTPUTS, InferenceBackend,
                                              NetworkSource, round_up_to_stride)
from dgdehaze_core.inference.dehaze_result import DehazeResult
from dgdehaze_core.inference.provenance import weights_line, weights_record
from dgdehaze_core.io.file_paths import file_suffix
from dgdehaze_core.io.images import MAX_PIXELS, bgr_to_rgb_float, rgb_float_to_bgr, to_bgr8
from dgdehaze_core.physics.boundary_constraint import RADIANCE_FLOOR, boundary_transmission, check_radiance_floor
from dgdehaze_core.physics.dark_channel import DarkChannelDehazer, dark_channel, estimate_airlight, haze_density
from dgdehaze_core.physics.frame_inversion import FrameInverter
from dgdehaze_core.physics.guided_filter import fast_guided_filter, gray_guide
from dgdehaze_core.physics.scattering import T_MIN

if TYPE_CHECKING:
    from dgdehaze_core.models import DGDehazeNet

LOG = logging.getLogger(__name__)

OUTPUT_MODES = ("auto", "decoder", "physics")
GUIDED_EPS = 1e-3
"""Guided-filter regularisation for lifting the transmission to full resolution (gray in [0, 1])."""
MAX_DETAIL_GAIN = 2.0
"""Most the physics path amplifies fine detail and noise (`scattering.invert_scattering_detail_limited`); None
inverts exactly."""
DETAIL_GAIN_RANGE = (1.0, 100.0)
"""The max_detail_gain settings the node and the commands take, beside 0 for the exact inversion (None here)."""
BASE_RADIUS = 4
BASE_EPS = 0.032 ** 2
"""The base layer that the inversion recovers in full: the frame smoothed over 9x9 windows, texture with a local
standard deviation well below 0.032 (about 8 levels of 255: sensor noise and JPEG blocks) flattened, edges kept.
Chosen with the gain on the DAWN learn and validation photos (docs/RESULTS.md, "Noise in dense fog")."""


class DehazePipeline(Protocol):
    """Frame in (uint8 BGR, any size), `DehazeResult` out."""

    method: str
    backend: str
    weights: Mapping[str, Any] | None
    """The record of the weights file the pipeline loaded (`models.load_model_and_record`,
    `provenance.weights_record`), read as it was loaded; None for none (dcp, a network built in memory)."""

    @property
    def weights_summary(self) -> str:
        """`weights` in one line (`provenance.weights_line`), "" without a weights file."""
        ...

    def __call__(self, frame: np.ndarray) -> DehazeResult: ...

    def process_batch(self, frames: Sequence[np.ndarray]) -> list[DehazeResult]: ...


class DarkChannelPipeline:
    """The dark channel prior behind the pipeline interface (no weights, numpy/OpenCV only)."""

    method = "dcp"
    backend = "opencv"
    weights = None
    weights_summary = ""

    def __init__(self, dehazer: DarkChannelDehazer | None = None) -> None:
        self.dehazer = dehazer or DarkChannelDehazer()

    def __call__(self, frame: np.ndarray) -> DehazeResult:
        return self.dehazer.dehaze(to_bgr8(frame))

    def process_batch(self, frames: Sequence[np.ndarray]) -> list[DehazeResult]:
        return [self(frame) for frame in frames]


def check_max_detail_gain(gain: float) -> float:
    """`gain` as a float, as the node's max_detail_gain and the commands' --max-detail-gain take it: 0 (the exact
    inversion) or a number in DETAIL_GAIN_RANGE; ValueError otherwise."""
    low, high = DETAIL_GAIN_RANGE
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not (gain == 0 or low <= gain <= high):
        raise ValueError(f"max_detail_gain must be 0 (the exact inversion) or a number in [{low:g}, {high:g}], "
                         f"got {gain!r}")
    return float(gain)


def check_working_size(working_size: Sequence[int] | None) -> tuple[int, int] | None:
    """`working_size` as (width, height): both positive, or one 0 (that side follows the input's aspect ratio), as
    the node's working_width and working_height; None: each input's size. ValueError otherwise."""
    if working_size is None:
        return None
    try:
        width, height = (int(v) for v in working_size)
    except (TypeError, ValueError):
        raise ValueError(f"working_size must be (width, height), got {working_size!r}") from None
    if width < 0 or height < 0 or width + height < 1:
        raise ValueError(f"working_size must be positive (one side 0: from the input's aspect ratio), got "
                         f"{working_size!r}")
    if width * height > MAX_PIXELS:
        raise ValueError(f"working_size {width}x{height} has more pixels than 7680x4320 (8K), the most a frame may "
                         "have")
    return width, height


MAX_DERIVED_ASPECT = 16
"""The most times a working side derived from the other (`resolve_working_size`) may exceed it."""


def resolve_working_size(working_size: tuple[int, int] | None, width: int, height: int) -> tuple[int, int]:
    """The (w, h) a `width` x `height` frame runs at: its own size without a working size, and a side given as 0
    from the other and the frame's aspect ratio (at least 1 pixel, at most MAX_DERIVED_ASPECT times the other, so
    that a frame a pixel high, a 2 KB message, does not run the network at 8K's pixel count), both sides then shrunk
    together, keeping that aspect ratio, where they would exceed 8K's pixel count (`MAX_PIXELS`, the most a frame
    may have): a working width of 7680 alone runs a 640x540 camera's frames at 6270x5290, not 7680x6480."""
    if working_size is None:
        return width, height
    work_w, work_h = working_size
    if work_w and work_h:
        return work_w, work_h
    if work_w == 0:
        work_w = max(1, min(round(work_h * width / height), MAX_DERIVED_ASPECT * work_h))
    else:
        work_h = max(1, min(round(work_w * height / width), MAX_DERIVED_ASPECT * work_w))
    if work_w * work_h > MAX_PIXELS:
        scale = math.sqrt(MAX_PIXELS / (work_w * work_h))
        work_w, work_h = max(1, math.floor(work_w * scale)), max(1, math.floor(work_h * scale))
    return work_w, work_h


def _fixed_working_size(backend: InferenceBackend, working_size: tuple[int, int] | None) -> tuple[int, int] | None:
    """The working size a fixed-size export or engine needs: its own, when none is given (the network runs at that
    size and the image is restored at the input's, as for any working size); ValueError when one given pads to
    another size."""
    if backend.fixed_size is None:
        return working_size
    height, width = backend.fixed_size
    if working_size is not None and 0 in working_size:
        raise ValueError(f"this {backend.name} network takes {width}x{height} inputs only (a fixed-size export): "
                         f"give both sides of the working size, or leave it unset")
    if working_size is None:
        LOG.info("this %s network takes %dx%d inputs only: it runs at that size, the image is restored at the "
                 "input's", backend.name, width, height)
        return width, height
    padded = tuple(round_up_to_stride(value, backend.stride) for value in working_size)
    if padded != (width, height):
        raise ValueError(f"this {backend.name} network takes {width}x{height} inputs only (a fixed-size export); "
                         f"working size {working_size[0]}x{working_size[1]} does not fit it: leave the working "
                         f"size unset, set it to {width}x{height}, or export with --dynamic")
    return working_size


def within_max_size(work: tuple[int, int], max_size: tuple[int, int] | None, stride: int) -> tuple[int, int]:
    """The (w, h) `work` runs at on a runtime whose largest input is `max_size` ((height, width), multiples of
    `stride`; None: any): as it is where it fits once padded to the stride, else shrunk, keeping its aspect ratio,
    to fit."""
    width, height = work
    if max_size is None or (round_up_to_stride(height, stride) <= max_size[0]
                            and round_up_to_stride(width, stride) <= max_size[1]):
        return work
    scale = min(max_size[0] / height, max_size[1] / width)
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


PADDING_BUDGET = 4
"""The most pixels the network's input, padded to its stride, may hold per pixel of the working size (of one stride
square, for a smaller one): `within_padding_budget`."""


def within_padding_budget(work: tuple[int, int], stride: int) -> tuple[int, int]:
    """The (w, h) `work` runs at so that, padded to `stride`, it holds at most PADDING_BUDGET times its own pixels
    (or one stride square's) and at most MAX_PIXELS: as it is where it does (any camera's frame), else its long side
    shrunk to fit. Without it a frame a few pixels high (a line camera, a corrupt message) would run padded to a full
    stride of rows, 32 times its pixels for lite: memory beyond any machine's for one of 8K's pixel count."""
    width, height = work
    padded_w, padded_h = round_up_to_stride(width, stride), round_up_to_stride(height, stride)
    budget = min(MAX_PIXELS, PADDING_BUDGET * max(width * height, stride * stride))
    if padded_w * padded_h <= budget:
        return work
    if width >= height:
        return max(stride, budget // padded_h // stride * stride), height
    return width, max(stride, budget // padded_w // stride * stride)


def padding_overrun(work: tuple[int, int], stride: int) -> str:
    """Why `within_padding_budget` shrinks `work` (w, h), in words: its padded input would hold over PADDING_BUDGET
    times its pixels (a thin frame), or, for a frame near 8K's pixel count, more than MAX_PIXELS."""
    width, height = work
    padded = f"padded to the network's stride of {stride}, {width}x{height} would"
    if PADDING_BUDGET * max(width * height, stride * stride) <= MAX_PIXELS:
        return f"{padded} hold over {PADDING_BUDGET} times its pixels"
    return f"{padded} exceed 8K's pixel count ({MAX_PIXELS})"


SHRUNK_SIZES = 64
"""The most frame sizes a pipeline remembers having said it runs shrunk (`NetworkPipeline._say_shrunk`): a stream
whose frames each come at a size of their own (a corrupt camera's, a fuzzer's) would log a warning a frame and grow
the set for good; past it, a new size is said at most every SHRUNK_SAID_EVERY_S seconds."""
SHRUNK_SAID_EVERY_S = 10.0


def refine_transmission(frame: np.ndarray, transmission: np.ndarray) -> np.ndarray:
    """The network's transmission (any resolution) filtered by a guided filter on `frame`'s gray image, at the
    frame's size: edges follow the image, and the network's pixel-scale noise, which a detector reads as texture,
    is smoothed away. The window is 1/16 of the frame's short side (at least 8 pixels, 30 at 640x480); the
    coefficients are computed on a grid subsampled by the power of two nearest below a quarter of the window (He
    and Sun's rule; 4 at 640x480, at most 8), so its cost stays small beside the network's. A value the network
    did not give (NaN or infinite, as an fp16 overflow leaves) counts as 1, the pixel left as the camera saw it:
    the filter's running box sums would carry it over most of the frame."""
    return _guided_transmission(frame, _finite_or_one(transmission)[0])


def _finite_or_one(transmission: np.ndarray) -> tuple[np.ndarray, bool]:
    """`transmission` with each value that is not finite (NaN or infinite: an fp16 overflow) set to 1, and whether
    it had none such (then it is returned as it is)."""
    valid = np.isfinite(transmission)
    if valid.all():
        return transmission, True
    return np.where(valid, transmission, np.float32(1.0)), False


def _guided_transmission(frame: np.ndarray, transmission: np.ndarray) -> np.ndarray:
    """`refine_transmission` of a transmission whose values are all finite."""
    height, width = frame.shape[:2]
    gray = gray_guide(frame)
    radius = max(8, int(round(min(height, width) / 16)))
    subsample = min(8, 1 << (radius // 4).bit_length() - 1)
    return fast_guided_filter(gray, transmission, radius=radius, eps=GUIDED_EPS, subsample=subsample)


def is_gray(frame: np.ndarray) -> bool:
    """Whether a uint8 BGR frame's three channels are equal (a mono camera's frame, a gray image file): its middle
    row is compared first, so that a colour frame costs next to nothing."""
    middle = frame[frame.shape[0] // 2]
    if not (np.array_equal(middle[:, 0], middle[:, 1]) and np.array_equal(middle[:, 1], middle[:, 2])):
        return False
    return np.array_equal(frame[..., 0], frame[..., 1]) and np.array_equal(frame[..., 1], frame[..., 2])


def pad_to_stride(batch: np.ndarray, stride: int) -> np.ndarray:
    """Pad (B, H, W, C) at the bottom and right by reflection to multiples of `stride`."""
    height, width = batch.shape[1:3]
    pad_h, pad_w = (-height) % stride, (-width) % stride
    if pad_h == 0 and pad_w == 0:
        return batch
    return np.pad(batch, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="reflect")


def network_batch(frames: Sequence[np.ndarray], working_size: tuple[int, int], stride: int) -> np.ndarray:
    """The network's input for same-size uint8 BGR frames: (B, 3, H, W) float32 RGB in [0, 1] at `working_size`
    (w, h), padded by reflection to multiples of `stride`. At the frames' own size the padding is done on the
    bytes and each colour plane is scaled straight into the batch; a resized frame is converted first, so that
    the resizing averages floats."""
    height, width = frames[0].shape[:2]
    if tuple(working_size) == (width, height):
        padded = pad_to_stride(np.stack(frames), stride)
        batch = np.empty((padded.shape[0], 3, *padded.shape[1:3]), np.float32)
        for plane in range(3):
            np.multiply(padded[..., 2 - plane], np.float32(1.0 / 255.0), out=batch[:, plane])
        return batch
    shrinking = working_size[0] * working_size[1] < width * height
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    resized = [cv2.resize(bgr_to_rgb_float(frame), working_size, interpolation=interpolation) for frame in frames]
    return np.ascontiguousarray(pad_to_stride(np.stack(resized), stride).transpose(0, 3, 1, 2))


class NetworkPipeline:
    """A network backend behind the pipeline interface; see the module docstring for sizes and outputs. One thread
    at a time: the inversion reuses its work buffers from frame to frame. `inversion_workers`: threads of the
    physics path's inversion (default: one per core, at most 4). `weights`: the record of the weights file the
    network was loaded from, read as it was loaded (None for a network built or trained in memory)."""

    def __init__(self, backend: InferenceBackend, method: str, working_size: Sequence[int] | None = None,
                 output: str = "auto", max_detail_gain: float | None = MAX_DETAIL_GAIN,
                 inversion_workers: int | None = None, weights: Mapping[str, Any] | None = None,
                 radiance_floor: float | None = RADIANCE_FLOOR) -> None:
        if output not in OUTPUT_MODES:
            raise ValueError(f"output must be one of {', '.join(OUTPUT_MODES)}, got {output!r}")
        self.runtime = backend
        self.backend = backend.name
        self.method = method
        self.weights = weights
        self.stride = backend.stride
        self.working_size = _fixed_working_size(backend, check_working_size(working_size))
        self.output = output
        if output == "decoder" and "clear" not in backend.outputs:
            raise ValueError(f"output decoder needs the network's image, and this {self.backend} network was exported "
                             f"without it (physics only); use output physics or auto, or export with every output")
        self.scattering = "transmission" in backend.outputs
        """False for a network without transmission and airlight: the decoder path, the scattering from DCP."""
        if output == "physics" and not self.scattering:
            raise ValueError(f"{method} gives no transmission or airlight (image and depth only): output physics "
                             "needs them; use output decoder or auto")
        self._dark_channel = None if self.scattering else DarkChannelDehazer()
        self.radiance_floor = None if radiance_floor is None else check_radiance_floor(radiance_floor)
        """The boundary constraint's floor under the network's transmission (None: none); the dark channel
        prior's transmission, without a scattering head, has its own (t0)."""
        self._inverter = FrameInverter(max_detail_gain, BASE_RADIUS, BASE_EPS, inversion_workers)
        self._shrunk: set[tuple[int, int]] = set()
        """Frame sizes already said to run shrunk: too large for the runtime, or too thin (said once each, at most
        SHRUNK_SIZES of them: `_say_shrunk`)."""
        self._shrunk_said_at = -math.inf
        """When (time.monotonic) a size past the SHRUNK_SIZES remembered was last said to run shrunk."""
        self._said_non_finite = False
        """Whether the network's NaN or infinite scattering has been said (once)."""
        self._said_non_finite_image = False
        """Whether the decoder's NaN or infinite pixels have been said (once)."""

    @property
    def weights_summary(self) -> str:
        """The weights the network runs in one line (`provenance.weights_line`), "" when it was not loaded from a
        file: what the node's /diagnostics and bag-eval's report name."""
        return "" if self.weights is None else weights_line(self.weights)

    @property
    def max_detail_gain(self) -> float | None:
        """The physics path's noise limit (None: the exact inversion)."""
        return self._inverter.max_detail_gain

    def __call__(self, frame: np.ndarray) -> DehazeResult:
        return self.process_batch([frame])[0]

    def process_batch(self, frames: Sequence[np.ndarray]) -> list[DehazeResult]:
        """Dehaze several frames; frames of the same size go through the network as one batch (in batches of the
        runtime's `max_batch`)."""
        if len(frames) == 0:
            return []
        converted = [to_bgr8(frame) for frame in frames]
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for index, frame in enumerate(converted):
            groups[frame.shape[:2]].append(index)
        results: list[DehazeResult | None] = [None] * len(converted)
        limit = self.runtime.max_batch or len(converted)
        for same_size in groups.values():
            for start in range(0, len(same_size), limit):
                indices = same_size[start:start + limit]
                for index, result in zip(indices, self._run_same_size([converted[i] for i in indices])):
                    results[index] = result
        return [result for result in results if result is not None]

    def _say_shrunk(self, size: tuple[int, int], message: Callable[[], str]) -> None:
        """Warn `message()` that frames of `size` (w, h) run shrunk, once for each size, or, past the SHRUNK_SIZES
        sizes remembered, for a new one at most every SHRUNK_SAID_EVERY_S seconds; the message is built only then
        (every frame of a shrunk size comes here)."""
        if size in self._shrunk:
            return
        if len(self._shrunk) < SHRUNK_SIZES:
            self._shrunk.add(size)
            LOG.warning(message())
        elif time.monotonic() - self._shrunk_said_at >= SHRUNK_SAID_EVERY_S:
            self._shrunk_said_at = time.monotonic()
            LOG.warning(f"{message()} (over {SHRUNK_SIZES} frame sizes run shrunk: a new one said at most every "
                        f"{SHRUNK_SAID_EVERY_S:g} s)")

    def _shrunk_message(self, size: tuple[int, int], wanted: tuple[int, int], fitted: tuple[int, int],
                        work: tuple[int, int]) -> str:
        """Why frames of `size` (w, h) run at `work` where `wanted` asked for more: the engine's profile takes at most
        `fitted`, the padding budget takes less than `fitted` (`padding_overrun`), or both."""
        (width, height), (work_w, work_h) = size, work
        if fitted == wanted:
            return (f"{width}x{height} frames run at {work_w}x{work_h}: {padding_overrun(fitted, self.stride)}; the "
                    "outputs are restored at the frame's size")
        most_h, most_w = self.runtime.max_size
        if work != fitted:  # a thin frame beyond the profile: both, in one
            return (f"{width}x{height} frames run at {work_w}x{work_h}: the most this {self.backend} network takes is "
                    f"{most_w}x{most_h} (its engine's profile), and {padding_overrun(fitted, self.stride)}; the "
                    "outputs are restored at the frame's size")
        return (f"{width}x{height} frames run at {work_w}x{work_h}, the most this {self.backend} network takes (its "
                f"engine's profile: at most {most_w}x{most_h}), and the outputs are restored at the frame's size: a "
                "working size of the camera's builds the engine for it")

    def _run_same_size(self, frames: list[np.ndarray]) -> list[DehazeResult]:
        height, width = frames[0].shape[:2]
        wanted = resolve_working_size(self.working_size, width, height)
        fitted = within_max_size(wanted, self.runtime.max_size, self.stride)
        work_w, work_h = within_padding_budget(fitted, self.stride)
        if fitted != wanted or (work_w, work_h) != fitted:
            self._say_shrunk((width, height),
                             lambda: self._shrunk_message((width, height), wanted, fitted, (work_w, work_h)))
        resized = (work_w, work_h) != (width, height)
        outputs = self.runtime.run(network_batch(frames, (work_w, work_h), self.stride))
        mode = ("physics" if self.scattering else "decoder") if self.output == "auto" else self.output
        results = []
        for index, frame in enumerate(frames):
            depth = outputs["depth"][index, 0, :work_h, :work_w]
            gray = is_gray(frame)
            if self.scattering:
                transmission, airlight_rgb = self._scattering(
                    frame, outputs["transmission"][index, 0, :work_h, :work_w], outputs["airlight"][index, :, 0, 0],
                    gray)
            else:
                transmission, airlight_bgr, _ = self._dark_channel.scattering(frame)
                airlight_rgb = airlight_bgr[::-1].astype(np.float32)
            if resized:
                depth = cv2.resize(depth, (width, height), interpolation=cv2.INTER_LINEAR)
            transmission = np.clip(transmission, T_MIN, 1.0).astype(np.float32)
            if mode == "physics":
                image = self._inverter(frame, transmission, airlight_rgb)
            else:
                clear = outputs["clear"][index, :, :work_h, :work_w].transpose(1, 2, 0)
                if resized:
                    clear = cv2.resize(clear, (width, height), interpolation=cv2.INTER_LINEAR)
                image = self._decoded(frame, clear, gray)
            depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float32)
            floor = T_MIN if self.scattering else self._dark_channel.t0  # without a head: DCP's, clipped at t0
            results.append(DehazeResult(image=image, depth=depth, transmission=transmission,
                                        airlight=airlight_rgb[::-1].copy(), haze_density=haze_density(frame),
                                        transmission_floor=floor))
        return results

    def _decoded(self, frame: np.ndarray, clear: np.ndarray, gray: bool) -> np.ndarray:
        """The decoder's RGB image `clear` as uint8 BGR, gray for a `gray` frame (`is_gray`); a pixel it gives no
        finite value (an fp16 overflow) is the frame's, as the camera saw it (not black), with a warning, once."""
        image = rgb_float_to_bgr(clear)
        if gray:
            image = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        unknown = ~np.isfinite(clear).all(axis=2)
        if unknown.any():
            if not self._said_non_finite_image:
                self._said_non_finite_image = True
                LOG.warning("this %s network's decoder gives NaN or infinite pixels (fp16 overflow?): they are left "
                            "as the camera saw them", self.backend)
            image[unknown] = frame[unknown]
        return image

    def _scattering(self, frame: np.ndarray, transmission: np.ndarray, airlight_rgb: np.ndarray,
                    gray: bool) -> tuple[np.ndarray, np.ndarray]:
        """The network's transmission refined at the frame's size (`refine_transmission`) and its airlight in
        [0, 1]; where the network gave NaN or infinite values (an fp16 overflow anywhere reaches the airlight head's
        mean), the dark channel prior's airlight, and a warning, once. A `gray` frame's airlight is gray, the mean of
        its channels (`is_gray`): the network's differ by up to 0.01, which tinted a mono camera's image. The
        transmission is raised to the boundary constraint of the frame and that airlight (`radiance_floor`)."""
        transmission, transmission_finite = _finite_or_one(transmission)
        refined = _guided_transmission(frame, transmission)
        airlight_finite = bool(np.isfinite(airlight_rgb).all())
        if not self._said_non_finite and not (airlight_finite and transmission_finite):
            self._said_non_finite = True
            LOG.warning("this %s network gives NaN or infinite transmission or airlight (fp16 overflow?): a "
                        "transmission it does not give counts as 1 (the pixel as the camera saw it), an airlight is "
                        "the dark channel prior's", self.backend)
        if not airlight_finite:
            airlight_rgb = estimate_airlight(frame, dark_channel(frame))[::-1]
        if gray:
            airlight_rgb = np.full(3, np.mean(airlight_rgb), np.float32)
        airlight_rgb = np.clip(airlight_rgb, 0.0, 1.0).astype(np.float32)
        if self.radiance_floor is not None:
            refined = np.maximum(refined, boundary_transmission(frame, airlight_rgb, self.radiance_floor))
        return refined, airlight_rgb


def pipeline_from_model(model: "DGDehazeNet", method: str | None = None, backend: str = "torch",
                        device: str = "cpu", half: bool = False, working_size: Sequence[int] | None = None,
                        output: str = "auto", threads: int | None = None,
                        max_detail_gain: float | None = MAX_DETAIL_GAIN,
                        weights: Mapping[str, Any] | None = None,
                        radiance_floor: float | None = RADIANCE_FLOOR) -> NetworkPipeline:
    """Wrap an in-memory model (trained or freshly built; `weights`: the record of the checkpoint it was read from,
    `models.load_model_and_record`, which the pipeline names and an export of it on the way to ONNX Runtime or
    TensorRT records) in a pipeline on `backend`."""
    method = method or model.config_name
    from dgdehaze_core.inference.backends.selection import create_backend

    runtime = create_backend(NetworkSource(network=model, weights=weights), backend=backend, device=device, half=half,
                             threads=threads, camera_size=_camera_size(working_size),
                             outputs=network_outputs(output, model))
    return NetworkPipeline(runtime, method, working_size, output, max_detail_gain, inversion_workers=threads,
                           weights=weights, radiance_floor=radiance_floor)


def network_outputs(output: str, model: "DGDehazeNet | None" = None) -> tuple[str, ...]:
    """The network outputs an image `output` mode needs: the decoder mode all of them, the physics path all but
    the decoder's image; a network without the scattering model (`model.outputs` DECODER_OUTPUTS) gives its own."""
    if output not in OUTPUT_MODES:
        raise ValueError(f"output must be one of {', '.join(OUTPUT_MODES)}, got {output!r}")
    if getattr(model, "outputs", OUTPUT_NAMES) == DECODER_OUTPUTS:
        return DECODER_OUTPUTS
    return OUTPUT_NAMES if output == "decoder" else PHYSICS_OUTPUTS


def _camera_size(working_size: Sequence[int] | None) -> tuple[int, int]:
    """The (width, height) a TensorRT profile is optimised for: the working size (a side given as 0 at VGA's 4:3),
    else VGA."""
    return resolve_working_size(check_working_size(working_size), 640, 480)


def load_pipeline(method: str = "dcp", *, read: tuple[Any, str] | None = None, **options: object) -> DehazePipeline:
    """Build the pipeline for `method`; unknown methods raise ValueError naming the known ones.

    Network options: backend ("auto", "torch", "onnxruntime", "tensorrt"; default: onnxruntime for a .onnx file,
    tensorrt for a prebuilt .engine, else torch; "auto" picks the fastest available, see backends/selection.py),
    device ("cpu", "cuda"; default cuda for an .engine, else cpu), half (fp16; an .engine keeps its own precision),
    working_size ((w, h) or None for the input's size), output ("auto", "decoder", "physics"),
    threads (ONNX Runtime intra-op threads, and the physics inversion's), max_detail_gain (the physics path's noise
    limit; None: exact), radiance_floor (the boundary constraint's floor under the transmission; None: none).
    A network pipeline keeps the record of the weights file it loaded, read as it was loaded (`weights`, and in one
    line `weights_summary`): what the node's /diagnostics and bag-eval's report name, and what an export on the way
    to ONNX Runtime or TensorRT records, never a file put in its place since. `read`: a checkpoint file's contents
    and sha256 where the caller has read it already (`checkpoints.read_checkpoint_and_digest`): not read again.
    """
    from dgdehaze_core.models import load_model_and_record

    if method == "dcp":
        if options:
            raise ValueError(f"the dcp method takes no options, got {sorted(options)}")
        return DarkChannelPipeline()
    known_options = {"backend", "device", "half", "working_size", "output", "threads", "max_detail_gain",
                     "radiance_floor"}
    unknown = sorted(set(options) - known_options)
    if unknown:
        raise ValueError(f"unknown pipeline options {unknown}; known: {', '.join(sorted(known_options))}")
    backend = options.pop("backend", None)
    if _is_export(method):
        return _file_pipeline(NetworkSource(file=Path(os.fspath(method))), backend, **options)
    model, weights = load_model_and_record(method, read=read)
    return pipeline_from_model(model, method=str(method), backend=str(backend or "torch"),  # type: ignore[arg-type]
                               weights=weights, **options)


def method_weights(method: str, read: tuple[Any, str] | None = None) -> dict[str, Any] | None:
    """The record of the weights the network method `method` runs (None for dcp), read and checked as
    `load_pipeline` reads them (a checkpoint loaded on the CPU, an export's or engine's record), with the same
    errors, but without building a runtime: for a caller that hands the method to a process that loads it itself (a
    node started for a bag replay), where an export or an engine built here would be work done twice. `read`: the
    checkpoint's contents and sha256 as read already (`read_method`): not read again."""
    from dgdehaze_core.models import load_model_and_record

    if method == "dcp":
        return None
    if _is_export(method):
        return weights_record(Path(os.fspath(method)))
    return load_model_and_record(method, read=read)[1]


def read_method(method: str) -> tuple[Any, str] | None:
    """The contents and sha256 of the checkpoint the network method `method` loads (a configuration's shipped
    weights, the paper's network, a .pt or .pth file), read once (`checkpoints.read_checkpoint_and_digest`) for
    `load_pipeline`'s and `method_weights`' `read`, so that a caller that checks the weights before other work and
    then builds the pipeline reads the file once; None for dcp and an export (.onnx, .engine), whose runtime reads
    it by its path. `load_pipeline`'s FileNotFoundError and ValueError for a missing or unreadable file or an
    unknown method."""
    from dgdehaze_core.io.checkpoints import read_checkpoint_and_digest
    from dgdehaze_core.models import weights_file

    if method == "dcp" or _is_export(method):
        return None
    return read_checkpoint_and_digest(weights_file(method), "dgdehaze checkpoint")


def _is_export(method: str) -> bool:
    """True for an `.onnx` or `.engine` file, False for a checkpoint (a model configuration's shipped weights, the
    paper's network, a `.pt` or `.pth` file); ValueError naming the known methods for anything else (naming the
    checkpoints of a training run's folder, given whole)."""
    from dgdehaze_core.models import CHECKPOINT_SUFFIXES, MODEL_CONFIGS, PAPER

    suffix = file_suffix(os.fspath(method))
    if suffix in (".onnx", ".engine"):
        return True
    if method not in (*MODEL_CONFIGS, PAPER) and suffix not in CHECKPOINT_SUFFIXES:
        if (Path(os.fspath(method)) / "last.pt").is_file():
            raise ValueError(f"{method} is a training run's folder: give its best.pt (the best validation) or "
                             f"last.pt (the last iteration)")
        raise ValueError(f"unknown dehazing method {method!r}; known: dcp, {', '.join(MODEL_CONFIGS)}, "
                         f"or a .pt (.pth) / .onnx / .engine weights file")
    return False


def _file_pipeline(source: NetworkSource, backend: object, device: str | None = None, half: bool = False,
                   working_size: Sequence[int] | None = None, output: str = "auto", threads: int | None = None,
                   max_detail_gain: float | None = MAX_DETAIL_GAIN,
                   radiance_floor: float | None = RADIANCE_FLOOR) -> NetworkPipeline:
    """An exported file's pipeline: its default runtime unless `backend` names another it runs on; an .engine on
    CUDA unless `device` says otherwise. Its runtime is handed the file's path (ONNX Runtime's TensorRT provider
    names its engine cache by it, and an export's external data lies beside it), so the record of its weights
    (`provenance.weights_record`) is read here, once, as it is loaded; a prebuilt engine's comes from the sidecar
    its loader checked the engine's bytes against, in the one read of them it deserializes."""
    from dgdehaze_core.inference.backends.selection import create_backend

    backend = source.check_backend(str(backend or source.runtimes[0]))
    device = device or ("cuda" if source.suffix == ".engine" else "cpu")
    runtime = create_backend(source, backend=backend, device=device, half=half, threads=threads,
                             camera_size=_camera_size(working_size))
    return NetworkPipeline(runtime, str(source.file), working_size, output, max_detail_gain,
                           inversion_workers=threads, radiance_floor=radiance_floor,
                           weights=weights_record(source.file, getattr(runtime, "engine_record", None)))
