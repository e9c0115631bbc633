"""`dgdehaze eval`: quality, detection recovery, depth accuracy and haze density of dehazing methods on real data,
and what they do to frames without fog.

Measures (`--measure`, comma-separated or `all`) and the sets each applies to:
- quality: paired sets (hazy/ or haze/ + clear/ or GT/, as RESIDE, O-HAZE, I-HAZE and Dense-HAZE are published,
  synthetic/ + original/ as RESIDE's HSTS/synthetic/,
  leftImg8bit_foggy/ + leftImg8bit/ as Foggy Cityscapes beside Cityscapes, or one folder of NAME_hazy.* beside
  NAME_GT.*, as NH-HAZE): PSNR, SSIM, CIEDE2000 against the ground truth;
- scattering: paired sets: each method's airlight and transmission against the scattering model fitted to the
  pair (airlight error, t mean absolute error, t bias: positive = haze underestimated; fit_rmse: the fit's residual);
- detection: paired sets (reference: the detector on the clear image) and folders of real hazy photos with
  human boxes (reference: those boxes, e.g. detection/dawn-fog) in Pascal VOC XML (labels-voc/ beside the
  photos, Pascal VOC's JPEGImages/ + Annotations/ as RTTS and CVAT, images/ + Annotations/ as Label Studio,
  DAWN's Fog_PASCAL_VOC/, or each file beside its photo as LabelImg and Roboflow), in COCO JSON (one file
  beside the photos as Roboflow's _annotations.coco.json, or in annotations/ beside images/ as CVAT's) or in YOLO
  files (images/ + labels/ and the class names of a data.yaml: give the folder holding both, or Ultralytics'
  images/SPLIT; or each beside its photo, with LabelImg's classes.txt or CVAT's obj.names): precision, recall,
  F1 at IoU 0.5 and confidence 0.25, mAP50, over all classes and, against human boxes, per class (rows
  METHOD[CLASS]);
- depth: KITTI raw (proj_depth LiDAR), KITTI depth's selection (val_selection_cropped: image/ +
  groundtruth_depth/) and Middlebury 2003 sets: AbsRel, RMSE(log), delta<1.25 after median scaling, on the clear
  image and on haze synthesized from the true depth at three densities;
- haze: folders of real hazy photos (and the hazy images of a paired set when named with --dataset): FADE,
  dark-channel density and noise (and its ratio to the input's) of the input and of each output;
- visibility: KITTI raw and depth-selection sets (a road and a known camera mounting; the selection's
  intrinsics/ give each cropped frame's camera): fog synthesized from the true depth at visibilities of 50, 150
  and 400 m, the visibility estimated on the road (relative error), and the metric depth from the transmission,
  unscaled (AbsRel over the pixels called valid, coverage of the points nearer than the visibility), the fog
  measured as the node measures it: on the dark undersides of the road users the detector finds on the method's
  output (physics/dark_objects.py), else on the road; rows METHOD+road on the road alone; Middlebury sets are
  refused: no road.
- clear: the depth sets' frames (every one taken in clear weather): what each method does to a frame without fog,
  against the frame itself: PSNR, SSIM, the mean brightness change in 8-bit levels (signed), the share of pixels
  with a channel newly at 0 (crushed) or 255 (blown), and the detector's boxes on the output against its boxes on
  the frame (precision, recall, F1 at IoU 0.5 and confidence 0.25; the +hazy and +clahe methods get these alone).
`all` runs every measure on the sets it applies to; one that applies to none of them, or refuses them all, is
left out with a warning (a measure named on its own fails the run when it refuses a --dataset).
Without --dataset every applicable set under ../shared/data (or $DGDEHAZE_DATA) is evaluated: a set that a measure
refuses for what it is (Middlebury has no road for visibility, no image matches --include) is left out with a
warning, while broken data (an unreadable or unpaired image) fails the run, as it does with --dataset.
--include keeps only the images whose file name matches one of its globs (a pair by its hazy image, a depth sample
by its name DRIVE/CAMERA/FRAME or SCENE/imK), e.g. the scenes a model never saw in training:
  dgdehaze eval --dataset ../shared/data/paired/sots-indoor --include '143?_*' --include '144?_*'
--include, --subset and --limit select a depth set's frames, a paired set's hazy images, or a folder's labelled
photos, before any is read or paired: an unreadable image, depth or label file (or a COCO annotation), or a hazy
image without its clear image, outside the selection does not fail the run (a depth or label file without its
image still does).
--subset NAME=GLOB[,GLOB...] reports such a selection beside the whole set, as set `DATASET:NAME`, from the same
run (an image is dehazed once while a method's last 256 MB of results hold it; a set with no matching image
gets no subset rows, with a warning):
  dgdehaze eval --dataset ../shared/data/paired/sots-indoor --subset held-out='143?_*,144?_*'
A glob `@FILE:PART` stands for the file names of one part of a split file (data/splits/), e.g. the DAWN fog photos
that only judge:
  dgdehaze eval --dataset ../shared/data/detection/dawn-fog --measure detection \\
      --include @data/splits/dawn-fog.yaml:judge
and `@LIST.txt` for the images a Pascal VOC image set lists (an image id a line), e.g. RTTS's test photos:
  dgdehaze eval --dataset RTTS --measure detection --include @RTTS/ImageSets/Main/test.txt

--bootstrap N compares detection figures with a paired bootstrap over the images (N redraws): each method, or each
--group (the mean of several methods, such as one recipe's seeds), minus each --baseline (the first method unless
named; repeatable), with a 95 % interval and the share of redraws in which it is better, in rows
`GROUP vs BASELINE`:
  dgdehaze eval --dataset ../shared/data/detection/dawn-fog --measure detection \\
      --include @data/splits/dawn-fog.yaml:validation --method V0=a.pt,V1=b.pt,D0=c.pt,D1=d.pt,hazy \\
      --bootstrap 2000 --baseline V=V0,V1 --baseline hazy --group D=D0,D1

Rows are `METHOD` (`METHOD@CONDITION` for depth), prefixed by `DATASET/` when a measure covers several sets (by
the folder's name, with as many parent folders as tell two sets apart) and by `MEASURE/` when several measures run;
--json writes the same rows with the same column names (a figure that could not be computed as null, an infinite
one as the string "inf", as the table prints it).
"""
from __future__ import annotations

