"""Labelled photo sets in the layouts they are published in: this project's labels-voc/, Pascal VOC's JPEGImages/ +
Annotations/ (RTTS) and DAWN's Fog/ + Fog/Fog_PASCAL_VOC/, all scored alike by `dgdehaze eval`, on real DAWN
photos and their human boxes."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dgdehaze_core.cli import main
from dgdehaze_core.evaluation.labelled_sets import labelled_images, labelled_layout

PHOTOS = ["foggy-001.jpg", "haze-003.jpg", "mist-002.jpg"]


def _layout(shared_data: Path, photos: Path, labels: Path) -> None:
    """The PHOTOS of the shared DAWN set with their VOC files, copied into `photos` and `labels`."""
    dawn = shared_data / "detection" / "dawn-fog"
    for folder in (photos, labels):
        folder.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        shutil.copy(dawn / name, photos)
        shutil.copy(dawn / "labels-voc" / f"{Path(name).stem}.xml", labels)


@pytest.fixture
def layouts(shared_data: Path, tmp_path: Path) -> dict[str, Path]:
    """The same photos and boxes in each layout: the set's folder by layout name."""
    sets = {"labels-voc": tmp_path / "project", "voc": tmp_path / "RTTS", "dawn": tmp_path / "DAWN" / "Fog"}
    _layout(shared_data, sets["labels-voc"], sets["labels-voc"] / "labels-voc")
    _layout(shared_data, sets["voc"] / "JPEGImages", sets["voc"] / "Annotations")
    _layout(shared_data, sets["dawn"], sets["dawn"] / "Fog_PASCAL_VOC")
    return sets


def test_every_layout_reads_the_same_photos_and_boxes(layouts: dict[str, Path]):
    read = {name: labelled_images(folder) for name, folder in layouts.items()}
    reference = read["labels-voc"]
    assert [item.image.name for item in reference] == PHOTOS and all(item.boxes for item in reference)
    for name, items in read.items():
        assert [(item.image.name, item.boxes) for item in items] == [(i.image.name, i.boxes) for i in reference], name
    assert labelled_layout(layouts["voc"]).photos == layouts["voc"] / "JPEGImages"


def test_voc_exports_of_labelimg_roboflow_and_label_studio_read_as_the_same_boxes(shared_data: Path, tmp_path: Path,
                                                                                   layouts: dict[str, Path]):
    """LabelImg saves each VOC file beside its photo (as Roboflow's VOC export does) and Label Studio's VOC export
    keeps the photos in images/ beside Annotations/: neither was read (eval said the folder fit only haze). A folder
    of photos beside XML files that name none of them is no labelled set."""
    beside, studio = tmp_path / "labelimg", tmp_path / "label-studio"
    _layout(shared_data, beside, beside)
    _layout(shared_data, studio / "images", studio / "Annotations")
    reference = [(item.image.name, item.boxes) for item in labelled_images(layouts["labels-voc"])]
    for folder in (beside, studio):
        assert [(item.image.name, item.boxes) for item in labelled_images(folder)] == reference, folder.name
    assert labelled_layout(studio).photos == studio / "images"
    for xml in beside.glob("*.xml"):
        xml.rename(xml.with_name(f"other-{xml.name}"))
    assert labelled_layout(beside) is None


