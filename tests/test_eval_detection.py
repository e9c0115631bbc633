"""Detection recovery on tiny known cases: IoU, matching, P/R/F1, all-point AP, VOC boxes; then real RTTS labels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dgdehaze_core.datasets.paired_sets import find_pairs, load_pair
from dgdehaze_core.detection.detector import Detection
from dgdehaze_core.evaluation.detection_eval import (average_precision, box_iou, match_image, match_recovery,
                                                     recovery_rows, references_from_detections, score_classes,
                                                     score_matches)
from dgdehaze_core.evaluation.labelled_sets import labelled_images
from dgdehaze_core.evaluation.methods import MethodSpec, jpeg_copy, load_method
from dgdehaze_core.evaluation.voc_boxes import ReferenceBox, read_voc


def _det(box, score=0.9, name="car") -> Detection:
    return Detection(2 if name == "car" else 0, name, score, tuple(float(v) for v in box))


def test_box_iou_known_values():
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]))
    assert iou[0] == pytest.approx([1.0, 50 / 150, 0.0])
    assert box_iou(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)


def test_identical_detections_agree_perfectly():
    clear = [_det((10, 10, 50, 40), 0.9), _det((60, 20, 90, 80), 0.6, "person"), _det((0, 0, 5, 5), 0.1)]
    references = references_from_detections(clear)
    assert len(references) == 2  # the 0.1 detection is below the 0.25 reference confidence
    scores = score_matches([match_image(references, clear)] * 3)
    assert scores["precision"] == scores["recall"] == scores["f1"] == scores["f1_pooled"] == 1.0
    assert scores["map50"] == 1.0 and scores["objects"] == 6 and scores["detections"] == 6


def test_a_known_shift_crosses_the_iou_threshold():
    references = [ReferenceBox("car", (0, 0, 10, 10))]
    near = match_image(references, [_det((2, 0, 12, 10))])  # IoU 80/120 = 0.67
    far = match_image(references, [_det((4, 0, 14, 10))])  # IoU 60/140 = 0.43
    assert near.correct == [True] and far.correct == [False]
    scores = score_matches([far])
    assert scores["precision"] == scores["recall"] == scores["f1"] == scores["map50"] == 0.0


def test_class_must_agree_and_a_reference_is_matched_once():
    references = [ReferenceBox("car", (0, 0, 10, 10))]
    wrong_class = match_image(references, [_det((0, 0, 10, 10), name="person")])
    duplicate = match_image(references, [_det((0, 0, 10, 10), 0.9), _det((0, 0, 10, 9), 0.8)])
    assert wrong_class.correct == [False]
    assert duplicate.correct == [True, False]
    scores = score_matches([duplicate])
    assert scores["precision"] == 0.5 and scores["recall"] == 1.0 and scores["f1"] == pytest.approx(2 / 3)


def test_per_image_f1_and_pooled_f1_differ_as_defined():
    references = [ReferenceBox("car", (0, 0, 10, 10)), ReferenceBox("car", (20, 0, 30, 10)),
                  ReferenceBox("car", (40, 0, 50, 10))]
    all_found = match_image(references, [_det(r.box) for r in references])
    none_found = match_image([ReferenceBox("car", (0, 0, 10, 10))], [])
    scores = score_matches([all_found, none_found])
    assert scores["f1"] == pytest.approx(0.5)  # mean of 1.0 and 0.0
    assert scores["f1_pooled"] == pytest.approx(2 * 3 / (3 + 4))
    assert scores["recall"] == pytest.approx(0.5) and scores["precision"] == 1.0
    empty_road = match_image([], [])  # nothing to find and nothing found: full agreement
    assert score_matches([all_found, none_found, empty_road])["f1"] == pytest.approx(2 / 3)


def test_confidence_splits_f1_from_the_ap_ranking():
    references = [ReferenceBox("car", (0, 0, 10, 10))]
    low = match_image(references, [_det((0, 0, 10, 10), 0.1)])
    scores = score_matches([low], conf=0.25)
    assert scores["f1"] == scores["f1_pooled"] == 0.0 and scores["detections"] == 0 and scores["map50"] == 1.0
    at_conf = [_det((0, 0, 10, 10), 0.25)]  # "score >= conf": a detection at the threshold counts on both sides
    assert references_from_detections(at_conf, conf=0.25) == references
    at_threshold = score_matches([match_image(references, at_conf)], conf=0.25)
    assert at_threshold["f1"] == at_threshold["f1_pooled"] == 1.0 and at_threshold["detections"] == 1


def test_a_prediction_takes_the_free_reference_it_overlaps_most_in_descending_score():
    """Two cars, one partly behind the other: the best detection covers both by IoU >= 0.5, the far one most; a
    weaker detection, first in the list, overlaps only the far car. The best detection goes first and claims the
    far car (highest IoU), so the weaker one is a duplicate and the near car is missed, whatever the lists' order."""
    references = [ReferenceBox("car", (0, 0, 20, 10)), ReferenceBox("car", (4, 0, 24, 10))]
    best, loose = _det((3, 0, 23, 10), 0.9), _det((10, 0, 30, 10), 0.5)
    overlaps = box_iou(np.array([best.box, loose.box]), np.array([r.box for r in references]))
    assert overlaps[0] == pytest.approx([17 / 23, 19 / 21]) and overlaps[1] == pytest.approx([1 / 3, 14 / 26])
    for ordered in (references, references[::-1]):
        matched = match_image(ordered, [loose, best])
        assert matched.scores == [0.9, 0.5] and matched.correct == [True, False]