import argparse
import fnmatch
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from dgdehaze_core.commands.argument_types import path_argument, with_reason
from dgdehaze_core.commands.detector_options import add_detector_options, detector_settings
from dgdehaze_core.commands.input_bits_option import IMAGE_FILES, add_input_bits_option
from dgdehaze_core.commands.network_options import add_network_options, given_network_options, network_runtime
from dgdehaze_core.datasets.paired_sets import (Pair, find_pairs, hazy_images, is_paired_set, one_side_only,
                                                untagged_ground_truth)
from dgdehaze_core.datasets.paths import shared_data_dir
from dgdehaze_core.datasets.splits import expand_patterns, warn_absent_split_names
from dgdehaze_core.evaluation import NotApplicable
from dgdehaze_core.evaluation.clear_eval import evaluate_clear
from dgdehaze_core.evaluation.depth_datasets import (DepthSet, is_kitti_selection_set, is_kitti_set,
                                                     is_middlebury_set, load_depth_set)
from dgdehaze_core.evaluation.depth_eval import evaluate_depth
from dgdehaze_core.evaluation.detection_eval import (AP_SCORE_FLOOR, CONFIDENCE, labelled_rows, match_labelled,
                                                     match_recovery, recovery_rows)
from dgdehaze_core.evaluation.methods import Method, MethodSpec, default_method_specs, load_methods, parse_methods
from dgdehaze_core.evaluation.no_reference_eval import evaluate_haze, haze_methods
from dgdehaze_core.evaluation.paired_bootstrap import Group, paired_bootstrap
from dgdehaze_core.evaluation.quality_eval import evaluate_quality, quality_methods
from dgdehaze_core.evaluation.scattering_eval import evaluate_scattering, scattering_methods
from dgdehaze_core.evaluation.visibility_eval import evaluate_visibility
from dgdehaze_core.evaluation.labelled_sets import labelled_images, labelled_layout
from dgdehaze_core.evaluation.yolo_boxes import IMAGES as YOLO_IMAGES
from dgdehaze_core.inference.pipeline import OUTPUT_MODES
from dgdehaze_core.io.file_paths import missing
from dgdehaze_core.io.images import ImageReader, ReadImage, list_images
from dgdehaze_core.io.tables import emit, write_json