def test_eval_scores_each_layout_alike_and_reads_a_voc_sets_photos_for_haze(layouts: dict[str, Path],
                                                                             tmp_path: Path):
    figures = {}
    for name, folder in layouts.items():
        out = tmp_path / f"{name}.json"
        assert main(["eval", "--dataset", str(folder), "--measure", "detection", "--method", "hazy",
                     "--json", str(out)]) == 0
        figures[name] = json.loads(out.read_text())
    assert figures["labels-voc"]["hazy"]["objects"] > 0
    assert figures["voc"] == figures["labels-voc"] == figures["dawn"]
    out = tmp_path / "haze.json"
    assert main(["eval", "--dataset", str(layouts["voc"]), "--measure", "haze", "--method", "hazy",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["hazy"]["images"] == len(PHOTOS)


def test_boxes_in_two_places_are_refused_naming_both(layouts: dict[str, Path], capsys):
    folder = layouts["dawn"]
    shutil.copytree(folder / "Fog_PASCAL_VOC", folder / "labels-voc")
    assert main(["eval", "--dataset", str(folder), "--measure", "detection", "--method", "hazy"]) == 2
    error = capsys.readouterr().err
    assert "Fog_PASCAL_VOC/" in error and "labels-voc/" in error and "keep one" in error


def test_a_folder_without_boxes_names_the_layouts_it_reads(layouts: dict[str, Path]):
    folder = layouts["voc"]
    for xml in (folder / "Annotations").iterdir():
        xml.unlink()
    assert labelled_layout(folder) is None  # an Annotations/ without a VOC file labels nothing
    with pytest.raises(ValueError, match="no labelled boxes: expected VOC files in labels-voc/ .*Annotations/ beside "
                                         "JPEGImages/.*a COCO JSON .*YOLO labels/"):
        labelled_images(folder)


def test_a_sets_root_given_for_the_set_in_it_is_refused_naming_the_subfolder(layouts: dict[str, Path], capsys):
    """DAWN as downloaded is DAWN/Fog/, DAWN/Rain/, ...: `--dataset DAWN` says which subfolder to give."""
    assert main(["eval", "--dataset", str(layouts["dawn"].parent), "--measure", "detection", "--method", "hazy"]) == 2
    assert "fits none of the measures detection (its subfolder Fog/ does: give it as --dataset)" in \
        capsys.readouterr().err


def test_a_sets_part_given_for_the_set_is_refused_naming_the_folder_above(layouts: dict[str, Path], capsys):
    """RTTS/JPEGImages/ given for RTTS/ (or DAWN's Fog/Fog_PASCAL_VOC/ for Fog/) was refused as fitting no measure,
    with nothing said of the set around it."""
    for part, whole in ((layouts["voc"] / "JPEGImages", layouts["voc"]),
                        (layouts["dawn"] / "Fog_PASCAL_VOC", layouts["dawn"])):
        assert main(["eval", "--dataset", str(part), "--measure", "detection", "--method", "hazy"]) == 2
        assert f"fits none of the measures detection (the folder above it, {whole}/, does: give that as " \
            "--dataset)" in capsys.readouterr().err


def test_a_labelled_set_under_the_default_quality_measure_names_the_measures_it_fits(layouts: dict[str, Path],
                                                                                      capsys):
    """`eval --dataset DAWN/Fog` (the default measure, quality) said the folder fitted none of the measures and
    listed "a folder of hazy images (with VOC ... boxes for detection)", which is what it was."""
    assert main(["eval", "--dataset", str(layouts["dawn"]), "--method", "hazy"]) == 2
    assert f"{layouts['dawn']} fits none of the measures quality; it fits detection, haze: give --measure " \
        "detection,haze" in capsys.readouterr().err


def test_a_pascal_voc_image_set_list_chooses_the_photos_scored(layouts: dict[str, Path], tmp_path: Path, caplog):
    """A Pascal VOC folder holds its trainval and test photos together and says which is which in
    ImageSets/Main/*.txt (ids, one a line; a class's list with a flag after each): `--include @LIST.txt` scores the
    photos one lists, as a `@FILE:PART` of a split file does, and warns of ids the folder lacks."""
    voc = layouts["voc"]
    lists = voc / "ImageSets" / "Main"
    lists.mkdir(parents=True)
    (lists / "test.txt").write_text("foggy-001\nmist-002\n\n")
    (lists / "car_test.txt").write_text("foggy-001  1\nmist-002 -1\nhaze-099  1\n")
    figures = {}
    for name, include in (("all", []), ("test", ["--include", f"@{lists / 'test.txt'}"]),
                          ("car", ["--include", f"@{lists / 'car_test.txt'}"]),
                          ("by hand", ["--include", "foggy-001.*", "--include", "mist-002.*"])):
        out = tmp_path / f"{name}.json"
        with caplog.at_level("WARNING"):
            assert main(["eval", "--dataset", str(voc), "--measure", "detection", "--method", "hazy", *include,
                         "--json", str(out)]) == 0
        figures[name] = json.loads(out.read_text())["hazy"]
    assert figures["all"]["images"] == 3 and figures["test"]["images"] == 2
    assert figures["test"] == figures["car"] == figures["by hand"] != figures["all"]
    assert "names 1 file(s) that are not in" in caplog.text and "haze-099.*" in caplog.text
    (lists / "empty.txt").write_text("\n")
    assert main(["eval", "--dataset", str(voc), "--measure", "detection", "--method", "hazy",
                 "--include", f"@{lists / 'empty.txt'}"]) == 2
