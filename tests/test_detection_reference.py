"""The detection scoring against pycocotools, the maintained COCO evaluation, on the shipped detector's real
detections of a few DAWN validation photos: the same predictions right, wrong and ignored (crowds included), and
AP50 per class and its mean within what COCO's 101-point interpolation allows against our all-point one.

pycocotools is pinned in requirements.txt (the venv of `make`); elsewhere the tests skip, saying so."""
from __future__ import annotations

import contextlib
import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dgdehaze_core.detection.detector import Detection, Detector
from dgdehaze_core.evaluation.detection_eval import (AP_SCORE_FLOOR, ImageMatches, match_image, score_classes,
                                                     score_matches)
from dgdehaze_core.evaluation.labelled_sets import labelled_images
from dgdehaze_core.evaluation.voc_boxes import LabelledImage, coco_name
from dgdehaze_core.io.images import read_image

cocoeval = pytest.importorskip("pycocotools.cocoeval", reason="pycocotools (the reference COCO evaluation) is not "
                               "installed: it is pinned in requirements.txt")
from pycocotools.coco import COCO  # noqa: E402 (importable where cocoeval is)
PHOTOS = ("foggy-078.jpg", "haze-084.jpg", "haze-100.jpg", "haze-119.jpg", "mist-064.jpg", "mist-161.jpg")
"""DAWN validation photos with cars, trucks, people and a bus, two of them crowded streets; haze-084 and haze-100 are
the same pixels (labelled a few pixels apart), so their detections tie in score across photos."""
INTERPOLATION = 0.01
"""The most 101-point and all-point AP can differ on the same matches: both integrate one non-increasing precision
envelope over recall, COCO by its values at recall 0, 0.01, ..., 1 (each weighing 1/101), and a step function's
integral lies between its left and right sums of width 0.01, each within 0.01 of the 101-point mean."""
FINE_RECALL = 10001
"""Recall points for pycocotools' AP sampled finely: on N + 1 points its mean is within 1 / N of the all-point AP
(the bound above), so its own matching and precision envelope check ours to 1e-4."""

Seen = tuple[int, str, float, bool]
"""A prediction that counts: image index, class, score, right or wrong."""


@pytest.fixture(scope="module")
def dawn(shared_data: Path) -> tuple[list[LabelledImage], list[list[Detection]], dict[int, str]]:
    """The photos' human boxes, the detector's detections on each as `eval` runs it (down to the AP floor, up to
    300 a photo), and its class names."""
    images = labelled_images(shared_data / "detection" / "dawn-fog", keep=lambda name: name in PHOTOS)
    assert sorted(item.image.name for item in images) == sorted(PHOTOS)
    detector = Detector(conf=AP_SCORE_FLOOR, max_det=300)
    return images, [detector(read_image(item.image)) for item in images], detector.names


def _cocoeval(images: list[LabelledImage], predictions: list[list[Detection]], names: dict[int, str],
              recall_points: int = 101):
    """pycocotools' box evaluation at IoU 0.5 over every area and up to 1000 predictions a photo and class (so that
    no prediction is dropped), its AP sampled at `recall_points` evenly spaced recalls (COCO's 101 by default),
    evaluated and accumulated, and the category ids by class name; a crowd box goes in as `iscrowd`."""
    category = {coco_name(name): index for index, name in names.items()}
    truth = {"images": [{"id": k} for k in range(len(images))], "annotations": [],
             "categories": [{"id": index, "name": name} for name, index in category.items()]}
    for k, item in enumerate(images):
        for box in item.boxes:
            x1, y1, x2, y2 = box.box
            truth["annotations"].append({"id": len(truth["annotations"]) + 1, "image_id": k, "iscrowd": int(box.crowd),
                                         "category_id": category[box.class_name], "bbox": [x1, y1, x2 - x1, y2 - y1],
                                         "area": (x2 - x1) * (y2 - y1)})
    results = [{"image_id": k, "category_id": category[coco_name(d.class_name)], "score": d.score,
                "bbox": [d.box[0], d.box[1], d.box[2] - d.box[0], d.box[3] - d.box[1]]}
               for k, detections in enumerate(predictions) for d in detections]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        ground = COCO()
        ground.dataset = truth
        ground.createIndex()
        evaluation = cocoeval.COCOeval(ground, ground.loadRes(results), "bbox")
        evaluation.params.iouThrs = np.array([0.5])
        evaluation.params.areaRng, evaluation.params.areaRngLbl = [[0, 1e10]], ["all"]
        evaluation.params.maxDets = [1000]
        evaluation.params.recThrs = np.linspace(0.0, 1.0, recall_points)
        evaluation.evaluate()
        evaluation.accumulate()
    return evaluation, category