LOG = logging.getLogger(__name__)
T = TypeVar("T")

MEASURES = ("quality", "scattering", "detection", "depth", "haze", "visibility", "clear")
DETECTING = ("detection", "visibility", "clear")
"""The measures that run the detector."""
MIN_BOOTSTRAP = 100
"""The fewest --bootstrap redraws: a 95 % interval's 2.5 and 97.5 percentiles need some redraws beyond them."""
TITLES = {
    "quality": "Quality against ground truth (PSNR dB, SSIM: higher is better; CIEDE2000: lower is better)",
    "scattering": "Airlight and transmission against the pair's fitted scattering model (errors: lower is "
                  "better; t_bias > 0: haze underestimated)",
    "detection": "Detection recovery (P/R/F1 at IoU 0.5, conf 0.25; mAP50; reference = clear-image detections "
                 "or human boxes)",
    "depth": "Depth accuracy after median scaling (AbsRel, RMSE(log): lower is better; delta1 = delta<1.25: "
             "higher is better)",
    "haze": "No-reference haze density (FADE, dark channel: lower is clearer)",
    "visibility": "Visibility and metric depth in synthesized fog, unscaled (visibility error, AbsRel: lower is "
                  "better; coverage of the points nearer than the visibility: higher is better)",
    "clear": "Clear frames: each output against the frame itself (PSNR dB, SSIM, F1: higher is better; brightness "
             "change in 8-bit levels, < 0 darker; crushed/blown: share of pixels with a channel newly at 0/255; "
             "P/R/F1 at IoU 0.5, conf 0.25, reference = the frame's own detections)",
}

BOOTSTRAP_TITLE = ("Paired bootstrap over the images ({samples} redraws): GROUP minus BASELINE (diff), its 95 % "
                   "interval (lo, hi) and the share of redraws where GROUP is better (p_better)")
Rows = dict[str, dict[str, object]]


