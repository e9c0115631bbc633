"""`dgdehaze dehaze INPUT --method M --out DIR`: dehaze an image, a folder of images or a video."""
from __future__ import annotations

import argparse
import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
from tqdm import tqdm

from dgdehaze_core.commands.argument_types import path_argument
from dgdehaze_core.commands.input_bits_option import add_input_bits_option
from dgdehaze_core.commands.network_options import (add_network_options, given_network_options, network_runtime,
                                                    requested_max_detail_gain, requested_radiance_floor)
from dgdehaze_core.inference.pipeline import MAX_DETAIL_GAIN, OUTPUT_MODES, load_pipeline, method_weights, read_method
from dgdehaze_core.io.atomic_files import atomic_path, atomic_write_text, check_writable_place
from dgdehaze_core.io.file_paths import VIDEO_SUFFIXES, missing
from dgdehaze_core.io.images import (SAMPLE_BITS, ImageError, ImageReader, VideoFrames, list_images, video_frame_count,
                                     video_path, write_image)
from dgdehaze_core.visualize import colorize_depth

LOG = logging.getLogger(__name__)

NAME_MAX = 255
"""The longest file name (bytes) of common file systems."""
RUN_RECORD = "dehaze_run.json"
"""Written into --out before a run's first output (a video's: before its outputs replace any): what writes them (the
input, the method, the record of its weights, the output mode, the working size, the input bits, fp16, the radiance
floor, the detail gain), so that --resume goes on only with the same run, and what the outputs in --out are made
from (MADE_FROM); kept as it is by each --resume, its time says when that run began (outputs older than it are an
earlier run's)."""
MADE_FROM = "made_from"
"""The run record's key for what the outputs in its folder were made from: each output's name and the absolute path
of the image or video it was made from, this run's and those of earlier runs still there, so that a run over another
file of the same name (B/x.png after A/x.png, a.avi after a.mp4) is refused before it replaces them
(`_check_replaced`)."""
KINDS = ("dehazed", "depth")
"""The outputs of each input, NAME_dehazed and NAME_depth."""
OUTPUT_ENDINGS = tuple(f"_{kind}{suffix}" for kind in KINDS for suffix in (".png", ".mp4"))
"""How the names of the outputs of images and videos end."""
SCATTERING_SETTINGS = ("radiance_floor", "max_detail_gain")
"""What of a run record sets how a network's transmission makes its image (None where no transmission does: dcp's
image, a decoder's). A record written before records held the floor reads as None (such a run had none), one
written before they held the gain as the default it ran with (`_recorded_max_detail_gain`)."""
COMPARED = ("output", "working_size", "input_bits", "half", *SCATTERING_SETTINGS)
"""What of a run record, beside its weights, changes the images written: a resumed run must keep them. A record
written before records held the working size reads as None, each input's size, which such a run had."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dehaze", help="dehaze an image, a folder or a video",
                                   description="Write NAME_dehazed.png and NAME_depth.png for each input image "
                                               "(or NAME_dehazed.mp4 and NAME_depth.mp4 for a video). A photo is "
                                               "dehazed upright, turned by its EXIF orientation as viewers show "
                                               "it, and its outputs are written so. The outputs are 8-bit colour "
                                               "images whatever the input's depth (the depth a colour map of the "
                                               "relative depth), and a video's are without its sound.")
    parser.add_argument("input", type=path_argument, help="image file, folder of images, or video file")
    parser.add_argument("--method", default="lite", help="dcp, lite (its shipped weights) or a weights path "
                                                         "(default: lite, the node's default model)")
    parser.add_argument("--out", type=path_argument, required=True,
                        help="output folder; an output there made from another file of the same name (a.avi after "
                             f"a.mp4) is refused, not replaced ({RUN_RECORD} there says what each was made from)")
    parser.add_argument("--output", choices=OUTPUT_MODES, default=None,
                        help="a network's image: its decoder's, the physics inversion, or auto (the pipeline's "
                             "default); `decoder` with the paper's released weights gives the image the authors' "
                             "code saves")
    parser.add_argument("--resume", action="store_true",
                        help="go on with a folder's run that was stopped: skip each image whose two outputs are in "
                             "--out already, written after it by that run; refused when the run that wrote them had "
                             "another input, other weights, --output, --working-size, --input-bits, --half, "
                             f"--radiance-floor or --max-detail-gain (--out/{RUN_RECORD} says what it had)")
    add_input_bits_option(parser)
    add_network_options(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    parser.set_defaults(func=run)


def output_names(paths: list[Path]) -> dict[Path, str]:
    """The name each input's outputs start with, one per input even where names differ only in case (a
    case-insensitive disk): its stem, or its stem and suffix where two inputs share a stem (frame.png and frame.jpg
    become frame_png and frame_jpg), and a number after a name already taken (frame.png and frame.PNG)."""
    stems = Counter(path.stem.lower() for path in paths)
    names: dict[Path, str] = {}
    taken: set[str] = set()
    for path in paths:
        base = path.stem if stems[path.stem.lower()] == 1 else f"{path.stem}_{path.suffix.lstrip('.').lower()}"
        name, number = base, 2
        while name.lower() in taken:
            name, number = f"{base}-{number}", number + 1
        taken.add(name.lower())
        names[path] = name
    return names


def _outputs(source: Path, paths: list[Path], out: Path, video: bool) -> dict[Path, list[Path]]:
    """Each input's two outputs in `out`: NAME_dehazed and NAME_depth (`output_names`), PNGs, or MP4s of a video."""
    names = {source: source.stem} if video else output_names(paths)
    suffix = ".mp4" if video else ".png"
    return {path: [out / f"{name}_{kind}{suffix}" for kind in KINDS] for path, name in names.items()}