def test_per_class_rows_count_each_class_on_its_own():
    references = [ReferenceBox("car", (0, 0, 10, 10)), ReferenceBox("car", (20, 0, 30, 10)),
                  ReferenceBox("person", (40, 0, 50, 20))]
    matched = match_image(references, [_det((0, 0, 10, 10), 0.9), _det((60, 0, 70, 10), 0.8),
                                       _det((80, 0, 90, 10), 0.7), _det((40, 0, 50, 20), 0.6, "person"),
                                       _det((20, 0, 30, 10), 0.1)])
    rows = score_classes([matched])
    assert rows["car"]["precision"] == pytest.approx(1 / 3) and rows["car"]["recall"] == 0.5
    assert rows["car"]["f1"] == pytest.approx(2 / 5) and rows["car"]["detections"] == 3
    assert rows["car"]["map50"] == pytest.approx(0.5 + 0.5 * 2 / 4)  # the 0.1 hit still ranks for AP
    assert rows["person"]["precision"] == rows["person"]["recall"] == rows["person"]["f1"] == 1.0


def test_a_detector_s_own_class_names_match_as_their_coco_names_on_both_sides():
    """Detection recovery's references are a detector's own detections: a detector of VOC names (motorbike) finds
    its own motorbike as a motorcycle, counted once under that name."""
    motorbike = [_det((0, 0, 10, 10), name="motorbike")]
    matched = match_image(references_from_detections(motorbike), motorbike)
    assert matched.correct == [True] and matched.references == {"motorcycle": 1}


def test_recovery_takes_its_references_and_counts_its_detections_at_conf(detector, shared_data: Path):
    """--conf 0.5 on a SOTS pair: the clear image's detections at 0.5 or more are the references, and the
    clear-jpeg90 row is the detector's own run on the JPEG copy, whose scores move a little."""
    pairs = [pair for pair in find_pairs(shared_data / "paired" / "sots-indoor") if pair.hazy.name == "1400_7.png"]
    methods = [load_method(MethodSpec(name, name)) for name in ("clear", "clear-jpeg90")]
    matches = match_recovery(pairs, methods, detector, conf=0.5, progress=False)
    found = detector(load_pair(pairs[0])[1])
    references = references_from_detections(found, 0.5)
    assert 0 < len(references) < len(references_from_detections(found))
    clear = recovery_rows(matches, conf=0.5)["clear"]
    assert clear["objects"] == clear["detections"] == len(references) and clear["f1"] == 1.0
    copy = match_image(references, detector(jpeg_copy(load_pair(pairs[0])[1])))
    assert matches["clear-jpeg90"] == [copy] and copy.scores != matches["clear"][0].scores


