"""The methods an evaluation compares: names on the command line -> callables that dehaze one frame.

A method is written `SOURCE` or `NAME=SOURCE`, SOURCE being anything `load_pipeline` accepts ("dcp", a model
configuration such as "lite", a weights file), a clear-depth checkpoint of `dgdehaze train-depth` (a depth network
alone: its frame is the input unchanged, so only the depth measure means anything), or one of the references that
need no pipeline:
- `hazy`: the input itself, unchanged (the "before" row of every table);
- `clear`: the clear ground-truth image, where a measure has one (detection recovery on paired sets; the clear
  measure's frame itself);
- `clear-jpeg90`: the clear image saved as a JPEG at quality 90 (detection recovery, the clear measure): how far an
  all but lossless copy of the clear image already moves the detector, the protocol's own noise.
NAME is the row name in tables and JSON (`lite-no-depth=runs/ablation/best.pt`); it defaults to SOURCE (a file's
stem, `best` for `best.pt` as for `runs/best.pt`). `SOURCE+hazy` (detection, and the clear measure's detection
figures) runs the detector on the input and on SOURCE's output and fuses the two sets of boxes (`detection.fusion`),
as the node's `detection_input: fused`; it shares SOURCE's pipeline. A `+clahe` after any of these but the clear
references (`hazy+clahe`, `lite+clahe`, `lite+hazy+clahe`; as `SOURCE+hazy`) makes the detector read the method's
frames with their local contrast equalised (`detection.contrast`), as the node's `detection_contrast`.
"""
from __future__ import annotations

import hashlib
import logging
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import cv2
import numpy as np

from dgdehaze_core.inference.dehaze_result import DehazeResult
from dgdehaze_core.inference.pipeline import load_pipeline
from dgdehaze_core.io.checkpoints import read_checkpoint_and_digest
from dgdehaze_core.io.file_paths import file_suffix
from dgdehaze_core.physics.dark_channel import haze_density

if TYPE_CHECKING:
    from dgdehaze_core.models.clear_depth import ClearDepthPredictor

LOG = logging.getLogger(__name__)

HAZY = "hazy"
CLEAR = "clear"
CLEAR_JPEG = "clear-jpeg90"
JPEG_QUALITY = 90
CLEAR_SOURCES = (CLEAR, CLEAR_JPEG)
REFERENCE_SOURCES = (HAZY, *CLEAR_SOURCES)
FUSE_SUFFIX = "+hazy"
CONTRAST_SUFFIX = "+clahe"
CACHED_BYTES = 256 * 2**20
"""Memory a method's kept results may take (by frame content, newest first), so that measures and subsets run
together over a set dehaze each of its images once while they fit; 12-megapixel photos would otherwise keep
gigabytes."""


@dataclass(frozen=True)
class MethodSpec:
    """A method as the user named it: `name` labels the rows, `source` says what runs."""

    name: str
    source: str
    fuse_input: bool = False
    """Detection only: detect on the input and on the output, and fuse the boxes."""
    contrast: bool = False
    """Detection only: the detector reads the frames with their local contrast equalised."""

    @property
    def detection_only(self) -> bool:
        """True where the spec says how the detector reads frames, which only the detection measure uses."""
        return self.fuse_input or self.contrast

    @property
    def is_reference(self) -> bool:
        """True for `hazy`, `clear` and `clear-jpeg90`, which run no dehazer."""
        return self.source in REFERENCE_SOURCES

    @property
    def reads_clear(self) -> bool:
        """True for the references made from the clear image (`clear`, `clear-jpeg90`): paired sets only."""
        return self.source in CLEAR_SOURCES


class ResultCache:
    """The results of the latest distinct frames, by frame content, up to CACHED_BYTES in all (the newest is kept
    whatever its size). One per pipeline, shared by every method that runs it (`lite` and `lite+hazy`), so that the
    cap holds for them together."""

    def __init__(self) -> None:
        self._results: OrderedDict[bytes, DehazeResult] = OrderedDict()
        self._bytes = 0

    @property
    def nbytes(self) -> int:
        """The bytes the kept results hold."""
        return self._bytes

    def get(self, frame: np.ndarray, run: Callable[[np.ndarray], DehazeResult]) -> DehazeResult:
        """The kept result of `frame`, else `run(frame)`, kept."""
        key = _frame_key(frame)
        result = self._results.get(key)
        if result is not None:
            self._results.move_to_end(key)
            return result
        result = run(frame)
        self._results[key] = result
        self._bytes += _result_bytes(result)
        while self._bytes > CACHED_BYTES and len(self._results) > 1:
            self._bytes -= _result_bytes(self._results.popitem(last=False)[1])
        return result


