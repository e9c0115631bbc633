"""Labelled photo sets in COCO JSON (Roboflow, CVAT) and YOLO (Ultralytics, Roboflow) read and scored as the same
photos with their VOC files are: real DAWN photos, their human boxes converted here into each format."""
from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import cv2
import pytest

from dgdehaze_core.cli import main
from dgdehaze_core.evaluation import coco_boxes
from dgdehaze_core.evaluation.labelled_sets import labelled_images, labelled_layout
from dgdehaze_core.evaluation.voc_boxes import ReferenceBox
from dgdehaze_core.evaluation.yolo_boxes import read_yolo

PHOTOS = ["foggy-001.jpg", "haze-003.jpg", "mist-002.jpg"]
COCO_IDS = {"car": 1, "person": 7, "bus": 9}
"""Category ids of the converted sets, unlike COCO's own (person 1, car 3, bus 6)."""
YOLO_NAMES = ["bicycle", "bus", "person", "car"]
"""Class ids of the converted sets: car 3, as in DAWN's own YOLO files."""


@pytest.fixture
def voc(shared_data: Path, tmp_path: Path) -> Path:
    """The PHOTOS of the shared DAWN set with their VOC files, in this project's labels-voc/ layout."""
    dawn, folder = shared_data / "detection" / "dawn-fog", tmp_path / "voc"
    (folder / "labels-voc").mkdir(parents=True)
    for name in PHOTOS:
        shutil.copy(dawn / name, folder)
        shutil.copy(dawn / "labels-voc" / f"{Path(name).stem}.xml", folder / "labels-voc")
    return folder