def _coco_seen(evaluation, category: dict[str, int]) -> list[Seen]:
    """The predictions pycocotools counts (those not ignored), each right (matched) or wrong."""
    names = {index: name for name, index in category.items()}
    seen = []
    for image in filter(None, evaluation.evalImgs):
        ignored = image["dtIgnore"][0].astype(bool)
        seen += [(image["image_id"], names[image["category_id"]], score, bool(match > 0))
                 for score, match, skip in zip(image["dtScores"], image["dtMatches"][0], ignored) if not skip]
    return seen


def _matched(images: list[LabelledImage], predictions: list[list[Detection]]) -> list[ImageMatches]:
    return [match_image(item.boxes, detections) for item, detections in zip(images, predictions)]


def _our_seen(matches: list[ImageMatches]) -> list[Seen]:
    return [(k, name, score, right) for k, image in enumerate(matches)
            for name, score, right in zip(image.classes, image.scores, image.correct)]


def _crowded(images: list[LabelledImage]) -> list[LabelledImage]:
    """`images` with every third human box turned into a COCO crowd region."""
    return [LabelledImage(item.image, tuple(replace(box, crowd=True, difficult=True) if n % 3 == 0 else box
                                            for n, box in enumerate(item.boxes))) for item in images]


@pytest.mark.parametrize("crowds", [False, True], ids=["human-boxes", "every-third-a-crowd"])
def test_matching_equals_pycocotools_on_real_detections(dawn, crowds: bool):
    images, predictions, names = dawn
    images = _crowded(images) if crowds else images
    matches = _matched(images, predictions)
    evaluation, category = _cocoeval(images, predictions, names)
    ours, theirs = _our_seen(matches), _coco_seen(evaluation, category)
    assert sum(right for *_, right in ours) >= 20
    assert (len(ours) < sum(map(len, predictions))) == crowds  # predictions inside crowds are ignored, none else
    assert sorted(ours) == sorted(theirs)


def _ap50(evaluation, category: int) -> float:
    """The AP of one category id as pycocotools gives it: its interpolated precision's mean over the recall points."""
    return float(evaluation.eval["precision"][0, :, evaluation.params.catIds.index(category), 0, 0].mean())


def test_map50_agrees_with_pycocotools_within_the_interpolation(dawn):
    images, predictions, names = dawn
    matches = _matched(images, predictions)
    rows = score_classes(matches)
    assert set(rows) == {"bus", "car", "person", "truck"}
    coco, category = _cocoeval(images, predictions, names)
    fine, _ = _cocoeval(images, predictions, names, FINE_RECALL)
    for name, row in rows.items():
        assert row["map50"] == pytest.approx(_ap50(coco, category[name]), abs=INTERPOLATION), name
        assert row["map50"] == pytest.approx(_ap50(fine, category[name]), abs=1 / (FINE_RECALL - 1)), name
    precision = coco.eval["precision"][0, :, :, 0, 0]
    assert score_matches(matches)["map50"] == pytest.approx(float(np.mean(precision[precision > -1])),
                                                            abs=INTERPOLATION)
