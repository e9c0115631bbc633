"""Detection recovery: does a detector find on the dehazed image what it finds on the clear one?

Reference objects are the detector's own detections on the clear image (confidence >= `conf`), or human boxes where
a set has them (DAWN, RTTS). Predictions are the detector's detections on the hazy input and on each method's output.
A prediction is right when it has the reference's class and IoU >= 0.5 with it; predictions are matched greedily
in descending score, each to the unmatched reference it overlaps most (COCO-style); a reference is matched once.
Predictions on `difficult` human boxes are ignored (VOC), as are those lying inside a COCO crowd region (by the
share of the prediction's area inside it, as COCO's evaluation measures crowds) and those of any class on a box of a
class the detector does not know.

Figures over a set:
- precision, recall, F1 over predictions with score >= `conf` (0.25), per image and averaged over the images (each
  image's agreement counts alike, as issue #9's reference figures are averaged);
- f1_pooled: F1 of the true and false positives summed over the set (large scenes weigh more);
- mAP50: average precision at IoU 0.5 per class with all-point interpolation (the VOC 2010+ rule), over the
  full ranking of predictions (the detector runs with a low floor, `AP_SCORE_FLOOR`), averaged over the classes
  present in the reference.
Against human boxes each class also gets its own row, `METHOD[CLASS]`: pooled precision, recall and F1 at `conf`,
and its AP50 under `map50`. Human boxes of a class the detector does not know are set aside (no detector could
find them; a warning names them, an error where no other box is left to score), as `difficult` boxes are, and a
prediction of any class on one (the detector's car on a labelled van) is neither right nor wrong.
"""
from __future__ import annotations

import fnmatch
import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Collection, Mapping, Sequence, TypeVar

import numpy as np
from tqdm import tqdm

from dgdehaze_core.datasets.paired_sets import Pair, load_pair
from dgdehaze_core.datasets.splits import expand_patterns, judging_files, judging_parts, warn_absent_split_names
from dgdehaze_core.detection.boxes import box_iou
from dgdehaze_core.detection.contrast import local_contrast
from dgdehaze_core.detection.detector import Detection
from dgdehaze_core.detection.fusion import FrameDetector
from dgdehaze_core.evaluation import NotApplicable
from dgdehaze_core.evaluation.labelled_sets import labelled_images, labelled_layout
from dgdehaze_core.evaluation.methods import CLEAR, CLEAR_JPEG, Method, jpeg_copy
from dgdehaze_core.evaluation.voc_boxes import LabelledImage, ReferenceBox, coco_name
from dgdehaze_core.io.images import ReadImage, list_images, read_image

IOU_THRESHOLD = 0.5
CONFIDENCE = 0.25
AP_SCORE_FLOOR = 0.001
"""Detector confidence floor for evaluation: mAP needs the whole ranking, P/R/F1 then keep scores >= CONFIDENCE."""
DETECTION_COLUMNS = ("precision", "recall", "f1", "f1_pooled", "map50", "objects", "detections", "images", "reference")

DetectFn = Callable[[np.ndarray], list[Detection]]
LOG = logging.getLogger(__name__)


def references_from_detections(detections: Sequence[Detection], conf: float = CONFIDENCE) -> list[ReferenceBox]:
    """The clear image's detections with score >= conf, as reference objects."""
    return [ReferenceBox(d.class_name, d.box) for d in detections if d.score >= conf]


@dataclass
class ImageMatches:
    """One image's predictions after matching (ignored ones dropped) and its reference counts per class."""

    classes: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)
    references: Counter = field(default_factory=Counter)


