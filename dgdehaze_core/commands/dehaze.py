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
from dgdehaze_core.commands.dehaze_record import (KINDS, check_replaced, check_resumable, run_record, run_start,
                                                  with_made_from)
from dgdehaze_core.commands.network_options import add_network_options, given_network_options, network_runtime
from dgdehaze_core.inference.pipeline import OUTPUT_MODES, load_pipeline, method_weights, read_method
from dgdehaze_core.io.atomic_files import atomic_path, atomic_write_text, check_writable_place
from dgdehaze_core.io.file_paths import DEHAZE_RUN_RECORD, IMAGE_SUFFIXES, VIDEO_SUFFIXES, file_suffix, missing
from dgdehaze_core.io.folder_lock import folder_lock
from dgdehaze_core.io.images import SAMPLE_BITS, ImageError, ImageReader, list_images, write_image
from dgdehaze_core.io.videos import VideoFrames, video_frame_count, video_path
from dgdehaze_core.visualize import colorize_depth

LOG = logging.getLogger(__name__)

NAME_MAX = 255
"""The longest file name (bytes) of common file systems."""
FRAMES_AS_IMAGES = "dehaze its frames as images to keep every pixel (ffmpeg -i VIDEO FOLDER/%06d.png)"
"""How to dehaze a video whose size the MPEG-4 writer does not take."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dehaze", help="dehaze an image, a folder or a video",
                                   description="Write NAME_dehazed.png and NAME_depth.png for each input image "
                                               "(or NAME_dehazed.mp4 and NAME_depth.mp4 for a video). A photo is "
                                               "dehazed upright, turned by its EXIF orientation as viewers show "
                                               "it, and its outputs are written so; a video's frames alike, by its "
                                               "rotation metadata (a phone's). The outputs are 8-bit colour "
                                               "images whatever the input's depth (the depth a colour map of the "
                                               "relative depth), and a video's are without its sound.")
    parser.add_argument("input", type=path_argument,
                        help=f"image file, folder of images, or video file ({', '.join(VIDEO_SUFFIXES)})")
    parser.add_argument("--method", default="lite", help="dcp, lite (its shipped weights) or a weights path "
                                                         "(default: lite, the node's default model)")
    parser.add_argument("--out", type=path_argument, required=True,
                        help="output folder; an output there made from another file of the same name (a.avi after "
                             f"a.mp4) is refused, not replaced ({DEHAZE_RUN_RECORD} there says what each was made "
                             "from)")
    parser.add_argument("--output", choices=OUTPUT_MODES, default=None,
                        help="a network's image: its decoder's, the physics inversion, or auto (the pipeline's "
                             "default); `decoder` with the paper's released weights gives the image the authors' "
                             "code saves")
    parser.add_argument("--resume", action="store_true",
                        help="go on with a folder's run that was stopped: skip each image whose two outputs are in "
                             "--out already, written after it by that run; refused when the run that wrote them had "
                             "another input, other weights, --output, --working-size, --input-bits, --half, "
                             f"--radiance-floor or --max-detail-gain (--out/{DEHAZE_RUN_RECORD} says what it had)")
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


def _run_images(source: Path, paths: list[Path], outputs: dict[Path, list[Path]], read: ImageReader, pipeline,
                out: Path, record: dict[str, Any] | None, progress: bool, done: int = 0) -> int:
    """Dehaze each image of `paths` (of `source`) into its two `outputs`, `record` written to `out`/DEHAZE_RUN_RECORD
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
                atomic_write_text(out / DEHAZE_RUN_RECORD, json.dumps(record, indent=2) + "\n")
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


def _open_video(source: Path) -> tuple[VideoFrames, Iterator[np.ndarray], np.ndarray]:
    """The frames of the video `source`, its first read: ImageError, before a runtime is built (an export or a
    TensorRT engine takes minutes), for a file that does not open or whose first frame does not decode."""
    video = VideoFrames(source, mean_rate=True)  # the rate its outputs are written at
    frames = iter(video)
    first = next(frames, None)
    if first is None:
        raise ImageError(f"{source} holds no frames" if video.damaged_at is None
                         else f"the first frame of {source} does not decode (a damaged file): nothing to dehaze")
    width, height = first.shape[1], first.shape[0]
    if min(width, height) < 2:
        raise ImageError(f"{source.name} is {width}x{height}: the MPEG-4 videos written take 2 pixels or more each "
                         f"way; {FRAMES_AS_IMAGES}")
    if width % 2 or height % 2:
        LOG.warning("%s is %dx%d: the MPEG-4 writer takes even sizes and its videos come out %dx%d, its last %s left "
                    "out; %s", source.name, width, height, width - width % 2, height - height % 2,
                    " and ".join(side for side, odd in (("column", width % 2), ("row", height % 2)) if odd),
                    FRAMES_AS_IMAGES)
    return video, frames, first


