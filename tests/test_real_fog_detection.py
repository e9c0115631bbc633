"""Real fog detection (#17): the DAWN split, box fusion on known boxes, human boxes that are odd (none, a class the
detector lacks, outside the image), per-class figures, and the `SOURCE+hazy` method through `dgdehaze eval`."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from dgdehaze_core.cli import main
from dgdehaze_core.datasets.paths import REPO_DIR
from dgdehaze_core.datasets.splits import SplitError, expand_patterns, load_split
from dgdehaze_core.detection.detector import Detection
from dgdehaze_core.detection.fusion import FusionSettings, fuse_detections
from dgdehaze_core.evaluation import NotApplicable
from dgdehaze_core.evaluation.detection_eval import (choosing_images, known_references, match_image, score_classes,
                                                     score_matches)
from dgdehaze_core.evaluation.methods import MethodSpec, parse_methods
from dgdehaze_core.evaluation.labelled_sets import labelled_images
from dgdehaze_core.evaluation.voc_boxes import LabelledImage, ReferenceBox, coco_name, read_voc
from dgdehaze_core.io.images import read_image

DAWN_SPLIT = REPO_DIR / "data" / "splits" / "dawn-fog.yaml"
VOC = """<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objects}</annotation>"""
OBJECT = "<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>" \
         "<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"


def _det(box, score=0.9, name="car", class_id=2) -> Detection:
    return Detection(class_id, name, score, tuple(float(v) for v in box))


def _voc(path: Path, size: tuple[int, int], boxes: list[tuple[str, tuple[int, int, int, int]]]) -> Path:
    objects = "".join(OBJECT.format(name=name, x1=b[0], y1=b[1], x2=b[2], y2=b[3]) for name, b in boxes)
    path.write_text(VOC.format(w=size[0], h=size[1], objects=objects))
    return path


# --- the split -------------------------------------------------------------------------------------------------

def test_the_dawn_split_is_disjoint_and_covers_the_set(shared_data: Path):
    split = load_split(DAWN_SPLIT)
    parts = {name: set(names) for name, names in split.parts.items()}
    assert set(parts) == {"learn", "validation", "judge"}
    assert not parts["learn"] & parts["judge"] and not parts["learn"] & parts["validation"]
    assert not parts["validation"] & parts["judge"]
    photos = {p.name for p in (shared_data / "detection" / "dawn-fog").glob("*.jpg")}
    assert set().union(*parts.values()) == photos
    assert len(parts["judge"]) == 100


def test_split_tokens_expand_and_bad_ones_are_refused(tmp_path: Path):
    names = expand_patterns(["1400_*", f"@{DAWN_SPLIT}:validation"])
    assert names[0] == "1400_*" and len(names) == 21
    overlapping = tmp_path / "bad.yaml"
    overlapping.write_text("dataset: x\nparts:\n  a: [one.jpg, two.jpg]\n  b: [two.jpg]\n")
    with pytest.raises(SplitError, match="two.jpg is in both"):
        load_split(overlapping)
    globbing = tmp_path / "globbing.yaml"
    globbing.write_text("parts:\n  learn: ['scene[1].png']\n  judge: [scene1.png, '*.png']\n")
    with pytest.raises(SplitError, match="names 'scene\\[1\\].png': split entries are file names"):
        load_split(globbing)  # as globs, learn's entry would take judge's scene1.png
    with pytest.raises(SplitError, match="no part 'test'"):
        expand_patterns([f"@{DAWN_SPLIT}:test"])
    with pytest.raises(SplitError, match="write @FILE:PART"):
        expand_patterns(["@nofile"])
    with pytest.raises(SplitError, match="no split file"):
        expand_patterns([f"@{tmp_path / 'missing.yaml'}:judge"])


def test_a_split_part_with_files_absent_from_the_set_is_said_to_be_partial(shared_data: Path, tmp_path: Path,
                                                                           caplog):
    """A copy of DAWN that lacks a judging and a validation photo: --include @...:judge matched the other 99 and a
    choosing tool's @...:validation the other 19 without a word, and their figures passed for the parts'."""
    import argparse

    from dgdehaze_core.commands.evaluate import select
    from dgdehaze_core.io.images import list_images

    source = shared_data / "detection" / "dawn-fog"
    parts = load_split(DAWN_SPLIT).parts
    gone = {parts["judge"][3], parts["validation"][2]}
    (tmp_path / "labels-voc").mkdir()
    for photo in list_images(source):
        if photo.name not in gone:
            (tmp_path / photo.name).symlink_to(photo)
            (tmp_path / "labels-voc" / f"{photo.stem}.xml").symlink_to(source / "labels-voc" / f"{photo.stem}.xml")
    args = argparse.Namespace(include=[f"@{DAWN_SPLIT}:judge"], limit=None)
    assert len(select(list_images(tmp_path), lambda path: path.name, tmp_path, args, None)) == 99
    assert f"names 1 file(s) that are not in {tmp_path}" in caplog.text and parts["judge"][3] in caplog.text
    caplog.clear()
    assert len(choosing_images(tmp_path, [f"@{DAWN_SPLIT}:validation"], {"car", "person", "bus", "truck"})) == 19
    assert f"names 1 file(s) that are not in {tmp_path}" in caplog.text and parts["validation"][2] in caplog.text
    caplog.clear()
    for name in gone:
        (tmp_path / name).symlink_to(source / name)
    assert len(select(list_images(tmp_path), lambda path: path.name, tmp_path, args, None)) == 100
    assert "not in" not in caplog.text


# --- fusion ----------------------------------------------------------------------------------------------------

def test_fusing_identical_sets_gives_the_same_boxes_exactly():
    boxes = [_det((1000.3, 500, 1400.7, 800), 0.9), _det((100, 20, 140, 90), 0.6, "person", 0),
             _det((500, 500, 520, 530), 0.0)]
    assert fuse_detections([boxes, boxes], (1920, 1080)) == boxes


def test_two_objects_one_frame_told_apart_are_never_merged():
    raw = [_det((0, 0, 100, 100), 0.9, "person", 0), _det((0, 38, 100, 138), 0.8, "person", 0)]  # IoU 0.45
    dehazed = [_det((0, 19, 100, 119), 0.95, "person", 0)]  # overlaps both by more than the fusion's IoU
    fused = fuse_detections([raw, dehazed], (640, 480))
    assert len(fused) == 2, "each of the raw frame's objects survives the fusion"
    assert fused[0].box == pytest.approx((0, (0 * 0.9 + 19 * 0.95) / 1.85, 100, 100 + (19 * 0.95) / 1.85))
    close = [_det((0, 0, 100, 100), 0.9, "person", 0), _det((0, 25, 100, 125), 0.7, "person", 0)]  # IoU 0.6
    assert fuse_detections([close, []], (640, 480)) == close, "a set fused with nothing comes back as it was"


def test_fusing_disjoint_sets_keeps_every_box_with_its_score():
    raw, dehazed = [_det((10, 10, 50, 40), 0.4)], [_det((100, 20, 140, 90), 0.7)]
    fused = fuse_detections([raw, dehazed], (200, 100))
    assert [d.score for d in fused] == pytest.approx([0.7, 0.4])
    assert fused[1].box == pytest.approx((10, 10, 50, 40), abs=1e-3)


def test_overlapping_boxes_merge_to_their_score_weighted_mean():
    fused = fuse_detections([[_det((0, 0, 10, 10), 0.3)], [_det((1, 0, 11, 10), 0.9)]], (100, 100))
    assert len(fused) == 1 and fused[0].score == pytest.approx(0.9)
    assert fused[0].box[0] == pytest.approx((0 * 0.3 + 1 * 0.9) / 1.2, abs=1e-3)
    other_class = fuse_detections([[_det((0, 0, 10, 10))], [_det((0, 0, 10, 10), name="truck", class_id=7)]],
                                  (100, 100))
    assert len(other_class) == 2


def test_boxes_merge_from_iou_0_55_in_continuous_coordinates():
    """The fusion merges at IoU >= 0.55 (the setting RESULTS.md chose), IoU of boxes in continuous coordinates (no
    '+1 pixel' convention, which makes small boxes overlap more): 22/40 = 0.55 merges, 21/41 = 0.51 does not."""
    at = fuse_detections([[_det((0, 0, 10, 31), 0.9)], [_det((0, 9, 10, 40), 0.9)]], (64, 64))
    assert [d.box for d in at] == [pytest.approx((0, 4.5, 10, 35.5))]
    below = fuse_detections([[_det((0, 0, 10, 31), 0.9)], [_det((0, 10, 10, 41), 0.8)]], (64, 64))
    assert [d.score for d in below] == [0.9, 0.8]


def test_a_box_joins_the_cluster_it_overlaps_most_taking_boxes_from_the_best_score_down():
    """Two cars the raw frame's detector told apart (IoU 0.49), and the dehazed frame's box between them, nearer the
    right one: it joins the right car's cluster (IoU 0.75 against 0.67). Then the order: a dehazed box (0.9) overlaps
    a weak raw box (0.3) most and a strong one (0.8) by 0.6; from the best score down, the dehazed box seeds a
    cluster that the strong raw box joins first, so the weak one stays alone."""
    raw = [_det((0, 0, 100, 100), 0.9), _det((34, 0, 134, 100), 0.8)]
    fused = fuse_detections([raw, [_det((20, 0, 120, 100), 0.7)]], (200, 100))
    assert [d.box[0] for d in fused] == pytest.approx([0.0, (34 * 0.8 + 20 * 0.7) / 1.5])
    weak, strong, dehazed = _det((0, 0, 100, 100), 0.3), _det((30, 0, 130, 100), 0.8), _det((5, 0, 105, 100), 0.9)
    fused = fuse_detections([[weak, strong], [dehazed]], (200, 100))
    assert [(d.score, d.box[0]) for d in fused] == [(0.9, pytest.approx((5 * 0.9 + 30 * 0.8) / 1.7)), (0.3, 0.0)]


def test_the_average_score_counts_a_set_that_missed_the_object_as_zero_and_ranks_agreement_first():
    """`avg`: a car both frames find (0.9 and 0.8) scores 0.85, one only the raw frame finds (0.95) 0.475, and
    the fused list is ranked by those scores."""
    raw = [_det((0, 0, 40, 40), 0.95), _det((100, 0, 140, 40), 0.9)]
    fused = fuse_detections([raw, [_det((101, 0, 141, 40), 0.8)]], (200, 100), FusionSettings(score="avg"))
    assert [d.score for d in fused] == pytest.approx([0.85, 0.475])
    assert [d.box[0] for d in fused] == pytest.approx([(100 * 0.9 + 101 * 0.8) / 1.7, 0.0])


def test_one_empty_set_and_bad_settings():
    boxes = [_det((10, 10, 50, 40), 0.8)]
    assert fuse_detections([[], boxes], (64, 64))[0].score == pytest.approx(0.8)
    assert fuse_detections([[], []], (64, 64)) == []
    clipped = fuse_detections([[_det((-5, -5, 80, 30))]], (64, 64))[0]
    assert clipped.box == pytest.approx((0, 0, 64, 30), abs=1e-3)
    with pytest.raises(ValueError, match="fusion score"):
        FusionSettings(score="median")
    with pytest.raises(ValueError, match="IoU"):
        FusionSettings(iou=0.0)
    with pytest.raises(ValueError, match="frame size"):
        fuse_detections([boxes], (0, 10))


def test_fused_method_names_parse_and_references_cannot_be_fused():
    specs = parse_methods("hazy,lite,lite+hazy,fused=runs/x/last.pt+hazy,runs/y/best.pt+hazy")
    assert specs[2] == MethodSpec("lite+hazy", "lite", True)
    assert specs[3] == MethodSpec("fused", "runs/x/last.pt", True)
    assert specs[4] == MethodSpec("best+hazy", "runs/y/best.pt", True)
    with pytest.raises(ValueError, match="only a dehazer's output"):
        parse_methods("hazy+hazy")


# --- odd human boxes -------------------------------------------------------------------------------------------

def test_a_photo_with_zero_boxes_counts_its_detections_as_false(tmp_path: Path):
    empty = _voc(tmp_path / "empty.xml", (100, 50), [])
    assert read_voc(empty, (100, 50)) == ()
    labelled = match_image([ReferenceBox("car", (0, 0, 10, 10))], [_det((0, 0, 10, 10))])
    nothing_there = match_image(read_voc(empty, (100, 50)), [_det((50, 10, 60, 20), 0.8)])
    scores = score_matches([labelled, nothing_there])
    assert scores["objects"] == 1 and scores["detections"] == 2 and scores["precision"] == pytest.approx(0.5)
    assert scores["recall"] == 1.0  # over the photos with boxes: a photo with none has no recall to average


def test_a_box_outside_the_image_is_clipped_or_dropped(tmp_path: Path, caplog):
    path = _voc(tmp_path / "out.xml", (100, 50), [("car", (90, 40, 130, 70)), ("car", (150, 60, 180, 80)),
                                                  ("person", (-10, 5, 20, 30))])
    boxes = read_voc(path, (100, 50))
    assert [b.box for b in boxes] == [(90, 40, 100, 50), (0, 5, 20, 30)]
    assert "no area inside" in caplog.text


def test_a_class_the_detector_lacks_is_set_aside(tmp_path: Path, caplog):
    images = [LabelledImage(tmp_path / "a.jpg", (ReferenceBox("car", (0, 0, 10, 10)),
                                                 ReferenceBox("tractor", (20, 0, 40, 10))))]
    kept = known_references(images, {"car", "person"})
    assert "tractor (1)" in caplog.text
    matched = match_image(kept[0].boxes, [_det((0, 0, 10, 10))])
    assert score_matches([matched])["recall"] == 1.0  # the tractor cannot count as missed
    assert set(score_classes([matched])) == {"car"}


def test_a_detection_of_any_class_on_a_box_of_a_class_the_detector_lacks_is_neither_right_nor_wrong(tmp_path: Path):
    """A labelled van, which the detector can only call a car or a truck, counted that detection false: a dehazer
    that found the van lost precision and AP for it, enough to put it below the hazy input where it was above. Such
    a box is set aside as a difficult one is: what is found on it is ignored, whatever its class."""
    images = [LabelledImage(tmp_path / "a.jpg", (ReferenceBox("car", (0, 0, 10, 10)),
                                                 ReferenceBox("van", (20, 0, 40, 10))))]
    (kept,) = known_references(images, {"car", "truck"})
    on_van, elsewhere = _det((21, 0, 40, 10), 0.8), _det((60, 0, 80, 10), 0.7, "truck", 7)
    matched = match_image(kept.boxes, [_det((0, 0, 10, 10)), on_van, elsewhere])
    assert matched.correct == [True, False] and matched.scores == [0.9, 0.7]
    assert score_classes([matched])["car"]["precision"] == 1.0


def test_plural_class_names_are_scored_as_the_detector_s_class(tmp_path: Path, caplog):
    """A Roboflow project named its classes cars, buses, people: every box was set aside as of a class the detector
    lacks, and the run refused the set."""
    caplog.set_level("INFO")
    names = ("cars", "buses", "people", "pedestrians", "motorbikes", "tractors", "bus")
    images = [LabelledImage(tmp_path / "a.jpg", tuple(ReferenceBox(coco_name(name), (0, 0, 10, 10))
                                                      for name in names))]
    (kept,) = known_references(images, {"car", "bus", "person", "motorcycle"})
    assert [box.class_name for box in kept.boxes] == ["car", "bus", "person", "person", "motorcycle", "tractors",
                                                      "bus"]
    assert [box.difficult for box in kept.boxes] == [False] * 5 + [True, False]
    assert "cars -> car" in caplog.text and "tractors (1)" in caplog.text


@pytest.mark.parametrize("tag, size, box", [("xmin", ("100", "50"), ("nan", "5", "20", "30")),
                                             ("ymax", ("100", "50"), ("0", "5", "20", "inf")),
                                             ("width", ("inf", "50"), ("0", "5", "20", "30")),
                                             ("height", ("100", "NaN"), ("0", "5", "20", "30"))])
def test_a_number_that_is_not_finite_is_refused_naming_the_file_and_tag(tmp_path: Path, tag, size, box):
    path = tmp_path / "odd.xml"
    path.write_text(VOC.format(w=size[0], h=size[1], objects=OBJECT.format(name="car", x1=box[0], y1=box[1],
                                                                           x2=box[2], y2=box[3])))
    with pytest.raises(ValueError, match=rf"odd\.xml: <{tag}> is not a finite number"):
        read_voc(path, (100, 50))


def test_an_inverted_box_is_dropped_with_a_warning_not_swapped(tmp_path: Path, caplog):
    path = _voc(tmp_path / "inverted.xml", (100, 50), [("car", (50, 10, 20, 30)), ("car", (10, 30, 20, 5)),
                                                       ("person", (0, 5, 20, 30))])
    assert [b.box for b in read_voc(path, (100, 50))] == [(0, 5, 20, 30)]
    assert caplog.text.count("inverted.xml: a car box") == 2 and "xmin > xmax or ymin > ymax" in caplog.text


def test_photos_without_a_voc_file_are_skipped_with_one_warning(tmp_path: Path, caplog):
    (tmp_path / "labels-voc").mkdir()
    for name in ("a", "b", "c"):
        cv2.imwrite(str(tmp_path / f"{name}.png"), np.zeros((50, 100, 3), np.uint8))
    _voc(tmp_path / "labels-voc" / "b.xml", (100, 50), [("car", (0, 5, 20, 30))])
    assert [item.image.name for item in labelled_images(tmp_path)] == ["b.png"]
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "2 image(s)" in warning and "a.png" in warning and "c.png" in warning


def test_voc_files_of_any_case_and_two_images_of_one_labelled_name(tmp_path: Path):
    (tmp_path / "labels-voc").mkdir()
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((50, 100, 3), np.uint8))
    _voc(tmp_path / "labels-voc" / "a.XML", (100, 50), [("car", (0, 5, 20, 30))])
    assert [item.image.name for item in labelled_images(tmp_path)] == ["a.png"], "a VOC file from Windows tools"
    (tmp_path / "b.jpg").write_bytes(b"")  # an unreadable photo that the selection leaves out is never read
    _voc(tmp_path / "labels-voc" / "b.xml", (100, 50), [("car", (0, 5, 20, 30))])
    assert [item.image.name for item in labelled_images(tmp_path, keep=lambda name: name == "a.png")] == ["a.png"]
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((50, 100, 3), np.uint8))
    with pytest.raises(ValueError, match="a.XML labels two images .*a.jpg, a.png"):
        labelled_images(tmp_path)


def test_boxes_all_of_classes_the_detector_lacks_are_named_in_the_error(tmp_path: Path):
    images = [LabelledImage(tmp_path / "a.jpg", (ReferenceBox("tractor", (0, 0, 10, 10)),
                                                 ReferenceBox("car", (20, 0, 40, 10), difficult=True))),
              LabelledImage(tmp_path / "b.jpg", (ReferenceBox("cow", (0, 0, 10, 10)),))]
    with pytest.raises(ValueError, match=r"cow \(1\), tractor \(1\)"):
        known_references(images, {"car", "person"})


def test_human_boxes_all_difficult_or_none_are_said_to_be_so(tmp_path: Path):
    """Such a set was refused by the detector-reference wording ("the detector finds nothing on the clear
    images?"), which a set of human boxes has no clear images for."""
    difficult = [LabelledImage(tmp_path / "a.jpg", (ReferenceBox("car", (0, 0, 10, 10), difficult=True),)),
                 LabelledImage(tmp_path / "b.jpg", ())]
    for classes in ({"car", "person"}, ()):
        with pytest.raises(NotApplicable, match=r"no human box to score: the 2 labelled photo\(s\) hold 1 box\(es\), "
                                                r"none that is not difficult"):
            known_references(difficult, classes)
    with pytest.raises(NotApplicable, match=r"the 1 labelled photo\(s\) hold 0 box\(es\)"):
        known_references(difficult[1:], {"car"})
    crowds = [LabelledImage(tmp_path / "a.jpg", (ReferenceBox("car", (0, 0, 10, 10), True, True),
                                                 ReferenceBox("van", (20, 0, 30, 10), True, True)))]
    with pytest.raises(NotApplicable, match=r"hold 2 box\(es\), none that is not difficult \(2 COCO crowds, "
                                            r"iscrowd: 1\)"):  # not "every box ... is of a class ...: van (1)"
        known_references(crowds, {"car"})
    assert known_references(difficult[:1] + [LabelledImage(tmp_path / "c.jpg", (ReferenceBox("car", (0, 0, 9, 9)),))],
                            {"car"})[1].boxes[0].difficult is False


def test_per_class_rows_by_hand():
    references = [ReferenceBox("car", (0, 0, 10, 10)), ReferenceBox("car", (20, 0, 30, 10)),
                  ReferenceBox("person", (40, 0, 50, 10))]
    predictions = [_det((0, 0, 10, 10), 0.9), _det((60, 0, 70, 10), 0.8), _det((40, 0, 50, 10), 0.2, "person", 0)]
    rows = score_classes([match_image(references, predictions)])
    assert rows["car"]["precision"] == 0.5 and rows["car"]["recall"] == 0.5 and rows["car"]["f1"] == 0.5
    assert rows["car"]["map50"] == pytest.approx(0.5) and rows["car"]["objects"] == 2
    assert rows["person"]["detections"] == 0 and rows["person"]["recall"] == 0.0  # 0.2 < conf 0.25
    assert rows["person"]["map50"] == 1.0  # yet it ranks first among the person predictions


def test_a_choosing_tool_gets_its_split_parts_photos_and_never_the_judging_ones(shared_data: Path):
    folder = shared_data / "detection" / "dawn-fog"
    split = load_split(DAWN_SPLIT)
    images = choosing_images(folder, [f"@{DAWN_SPLIT}:validation"], {"car"})
    assert sorted(item.image.name for item in images) == sorted(split.parts["validation"])
    assert all(box.difficult for item in images for box in item.boxes if box.class_name != "car")
    with pytest.raises(ValueError, match="judging photos do not choose"):
        choosing_images(folder, [f"@{DAWN_SPLIT}:learn", f"@{DAWN_SPLIT}:judge"], {"car"})
    judged = split.parts["judge"][0]
    for named in ([judged], ["foggy-*"], [f"@{DAWN_SPLIT}:validation", judged]):  # by name or glob, not the part
        with pytest.raises(ValueError, match="judging photos do not choose.*only judge, e.g. "):
            choosing_images(folder, named, {"car"})
    first = sorted(split.parts["validation"])[0]
    assert [item.image.name for item in choosing_images(folder, [Path(first).stem + ".*"], {"car"})] == [first], \
        "a glob that matches no judging photo chooses"
    with pytest.raises(ValueError, match="no labelled photo of .* matches nothing-*"):
        choosing_images(folder, ["nothing-*"], {"car"})


@pytest.mark.parametrize("layout", ["JPEGImages", "images"])
def test_judging_photos_kept_in_a_subfolder_of_photos_are_refused_as_well(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str) -> None:
    """The guard looked for judging photos beside the labels only; in a VOC copy (JPEGImages/, Annotations/) or a
    YOLO export (images/, labels/) of dawn-fog it found none, and judging photos chose a setting."""
    folder = tmp_path / "detection" / "dawn-fog"
    monkeypatch.setenv("DGDEHAZE_DATA", str(tmp_path))
    split = load_split(DAWN_SPLIT)
    judged, chosen = split.parts["judge"][0], split.parts["validation"][0]
    (folder / layout).mkdir(parents=True)
    labels = folder / ("Annotations" if layout == "JPEGImages" else "labels")
    labels.mkdir()
    (folder / "classes.txt").write_text("person\nbicycle\ncar\n")
    for name in (judged, chosen):
        cv2.imwrite(str(folder / layout / name), np.zeros((48, 64, 3), np.uint8))
        if layout == "JPEGImages":
            (labels / f"{Path(name).stem}.xml").write_text(
                "<annotation><size><width>64</width><height>48</height></size><object><name>car</name><difficult>0"
                "</difficult><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object>"
                "</annotation>")
        else:
            (labels / f"{Path(name).stem}.txt").write_text("2 0.3 0.4 0.2 0.2\n")
    with pytest.raises(ValueError, match=f"only judge, e.g. {judged}"):
        choosing_images(folder, [judged[:3] + "*"], {"car"})
    assert [item.image.name for item in choosing_images(folder, [chosen], {"car"})] == [chosen]


def test_the_real_dawn_labels_read_as_coco_classes(shared_data: Path):
    images = labelled_images(shared_data / "detection" / "dawn-fog")
    classes = {box.class_name for item in images for box in item.boxes}
    assert len(images) == 200 and classes <= {"car", "bus", "truck", "person", "bicycle", "motorcycle"}
    for item in images[:20]:
        height, width = cv2.imread(str(item.image)).shape[:2]
        assert all(0 <= b.box[0] < b.box[2] <= width and 0 <= b.box[1] < b.box[3] <= height for b in item.boxes)


def test_eval_scores_judged_dawn_photos_with_the_fused_method(shared_data: Path, tmp_path: Path):
    """Two judged photos through `dgdehaze eval`: per-class rows, and the fused method keeps every box of its parts."""
    names = expand_patterns([f"@{DAWN_SPLIT}:judge"])[:2]
    folder = tmp_path / "dawn"
    (folder / "labels-voc").mkdir(parents=True)
    for name in names:
        shutil.copy(shared_data / "detection" / "dawn-fog" / name, folder)
        shutil.copy(shared_data / "detection" / "dawn-fog" / "labels-voc" / f"{Path(name).stem}.xml",
                    folder / "labels-voc")
    out = tmp_path / "dawn.json"
    assert main(["eval", "--dataset", str(folder), "--measure", "detection", "--method", "hazy,dcp,dcp+hazy",
                 "--include", f"@{DAWN_SPLIT}:judge", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert {"hazy", "dcp", "dcp+hazy"} <= set(rows) and any(key.startswith("dcp+hazy[") for key in rows)
    assert rows["dcp+hazy"]["objects"] == rows["hazy"]["objects"] > 0
    assert rows["dcp+hazy"]["detections"] >= max(rows["hazy"]["detections"], rows["dcp"]["detections"]) - 1
    assert rows["dcp+hazy"]["recall"] >= min(rows["hazy"]["recall"], rows["dcp"]["recall"])
    for key, row in rows.items():
        assert 0.0 <= row["map50"] <= 1.0, key


def test_a_broken_photo_or_voc_file_outside_include_or_limit_fails_nothing(shared_data: Path, tmp_path: Path,
                                                                           capsys):
    """Only the selected photos and their boxes are read: a truncated photo and a garbled VOC file that --include
    and --limit leave out change no figure, and a selected broken photo fails the run naming it."""
    names = ["foggy-001.jpg", "foggy-002.jpg", "foggy-004.jpg", "foggy-006.jpg"]
    clean, broken = tmp_path / "clean", tmp_path / "broken"
    for folder in (clean, broken):
        (folder / "labels-voc").mkdir(parents=True)
        for name in names:
            shutil.copy(shared_data / "detection" / "dawn-fog" / name, folder)
            shutil.copy(shared_data / "detection" / "dawn-fog" / "labels-voc" / f"{Path(name).stem}.xml",
                        folder / "labels-voc")
    photo = (broken / "foggy-006.jpg").read_bytes()
    (broken / "foggy-006.jpg").write_bytes(photo[:200])
    (broken / "labels-voc" / "foggy-004.xml").write_text("<annotation><object>")

    def figures(folder: Path, *selection: str) -> dict:
        out = tmp_path / f"{folder.name}.json"
        assert main(["eval", "--dataset", str(folder), "--measure", "detection", "--method", "hazy", *selection,
                     "--json", str(out)]) == 0
        return json.loads(out.read_text())

    assert figures(broken, "--limit", "2") == figures(clean, "--limit", "2")
    assert figures(broken, "--include", "foggy-00[12].jpg") == figures(clean, "--include", "foggy-00[12].jpg")
    assert main(["eval", "--dataset", str(broken), "--measure", "detection", "--method", "hazy",
                 "--include", "foggy-006.jpg"]) == 2
    assert "foggy-006.jpg" in capsys.readouterr().err


def test_a_conf_below_the_ranking_floor_counts_every_detection_it_admits(shared_data: Path, tmp_path: Path):
    """--conf sets the confidence of P/R/F1 whatever its value: one below the detector's floor for mAP (0.001)
    counts the boxes between them too, as a detector run at that confidence finds them."""
    from dgdehaze_core.detection.detector import Detector

    photo = shared_data / "detection" / "dawn-fog" / "foggy-001.jpg"
    out = tmp_path / "low.json"
    assert main(["eval", "--dataset", str(photo.parent), "--measure", "detection", "--method", "hazy",
                 "--include", photo.name, "--conf", "0.0005", "--no-progress", "--json", str(out)]) == 0
    found = Detector(conf=0.0005, max_det=300)(read_image(photo))
    assert len([d for d in found if d.score < 0.001]) > 0, "the photo has boxes between the two confidences"
    rows = json.loads(out.read_text())
    assert rows["hazy"]["detections"] == len(found)
    classes = [key for key in rows if key.startswith("hazy[")]
    assert classes and all(rows[key]["detections"] == sum(d.class_name == key[5:-1] for d in found) for key in classes)


def test_eval_ranks_for_map50_down_to_0_001_and_counts_p_r_f1_from_0_25(shared_data: Path, tmp_path: Path):
    """The documented defaults: mAP50 over every detection down to 0.001 (foggy-002's one found object ranks below
    0.01, so a floor of 0.01 would give 0), precision, recall and F1 over those of 0.25 or more (one scores 0.29)."""
    from dgdehaze_core.detection.detector import Detector

    photo = shared_data / "detection" / "dawn-fog" / "foggy-002.jpg"
    out = tmp_path / "defaults.json"
    assert main(["eval", "--dataset", str(photo.parent), "--measure", "detection", "--method", "hazy",
                 "--include", photo.name, "--no-progress", "--json", str(out)]) == 0
    detector = Detector(conf=0.001, max_det=300)
    found = detector(read_image(photo))
    (item,) = known_references(labelled_images(photo.parent, keep=lambda name: name == photo.name),
                               detector.names.values())
    expected = score_matches([match_image(item.boxes, found)], conf=0.25)
    assert expected["map50"] > 0 == score_matches([match_image(item.boxes, [d for d in found if d.score >= 0.01])])[
        "map50"]
    row = json.loads(out.read_text())["hazy"]
    assert row["map50"] == pytest.approx(expected["map50"]) and row["detections"] == expected["detections"] > 0
    assert any(0.25 <= d.score < 0.3 for d in found), "a detection just above 0.25 counts"


def test_a_detector_of_voc_or_kitti_class_names_finds_the_coco_named_boxes(shared_data: Path, tmp_path: Path,
                                                                           caplog):
    """The shipped detector's file with cars named `Car` (KITTI) and motorcycles `motorbike` (VOC, RTTS) scores the
    DAWN photos as the shipped one does: its names count by their COCO names, as the boxes' do, not as classes it
    lacks (its boxes set aside, its detections all false)."""
    import ast

    import onnx

    model = onnx.load(shared_data / "weights" / "yolov8n_int8.onnx")
    names = next(prop for prop in model.metadata_props if prop.key == "names")
    classes = ast.literal_eval(names.value)
    assert (classes[2], classes[3]) == ("car", "motorcycle")
    names.value = str({**classes, 2: "Car", 3: "motorbike"})
    onnx.save(model, tmp_path / "renamed.onnx")
    rows = {}
    for weights in (shared_data / "weights" / "yolov8n_int8.onnx", tmp_path / "renamed.onnx"):
        out = tmp_path / f"{weights.stem}.json"
        assert main(["eval", "--dataset", str(shared_data / "detection" / "dawn-fog"), "--measure", "detection",
                     "--method", "hazy", "--include", "foggy-00[1-4].jpg", "--detector", str(weights),
                     "--detector-precision", "file", "--no-progress", "--json", str(out)]) == 0
        rows[weights.stem] = json.loads(out.read_text())
    assert rows["renamed"] == rows["yolov8n_int8"] and rows["renamed"]["hazy[motorcycle]"]["objects"] == 2
    assert rows["renamed"]["hazy[car]"]["detections"] > 0 and "does not know" not in caplog.text


def test_eval_refuses_a_split_part_that_matches_nothing(shared_data: Path, capsys):
    assert main(["eval", "--dataset", str(shared_data / "hazy-real" / "urhi"), "--measure", "detection",
                 "--method", "hazy", "--include", f"@{DAWN_SPLIT}:judge"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.endswith(f"matches --include @{DAWN_SPLIT}:judge")
    assert main(["eval", "--dataset", str(shared_data / "hazy-real" / "urhi"), "--measure", "detection",
                 "--method", "hazy", "--include", f"@{DAWN_SPLIT}:test"]) == 2
    assert "no part 'test'" in capsys.readouterr().err


def test_noise_limited_inversion_is_exact_where_fog_is_light_and_bounded_where_dense():
    from dgdehaze_core.physics.guided_filter import smooth_base
    from dgdehaze_core.physics.scattering import invert_scattering, invert_scattering_detail_limited

    rng = np.random.default_rng(0)
    clear = np.tile(np.linspace(0.2, 0.8, 64, dtype=np.float32), (64, 1))[:, :, None].repeat(3, axis=2)
    airlight = np.array([0.9, 0.9, 0.9], np.float32)
    for t_value, gain_seen in ((0.8, 1 / 0.8), (0.1, 2.0)):
        t = np.full((64, 64), t_value, np.float32)
        noise = rng.normal(0, 0.004, clear.shape).astype(np.float32)
        hazy = clear * t_value + airlight * (1 - t_value) + noise
        base = smooth_base(hazy, 4, 0.032 ** 2)
        limited = invert_scattering_detail_limited(hazy, base, t, airlight, max_detail_gain=2.0)
        exact = invert_scattering(hazy, t[:, :, None], airlight)
        if t_value > 0.5:
            np.testing.assert_allclose(limited, exact, atol=1e-5)
        residual = (limited - clear)[4:-4, 4:-4]
        assert residual.std() < 0.004 * gain_seen * 1.2  # noise amplified at most `gain_seen` times
        assert abs(float(residual.mean())) < 0.01  # the scene itself recovered
    with pytest.raises(ValueError, match="max_detail_gain"):
        invert_scattering_detail_limited(hazy, base, t, airlight, max_detail_gain=0.5)


def test_the_smoother_reuses_its_buffers_without_touching_what_it_returned() -> None:
    from dgdehaze_core.physics.guided_filter import SelfGuidedSmoother

    rng = np.random.default_rng(1)
    frames = [rng.random(shape).astype(np.float32) for shape in ((48, 64, 3), (48, 64, 3), (30, 20, 3), (48, 64))]
    smoother = SelfGuidedSmoother(4, 0.032 ** 2)
    results = [smoother(frame) for frame in frames]
    for frame, result in zip(frames, results):
        fresh = SelfGuidedSmoother(4, 0.032 ** 2)(frame)
        np.testing.assert_array_equal(result, fresh)  # later calls did not write into an earlier result
        assert result.shape == frame.shape and result.std() < frame.std(), "noise-like texture is flattened"
    flat = np.full((32, 32, 3), 0.4, np.float32)
    np.testing.assert_allclose(smoother(flat), flat, atol=1e-6)


# --- real fog in training ---------------------------------------------------------------------------------------

def test_a_recipe_learns_from_a_split_part_and_from_video_frames(shared_data: Path, tmp_path: Path):
    from dgdehaze_core.training.datasets import collect_images, decode_training_images
    from dgdehaze_core.training.recipe import RecipeError, recipe_from_dict

    split = tmp_path / "split.yaml"
    split.write_text("dataset: detection/dawn-fog\nparts:\n  learn: [foggy-004.jpg, haze-032.jpg]\n"
                     "  judge: [foggy-001.jpg]\n")
    raw = {"name": "t", "iterations": 1, "data": {
        "clear": ["${DATA}/clear/bdd"],
        "hazy": [{"path": "${DATA}/detection/dawn-fog", "include": ["@split.yaml:learn"]},
                 {"path": "${DATA}/video/fog_river.mp4", "frame_step": 12}]}}
    recipe = recipe_from_dict(raw, tmp_path)
    entries = collect_images(recipe.hazy, "hazy")
    assert sorted(e.path.name for e, _, _ in entries[:2]) == ["foggy-004.jpg", "haze-032.jpg"]
    assert [(e.path.name, e.frame) for e, _, _ in entries[2:]] == [("fog_river.mp4", 0), ("fog_river.mp4", 12),
                                                                 ("fog_river.mp4", 24)]
    assert sum(weight for _, weight, _ in entries) == pytest.approx(2.0)  # each source weighs 1, shared by its images
    video = [e for e, _, _ in entries[2:]]
    decoded = decode_training_images(video, max_side=320)
    frames = [decoded[e] for e in video]
    assert [f.shape for f in frames] == [(180, 320, 3)] * 3 and frames[0].dtype == np.uint8
    assert not np.array_equal(frames[0], frames[2])
    for bad, message in ((0, "frame_step"), (1.5, "frame_step")):
        raw["data"]["hazy"][1]["frame_step"] = bad
        with pytest.raises(RecipeError, match=message):
            recipe_from_dict(raw, tmp_path)
    raw["data"]["hazy"][1]["frame_step"] = 1
    raw["data"]["hazy"][0]["include"] = ["@split.yaml:validation"]
    with pytest.raises(RecipeError, match="no part 'validation'"):
        recipe_from_dict(raw, tmp_path)


def test_committed_recipes_never_learn_from_judged_or_validation_dawn_photos(shared_data: Path):
    from dgdehaze_core.training.datasets import collect_images
    from dgdehaze_core.training.recipe import load_recipe

    held_out = set(load_split(DAWN_SPLIT).names("judge")) | set(load_split(DAWN_SPLIT).names("validation"))
    learners = 0
    for recipe_file in sorted((REPO_DIR / "training").glob("*.yaml")):
        if recipe_file.name.startswith("depth_"):  # train-depth recipes: clear frames only
            continue
        recipe = load_recipe(recipe_file)
        learnt = {e.path.name for e, _, _ in collect_images(recipe.hazy, "hazy") if e.path.parent.name == "dawn-fog"}
        assert not learnt & held_out, recipe_file.name
        learners += bool(learnt)
    assert learners >= 2  # lite_real_fog.yaml and finetune_dawn_fog.yaml learn from the learn part