def _any_outputs(paths: list[Path], out: Path) -> set[Path]:
    """The image outputs in `out` (resolved) that a run over any of `paths` may have written: each input's under its
    stem and under its stem and suffix (`output_names` gives one or the other as another input shares its stem or
    not), so that a folder dehazed into itself and then given a photo sharing a stem (frame.jpg beside frame.png)
    does not take the frame_dehazed.png written before it came for a photo."""
    names = {name for path in paths for name in (path.stem, f"{path.stem}_{path.suffix.lstrip('.').lower()}")}
    return {(out / f"{name}_{kind}.png").resolve() for name in names for kind in KINDS}


def _check_outputs(inputs: list[Path], outputs: list[Path]) -> None:
    """Refuse, before any work, outputs that would overwrite an input, that are folders, or whose names are too
    long for a file system (255 bytes)."""
    for path in outputs:
        if len(os.fsencode(path.name)) > NAME_MAX:
            raise ValueError(f"the output name {path.name[:40]}... is longer than a file name may be "
                             f"({NAME_MAX} bytes): rename the input")
        if path.is_dir():
            raise ValueError(f"an output, {path}, is a folder: move it or give another --out")
    overwritten = {path.resolve() for path in inputs if path.exists()} & {path.resolve() for path in outputs}
    if overwritten:
        raise ValueError(f"the outputs would overwrite the input {sorted(overwritten)[0]}: give another --out")


def _run_start(out: Path) -> int | None:
    """When the run that wrote the outputs in `out` began (ns): the time of its RUN_RECORD, written before its first
    output and kept by each --resume of it; None without a record."""
    try:
        return (out / RUN_RECORD).stat().st_mtime_ns
    except OSError:
        return None