def test_all_point_average_precision_by_hand():
    # ranking: hit, miss, hit over 3 references -> precision 1, 1/2, 2/3 at recall 1/3, 1/3, 2/3
    # all-point interpolation: 1/3 * 1 + 1/3 * 2/3 = 5/9
    assert average_precision([0.9, 0.8, 0.7], [True, False, True], 3) == pytest.approx(5 / 9)
    assert average_precision([0.9, 0.8], [False, True], 1) == pytest.approx(0.5)
    assert average_precision([], [], 2) == 0.0
    with pytest.raises(ValueError, match="without reference objects"):
        average_precision([0.9], [False], 0)


def test_tied_scores_rank_in_the_order_of_the_images_as_pycocotools_and_the_voc_devkit_rank_them():
    """Real detections tie in score (DAWN holds photos of the same pixels); how ties rank moves AP, so they rank
    as pycocotools' stable sort and the VOC devkit's rank them: image by image, in the set's order. More than 16
    tied predictions, which numpy's default (unstable) sort reorders."""
    car = [ReferenceBox("car", (0, 0, 10, 10))]
    sure = match_image(car, [_det((0, 0, 10, 10), 0.9)])
    missed = [match_image(car, [_det((50, 0, 60, 10), 0.5)]) for _ in range(10)]
    found = [match_image(car, [_det((0, 0, 10, 10), 0.5)]) for _ in range(10)]
    # the sure hit, then the tied in the photos' order, over 21 cars: 10 hits (precision 1 up to recall 11/21)
    # then 10 misses; or 10 misses then 10 hits (precision 1 up to recall 1/21, then, made monotone, 11/21)
    assert score_matches([*found, *missed, sure])["map50"] == pytest.approx(11 / 21)
    assert score_matches([*missed, *found, sure])["map50"] == pytest.approx(1 / 21 + 10 / 21 * 11 / 21)


def test_difficult_boxes_are_neither_right_nor_wrong():
    references = [ReferenceBox("person", (0, 0, 10, 20)), ReferenceBox("person", (30, 0, 40, 20), difficult=True)]
    matched = match_image(references, [_det((0, 0, 10, 20), name="person"), _det((30, 0, 40, 20), name="person")])
    assert matched.correct == [True] and matched.references["person"] == 1
    assert score_matches([matched])["f1"] == 1.0


def test_predictions_inside_a_coco_crowd_are_ignored_as_pycocotools_does():
    """A person of a crowd has a small IoU with the crowd's box: COCO measures the overlap with a crowd region by the
    share of the prediction's area inside it, and ignores a prediction for which that share is >= 0.5."""
    crowd = ReferenceBox("person", (100, 0, 300, 200), difficult=True, crowd=True)
    assert box_iou(np.array([[120, 20, 160, 100], [280, 0, 320, 100]]), np.array([crowd.box]), [True])[:, 0] == \
        pytest.approx([1.0, 0.5])
    inside, half_out, outside = _det((120, 20, 160, 100), 0.8, "person"), _det((280, 0, 320, 100), 0.7, "person"), \
        _det((290, 0, 330, 100), 0.6, "person")
    matched = match_image([ReferenceBox("person", (0, 0, 10, 20)), crowd],
                          [_det((0, 0, 10, 20), name="person"), inside, half_out, outside])
    assert matched.correct == [True, False] and matched.scores == [0.9, 0.6] and matched.references["person"] == 1
    assert match_image([crowd], [_det((120, 20, 160, 100), name="car")]).correct == [False]  # another class


def test_no_reference_objects_anywhere_is_a_clear_error():
    empty = match_image([], [_det((0, 0, 10, 10))])
    with pytest.raises(ValueError, match="no reference objects in any image"):
        score_matches([empty, empty])