@dataclass
class Method:
    """A loaded method. `run` is None for the references (`hazy`, `clear`, `clear-jpeg90`); `gives_depth` says if it
    predicts depth."""

    spec: MethodSpec
    run: Callable[[np.ndarray], DehazeResult] | None
    weights: Mapping[str, Any] | None = None
    """The record of the weights file the method runs, taken from the read that loaded it (`pipeline.weights`, a
    clear-depth network's `ClearDepthPredictor.weights`): what its figures are named for, never a file put in its
    place since; None without a weights file (the references, dcp)."""
    results: ResultCache = field(default_factory=ResultCache, repr=False)
    """The results `dehaze` keeps, shared by the methods that run one pipeline (`load_methods`)."""
    scattering: bool = True
    """Whether `run` estimates the scattering (transmission and airlight): False for a depth network, whose results
    hold t = 1 and no airlight (`depth_only`)."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def gives_depth(self) -> bool:
        return self.run is not None

    @property
    def gives_transmission(self) -> bool:
        """True where the method estimates a transmission (dcp, the dehazers), not for the references or a depth
        network, whose t = 1 would read as no fog."""
        return self.run is not None and self.scattering

    def dehaze(self, hazy: np.ndarray) -> DehazeResult:
        """The method's result on `hazy`; `hazy` returns the input unchanged (depth all NaN).

        The results of the latest distinct frames, up to CACHED_BYTES, are reused (callers must not modify them).
        """
        if self.run is not None:
            return self.results.get(hazy, self.run)
        if self.spec.source == HAZY:
            height, width = hazy.shape[:2]
            return DehazeResult(image=hazy, depth=np.full((height, width), np.nan, np.float32),
                                transmission=np.ones((height, width), np.float32),
                                airlight=np.full(3, np.nan, np.float32), haze_density=haze_density(hazy))
        raise ValueError(f"method {self.name!r} ({self.spec.source}) does not dehaze a hazy frame")


def jpeg_copy(image: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    """`image` (uint8) after a JPEG encode and decode at `quality`."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} {image.dtype} image as JPEG")
    return cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)


def _result_bytes(result: DehazeResult) -> int:
    return sum(array.nbytes for array in (result.image, result.depth, result.transmission))


def _frame_key(frame: np.ndarray) -> bytes:
    header = f"{frame.shape}{frame.dtype}".encode()
    return header + hashlib.blake2b(np.ascontiguousarray(frame).tobytes(), digest_size=16).digest()


def parse_methods(text: str) -> list[MethodSpec]:
    """'hazy,dcp,lite-no-depth=path.pt' -> MethodSpecs; ValueError for empty or repeated names."""
    specs: list[MethodSpec] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, equals, source = (part.strip() for part in item.partition("="))
        source = source if equals else name
        contrast = source.endswith(CONTRAST_SUFFIX)
        source = source.removesuffix(CONTRAST_SUFFIX)
        fuse_input = source.endswith(FUSE_SUFFIX)
        source = source.removesuffix(FUSE_SUFFIX)
        if not equals:
            name = ((Path(source).stem if "/" in source or Path(source).suffix else source)
                    + (FUSE_SUFFIX if fuse_input else "")
                    + (CONTRAST_SUFFIX if contrast else ""))
        if fuse_input and source in REFERENCE_SOURCES:
            raise ValueError(f"method {item!r}: only a dehazer's output is fused with the input, not {source}")
        if contrast and source in CLEAR_SOURCES:
            raise ValueError(f"method {item!r}: {source} is the clear image's own reference; {CONTRAST_SUFFIX} "
                             "applies to the input and to dehazers")
        if not name or not source:
            raise ValueError(f"method {item!r}: write SOURCE, SOURCE{FUSE_SUFFIX}, SOURCE{CONTRAST_SUFFIX} or "
                             "NAME=SOURCE")
        if "/" in name:
            raise ValueError(f"method name {name!r} may not contain '/': it separates datasets in the table")
        specs.append(MethodSpec(name, source, fuse_input, contrast))
    if not specs:
        raise ValueError(f"no method given in {text!r}; e.g. --method hazy,dcp,lite")
    counts = Counter(spec.name for spec in specs)
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if repeated:
        raise ValueError(f"method names must be unique, repeated: {', '.join(repeated)} (name them NAME=SOURCE)")
    return specs