def _read_record(out: Path) -> dict[str, Any] | None:
    """The run record in `out`; None where there is none, or none that reads as one (--resume refuses that:
    `check_resumable`)."""
    try:
        record = json.loads((out / RUN_RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _made_from(out: Path, record: dict[str, Any] | None, outputs: list[Path]) -> dict[Path, str | None]:
    """What each of `outputs` that is a file in `out` was made from, by the folder's run `record`: the file its
    MADE_FROM names, else, for an image's output written after the record (by a resume that added images, or by a
    run before records held MADE_FROM), the record's input (a folder's run: the folder); None where the record
    cannot tell (none: a folder written before records were, its outputs older than its record, or a video's that a
    run before records held MADE_FROM wrote after an image run's record: such a video run wrote none)."""
    made = record.get(MADE_FROM) if record else None
    made = made if isinstance(made, dict) else {}
    started = _run_start(out) if record else None
    sources: dict[Path, str | None] = {}
    for path in outputs:
        if not path.is_file():
            continue
        source = made.get(path.name)
        if source is None and started is not None and path.suffix == ".png" and path.stat().st_mtime_ns >= started:
            source = record.get("input")
        sources[path] = source if isinstance(source, str) else None
    return sources


def _same_source(recorded: str, path: Path) -> bool:
    """Whether an output made from `recorded` (a file, or the folder of a run whose record names no file) is made
    from `path` again: a command run again, or a folder's image named alone, replaces its own outputs. An image of
    a folder is that folder's whether it is a link or a file there (a folder of links into a data set's)."""
    resolved = _real_path(path)
    return recorded in (resolved, os.path.dirname(resolved), _real_path(path.parent))


def _real_path(path: Path) -> str:
    """The absolute path of the file at `path`, links followed (as far as they lead: a loop of links is an input
    that reads as one, named in the run's error or as skipped)."""
    return os.path.realpath(path)


def _check_replaced(out: Path, outputs: dict[Path, list[Path]]) -> None:
    """Refuse, before any work, to replace an output in `out` that its run record says was made from another file
    than this run makes it from: two inputs of one name (a.mp4 and a.avi, A/x.png and B/x.png) name their outputs
    alike, and the later run replaced the earlier one's without a word. An output no record tells the source of (a
    folder written before records were) is replaced, with a warning: most often it is the same command's again."""
    sources = {output: path for path, pair in outputs.items() for output in pair}
    made = _made_from(out, _read_record(out), list(sources))
    others = [output for output, source in made.items() if source and not _same_source(source, sources[output])]
    if others:
        more = f" (and {len(others) - 1} more)" if len(others) > 1 else ""
        raise ValueError(f"{others[0]}{more} is an output of {made[others[0]]} ({RUN_RECORD} there says so), which "
                         f"this run would replace with that of {_real_path(sources[others[0]])}: give another --out, "
                         "or remove it")
    unknown = sorted(output.name for output, source in made.items() if source is None)
    if unknown:
        LOG.warning("replacing %d outputs in %s (%s%s): no %s says which input wrote them (a folder written before "
                    "run records named them)", len(unknown), out, ", ".join(unknown[:4]),
                    " ..." if len(unknown) > 4 else "", out / RUN_RECORD)


def _with_made_from(record: dict[str, Any], out: Path, outputs: dict[Path, list[Path]]) -> dict[str, Any]:
    """`record` with MADE_FROM: what this run's `outputs` are made from, beside what the outputs of earlier runs
    that `out` still holds were made from (by the record there), so that the next run is refused those too."""
    listed = [path for path in out.iterdir() if path.name.endswith(OUTPUT_ENDINGS)] if out.is_dir() else []
    earlier = {path.name: source for path, source in _made_from(out, _read_record(out), listed).items() if source}
    made = {output.name: _real_path(path) for path, pair in outputs.items() for output in pair}
    return {**record, MADE_FROM: {**earlier, **made}}


def _done(path: Path, outputs: list[Path], since: int = 0) -> bool:
    """Whether an input's `outputs` are all files written after it was last changed and after `since`, when the run
    they continue began (a run stopped part way wrote them, not a run before it into the same folder)."""
    try:
        changed = max(path.stat().st_mtime_ns, since)
        return all(output.is_file() and output.stat().st_mtime_ns >= changed for output in outputs)
    except OSError:  # an input that does not read (a link that leads to no file): its reading says why
        return False


def _images(paths: list[Path], read: ImageReader, progress: bool) -> Iterator[tuple[Path, np.ndarray | ImageError]]:
    for path in tqdm(paths, desc="dehaze", unit="image", disable=not progress):
        try:
            yield path, read(path)
        except ImageError as exc:
            yield path, exc


def run_record(args: argparse.Namespace, weights: dict[str, Any] | None) -> dict[str, Any]:
    """What the run of `args` with the loaded `weights` (the pipeline's record; None for dcp) dehazes (`input`: the
    input's absolute path) and writes its images with (RUN_RECORD)."""
    physics = not _scattering_free(args.method, args.output)  # dcp's and a decoder's image depend on neither
    return {"method": args.method, "weights": weights, "output": args.output or "auto",
            "working_size": list(args.working_size) if args.working_size else None,
            "input_bits": args.input_bits, "half": bool(args.half),
            "radiance_floor": requested_radiance_floor(args) if physics else None,
            "max_detail_gain": requested_max_detail_gain(args) if physics else None,
            "input": str(Path(args.input).resolve())}


def _scattering_free(method: object, output: object) -> bool:
    """Whether a run of `method` and `output` writes an image made without a network's transmission: dcp's, or a
    decoder's."""
    return method == "dcp" or output == "decoder"


def _recorded_max_detail_gain(record: dict[str, Any]) -> float | None:
    """The detail gain of the run that wrote `record`: a record written before records held it comes from a run
    with the pipeline's default (MAX_DETAIL_GAIN), where its image is a network's physics inversion."""
    if "max_detail_gain" in record:
        return record["max_detail_gain"]
    return None if _scattering_free(record.get("method"), record.get("output")) else MAX_DETAIL_GAIN


def check_resumable(out: Path, record: dict[str, Any]) -> None:
    """ValueError, before any work, when the outputs in `out` were written by a run other than `record`'s (other
    weights, by their sha256, or another dcp/network method; another output mode, input bits, precision, radiance
    floor or detail gain; another input, whose frames a camera names as it names this one's): a resumed folder would
    hold images of two runs. A folder without a record (written before records were) is resumed with a warning, and
    one whose record does not name its input (written before records did) is taken for this input's."""
    path = out / RUN_RECORD
    try:
        previous = json.loads(path.read_text())
    except FileNotFoundError:
        LOG.warning("--resume: %s does not say which run wrote its outputs (no %s): they are kept whatever wrote "
                    "them", out, RUN_RECORD)
        return
    except (OSError, ValueError) as exc:
        raise ValueError(f"--resume: {path} does not read ({exc}); give another --out, or remove it to keep the "
                         "outputs whatever wrote them") from None
    if not isinstance(previous, dict):
        raise ValueError(f"--resume: {path} is not a run record; give another --out, or remove it")
    previous["max_detail_gain"] = _recorded_max_detail_gain(previous)
    differing = [key for key in COMPARED if previous.get(key) != record[key]]
    if _scattering_free(previous.get("method"), previous.get("output")) != \
            _scattering_free(record["method"], record["output"]):  # the method or output that differs says it all
        differing = [key for key in differing if key not in SCATTERING_SETTINGS]
    if _weights_of(previous) != _weights_of(record):
        differing.insert(0, "weights")
    if previous.get("input", record["input"]) != record["input"]:
        differing.insert(0, "input")
    if differing:
        raise ValueError(f"--resume goes on with the run that wrote {out}, but its {', '.join(differing)} "
                         f"{'differs' if len(differing) == 1 else 'differ'} "
                         f"(it ran {_described(previous)}; this is {_described(record)}): give the same, or "
                         "another --out")


def _weights_of(record: dict[str, Any]) -> object:
    """The weights of a run record: their sha256, or the method where it has none (dcp)."""
    weights = record.get("weights")
    return weights.get("sha256") if isinstance(weights, dict) else record.get("method")


def _described(record: dict[str, Any]) -> str:
    weights = record.get("weights")
    made = f" (weights {weights.get('path')}, sha256 {weights.get('sha256')})" if isinstance(weights, dict) else ""
    return (f"{record.get('input')} with {record.get('method')}{made}, "
            + ", ".join(f"{key} {record.get(key)}" for key in COMPARED))


def _run_images(source: Path, paths: list[Path], outputs: dict[Path, list[Path]], read: ImageReader, pipeline,
                out: Path, record: dict[str, Any] | None, progress: bool, done: int = 0) -> int:
    """Dehaze each image of `paths` (of `source`) into its two `outputs`, `record` written to `out`/RUN_RECORD
    before the first (None: a resumed run's record is there, and kept, as its time says when that run began); 1 when
    some were skipped (unreadable), ImageError when none could be read and a resumed run had not dehazed `done`
    images of `source` before (a `source` that is one image: why it could not). Ctrl-C, SIGTERM or an output that
    cannot be written (OSError naming it) says how far it got and how to go on (--resume)."""
    failures = 0
    written = 0
    try:
        for path, frame in _images(paths, read, progress):
            if isinstance(frame, ImageError):
                if path == source:  # the one image asked for: its reason is the error
                    raise frame
                LOG.error("skipped: %s", frame)
                failures += 1
                continue
            result = pipeline(frame)
            if written == 0 and record is not None:
                out.mkdir(parents=True, exist_ok=True)
                atomic_write_text(out / RUN_RECORD, json.dumps(record, indent=2) + "\n")
            write_image(outputs[path][0], result.image)
            write_image(outputs[path][1], colorize_depth(result.depth))
            written += 1
    except (KeyboardInterrupt, OSError):  # Ctrl-C, SIGTERM, or an output that could not be written (a full disk)
        LOG.warning("stopped after %d of the %d images to dehaze; the outputs written to %s are whole: the same "
                    "command with --resume dehazes the rest", written + failures, len(paths), out)
        raise
    LOG.info("wrote %d dehazed images to %s (%d skipped)", written, out, failures)
    if written + done == 0:
        raise ImageError(f"no image in {source} could be read")
    return 1 if failures else 0


def _run_video(source: Path, out: Path, pipeline, record: dict[str, Any], progress: bool) -> int:
    """Dehaze the frames of the video `source` into its two outputs in `out`, written whole at its end, `record`
    written to `out`/RUN_RECORD before they replace any earlier ones; 1 when its frames stop decoding early."""
    video = VideoFrames(source)
    frames = iter(video)
    first = next(frames, None)
    if first is None:
        raise ImageError(f"{source} holds no frames" if video.damaged_at is None
                         else f"the first frame of {source} does not decode (a damaged file): nothing to dehaze")
    fps = video.fps or 25.0
    size = (first.shape[1], first.shape[0])
    if size[0] % 2 or size[1] % 2:
        LOG.warning("%s is %dx%d: the MPEG-4 writer takes even sizes and its videos come out %dx%d; dehaze its "
                    "frames as images to keep every pixel", source.name, size[0], size[1], size[0] - size[0] % 2,
                    size[1] - size[1] % 2)
    fourcc = cv2.VideoWriter_fourcc(*"mp4v")
    total = video_frame_count(source) or None
    count = 0
    try:  # from the first output file made: a stop at any point of the writing says so
        with atomic_path(out / f"{source.stem}_dehazed.mp4") as dehazed_path, \
                atomic_path(out / f"{source.stem}_depth.mp4") as depth_path:
            dehazed_writer = cv2.VideoWriter(video_path(dehazed_path), fourcc, fps, size)
            depth_writer = cv2.VideoWriter(video_path(depth_path), fourcc, fps, size)
            try:
                if not (dehazed_writer.isOpened() and depth_writer.isOpened()):
                    raise ImageError(f"OpenCV cannot write a {size[0]}x{size[1]} MPEG-4 video of {source.name}'s "
                                     "frames; dehaze its frames as images instead")
                for frame in tqdm(_chain(first, frames), total=total, desc="dehaze", unit="frame",
                                  disable=not progress):
                    result = pipeline(frame)
                    dehazed_writer.write(result.image)
                    depth_writer.write(colorize_depth(result.depth))
                    count += 1
            finally:
                dehazed_writer.release()
                depth_writer.release()
            for path, target in ((dehazed_path, "dehazed"), (depth_path, "depth")):
                _check_video(path, count, out / f"{source.stem}_{target}.mp4")
            atomic_write_text(out / RUN_RECORD, json.dumps(record, indent=2) + "\n")  # before the outputs it names
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM
        LOG.warning("stopped after %d%s frames of %s: a video's outputs are written whole, at its end, so none is "
                    "kept; run the same command again to dehaze it", count, f" of {total}" if total else "",
                    source.name)
        raise
    if video.drift > 0.5 / fps:
        LOG.warning("%s has a variable frame rate: the dehazed videos show its frames at its mean rate, %.4g fps "
                    "(OpenCV's writer keeps no frame times), up to %.2f s earlier or later than it does",
                    source.name, fps, video.drift)
    LOG.info("wrote %d frames to %s", count, out)
    return 1 if video.damaged_at is not None else 0  # the frames after a damaged one are not dehazed (warned)


def _check_video(path: Path, frames: int, target: Path) -> None:
    """OpenCV's video writer reports no failed write (a full disk, a file size limit): the file it wrote must
    open and hold every frame before it replaces `target`."""
    written = video_frame_count(path)
    if written != frames:
        raise ImageError(f"writing {target} failed (a full disk or a file size limit?): the video holds "
                         f"{written} of {frames} frames; {target} was left as it was")


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def run(args: argparse.Namespace) -> int:
    source: Path = args.input
    if not source.exists():
        raise FileNotFoundError(missing(source, "input"))
    video = source.is_file() and source.suffix.lower() in VIDEO_SUFFIXES
    read = ImageReader(args.input_bits)
    for path in (source, args.out) if video else ():  # before any work: OpenCV crashes on a path it cannot take
        video_path(path)
    if video and args.input_bits != SAMPLE_BITS:
        raise ValueError("--input-bits is for 16-bit image files; a video's frames are read as 8-bit")
    paths = [] if video else list_images(source) if source.is_dir() else [source]
    listed = [p for p in source.iterdir() if not p.name.startswith(".")] if source.is_dir() else []
    videos = sorted(p.name for p in listed if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not video and not paths:
        named = sorted([p.name + "/" for p in listed if p.is_dir()] + videos)
        hint = f" (only the images directly in it are read; it holds {', '.join(named[:5])}" \
               f"{' ...' if len(named) > 5 else ''}: name one)" if named else ""
        raise ImageError(f"no images in {source}{hint}")
    if videos:
        LOG.warning("%s holds %d video(s) that a folder's run does not dehaze (%s%s): name each to dehaze it", source,
                    len(videos), ", ".join(videos[:5]), " ..." if len(videos) > 5 else "")
    check_writable_place(args.out, "--out", inside=True)
    if video and args.resume:
        raise ValueError("--resume is for a folder of images: a video's outputs are written whole, at its end")
    outputs = _outputs(source, paths, args.out, video)
    if source.is_dir() and (args.out / RUN_RECORD).is_file():  # --out is the input folder that a run filled
        built = _any_outputs(paths, args.out)
        paths = [path for path in paths if path.resolve() not in built]
        if len(paths) < len(outputs):
            LOG.info("%d images of %s are outputs of the run that wrote %s there: not inputs",
                     len(outputs) - len(paths), source, RUN_RECORD)
            outputs = _outputs(source, paths, args.out, video)
    _check_outputs(paths or [source], [output for pair in outputs.values() for output in pair])
    options = network_runtime(args, [args.method])
    if args.method == "dcp" and (given_network_options(args) or args.output is not None):
        raise ValueError("--working-size, --backend, --device, --half, --output, --radiance-floor and "
                         "--max-detail-gain choose how a network runs; dcp has none")
    if args.output is not None:
        options["output"] = args.output
    if args.working_size is not None:
        options["working_size"] = args.working_size
    checked = read_method(args.method) if args.resume else None  # the weights checked are the weights loaded
    expected = run_record(args, method_weights(args.method, read=checked)) if args.resume else None
    if expected is not None:  # before a runtime is built: an export, or on a GPU a TensorRT engine, takes minutes;
        check_resumable(args.out, expected)  # and before "all done": another run's outputs are not this one's
    started = _run_start(args.out) if args.resume else None
    todo = [path for path in paths if not (args.resume and _done(path, outputs[path], started or 0))]
    _check_replaced(args.out, outputs if video else {path: outputs[path] for path in todo})  # a resume: new images
    if len(todo) < len(paths):
        LOG.info("--resume: %d of %d images have their outputs in %s already", len(paths) - len(todo), len(paths),
                 args.out)
        if not todo:
            return 0
    pipeline = load_pipeline(args.method, read=checked, **options)
    record = run_record(args, pipeline.weights)
    if expected is not None and record != expected:  # an export loaded is not the one checked: replaced since
        check_resumable(args.out, record)
    written = None if started else _with_made_from(record, args.out, outputs)
    if video:  # --out is made by the first output written (atomic_path): an unreadable input leaves none
        return _run_video(source, args.out, pipeline, written, not args.no_progress)
    return _run_images(source, todo, outputs, read, pipeline, args.out, written, not args.no_progress,
                       len(paths) - len(todo))