def test_voc_boxes_scale_to_the_image(tmp_path: Path):
    xml = tmp_path / "a.xml"
    xml.write_text("<annotation><size><width>200</width><height>100</height></size>"
                   "<object><name>motorbike</name><difficult>1</difficult><bndbox><xmin>20</xmin><ymin>10</ymin>"
                   "<xmax>100</xmax><ymax>50</ymax></bndbox></object></annotation>")
    (box,) = read_voc(xml, (100, 200))
    assert box == ReferenceBox("motorcycle", (10.0, 20.0, 50.0, 100.0), True)
    xml.write_text("<annotation><object><name>car</name><bndbox><xmin>20</xmin><ymin>10</ymin><xmax>100</xmax>"
                   "<ymax>50</ymax></bndbox></object></annotation>")
    assert read_voc(xml, (100, 200)) == (ReferenceBox("car", (20.0, 10.0, 100.0, 50.0)),)  # no <size>: the image's
    xml.write_text("<annotation")
    with pytest.raises(ValueError, match="not readable VOC XML"):
        read_voc(xml, (100, 100))


@pytest.mark.parametrize(("labelled", "coco"), [("Pedestrian", "person"), ("Person_sitting", "person"),
                                                ("bike", "bicycle"), ("motor", "motorcycle"), ("rider", "rider")])
def test_road_sets_class_names_read_as_the_coco_class_they_mean(tmp_path: Path, labelled: str, coco: str):
    xml = tmp_path / "a.xml"
    xml.write_text(f"<annotation><size><width>100</width><height>100</height></size><object><name>{labelled}</name>"
                   "<bndbox><xmin>10</xmin><ymin>10</ymin><xmax>50</xmax><ymax>90</ymax></bndbox>"
                   "</object></annotation>")
    (box,) = read_voc(xml, (100, 100))
    assert box.class_name == coco


def test_rtts_labels_of_the_real_photos(shared_data: Path):
    images = {item.image.name: item for item in labelled_images(shared_data / "hazy-real" / "urhi")}
    assert sorted(images) == ["SFC_Google_197.png", "YST_Bing_667.png"]
    people = images["YST_Bing_667.png"].boxes
    assert len(people) == 9 and sum(b.difficult for b in people) == 2 and {b.class_name for b in people} == {"person"}
    # first person: xmin 627 of a 960-wide original, on the 608-wide photo
    assert people[0].box[0] == pytest.approx(627 * 608 / 960)
    assert all(0 <= b.box[0] < b.box[2] <= 608 and 0 <= b.box[1] < b.box[3] <= 448 for b in people)


def test_a_fused_row_keeps_at_most_the_detector_s_limit_of_boxes_as_the_node_does() -> None:
    """The node cuts the fused boxes to the detector's max_det (two runs of up to that many each would give up to
    twice as many); eval's `SOURCE+hazy` rows kept them all, ranking up to 600 boxes a photo against 300 for a row of
    one run, a longer recall tail than the node's. Cut as the node cuts them, the best first."""
    from dgdehaze_core.evaluation.detection_eval import method_detections

    hazy = np.full((120, 160, 3), 128, np.uint8)
    calls = []

    def detect(frame: np.ndarray) -> list[Detection]:  # three boxes a run, each run's apart from the other's
        calls.append(frame)
        top = 10 if len(calls) == 1 else 70
        return [_det((10 + 50 * i, top, 40 + 50 * i, top + 30), score=0.9 - 0.1 * i - 0.05 * len(calls))
                for i in range(3)]

    method = load_method(MethodSpec("dcp+hazy", "dcp", fuse_input=True))
    assert len(method_detections(method, hazy, detect)) == 6, "no limit given: both runs' boxes"
    calls.clear()
    kept = method_detections(method, hazy, detect, max_det=4)
    assert len(calls) == 2 and [round(d.score, 2) for d in kept] == [0.85, 0.8, 0.75, 0.7]
