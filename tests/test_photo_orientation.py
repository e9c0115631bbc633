"""Phone photos (files whose EXIF orientation tag says how a viewer turns the stored pixels) read upright, as viewers
show them, and their human boxes placed on that upright view in every labelled format: a real DAWN photo stored
turned, with its human box, as a phone stores a photo taken turned; where the box lies in the stored pixels is worked
out by Pillow turning a mask."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from dgdehaze_core.evaluation.labelled_sets import labelled_images
from dgdehaze_core.io.images import exif_orientation, read_image

PHOTO, BOX = "foggy-001", (231, 234, 300, 299)
"""A DAWN photo (640x338, as a viewer shows it) and its one human box, a car."""
TO_VIEW = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}
"""How a viewer turns the stored pixels of each orientation (EXIF's meaning, as Pillow's exif_transpose)."""
TO_STORED = {**TO_VIEW, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
"""The inverse: how a camera stores a view it was turned to."""


def _store(view: Image.Image, orientation: int) -> Image.Image:
    return view if orientation == 1 else view.transpose(TO_STORED[orientation])


def _phone_photo(shared_data: Path, folder: Path, orientation: int) -> tuple[int, int, int, int]:
    """The DAWN photo saved into `folder` as a phone stores it with `orientation`; where its box lies in the stored
    pixels (a mask of the box stored alike)."""
    folder.mkdir(parents=True, exist_ok=True)
    view = Image.open(shared_data / "detection" / "dawn-fog" / f"{PHOTO}.jpg").convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = folder / f"{PHOTO}.jpg"
    _store(view, orientation).save(path, quality=95, exif=exif)
    turned_back = np.asarray(ImageOps.exif_transpose(Image.open(path)), dtype=float)
    assert exif_orientation(path) == orientation and turned_back.shape == np.asarray(view).shape
    assert np.abs(turned_back - np.asarray(view)).mean() < 3  # a viewer shows the photo as it was taken
    mask = Image.new("L", view.size)
    mask.paste(255, BOX)
    return _store(mask, orientation).getbbox()


def _voc(folder: Path, size: tuple[int, int], box: tuple[int, int, int, int]) -> None:
    (folder / "labels-voc").mkdir()
    (folder / "labels-voc" / f"{PHOTO}.xml").write_text(
        f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height></size><object><name>car</name>"
        "<bndbox>" + "".join(f"<{tag}>{value}</{tag}>" for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box))
        + "</bndbox></object></annotation>")


def _coco(folder: Path, size: tuple[int, int], box: tuple[int, int, int, int]) -> None:
    x1, y1, x2, y2 = box
    (folder / "_annotations.coco.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": f"{PHOTO}.jpg", "width": size[0], "height": size[1]}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1]}],
        "categories": [{"id": 1, "name": "car"}]}))


def _yolo(folder: Path, size: tuple[int, int], box: tuple[int, int, int, int]) -> None:
    """The photo moved into images/, its box normalised by `size` into labels/, names in data.yaml."""
    (folder / "images").mkdir()
    (folder / "labels").mkdir()
    shutil.move(folder / f"{PHOTO}.jpg", folder / "images")
    x1, y1, x2, y2 = box[0] / size[0], box[1] / size[1], box[2] / size[0], box[3] / size[1]
    (folder / "labels" / f"{PHOTO}.txt").write_text(f"0 {(x1 + x2) / 2!r} {(y1 + y2) / 2!r} {x2 - x1!r} {y2 - y1!r}\n")
    (folder / "data.yaml").write_text("names: [car]\n")


WRITERS = {"voc": _voc, "coco": _coco, "yolo": _yolo}


def _boxes(folder: Path) -> list[tuple[float, ...]]:
    (item,) = labelled_images(folder)
    assert read_image(item.image).shape[:2] == (338, 640)  # the photo upright, as a viewer shows it
    return [tuple(round(value, 6) for value in box.box) for box in item.boxes]


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_phone_photo_is_read_upright_as_viewers_show_it(shared_data: Path, tmp_path: Path, orientation: int,
                                                          suffix: str):
    _phone_photo(shared_data, tmp_path, orientation)
    photo = tmp_path / f"{PHOTO}{suffix}"
    if suffix != ".jpg":
        jpeg = Image.open(tmp_path / f"{PHOTO}.jpg")
        jpeg.save(photo, exif=jpeg.getexif(), **({"lossless": True} if suffix == ".webp" else {}))
    viewed = np.asarray(ImageOps.exif_transpose(Image.open(photo)))[:, :, ::-1].astype(float)
    upright = read_image(photo)
    assert upright.shape == viewed.shape == (338, 640, 3)  # sky on top, as the depth network learnt scenes
    assert np.abs(upright - viewed).mean() < 1  # alike but for the JPEG decoders


@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_boxes_drawn_on_an_upright_phone_photo_are_used_as_they_are(shared_data: Path, tmp_path: Path, kind: str,
                                                                    orientation: int, caplog):
    _phone_photo(shared_data, tmp_path, orientation)
    WRITERS[kind](tmp_path, (640, 338), BOX)  # as CVAT, Label Studio and Ultralytics show the photo: upright
    with caplog.at_level(logging.WARNING):
        assert _boxes(tmp_path) == [BOX]
    assert "orientation" not in caplog.text  # the size tells how it was labelled: nothing to warn of


@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
@pytest.mark.parametrize("kind", ["voc", "coco"])
def test_boxes_drawn_on_a_phone_photo_s_stored_pixels_are_turned_upright_with_it(shared_data: Path, tmp_path: Path,
                                                                                 kind: str, orientation: int):
    stored_box = _phone_photo(shared_data, tmp_path, orientation)
    WRITERS[kind](tmp_path, (338, 640), stored_box)  # as LabelImg shows it: as stored, its size says so
    assert _boxes(tmp_path) == [BOX]


@pytest.mark.parametrize("orientation", [2, 3, 4])
@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_a_mirrored_or_upside_down_phone_photo_s_boxes_are_taken_as_drawn_upright_with_a_warning(
        shared_data: Path, tmp_path: Path, kind: str, orientation: int, caplog):
    _phone_photo(shared_data, tmp_path, orientation)
    WRITERS[kind](tmp_path, (640, 338), BOX)
    with caplog.at_level(logging.WARNING):
        assert _boxes(tmp_path) == [BOX]
    assert (f"{PHOTO}.jpg carries EXIF orientation {orientation}" in caplog.text) == (kind != "yolo")


@pytest.mark.parametrize("kind", ["voc", "coco"])
def test_boxes_drawn_on_a_quarter_turned_copy_of_an_untagged_photo_are_refused(shared_data: Path, tmp_path: Path,
                                                                               kind: str):
    _phone_photo(shared_data, tmp_path, 1)
    WRITERS[kind](tmp_path, (338, 640), BOX)  # the photo was turned for labelling, its file was not
    with pytest.raises(ValueError, match=f"the 640x338 photo {PHOTO}.jpg turned a quarter"):
        labelled_images(tmp_path)


def test_a_tiff_which_opencv_turns_itself_is_turned_once(shared_data: Path, tmp_path: Path):
    stored_box = _phone_photo(shared_data, tmp_path, 6)
    photo = tmp_path / f"{PHOTO}.tif"
    Image.open(tmp_path / f"{PHOTO}.jpg").save(photo, exif=Image.open(tmp_path / f"{PHOTO}.jpg").getexif())
    (tmp_path / f"{PHOTO}.jpg").unlink()
    viewed = np.asarray(ImageOps.exif_transpose(Image.open(photo)))[:, :, ::-1]
    assert exif_orientation(photo) == 6 and np.array_equal(read_image(photo), viewed)
    _voc(tmp_path, (338, 640), stored_box)  # drawn on the stored pixels: turned upright with the photo
    assert _boxes(tmp_path) == [BOX]