def _run_video(source: Path, opened: tuple[VideoFrames, Iterator[np.ndarray], np.ndarray], out: Path, pipeline,
               record: dict[str, Any], progress: bool) -> int:
    """Dehaze the frames of the video `source` (`_open_video`) into its two outputs in `out`, written whole at its
    end, `record` written to `out`/DEHAZE_RUN_RECORD before they replace any earlier ones; 1 when its frames stop
    decoding early (a damaged frame, or a file cut short)."""
    video, frames, first = opened
    fps = video.fps or 25.0
    size = (first.shape[1], first.shape[0])
    fourcc = cv2.VideoWriter_fourcc(*"mp4v")
    total = video_frame_count(source) or None
    count = 0
    try:  # a stop at any point of the writing says so
        with atomic_path(out / f"{source.stem}_dehazed.mp4") as dehazed_path, \
                atomic_path(out / f"{source.stem}_depth.mp4") as depth_path:
            dehazed_writer = cv2.VideoWriter(video_path(dehazed_path), fourcc, fps, size)
            depth_writer = cv2.VideoWriter(video_path(depth_path), fourcc, fps, size)
            try:
                if not (dehazed_writer.isOpened() and depth_writer.isOpened()):
                    raise ImageError(f"OpenCV cannot write a {size[0]}x{size[1]} MPEG-4 video of {source.name}'s "
                                     f"frames; {FRAMES_AS_IMAGES}")
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
            # before the outputs it names
            atomic_write_text(out / DEHAZE_RUN_RECORD, json.dumps(record, indent=2) + "\n")
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM
        LOG.warning("stopped after %d%s frames of %s: a video's outputs are written whole, at its end, so none "
                    "is kept; run the same command again to dehaze it", count, f" of {total}" if total else "",
                    source.name)
        raise
    if video.drift > 0.5 / fps:
        LOG.warning("%s has a variable frame rate: the dehazed videos show its frames at its mean rate, %.4g fps "
                    "(OpenCV's writer keeps no frame times), up to %.2f s earlier or later than it does",
                    source.name, fps, video.drift)
    if video.reported:
        LOG.warning("%s ends after %d of the %d frames its container reports (a file cut short, its copy or "
                    "recording stopped part way): the dehazed videos hold those %d", source.name, count,
                    video.reported, count)
    LOG.info("wrote %d frames to %s", count, out)
    return 1 if video.damaged_at is not None or video.reported else 0  # frames not dehazed (warned)


def _check_video(path: Path, frames: int, target: Path) -> None:
    """OpenCV's video writer reports no failed write (a full disk, a file size limit): the file it wrote must
    open and hold every frame before it replaces `target`."""
    written = video_frame_count(path)
    if written != frames:
        kept = f"{target} was left as it was" if target.exists() else "nothing was written"
        raise ImageError(f"writing {target} failed (a full disk or a file size limit?): the video holds "
                         f"{written} of {frames} frames; {kept}")


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
    if not args.out.exists() and file_suffix(args.out) in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
        raise ValueError(f"--out {args.out} is named as a file, but it is the folder the outputs are written into "
                         f"({'NAME_dehazed.mp4 and NAME_depth.mp4' if video else 'NAME_dehazed.png and NAME_depth.png'}"
                         "): give a folder")
    if video and args.resume:
        raise ValueError("--resume is for a folder of images: a video's outputs are written whole, at its end")
    with folder_lock(args.out, "--out", "dehaze run"):  # a second run into --out would mix its outputs and record
        return _dehaze_into(args, paths, read, video)


def _dehaze_into(args: argparse.Namespace, paths: list[Path], read: ImageReader, video: bool) -> int:
    """`run`'s work once its input is checked and --out locked: dehaze the images `paths` of args.input (none:
    args.input is a `video`) into args.out, or resume that."""
    source: Path = args.input
    outputs = _outputs(source, paths, args.out, video)
    if source.is_dir() and (args.out / DEHAZE_RUN_RECORD).is_file():  # --out is the input folder that a run filled
        built = _any_outputs(paths, args.out)
        paths = [path for path in paths if path.resolve() not in built]
        if len(paths) < len(outputs):
            LOG.info("%d images of %s are outputs of the run that wrote %s there: not inputs",
                     len(outputs) - len(paths), source, DEHAZE_RUN_RECORD)
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
    started = run_start(args.out) if args.resume else None
    todo = [path for path in paths if not (args.resume and _done(path, outputs[path], started or 0))]
    check_replaced(args.out, outputs if video else {path: outputs[path] for path in todo})  # a resume: new images
    if len(todo) < len(paths):
        LOG.info("--resume: %d of %d images have their outputs in %s already", len(paths) - len(todo), len(paths),
                 args.out)
        if not todo:
            return 0
    opened = _open_video(source) if video else None
    pipeline = load_pipeline(args.method, read=checked, **options)
    if getattr(pipeline, "scattering", True) is False and (args.radiance_floor is not None
                                                           or args.max_detail_gain is not None):
        raise ValueError(f"{args.method} gives no transmission (its image is its decoder's, as the paper's released "
                         "network's): --radiance-floor and --max-detail-gain set how the physics image is made, and "
                         "would change nothing")
    record = run_record(args, pipeline.weights)
    if expected is not None and record != expected:  # an export loaded is not the one checked: replaced since
        check_resumable(args.out, record)
    written = None if started else with_made_from(record, args.out, outputs)
    if opened:
        return _run_video(source, opened, args.out, pipeline, written, not args.no_progress)
    return _run_images(source, todo, outputs, read, pipeline, args.out, written, not args.no_progress,
                       len(paths) - len(todo))