@dataclass(frozen=True)
class EvalSet:
    """A dataset folder and the name its rows carry."""

    name: str
    path: Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate dehazing methods on real data",
                                   description=__doc__.split("\n\n", 1)[1],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure", default="quality",
                        help=f"comma-separated of {', '.join(MEASURES)}, or all (default: quality)")
    parser.add_argument("--dataset", action="append", type=path_argument, metavar="DIR",
                        help="a set to evaluate (repeatable; default: every applicable set in ../shared/data)")
    parser.add_argument("--method", action="append", default=None,
                        help="comma-separated SOURCE or NAME=SOURCE (repeatable): hazy (the input), clear and "
                             "clear-jpeg90 (the clear image and its JPEG copy; detection and clear only), dcp, lite, "
                             "base or a weights file; SOURCE+hazy (detection, and clear's detection figures): detect "
                             "on the input and on SOURCE's output and fuse the boxes; METHOD+clahe (as +hazy): the "
                             "detector reads METHOD's frames with their local contrast equalised (default: hazy, dcp, "
                             "every shipped model and, for detection and clear, hazy+clahe)")
    parser.add_argument("--output", choices=OUTPUT_MODES, default="auto",
                        help="network image output: decoder, physics inversion, or auto as the node (default)")
    add_input_bits_option(parser, f"{IMAGE_FILES} in paired, labelled and hazy-photo sets (a depth set's are "
                                  "8-bit)")
    add_network_options(parser)
    parser.add_argument("--json", type=path_argument, default=None, metavar="FILE",
                        help="also write the rows as JSON (-: to stdout, the tables going to stderr)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    add_detector_options(parser)
    parser.add_argument("--conf", type=float, default=CONFIDENCE,
                        help="confidence for reference detections and for P/R/F1 (default 0.25)")
    parser.add_argument("--include", action="append", default=None, metavar="GLOB",
                        help="keep only images whose file name matches GLOB (repeatable; see above)")
    parser.add_argument("--subset", action="append", default=None, metavar="NAME=GLOB[,GLOB]",
                        help="also report the images matching these globs as set DATASET:NAME (repeatable)")
    parser.add_argument("--limit", type=int, default=0,
                        help="use only the first N images of each set, after --include (0: all)")
    parser.add_argument("--bootstrap", type=int, default=0, metavar="N",
                        help=f"detection: compare methods by a paired bootstrap over the images, N redraws (0: off; "
                             f"at least {MIN_BOOTSTRAP})")
    parser.add_argument("--baseline", type=with_reason(Group.parse), action="append", default=None,
                        metavar="[NAME=]METHOD[,METHOD]",
                        help="what --bootstrap compares against: a method, or NAME=M1,M2 for their mean "
                             "(repeatable: each group against each baseline; default: the first method)")
    parser.add_argument("--group", type=with_reason(Group.parse), action="append", default=None,
                        metavar="NAME=METHOD[,METHOD]",
                        help="a side that --bootstrap compares with the baseline: the mean of these methods "
                             "(repeatable; default: every other method alone)")
    parser.set_defaults(func=run)


def asks_all(text: str) -> bool:
    """Whether --measure names `all`: every measure that applies, the others left out with a warning."""
    return "all" in {item.strip() for item in text.split(",")}


def parse_measures(text: str) -> list[str]:
    """'quality,depth' or 'all' -> measures in canonical order; ValueError names unknown ones."""
    items = {item.strip() for item in text.split(",") if item.strip()}
    unknown = sorted(items - set(MEASURES) - {"all"})
    if unknown or not items:
        raise ValueError(f"unknown measure(s) {unknown or text!r}; known: {', '.join(MEASURES)}, all")
    if asks_all(text):
        return list(MEASURES)
    return [measure for measure in MEASURES if measure in items]


def _photos(folder: Path) -> list[Path]:
    """A set's photos, sorted by name: a paired set's hazy images (`hazy_images`), a labelled set's (those in
    JPEGImages/ in Pascal VOC's layout, images/ in YOLO's), else the images in the folder itself."""
    if is_paired_set(folder):
        return hazy_images(folder)
    layout = labelled_layout(folder)
    return list_images(folder if layout is None else layout.photos)


def applies(measure: str, folder: Path, explicit: bool) -> bool:
    """Whether `measure` can run on `folder` (a paired set's hazy images count for haze only when named)."""
    if measure in ("quality", "scattering"):
        return is_paired_set(folder)
    if measure == "detection":
        return is_paired_set(folder) or labelled_layout(folder) is not None
    if measure in ("depth", "visibility", "clear"):
        return _is_depth_set(folder)
    if is_paired_set(folder):
        return explicit
    return not _is_depth_set(folder) and bool(_photos(folder))


def _is_depth_set(folder: Path) -> bool:
    return is_kitti_set(folder) or is_kitti_selection_set(folder) or is_middlebury_set(folder)


def _named(folders: list[Path]) -> list[EvalSet]:
    """Sets named by folder, or by the folder and as many of its parents as tell it from every other folder
    (PARENT/FOLDER, GRANDPARENT/PARENT/FOLDER, ...; the whole path where nothing shorter does); ValueError for a
    folder given twice (also through a link)."""
    paths = [Path(os.path.abspath(folder)) for folder in folders]
    resolved = [Path(folder).resolve() for folder in folders]
    for index, path in enumerate(resolved):
        if path in resolved[:index]:
            raise ValueError(f"--dataset {folders[index]} is given twice")

    def name(path: Path) -> str:
        parts = path.relative_to(path.anchor).parts
        for depth in range(1, len(parts) + 1):
            if all(other.parts[-depth:] != parts[-depth:] for other in paths if other != path):
                return "/".join(parts[-depth:])
        return str(path)

    return [EvalSet(name(path), folder) for path, folder in zip(paths, folders)]


def _fitting_near(folder: Path, measures: list[str]) -> str:
    """For a folder that fits none of `measures`, the folder above it where that one does (a set's part given for the
    set: RTTS/JPEGImages/ for RTTS/, SOTS/indoor/hazy/ for SOTS/indoor/), else its subfolders that do (a data set's
    root given for the set in it: DAWN/ for DAWN/Fog/; an Ultralytics YOLO set's root, with its data.yaml, for its
    images/val/), as words for the error; "" when none does."""
    def fits(sub: Path) -> bool:
        try:
            return any(applies(measure, sub, True) for measure in measures)
        except (ValueError, OSError):  # a folder that is itself broken (boxes in two places) or unreadable is no hint
            return False

    parent = Path(os.path.abspath(folder)).parent
    if parent != parent.parent and fits(parent):
        return f" (the folder above it, {parent}/, does: give that as --dataset)"
    below = [folder, folder / YOLO_IMAGES] if (folder / YOLO_IMAGES).is_dir() else [folder]
    fitting = [f"{os.path.relpath(sub, folder)}/" for place in below for sub in sorted(place.iterdir())
               if sub.is_dir() and not sub.name.startswith(".") and fits(sub)]
    if not fitting:
        return ""
    listed = ", ".join(fitting[:5]) + (" ..." if len(fitting) > 5 else "")
    return f" (its subfolder {listed} does: give it as --dataset)" if len(fitting) == 1 else \
        f" (its subfolders {listed} do: give one as --dataset)"


def datasets_for(measures: list[str], given: list[Path] | None, everything: bool = False) -> dict[str, list[EvalSet]]:
    """The sets of each measure: the given folders where they apply, else every applicable shared set. ValueError
    for a measure that applies to none of them, unless `everything` (--measure all) leaves it out (a warning)."""
    if given:
        for folder in given:
            if folder.exists() and not folder.is_dir():
                raise NotADirectoryError(f"--dataset {folder} is a file, not a data set's folder: give the folder")
            if not folder.is_dir():
                raise FileNotFoundError(missing(folder, "dataset folder"))
            if not any(applies(m, folder, True) for m in measures):
                half = one_side_only(folder) or untagged_ground_truth(folder)
                if half is not None:
                    raise ValueError(half)
                near = _fitting_near(folder, measures)
                others = [] if near else [m for m in MEASURES if m not in measures and applies(m, folder, True)]
                if others:
                    raise ValueError(f"{folder} fits none of the measures {', '.join(measures)}; it fits "
                                     f"{', '.join(others)}: give --measure {','.join(others)}")
                raise ValueError(f"{folder} fits none of the measures {', '.join(measures)}{near}: expected a paired "
                                 "set (hazy/ or haze/ + clear/ or GT/, HSTS's synthetic/ + original/, "
                                 "leftImg8bit_foggy/ + leftImg8bit/, or NAME_hazy.* beside NAME_GT.*), a folder of "
                                 "hazy images (with VOC, COCO JSON or YOLO boxes for detection), or a depth set (KITTI "
                                 "raw proj_depth/, KITTI depth's selection image/ + groundtruth_depth/ + intrinsics/, "
                                 "or Middlebury dispK.pgm)")
        candidates, explicit = list(given), True
    else:
        data = shared_data_dir()
        if data is None:
            raise FileNotFoundError("no --dataset given and ../shared/data is absent (or set DGDEHAZE_DATA)")
        candidates = [p for group in ("paired", "hazy-real", "detection", "depth") if (data / group).is_dir()
                      for p in sorted((data / group).iterdir()) if p.is_dir()]
        explicit = False
    chosen: dict[str, list[EvalSet]] = {}
    for measure in measures:
        folders = [folder for folder in candidates if applies(measure, folder, explicit)]
        if not folders and everything:
            LOG.warning("the %s measure applies to none of the sets: left out", measure)
            continue
        if not folders:
            raise ValueError(f"no dataset for the {measure} measure among {', '.join(map(str, candidates))}")
        chosen[measure] = _named(folders)
    return chosen


def _method_specs(given: list[str] | None) -> list[MethodSpec]:
    """The methods of every --method (each a comma-separated list), or the default set without one."""
    if given is not None:
        if not any(item.strip(", ") for item in given):
            raise ValueError("--method is empty: name the methods, or leave --method out for the default set")
        return parse_methods(",".join(item for item in given if item.strip(", ")))
    specs = default_method_specs()
    LOG.info("methods: %s", ", ".join(spec.name for spec in specs))
    return specs


def _detector(args: argparse.Namespace) -> Callable:
    """The detector as `args` set it, keeping every box down to `AP_SCORE_FLOOR` or --conf where that is lower
    (P/R/F1 and the clear image's reference boxes count every box >= --conf)."""
    from dgdehaze_core.detection.detector import Detector

    return Detector(**detector_settings(args), conf=min(AP_SCORE_FLOOR, args.conf), max_det=300)


def parse_subsets(items: list[str] | None) -> dict[str, list[str]]:
    """['held-out=143?_*,144?_*'] -> {'held-out': ['143?_*', '144?_*']}; ValueError for malformed ones (and for an
    `@FILE:PART` that names no split part)."""
    subsets: dict[str, list[str]] = {}
    for item in items or []:
        name, _, text = (part.strip() for part in item.partition("="))
        globs = [glob.strip() for glob in text.split(",") if glob.strip()]
        if not name or not globs or any(c in name for c in "/:"):
            raise ValueError(f"--subset {item!r}: write NAME=GLOB[,GLOB...] with a NAME free of '/' and ':'")
        if name in subsets:
            raise ValueError(f"--subset {name!r} is given twice")
        expand_patterns(globs)
        subsets[name] = globs
    return subsets


def _matching(items: list[T], name: Callable[[T], str], globs: list[str], option: str, where: Path) -> list[T]:
    patterns = expand_patterns(globs)
    kept = [item for item in items if any(fnmatch.fnmatch(name(item), glob) for glob in patterns)]
    if not kept:
        raise NotApplicable(f"no image in {where} matches {option} {' '.join(globs)}")
    warn_absent_split_names(globs, where, option)
    return kept


def select(items: list[T], name: Callable[[T], str], where: Path, args: argparse.Namespace,
           subset: list[str] | None) -> list[T]:
    """`items` whose name matches one of --include (all without it) and of `subset`, the first --limit of them."""
    if args.include:
        items = _matching(items, name, args.include, "--include", where)
    if subset:
        items = _matching(items, name, subset, "--subset", where)
    return items[:args.limit or None]


def comparisons(args: argparse.Namespace, methods: list[str]) -> list[tuple[Group, list[Group]]]:
    """--bootstrap's baselines, each with the groups compared with it, among the evaluated `methods`: each
    --baseline or the first method; the --group sides, or every method outside that baseline alone, less any
    group that is that baseline (the same name or methods)."""
    baselines = args.baseline or [Group(methods[0], (methods[0],))]
    for option, given in (("--baseline", args.baseline or []), ("--group", args.group or [])):
        names = [group.name for group in given]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"{option} names must be distinct: {', '.join(twice)} is given twice")
    shared = sorted({g.name for g in args.group or []} & {b.name for b in baselines}
                    - {g.name for g in args.group or [] for b in baselines if g == b})
    if shared:
        raise ValueError(f"--group {shared[0]} has the name of a --baseline but other methods: name it apart")
    pairs = []
    for baseline in baselines:
        groups = [group for group in args.group or [Group(m, (m,)) for m in methods if m not in baseline.methods]
                  if group.name != baseline.name and set(group.methods) != set(baseline.methods)]
        pairs.append((baseline, groups))
    unknown = sorted({m for baseline, groups in pairs for group in (baseline, *groups) for m in group.methods}
                     - set(methods))
    if unknown:
        raise ValueError(f"--baseline/--group name methods not in --method: {', '.join(unknown)}")
    if not any(groups for _, groups in pairs):
        raise ValueError("--bootstrap has nothing to compare: give a second method or a --group")
    return pairs