def match_image(references: Sequence[ReferenceBox], predictions: Sequence[Detection],
                iou_threshold: float = IOU_THRESHOLD) -> ImageMatches:
    """Match one image's predictions to its references (same class, IoU >= threshold, greedy by score). Class
    names on both sides count by their COCO names (`coco_name`), as labelled sets' boxes are named, so a detector
    trained on VOC or KITTI names (`motorbike`, `Car`) finds the boxes of `motorcycle` and `car`. A prediction
    on a difficult reference of its class, or on an `unknown` one of any class, is ignored."""
    result = ImageMatches(references=Counter(coco_name(r.class_name) for r in references if not r.difficult))
    ref_boxes = np.array([r.box for r in references], np.float64).reshape(-1, 4)
    ref_classes = np.array([coco_name(r.class_name) for r in references], dtype=object)
    difficult = np.array([r.difficult for r in references], bool)
    crowd = np.array([r.crowd for r in references], bool)
    unknown = np.array([r.unknown for r in references], bool)
    taken = np.zeros(len(references), bool)
    for prediction in sorted(predictions, key=lambda d: -d.score):
        overlap = box_iou(np.array([prediction.box]), ref_boxes, crowd)[0] if len(references) else np.zeros(0)
        name = coco_name(prediction.class_name)
        near = overlap >= iou_threshold
        candidate = (ref_classes == name) & near
        free = candidate & ~taken & ~difficult
        if free.any():
            best = int(np.argmax(np.where(free, overlap, -1.0)))
            taken[best] = True
            correct = True
        elif (candidate & difficult).any() or (near & unknown).any():
            continue
        else:
            correct = False
        result.classes.append(name)
        result.scores.append(prediction.score)
        result.correct.append(correct)
    return result


def average_precision(scores: Sequence[float], correct: Sequence[bool], references: int) -> float:
    """Area under the precision-recall curve with all-point interpolation (precision made monotone from the right).

    `scores` and `correct` describe every prediction of one class over a set, `references` its reference count.
    0 when there are references but no correct prediction; ValueError when `references` is 0.
    """
    if references <= 0:
        raise ValueError("average precision is undefined for a class without reference objects")
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    return ranked_average_precision(np.asarray(correct, bool)[order], references)