def _coco(voc: Path, photos: Path, json_path: Path, prefix: str = "") -> dict:
    """The VOC set's photos copied into `photos` and their boxes written to `json_path` as COCO JSON (file names
    after `prefix`); the JSON's content."""
    photos.mkdir(parents=True, exist_ok=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    data: dict = {"info": {}, "images": [], "annotations": [],
                  "categories": [{"id": i, "name": name.capitalize(), "supercategory": "vehicle"}
                                 for name, i in COCO_IDS.items()]}
    for image_id, item in enumerate(labelled_images(voc), 10):
        shutil.copy(item.image, photos)
        height, width = _size(item.image)
        data["images"].append({"id": image_id, "file_name": prefix + item.image.name, "width": width,
                               "height": height})
        for box in item.boxes:
            x1, y1, x2, y2 = box.box
            data["annotations"].append({"id": len(data["annotations"]), "image_id": image_id, "iscrowd": 0,
                                        "category_id": COCO_IDS[box.class_name], "bbox": [x1, y1, x2 - x1, y2 - y1]})
    json_path.write_text(json.dumps(data))
    return data


def _yolo(voc: Path, photos: Path, labels: Path) -> None:
    """The VOC set's photos copied into `photos` and their boxes written as YOLO label files into `labels`: the
    second box of each photo as a segment (its four corners), a blank line between."""
    for folder in (photos, labels):
        folder.mkdir(parents=True, exist_ok=True)
    for item in labelled_images(voc):
        shutil.copy(item.image, photos)
        height, width = _size(item.image)
        lines = []
        for index, box in enumerate(item.boxes):
            x1, y1, x2, y2 = box.box[0] / width, box.box[1] / height, box.box[2] / width, box.box[3] / height
            corners = f"{x1!r} {y1!r} {x2!r} {y1!r} {x2!r} {y2!r} {x1!r} {y2!r}"
            centre = f"{(x1 + x2) / 2!r} {(y1 + y2) / 2!r} {x2 - x1!r} {y2 - y1!r}"
            lines.append(f"{YOLO_NAMES.index(box.class_name)} {corners if index == 1 else centre}")
        (labels / f"{item.image.stem}.txt").write_text("\n\n".join(lines) + "\n")


def _size(image: Path) -> tuple[int, int]:
    """(height, width) of an image file."""
    return cv2.imread(str(image)).shape[:2]


@pytest.fixture
def formats(voc: Path, tmp_path: Path) -> dict[str, Path]:
    """The same photos and boxes as `voc` in each format and layout: the folder to give, by name."""
    sets = {"voc": voc, "roboflow-coco": tmp_path / "roboflow" / "train", "cvat-coco": tmp_path / "cvat",
            "roboflow-yolo": tmp_path / "yolo" / "valid", "ultralytics": tmp_path / "fog-yolo" / "images" / "val"}
    _coco(voc, sets["roboflow-coco"], sets["roboflow-coco"] / "_annotations.coco.json")
    _coco(voc, sets["cvat-coco"] / "images", sets["cvat-coco"] / "annotations" / "instances_default.json", "images/")
    _yolo(voc, sets["roboflow-yolo"] / "images", sets["roboflow-yolo"] / "labels")
    (tmp_path / "yolo" / "data.yaml").write_text(f"train: ../train/images\nnc: 4\nnames: {YOLO_NAMES}\n")
    root = tmp_path / "fog-yolo"
    _yolo(voc, sets["ultralytics"], root / "labels" / "val")
    (root / "dataset.yaml").write_text("path: .\nval: images/val\nnames:\n" +
                                       "".join(f"  {i}: {name}\n" for i, name in enumerate(YOLO_NAMES)))
    return sets


def test_coco_and_yolo_sets_read_the_same_photos_and_boxes_as_their_voc_files(formats: dict[str, Path]):
    reference = labelled_images(formats["voc"])
    assert [item.image.name for item in reference] == PHOTOS and all(item.boxes for item in reference)
    for name, folder in formats.items():
        items = labelled_images(folder)
        assert [item.image.name for item in items] == PHOTOS, name
        for item, expected in zip(items, reference):
            assert [(b.class_name, b.difficult) for b in item.boxes] == \
                [(b.class_name, b.difficult) for b in expected.boxes], name
            if name.endswith("coco") or name == "voc":
                assert item.boxes == expected.boxes, name
            else:
                assert [b.box for b in item.boxes] == [pytest.approx(b.box, abs=1e-6) for b in expected.boxes], name
    assert labelled_layout(formats["cvat-coco"]).photos == formats["cvat-coco"] / "images"
    assert labelled_layout(formats["ultralytics"]).labels == formats["ultralytics"].parents[1] / "labels" / "val"


def test_eval_scores_every_format_alike_and_reads_a_yolo_sets_photos_for_haze(formats: dict[str, Path],
                                                                            tmp_path: Path):
    out = tmp_path / "detection.json"
    datasets = [arg for folder in formats.values() for arg in ("--dataset", str(folder))]
    assert main(["eval", *datasets, "--measure", "detection", "--method", "hazy", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    by_set: dict[str, dict] = {}
    for key, value in rows.items():
        name, _, row = key.rpartition("/")
        by_set.setdefault(name, {})[row] = value
    assert len(by_set) == len(formats) and by_set[next(iter(by_set))]["hazy"]["objects"] == 11
    assert all(figures == by_set[next(iter(by_set))] for figures in by_set.values())
    out = tmp_path / "haze.json"
    assert main(["eval", "--dataset", str(formats["roboflow-yolo"]), "--measure", "haze", "--method", "hazy",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["hazy"]["images"] == len(PHOTOS)


def test_an_ultralytics_sets_root_is_refused_naming_its_split_to_give(formats: dict[str, Path], capsys):
    """An Ultralytics export's root (data.yaml, images/val/, labels/val/) given as --dataset was refused as fitting
    no measure, with no word of the images/val/ that does."""
    root = formats["ultralytics"].parents[1]
    assert main(["eval", "--dataset", str(root), "--measure", "detection", "--method", "hazy"]) == 2
    assert "fits none of the measures detection (its subfolder images/val/ does: give it as --dataset)" in \
        capsys.readouterr().err


def test_a_yolo_set_given_through_a_link_reads_its_names_and_labels(formats: dict[str, Path], tmp_path: Path):
    """A set kept on another disk and linked into a workspace: Roboflow's valid/ linked was refused for want of
    the data.yaml beside the real valid/, and Ultralytics' images/val linked fit only the haze measure."""
    expected = [(item.image.name, item.boxes) for item in labelled_images(formats["roboflow-yolo"])]
    for name in ("roboflow-yolo", "ultralytics"):
        link = tmp_path / "workspace" / name
        link.parent.mkdir(exist_ok=True)
        link.symlink_to(formats[name], target_is_directory=True)
        assert [(item.image.name, item.boxes) for item in labelled_images(link)] == expected, name


def test_yolo_labels_beside_their_photos_read_as_labelimg_and_cvat_write_them(voc: Path, tmp_path: Path):
    """LabelImg's YOLO mode saves each label file and classes.txt beside the photos, CVAT's YOLO 1.1 export keeps
    them in obj_train_data/ with obj.names above: neither was read (the folder fit only the haze measure)."""
    reference = [(item.image.name, item.boxes) for item in labelled_images(voc)]
    labelimg, cvat = tmp_path / "labelimg", tmp_path / "cvat-yolo" / "obj_train_data"
    for folder, names in ((labelimg, labelimg / "classes.txt"), (cvat, cvat.parent / "obj.names")):
        _yolo(voc, folder, folder)
        names.write_text("\n".join(YOLO_NAMES) + "\n")
        items = labelled_images(folder)
        assert [item.image.name for item in items] == [name for name, _ in reference], folder.name
        assert [[pytest.approx(b.box, abs=1e-6) for b in item.boxes] for item in items] == \
            [[b.box for b in boxes] for _, boxes in reference]
    (labelimg / "classes.txt").unlink()
    assert labelled_layout(labelimg) is None  # .txt files beside photos without class names are no YOLO set


def test_eval_json_naming_the_sets_coco_labels_is_refused_and_they_stay(formats: dict[str, Path], capsys):
    """--json took any file that held JSON for an earlier run's figures: `eval --json` naming the set's own COCO
    file replaced its labels with the figures."""
    labels = formats["roboflow-coco"] / "_annotations.coco.json"
    before = labels.read_bytes()
    assert main(["eval", "--dataset", str(formats["roboflow-coco"]), "--measure", "detection", "--method", "hazy",
                 "--json", str(labels)]) == 2
    assert f"--json {labels} exists and holds JSON that is no table of figures" in capsys.readouterr().err
    assert labels.read_bytes() == before
    figures = labels.with_name("figures.json")
    figures.write_text('{"dcp": {"map50": 0.5}}')  # an earlier run's figures: replaced
    assert main(["eval", "--dataset", str(formats["roboflow-coco"]), "--measure", "detection", "--method", "hazy",
                 "--json", str(figures)]) == 0
    assert set(json.loads(figures.read_text())) == {"hazy", "hazy[bus]", "hazy[car]"}


def test_a_coco_image_without_annotations_has_no_object_and_an_unlisted_photo_is_left_out(voc: Path,
                                                                                          tmp_path: Path, caplog):
    folder = tmp_path / "coco"
    data = _coco(voc, folder, folder / "_annotations.coco.json")
    first, last = data["images"][0]["id"], data["images"][2]["id"]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] not in (first, last)]
    data["images"] = data["images"][:2]
    (folder / "_annotations.coco.json").write_text(json.dumps(data))
    items = labelled_images(folder)
    assert [item.image.name for item in items] == PHOTOS[:2] and items[0].boxes == () and items[1].boxes
    assert "1 image(s) without boxes in _annotations.coco.json left out: mist-002.jpg" in caplog.text


def test_coco_crowds_are_difficult_and_its_sizes_scale_the_boxes(voc: Path, tmp_path: Path, caplog):
    """CVAT exports every object drawn as a mask with iscrowd: 1; such objects were ignored without a word (all of
    a set drawn so: "none that is not difficult"), so the crowds are counted in a warning."""
    folder = tmp_path / "coco"
    data = _coco(voc, folder, folder / "_annotations.coco.json")
    reference = labelled_images(folder)[1].boxes  # haze-003.jpg: 640x360, two cars
    data["annotations"][1]["iscrowd"] = 1
    data["images"][1].update(width=1280, height=720)  # labelled on a copy twice the size of the photo
    (folder / "_annotations.coco.json").write_text(json.dumps(data))
    boxes = labelled_images(folder)[1].boxes
    assert [b.difficult for b in boxes] == [True, False] and [b.crowd for b in boxes] == [True, False]
    assert [b.box for b in boxes] == [tuple(x / 2 for x in b.box) for b in reference]
    assert "_annotations.coco.json: 1 of the 11 boxes are crowds (iscrowd: 1)" in caplog.text


@pytest.mark.parametrize("prefix", ["images/", "JPEGImages/", "train\\", "/data/upload/1/"])
def test_a_coco_file_name_with_a_folder_prefix_finds_the_photo(voc: Path, tmp_path: Path, prefix: str):
    folder = tmp_path / "coco"
    _coco(voc, folder, folder / "_annotations.coco.json", prefix)
    assert [item.image for item in labelled_images(folder)] == [folder / name for name in PHOTOS]


def test_broken_coco_sets_are_refused_naming_what_is_wrong(voc: Path, tmp_path: Path):
    folder = tmp_path / "coco"
    _coco(voc, folder, folder / "_annotations.coco.json")
    (folder / "notes.json").write_text('{"project": "fog"}')  # another JSON is no labels
    assert labelled_layout(folder).labels.name == "_annotations.coco.json"
    shutil.copy(folder / "_annotations.coco.json", folder / "copy.json")
    with pytest.raises(ValueError, match=r"2 COCO JSON files \(_annotations.coco.json, copy.json\): keep one"):
        labelled_layout(folder)
    (folder / "copy.json").unlink()
    text = (folder / "_annotations.coco.json").read_text()
    data = json.loads(text)
    first, second = data["images"][0]["id"], data["images"][1]["id"]
    data["images"][1]["id"] = first  # two exports merged without new ids: both photos took the boxes of both
    for annotation in data["annotations"]:
        annotation["image_id"] = first if annotation["image_id"] == second else annotation["image_id"]
    (folder / "_annotations.coco.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"json: foggy-001.jpg and haze-003.jpg share the image id 10: give each "
                                         r"image its own id"):
        labelled_images(folder)
    data = json.loads(text)
    data["categories"].append({"id": COCO_IDS["person"], "name": "Truck"})
    (folder / "_annotations.coco.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"json: categories person and truck share the id 7: give each category "
                                         r"its own id"):
        labelled_images(folder)
    data["categories"][-1]["name"] = "person"  # the same category twice: its boxes are the same either way
    (folder / "_annotations.coco.json").write_text(json.dumps(data))
    assert sum(len(item.boxes) for item in labelled_images(folder)) == 11
    (folder / "_annotations.coco.json").write_text(text)
    (folder / "haze-003.jpg").unlink()
    with pytest.raises(ValueError, match=r"_annotations.coco.json: image 11 \(haze-003.jpg\) is not in"):
        labelled_images(folder)


def test_a_coco_json_with_a_byte_order_mark_reads_and_one_that_does_not_read_is_named(voc: Path, tmp_path: Path,
                                                                                       caplog):
    """A COCO JSON saved by a Windows editor (a UTF-8 byte-order mark) was taken for no JSON, and a truncated one
    left out without a word: the folder "has no labelled boxes" while it held a COCO JSON. A truncated export of a
    tool's own name (Roboflow's) is refused naming it: eval said only that the folder fit no measure but haze."""
    folder = tmp_path / "coco"
    _coco(voc, folder, folder / "_annotations.coco.json")
    expected = [(item.image.name, item.boxes) for item in labelled_images(folder)]
    labels = folder / "_annotations.coco.json"
    text = labels.read_text()
    labels.write_text("\ufeff" + text, encoding="utf-8")
    assert [(item.image.name, item.boxes) for item in labelled_images(folder)] == expected
    labels.write_text(text[:len(text) // 2])
    with pytest.raises(ValueError, match=f"{labels} does not read as JSON .*: the export's COCO boxes cannot be read"):
        labelled_images(folder)
    labels = labels.rename(folder / "boxes.json")  # a name no tool gives: maybe no labels at all
    for _ in range(2):
        with pytest.raises(ValueError, match="has no labelled boxes"):
            labelled_images(folder)
    assert caplog.text.count(f"{labels} does not read as JSON") == 1


def test_a_coco_json_is_parsed_once_while_unchanged_and_again_once_changed(formats: dict[str, Path], tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch):
    """Finding the layout and reading the boxes each parsed the whole JSON (eval asked for the layout three times
    and then the boxes: four parses of a file full COCO makes hundreds of MB); one parse now serves them while the
    file is unchanged, and a changed file (even of the same size) is read again."""
    folder = formats["roboflow-coco"]
    expected = [(item.image.name, item.boxes) for item in labelled_images(formats["voc"])]
    labels = folder / "_annotations.coco.json"
    parsed: list[str] = []

    def counted(text: str) -> object:
        parsed.append(text)
        return json.loads(text)

    monkeypatch.setattr(coco_boxes, "json", SimpleNamespace(loads=counted, JSONDecodeError=json.JSONDecodeError))
    stat = labels.stat()
    os.utime(labels, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))  # a file no earlier test has parsed
    out = tmp_path / "detection.json"
    assert main(["eval", "--dataset", str(folder), "--measure", "detection", "--method", "hazy",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["hazy"]["objects"] == 11
    assert labelled_layout(folder).labels == labels
    assert [(item.image.name, item.boxes) for item in labelled_images(folder)] == expected
    assert len(parsed) == 1
    data = json.loads(labels.read_text())
    data["categories"][0]["name"] = "Bus"  # the car category (id 1) renamed: same size, other boxes
    labels.write_text(json.dumps(data))
    assert labels.stat().st_size == stat.st_size
    os.utime(labels, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2 * 10 ** 9))
    renamed = labelled_images(folder)
    assert len(parsed) == 2
    assert [box.class_name for item in renamed for box in item.boxes] == \
        ["bus" if box.class_name == "car" else box.class_name for _, boxes in expected for box in boxes]


def test_selection_reads_no_unselected_photo_or_label(formats: dict[str, Path]):
    """A broken photo, annotation or label line outside --include/--limit fails nothing."""
    coco = formats["roboflow-coco"]
    data = json.loads((coco / "_annotations.coco.json").read_text())
    data["annotations"][-1]["bbox"] = [float("nan"), 0, 1, 1]  # mist-002.jpg's last box
    (coco / "_annotations.coco.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"annotation 10 \(image mist-002.jpg\) is not a finite number"):
        labelled_images(coco)
    yolo = formats["roboflow-yolo"]
    (yolo / "labels" / "mist-002.txt").write_text("3 0.5 0.5 0.1\n")
    for folder in (coco, yolo / "images"):
        (folder / "mist-002.jpg").write_bytes(b"")
    for folder in (coco, yolo):
        assert [i.image.name for i in labelled_images(folder, keep=lambda name: not name.startswith("mist"))] == \
            PHOTOS[:2]
        assert [i.image.name for i in labelled_images(folder, choose=lambda paths: paths[:1])] == PHOTOS[:1]


def test_a_yolo_set_without_class_names_is_refused_naming_what_was_looked_for(formats: dict[str, Path]):
    folder = formats["roboflow-yolo"]
    (folder.parent / "data.yaml").unlink()
    with pytest.raises(ValueError, match=r"need their names.*data.yaml, dataset.yaml \(names:\), classes.txt or "
                                         r"\*.names in .*labels"):
        labelled_images(folder)
    (folder / "classes.txt").write_text("\n".join(YOLO_NAMES) + "\n")  # Label Studio's YOLO export
    assert sum(len(item.boxes) for item in labelled_images(folder)) == 11


def test_yolo_names_and_labels_saved_with_a_byte_order_mark_read_as_without(formats: dict[str, Path]):
    """Windows Notepad begins a UTF-8 file with a byte-order mark: it was read as part of the first class name
    ("\ufeffbicycle", a class the detector lacks, its boxes set aside under a warning that showed "bicycle") and of
    a label file's first class id (refused as not a number)."""
    folder = formats["roboflow-yolo"]
    expected = [(item.image.name, item.boxes) for item in labelled_images(folder)]
    (folder.parent / "data.yaml").unlink()
    (folder / "classes.txt").write_text("\ufeff" + "\r\n".join(YOLO_NAMES) + "\r\n", encoding="utf-8")
    for label in (folder / "labels").glob("*.txt"):
        label.write_text("\ufeff" + label.read_text(), encoding="utf-8")
    (folder / "labels" / "haze-003.txt").write_text("2 0.5 0.5 0.1 0.1\n", encoding="utf-8")
    (folder / "labels" / "foggy-001.txt").write_text("\ufeff0 0.5 0.5 0.1 0.1\n", encoding="utf-8")
    items = labelled_images(folder)
    assert [(item.image.name, item.boxes) for item in items][2:] == expected[2:]
    assert [box.class_name for item in items[:2] for box in item.boxes] == ["bicycle", "person"]
    (folder / "labels" / "mist-002.txt").write_bytes(b"3 0.5 0.5 0.1 0.1\n# caf\xe9\n")  # Latin-1
    with pytest.raises(ValueError, match=r"mist-002.txt is not UTF-8 text"):
        labelled_images(folder)


@pytest.mark.parametrize("line, error", [("3 0.5 0.5 0.1", "4 fields; expected class cx cy w h"),
                                         ("3 0.5 nan 0.1 0.1", "a number is not finite"),
                                         ("4 0.5 0.5 0.1 0.1", "class 4 has no name"),
                                         ("3 320 180 40 40", "coordinates must be normalised to")])
def test_a_malformed_yolo_line_is_refused_naming_file_and_line(formats: dict[str, Path], line: str, error: str):
    labels = formats["roboflow-yolo"] / "labels" / "haze-003.txt"
    labels.write_text(labels.read_text() + line + "\n")
    with pytest.raises(ValueError, match=rf"haze-003.txt, line 4: {error}"):
        labelled_images(formats["roboflow-yolo"])


def test_a_yolo_segment_is_boxed_by_its_outermost_points(tmp_path: Path):
    """A polygon (Roboflow's and Ultralytics' segment sets) whose points begin at neither corner of its box."""
    label = tmp_path / "a.txt"
    label.write_text("0 0.5 0.1 0.9 0.4 0.7 0.9 0.2 0.8 0.1 0.3\n")
    assert read_yolo(label, {0: "car"}, (200, 100)) == (ReferenceBox("car", (20.0, 10.0, 180.0, 90.0)),)


def test_a_yolo_photo_without_labels_has_no_object_unless_no_photo_has_one(formats: dict[str, Path]):
    folder = formats["roboflow-yolo"]
    (folder / "labels" / "foggy-001.txt").unlink()
    items = labelled_images(folder)
    assert [item.image.name for item in items] == PHOTOS and items[0].boxes == () and items[1].boxes
    for labels in (folder / "labels").iterdir():
        labels.unlink()
    assert labelled_layout(folder) is None


def test_boxes_in_two_formats_are_refused_naming_both(formats: dict[str, Path], capsys):
    folder = formats["voc"]
    shutil.copy(formats["roboflow-coco"] / "_annotations.coco.json", folder)
    assert main(["eval", "--dataset", str(folder), "--measure", "detection", "--method", "hazy"]) == 2
    error = capsys.readouterr().err
    assert "labels-voc/" in error and "_annotations.coco.json" in error and "keep one" in error


def _boxes(folder: Path) -> dict[str, tuple]:
    return {item.image.name: item.boxes for item in labelled_images(folder)}


@pytest.mark.parametrize("size", ["<size><width>0</width><height>0</height><depth>3</depth></size>",
                                  "<size><width>640</width><height>0</height><depth>0</depth></size>",
                                  "<size><width></width><height></height><depth>3</depth></size>",
                                  "<size><depth>3</depth></size>", ""])
def test_a_voc_export_without_a_size_takes_the_photos_own(voc: Path, size: str):
    """CVAT, LabelImg and Roboflow VOC exports may write <width>0</width> or leave <size> out: the whole set was
    refused ("<size> must be positive", "has no <size>"). The boxes are taken in the photo's own pixels, which for
    DAWN's files (drawn on these very photos) are the boxes their real <size> gives."""
    expected = _boxes(voc)
    for xml in (voc / "labels-voc").iterdir():
        text = xml.read_text()
        start, end = text.index("<size>"), text.index("</size>") + len("</size>")
        xml.write_text(text[:start] + size + text[end:])
    assert _boxes(voc) == expected and sum(map(len, expected.values())) > 10


def test_a_voc_size_taken_from_the_photo_is_the_photo_as_read_not_scaled(voc: Path):
    """A photo stored at twice the size its VOC file gives has its boxes scaled twice over; without a <size> they
    are taken in its own pixels, as they are. A negative <size> is still refused, naming the file."""
    photo, xml = voc / PHOTOS[0], voc / "labels-voc" / f"{Path(PHOTOS[0]).stem}.xml"
    drawn = _boxes(voc)[PHOTOS[0]]
    image = cv2.imread(str(photo))
    cv2.imwrite(str(photo), cv2.resize(image, (image.shape[1] * 2, image.shape[0] * 2)))
    assert [b.box for b in _boxes(voc)[PHOTOS[0]]] == [tuple(2 * x for x in b.box) for b in drawn]
    text = xml.read_text()
    xml.write_text(text.replace(text[text.index("<size>"):text.index("</size>") + len("</size>")], ""))
    assert _boxes(voc)[PHOTOS[0]] == drawn
    xml.write_text(text.replace("<width>640</width>", "<width>-640</width>"))
    with pytest.raises(ValueError, match=rf"{xml.name}: <size> must be positive, or 0 for unknown, got -640x"):
        labelled_images(voc)


def test_voc_objects_without_a_box_are_left_out_with_one_warning_per_file(voc: Path, tmp_path: Path, caplog):
    """An <object> with only a polygon, or with no shape (difficult or not), refused the whole set ("lacks <name> or
    <bndbox>"). It cannot be scored as a box: it is left out, counted nowhere (not an object the detector missed),
    with one warning naming the file and those objects; the file's boxed objects and the other files read as
    before, and eval scores the set."""
    before = _boxes(voc)
    rows = {}
    out = tmp_path / "before.json"
    assert main(["eval", "--dataset", str(voc), "--measure", "detection", "--method", "hazy", "--no-progress",
                 "--json", str(out)]) == 0
    rows["before"] = json.loads(out.read_text())
    xml = voc / "labels-voc" / f"{Path(PHOTOS[0]).stem}.xml"
    text = xml.read_text()
    first = text.index("<bndbox>")
    text = text[:first] + text[text.index("</bndbox>", first) + len("</bndbox>"):]  # the first car loses its box
    polygon = ("<object><name>person</name><difficult>0</difficult><polygon><x1>10</x1><y1>10</y1><x2>40</x2>"
               "<y2>10</y2><x3>25</x3><y3>60</y3></polygon></object>")
    shapeless = "<object><name>car</name><difficult>1</difficult></object>"
    xml.write_text(text.replace("</annotation>", polygon + shapeless + "</annotation>"))
    caplog.clear()
    after = _boxes(voc)
    assert after == {**before, PHOTOS[0]: before[PHOTOS[0]][1:]}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    count = len(ET.parse(xml).getroot().findall("object"))
    assert warnings == [f"{xml.name}: <object> 1 (car), {count - 1} (person), {count} (car, difficult) without "
                        "<bndbox> cannot be scored as a box; left out"]
    out = tmp_path / "after.json"
    assert main(["eval", "--dataset", str(voc), "--measure", "detection", "--method", "hazy", "--no-progress",
                 "--json", str(out)]) == 0
    rows["after"] = json.loads(out.read_text())
    assert rows["after"]["hazy"]["objects"] == rows["before"]["hazy"]["objects"] - 1
    assert rows["after"]["hazy[car]"]["objects"] == rows["before"]["hazy[car]"]["objects"] - 1
    assert "hazy[person]" not in rows["before"] and "hazy[person]" not in rows["after"]
    xml.write_text(text.replace("<name>car</name>", "<name> </name>", 1))
    with pytest.raises(ValueError, match=rf"{xml.name}: <object> 1 has no <name>"):
        labelled_images(voc)