def _refuse_clear_comparisons(args: argparse.Namespace, methods: list[Method], set_name: str) -> None:
    """ValueError, before any photo runs, when --baseline/--group name a clear reference on a set of photos with
    human boxes (it has no clear image, so those methods get no rows there)."""
    clear = {method.name for method in methods if method.spec.reads_clear}
    named = sorted({name for group in [*(args.baseline or []), *(args.group or [])] for name in group.methods}
                   & clear)
    if named:
        raise ValueError(f"--baseline/--group name {', '.join(named)}: {set_name} is a set of photos with human "
                         "boxes and no clear image, so the clear references have no rows to compare there")


def _measure_one(measure: str, dataset: EvalSet, methods: list[Method], args: argparse.Namespace,
                 detector: Callable | None, read: ReadImage, subset: list[str] | None = None) -> tuple[Rows, Rows]:
    """(the measure's rows on one set, its photos read with `read`; the --bootstrap comparisons of its detection
    figures or {})."""
    label = f"{measure} {dataset.name}" + (f" {','.join(subset)}" if subset else "")
    progress = not args.no_progress
    where = dataset.path
    given = methods
    if measure not in ("detection", "clear"):  # clear: the +hazy and +clahe methods get its detection figures
        methods = [method for method in methods if not method.spec.detection_only]
    if measure != "depth":  # a depth network's image is its input, its t = 1: rows equal to hazy's
        methods = [method for method in methods if method.scattering]

    def some(scored: list[Method], needs: str = "") -> list[Method]:
        if not scored:
            raise NotApplicable(f"none of the methods {', '.join(m.name for m in given)} applies ({needs}"
                                "clear and clear-jpeg90 are for detection on paired sets and for clear, the +hazy "
                                "and +clahe methods for detection and clear's detection figures, a depth network for "
                                "depth alone)")
        return scored

    def chosen(items: list[T], name: Callable[[T], str], folder: Path = where) -> list[T]:
        return select(items, name, folder, args, subset)

    def pairs() -> list[Pair]:
        return find_pairs(where, choose=lambda paths: chosen(paths, lambda path: path.name))

    def depth_set() -> DepthSet:
        frames = load_depth_set(where)
        frames.frames = chosen(frames.frames, lambda frame: frame.name)
        return frames

    if measure == "quality":
        return evaluate_quality(pairs(), some(quality_methods(methods)), label, read, progress), {}
    if measure == "scattering":
        scattering = some(scattering_methods(methods), "it needs a method that estimates A and t; ")
        return evaluate_scattering(pairs(), scattering, label, read, progress), {}
    if measure == "detection":
        if is_paired_set(where):
            matches = match_recovery(pairs(), methods, detector, args.conf, label, read, progress, detector.max_det)
            rows = recovery_rows(matches, args.conf)
        else:
            if args.bootstrap:
                _refuse_clear_comparisons(args, methods, dataset.name)
            some([method for method in methods if not method.spec.reads_clear])
            labelled = labelled_images(where, choose=lambda paths: chosen(paths, lambda p: p.name))
            matches = match_labelled(labelled, methods, detector, label, detector.names.values(), read, progress,
                                     detector.max_det)
            rows = labelled_rows(matches, args.conf)
        if not args.bootstrap:
            return rows, {}
        return rows, paired_bootstrap(matches, comparisons(args, list(matches)), args.bootstrap, args.conf)
    if measure == "depth":
        return evaluate_depth(depth_set(), methods, label, progress), {}
    if measure == "visibility":
        return evaluate_visibility(depth_set(), where, methods, label, progress, detector), {}
    if measure == "clear":
        return evaluate_clear(depth_set(), some(methods), detector, args.conf, label, progress, detector.max_det), {}
    return evaluate_haze(chosen(_photos(where), lambda path: path.name), some(haze_methods(methods)), label,
                         read, progress), {}