def depth_only(predictor: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], DehazeResult]:
    """A depth network as a method: the frame comes back unchanged (t = 1, airlight unknown) with its depth."""
    def run(frame: np.ndarray) -> DehazeResult:
        height, width = frame.shape[:2]
        return DehazeResult(image=frame, depth=predictor(frame), transmission=np.ones((height, width), np.float32),
                            airlight=np.full(3, np.nan, np.float32), haze_density=haze_density(frame))
    return run


def _clear_depth_predictor(spec: MethodSpec, network_options: dict[str, object],
                           read: tuple[Any, str]) -> ClearDepthPredictor:
    """A clear-depth checkpoint's network (`read`: the file's contents and sha256) on `network_options`' device (the
    CPU by default). It runs on torch in fp32 only: ValueError for another backend or for fp16, which it would
    otherwise leave unused without a word."""
    from dgdehaze_core.models.clear_depth import ClearDepthPredictor

    backend = network_options.get("backend")
    if backend not in (None, "auto", "torch"):
        raise ValueError(f"a clear-depth network runs on torch only, not {backend}")
    if network_options.get("half"):
        raise ValueError("a clear-depth network runs in fp32 only, not with --half")
    return ClearDepthPredictor.from_checkpoint(spec.source, str(network_options.get("device") or "cpu"), read)


def shipped_model_specs() -> list[MethodSpec]:
    """The model configurations whose shipped weights are installed (none before training has shipped any)."""
    try:
        from dgdehaze_core.models import MODEL_CONFIGS, shipped_weights_path
    except ImportError as exc:
        LOG.debug("models unavailable: %s", exc)
        return []
    return [MethodSpec(name, name) for name in MODEL_CONFIGS if shipped_weights_path(name).is_file()]


def default_method_specs() -> list[MethodSpec]:
    """What `eval` compares without `--method`: the input, DCP, every shipped model, and (detection, and the clear
    measure's detection figures) the contrast-only baseline `hazy+clahe` that a dehazer has to beat to be worth its
    cost."""
    return [MethodSpec(HAZY, HAZY), MethodSpec("dcp", "dcp"), *shipped_model_specs(),
            MethodSpec(HAZY + CONTRAST_SUFFIX, HAZY, contrast=True)]


def load_methods(specs: Sequence[MethodSpec], **network_options: object) -> list[Method]:
    """`load_method` for each spec; specs with the same source (`lite` and `lite+hazy`) share one pipeline and its
    cache of results."""
    pipelines: dict[str, Method] = {}
    methods = []
    for spec in specs:
        if spec.source not in pipelines:
            pipelines[spec.source] = load_method(MethodSpec(spec.name, spec.source), **network_options)
        shared = pipelines[spec.source]
        methods.append(shared if shared.spec == spec else Method(spec, shared.run, shared.weights, shared.results,
                                                                 scattering=shared.scattering))
    return methods


def load_method(spec: MethodSpec, **network_options: object) -> Method:
    """Load the pipeline behind `spec`; a missing weights file or unknown name raises an error naming the method.

    `network_options` (output, working_size, ...: see `load_pipeline`) apply to networks, not to dcp. A `.pt` file
    is read once, to tell a clear-depth network from a dehazer and to load it.
    """
    if spec.is_reference:
        return Method(spec, None)
    read = None
    options = {} if spec.source == "dcp" else network_options
    try:
        if file_suffix(spec.source) == ".pt" and Path(spec.source).is_file():  # a dehazer's or a clear-depth network's
            from dgdehaze_core.models.clear_depth import holds_clear_depth

            read = read_checkpoint_and_digest(spec.source, "dgdehaze checkpoint")
            if holds_clear_depth(read[0]):
                predictor = _clear_depth_predictor(spec, network_options, read)
                return Method(spec, depth_only(predictor), predictor.weights, scattering=False)
        pipeline = load_pipeline(spec.source, read=read, **options)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"method {spec.name!r} is unavailable: {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"method {spec.name!r}: {exc}") from exc
    LOG.info("method %s: %s on %s%s", spec.name, pipeline.method, pipeline.backend,
             f", weights {pipeline.weights_summary}" if pipeline.weights_summary else "")
    return Method(spec, pipeline, pipeline.weights)
