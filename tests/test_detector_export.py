"""`export_detector`'s cache key and the device it hands Ultralytics, without a GPU (the engine build itself needs
TensorRT and CUDA: docs/DEPLOYMENT.md)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dgdehaze_core.detection.export import calibration_set_key


def test_an_int8_detector_s_calibration_key_follows_the_yaml_and_its_images_not_its_path(
        tmp_path: Path, shared_data: Path) -> None:
    """The key held `--calib`'s path: new images behind the same YAML, or an edited YAML, gave back the engine
    calibrated on the old ones. It now holds the YAML's bytes and those of the val images Ultralytics reads: with
    no `path:` entry, `val` under the YAML's folder, searched recursively."""
    photos = sorted((shared_data / "detection" / "dawn-fog").glob("*.jpg"))[:4]
    images = tmp_path / "fog" / "images" / "val"
    (images / "more").mkdir(parents=True)
    for photo in photos[:2]:
        shutil.copy(photo, images / photo.name)
    shutil.copy(photos[2], images / "more" / photos[2].name)
    yaml = tmp_path / "fog" / "data.yaml"
    yaml.write_text("train: images/val\nval: images/val\nnames:\n  0: person\n")

    key = calibration_set_key(yaml)
    os.utime(images / photos[0].name, (0, 0))
    assert calibration_set_key(str(yaml)) == key, "nothing changed: the same engine"
    shutil.copy(photos[3], images / "more" / photos[2].name)
    replaced = calibration_set_key(yaml)
    assert replaced != key, "an image in a subfolder of val replaced under its name"
    (images / "labels.txt").write_text("not an image Ultralytics reads\n")
    assert calibration_set_key(yaml) == replaced
    yaml.write_text("train: images/val\nval: images/val/more\nnames:\n  0: person\n")
    fewer = calibration_set_key(yaml)
    assert fewer not in (key, replaced), "the YAML names other images"
    yaml.write_text("train: images/val\nval: images/val/more\nnames:\n  0: car\n")
    assert calibration_set_key(yaml) != fewer, "an edited YAML, the same images"


def test_a_calibration_yaml_without_images_is_refused_naming_it(tmp_path: Path) -> None:
    yaml = tmp_path / "data.yaml"
    yaml.write_text("train: images\nval: images\nnames:\n  0: person\n")
    with pytest.raises(ValueError, match=f"cannot calibrate int8 on {yaml}"):
        calibration_set_key(yaml)