def _measure_all(measure: str, datasets: list[EvalSet], methods: list[Method], args: argparse.Namespace,
                 detector: Callable | None, read: ReadImage, subsets: dict[str, list[str]],
                 everything: bool) -> tuple[Rows, Rows]:
    """(one measure's rows over its sets and their subsets, its --bootstrap comparisons). A set the measure refuses
    (NotApplicable) is left out with a warning, except a set named with --dataset for a measure named in --measure:
    that fails, as does anything else (broken data), naming the measure and the set."""
    table: Rows = {}
    bootstrap_rows: Rows = {}
    for dataset in datasets:
        for subset_name, globs in [(None, None), *subsets.items()]:
            set_name = dataset.name if subset_name is None else f"{dataset.name}:{subset_name}"
            try:
                result, compared = _measure_one(measure, dataset, methods, args, detector, read, globs)
            except NotApplicable as exc:
                if args.dataset and subset_name is None and not everything:
                    raise NotApplicable(f"{measure} on {dataset.path}: {exc}") from exc
                LOG.warning("%s on %s left out: %s", measure, set_name, exc)
                continue
            except ValueError as exc:  # broken data (ImageError, PairingError) or a failed method: no figures
                raise ValueError(f"{measure} on {dataset.path}: {exc}") from exc
            prefix = f"{set_name}/" if len(datasets) > 1 or subsets else ""
            table.update({prefix + key: value for key, value in result.items()})
            bootstrap_rows.update({prefix + key: value for key, value in compared.items()})
    return table, bootstrap_rows