def ranked_average_precision(hits: np.ndarray, references: float, weights: np.ndarray | None = None) -> float:
    """`average_precision` of predictions already in descending score (`hits`: right or not), each counted
    `weights` times (default once; 0: absent), against `references` (> 0) objects."""
    counted = np.ones(len(hits)) if weights is None else weights
    true_positives = np.cumsum(counted * hits)
    false_positives = np.cumsum(counted * ~hits)
    recall = np.concatenate([[0.0], true_positives / references, [1.0]])
    precision = np.concatenate([[1.0], true_positives / np.maximum(true_positives + false_positives, 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def image_agreement(image: ImageMatches, conf: float) -> tuple[float | None, float | None, float]:
    """(precision or None without predictions, recall or None without references, F1) of one image."""
    kept = [correct for correct, score in zip(image.correct, image.scores) if score >= conf]
    references = sum(image.references.values())
    true_positives = sum(kept)
    if not kept and not references:
        return None, None, 1.0
    precision = true_positives / len(kept) if kept else None
    recall = true_positives / references if references else None
    f1 = 2 * true_positives / (len(kept) + references)
    return precision, recall, f1


def score_matches(matches: Sequence[ImageMatches], conf: float = CONFIDENCE) -> dict[str, float]:
    """Agreement figures over a set of matched images.

    precision, recall, f1: per-image agreement averaged over the images (precision over the images with
    predictions, recall over those with references; F1 over all, 1 where both are empty, 0 where one is);
    f1_pooled: F1 of the true/false positives pooled over the set; map50 over the full ranking; objects and
    detections (score >= conf) counted over the set. NotApplicable when no image holds a reference object.
    """
    references: Counter = Counter()
    for image in matches:
        references.update(image.references)
    total = sum(references.values())
    if total == 0:
        raise NotApplicable("no reference objects in any image: there is nothing to recover, so precision, recall "
                         "and mAP are undefined (the detector finds nothing on the clear images?)")
    per_image = [image_agreement(image, conf) for image in matches]
    precisions = [p for p, _, _ in per_image if p is not None]
    recalls = [r for _, r, _ in per_image if r is not None]
    classes = np.array([c for image in matches for c in image.classes], dtype=object)
    scores = np.array([s for image in matches for s in image.scores], np.float64)
    correct = np.array([k for image in matches for k in image.correct], bool)
    kept = scores >= conf
    detections = int(np.sum(kept))
    aps = [average_precision(scores[classes == name], correct[classes == name], count)
           for name, count in sorted(references.items())]
    return {"precision": float(np.mean(precisions)) if precisions else 0.0,
            "recall": float(np.mean(recalls)),
            "f1": float(np.mean([f1 for _, _, f1 in per_image])),
            "f1_pooled": 2 * int(np.sum(correct & kept)) / (detections + total),
            "map50": float(np.mean(aps)), "objects": total, "detections": detections, "images": len(matches)}


def score_classes(matches: Sequence[ImageMatches], conf: float = CONFIDENCE) -> dict[str, dict[str, float]]:
    """Per reference class over a set: pooled precision, recall and F1 at `conf`, AP50 (`map50`), objects and
    detections (score >= conf)."""
    references: Counter = Counter()
    for image in matches:
        references.update(image.references)
    classes = np.array([c for image in matches for c in image.classes], dtype=object)
    scores = np.array([s for image in matches for s in image.scores], np.float64)
    correct = np.array([k for image in matches for k in image.correct], bool)
    rows = {}
    for name, count in sorted(references.items()):
        mine = classes == name
        kept = mine & (scores >= conf)
        hits = int(np.sum(correct & kept))
        detections = int(np.sum(kept))
        rows[name] = {"precision": hits / detections if detections else 0.0, "recall": hits / count,
                      "f1": 2 * hits / (detections + count), "map50": average_precision(scores[mine], correct[mine],
                                                                                         count),
                      "objects": count, "detections": detections, "images": len(matches)}
    return rows


def singular_name(name: str, classes: Collection[str]) -> str:
    """A box's class `name` (a COCO name), or, where `classes` (a detector's COCO names) lack it, the class of
    theirs it is the plural of, as sets labelled in plural mean their classes (a Roboflow project's `cars`,
    `buses`, `pedestrians`: car, bus, person); `name` itself when it is the plural of none of them."""
    if name in classes or not name.endswith("s"):
        return name
    stems = (name[:-1], name[:-2]) if name.endswith("es") else (name[:-1],)
    return next((coco_name(stem) for stem in stems if coco_name(stem) in classes), name)


def _singular_boxes(images: Sequence[LabelledImage], classes: Collection[str]) -> list[LabelledImage]:
    """`images` with each box's class named as `singular_name` names it, with one line saying which were renamed."""
    renamed = {box.class_name: singular_name(box.class_name, classes) for item in images for box in item.boxes}
    renamed = {name: singular for name, singular in renamed.items() if singular != name}
    if not renamed:
        return list(images)
    LOG.info("human boxes named in the plural are scored as the detector's class: %s",
             ", ".join(f"{name} -> {singular}" for name, singular in sorted(renamed.items())))
    return [LabelledImage(item.image, tuple(replace(box, class_name=renamed.get(box.class_name, box.class_name))
                                            for box in item.boxes)) for item in images]


def known_references(images: Sequence[LabelledImage], classes: Collection[str]) -> list[LabelledImage]:
    """`images` with the boxes of classes outside `classes` (a detector's names, taken by their COCO names:
    `coco_name`) marked difficult and `unknown` (ignored, and so are predictions of any class on them), with one
    warning naming them, after a plural of one of `classes` (`cars`) is taken as that class (`singular_name`);
    unchanged when `classes` is empty (unknown) or holds every box's class. NotApplicable, naming those classes, when
    no box is left to score (every box difficult or of such a class, or no box at all)."""
    classes = {coco_name(name) for name in classes}
    if classes:
        images = _singular_boxes(images, classes)
    unknown = Counter(box.class_name for item in images for box in item.boxes
                      if classes and box.class_name not in classes)
    named = ", ".join(f"{name} ({count})" for name, count in sorted(unknown.items()))
    known = [LabelledImage(item.image, tuple(replace(box, difficult=True, unknown=True) if box.class_name in unknown
                                             else box for box in item.boxes)) for item in images] if unknown else \
        list(images)
    if not any(not box.difficult for item in known for box in item.boxes):
        boxes = [box for item in images for box in item.boxes]
        crowds = sum(box.crowd for box in boxes)
        raise NotApplicable("no human box to score: " + (
            f"every box that is not difficult is of a class the detector does not know: {named}"
            if any(box.class_name in unknown and not box.difficult for box in boxes) else
            f"the {len(images)} labelled photo(s) hold {len(boxes)} box(es), none that is not difficult"
            + (f" ({crowds} COCO crowds, iscrowd: 1)" if crowds else "")))
    if unknown:
        LOG.warning("human boxes of classes the detector does not know are ignored, and any detection on one: %s",
                    named)
    return known


def choosing_images(folder: Path, parts: Sequence[str], classes: Collection[str]) -> list[LabelledImage]:
    """The labelled photos of `folder` whose names match `parts` (split parts `@FILE:PART`, file names or globs), as
    `known_references` leaves them, for a tool that chooses a setting. ValueError, before any photo is read, for a
    judging part (`...:judge`) or any chosen photo that only judges however it was named (`judging_files`), and
    when no labelled photo matches."""
    judging = judging_parts(parts)
    if judging:
        raise ValueError(f"the judging photos do not choose settings: {', '.join(judging)}")
    patterns = expand_patterns(parts)

    def chosen(name: str) -> bool:
        return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)

    layout = labelled_layout(folder)  # the photos may lie below it: JPEGImages/ (VOC), images/ (COCO, YOLO)
    photos = layout.photos if layout is not None else folder
    judged = judging_files([path for path in list_images(photos) if chosen(path.name)])
    if judged:
        first, reason = next(iter(judged.items()))
        raise ValueError(f"the judging photos do not choose settings: {len(judged)} of those {' '.join(parts)} "
                         f"names only judge, e.g. {first.name} ({reason})")
    images = labelled_images(folder, keep=chosen)
    if not images:
        raise ValueError(f"no labelled photo of {folder} matches {' '.join(parts)}")
    warn_absent_split_names(parts, folder, "the split")
    return known_references(images, classes)


T = TypeVar("T")


def _each_frame_once(apply: Callable[[np.ndarray], T]) -> Callable[[np.ndarray], T]:
    """`apply` remembering its result per frame object, for one image's methods: `hazy` and `SOURCE+hazy` both
    detect on the input, `SOURCE` and `SOURCE+hazy` on the same cached output, and the `+clahe` methods equalise
    each of those frames once. Use one per image (frames are told apart by identity, so they must stay alive
    meanwhile)."""
    seen: dict[int, tuple[np.ndarray, T]] = {}

    def apply_once(frame: np.ndarray) -> T:
        if id(frame) not in seen:
            seen[id(frame)] = (frame, apply(frame))
        return seen[id(frame)][1]

    return apply_once


def method_detections(method: Method, hazy: np.ndarray, detect: DetectFn,
                      equalise: Callable[[np.ndarray], np.ndarray] = local_contrast,
                      max_det: int | None = None) -> list[Detection]:
    """The detector on the method's output of `hazy` as the node's `FrameDetector` runs it: for a `SOURCE+hazy`
    method on the input and the output, the two sets fused, and cut to the best `max_det` (the detector's own
    limit on each run, where given) as the node cuts them; for a `+clahe` method on those frames after `equalise`
    (their local contrast)."""
    detection_input = "fused" if method.spec.fuse_input else "dehazed"
    frame_detector = FrameDetector(detect, detection_input, contrast=method.spec.contrast, equalise=equalise,
                                   max_det=None if max_det is None else lambda: max_det)
    return frame_detector(method.dehaze(hazy).image, hazy)


def _predictions(method: Method, hazy: np.ndarray, clear: np.ndarray, clear_detections: list[Detection],
                 detect: DetectFn, equalise: Callable[[np.ndarray], np.ndarray],
                 max_det: int | None) -> list[Detection]:
    if method.spec.source == CLEAR:
        return clear_detections
    if method.spec.source == CLEAR_JPEG:
        return detect(jpeg_copy(clear))
    return method_detections(method, hazy, detect, equalise, max_det)


def match_recovery(pairs: Sequence[Pair], methods: Sequence[Method], detect: DetectFn, conf: float = CONFIDENCE,
                   label: str = "detection", read: ReadImage = read_image, progress: bool = True,
                   max_det: int | None = None) -> dict[str, list[ImageMatches]]:
    """Per method, each pair's detections on its output matched to the detector's detections on the clear image
    (score >= conf), the pair read with `read`. `clear` is the clear image itself (the ceiling), `clear-jpeg90` its
    JPEG copy (the protocol's own noise), `hazy` the untouched input; `max_det`: `method_detections`'."""
    matches: dict[str, list[ImageMatches]] = {m.name: [] for m in methods}
    for pair in tqdm(pairs, desc=label, unit="pair", disable=not progress):
        hazy, clear = load_pair(pair, read)
        for name, matched in recovery_matches(hazy, clear, methods, detect, conf, max_det).items():
            matches[name].append(matched)
    return matches


def recovery_matches(hazy: np.ndarray, clear: np.ndarray, methods: Sequence[Method], detect: DetectFn,
                     conf: float = CONFIDENCE, max_det: int | None = None) -> dict[str, ImageMatches]:
    """Per method, one image's detections on its output of `hazy` matched to the detector's detections on `clear`
    (score >= conf): `match_recovery`'s protocol for one image. `hazy` may be `clear` itself (a clear frame against
    what each method makes of it): the detector then runs on it once."""
    detect_once, equalise_once = _each_frame_once(detect), _each_frame_once(local_contrast)
    clear_detections = detect_once(clear)
    references = references_from_detections(clear_detections, conf)
    return {method.name: match_image(references, _predictions(method, hazy, clear, clear_detections, detect_once,
                                                              equalise_once, max_det))
            for method in methods}


def recovery_rows(matches: Mapping[str, Sequence[ImageMatches]],
                  conf: float = CONFIDENCE) -> dict[str, dict[str, object]]:
    """`match_recovery`'s matches scored per method."""
    return {name: {**score_matches(rows, conf), "reference": "clear-image detections"}
            for name, rows in matches.items()}


def match_labelled(images: Sequence[LabelledImage], methods: Sequence[Method], detect: DetectFn,
                   label: str = "detection", classes: Collection[str] = (),
                   read: ReadImage = read_image, progress: bool = True,
                   max_det: int | None = None) -> dict[str, list[ImageMatches]]:
    """Per method (`clear` has none here), each real hazy photo's detections on its output matched to the human
    boxes, the photo read with `read`; boxes of classes outside `classes` (the detector's class names) are
    ignored; `max_det`: `method_detections`'."""
    usable = [m for m in methods if not m.spec.reads_clear]
    images = known_references(images, classes)
    matches: dict[str, list[ImageMatches]] = {m.name: [] for m in usable}
    for item in tqdm(images, desc=label, unit="image", disable=not progress):
        hazy = read(item.image)
        detect_once, equalise_once = _each_frame_once(detect), _each_frame_once(local_contrast)
        for method in usable:
            matches[method.name].append(match_image(item.boxes, method_detections(method, hazy, detect_once,
                                                                                  equalise_once, max_det)))
    return matches


def labelled_rows(matches: Mapping[str, Sequence[ImageMatches]],
                  conf: float = CONFIDENCE) -> dict[str, dict[str, object]]:
    """`match_labelled`'s matches scored per method over all classes (`METHOD`) and per class (`METHOD[CLASS]`)."""
    rows: dict[str, dict[str, object]] = {}
    for name, matched in matches.items():
        rows[name] = {**score_matches(matched, conf), "reference": "human boxes"}
        rows.update({f"{name}[{cls}]": {**row, "reference": "human boxes"}
                     for cls, row in score_classes(matched, conf).items()})
    return rows