def run(args: argparse.Namespace) -> int:
    evaluate(args)
    return 0


def evaluate(args: argparse.Namespace) -> list[Method]:
    """Run the evaluation the parsed `args` ask for: print each measure's table and write --json. The methods it
    ran, each with the record of the weights it loaded (`Method.weights`), for a caller that names them beside the
    figures (`results_record`): a weights file replaced since is not named for them."""
    if args.limit < 0:
        raise ValueError("--limit must be >= 0")
    if not 0.0 < args.conf <= 1.0:
        raise ValueError(f"--conf must lie in (0, 1], got {args.conf}")
    if args.bootstrap < 0 or 0 < args.bootstrap < MIN_BOOTSTRAP:
        raise ValueError(f"--bootstrap must be 0 (off) or at least {MIN_BOOTSTRAP} redraws (fewer give no 95 % "
                         f"interval worth the name), got {args.bootstrap}")
    if (args.baseline or args.group) and not args.bootstrap:
        raise ValueError("--baseline and --group only apply with --bootstrap N")
    read = ImageReader(args.input_bits)
    subsets = parse_subsets(args.subset)
    expand_patterns(args.include or [])  # a bad @FILE:PART fails here, before any model loads
    requested = parse_measures(args.measure)
    everything = asks_all(args.measure)
    datasets = datasets_for(requested, args.dataset, everything)
    measures = [measure for measure in requested if measure in datasets]
    if args.bootstrap and "detection" not in measures:
        raise ValueError("--bootstrap compares detection figures, and the detection measure does not run here: "
                         "add it to --measure (on a paired set or labelled photos) or leave --bootstrap out")
    specs = _method_specs(args.method)
    if not any(not spec.is_reference and spec.source != "dcp" for spec in specs) and given_network_options(args):
        raise ValueError(f"--backend, --device, --half, --working-size, --radiance-floor and --max-detail-gain choose "
                         f"how a network runs, and none of the methods {', '.join(spec.name for spec in specs)} is a "
                         "network")
    if args.bootstrap:
        comparisons(args, [spec.name for spec in specs])  # an unknown or empty group fails before loading
    methods = load_methods(specs, output=args.output, working_size=args.working_size,
                           **network_runtime(args, [spec.source for spec in specs]))
    decoders = sorted({method.name for method in methods if getattr(method.run, "scattering", True) is False})
    if decoders and (args.radiance_floor is not None or args.max_detail_gain is not None):
        LOG.warning("%s give no transmission (their image is their decoder's, as the paper's released network's): "
                    "--radiance-floor and --max-detail-gain change nothing in their rows", ", ".join(decoders))
    detector = _detector(args) if set(DETECTING) & set(measures) else None
    rows: Rows = {}
    for measure in measures:
        table, bootstrap_rows = _measure_all(measure, datasets[measure], methods, args, detector, read, subsets,
                                             everything)
        if not table and everything:
            LOG.warning("the %s measure produced no figures: left out (see the warnings above)", measure)
            continue
        if not table:
            raise ValueError(f"the {measure} measure produced no figures (see the warnings above)")
        named = f"{measure}/" if len(requested) > 1 else ""  # rows printed under the keys the JSON has
        table = {named + key: value for key, value in table.items()}
        bootstrap_rows = {named + key: value for key, value in bootstrap_rows.items()}
        emit(table, TITLES[measure])
        print()
        if bootstrap_rows:
            emit(bootstrap_rows, BOOTSTRAP_TITLE.format(samples=args.bootstrap))
            print()
        rows.update({**table, **bootstrap_rows})
    if not rows:
        raise ValueError("no measure produced figures (see the warnings above)")
    if args.json is not None:
        write_json(args.json, rows)
    return methods
