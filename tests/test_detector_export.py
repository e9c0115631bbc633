"""`export_detector`'s cache key and the device it hands Ultralytics, without a GPU (the engine build itself needs
TensorRT and CUDA: docs/DEPLOYMENT.md)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

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


def test_ultralytics_is_handed_cuda_n_for_the_short_form_n_as_the_dehazer_s_runtimes_are() -> None:
    """export_detector built an engine for device "1" on cuda:0 and exported an ONNX file for "1" or "cuda" on the
    CPU (an fp16 one then fp32, cached as fp16); it now reads the name with parse_device."""
    from dgdehaze_core.detection.export import ultralytics_device

    assert ultralytics_device("1", "engine") == "cuda:1"
    assert ultralytics_device("1", "onnx") == "cuda:1"
    assert ultralytics_device("cuda:2", "engine") == ultralytics_device("cuda:2", "onnx") == "cuda:2"
    assert ultralytics_device("cuda", "onnx") == "cuda"
    assert ultralytics_device("cpu", "engine") == "cuda:0", "an engine is built on a GPU"
    assert ultralytics_device("cpu", "onnx") == "cpu"
    with pytest.raises(ValueError, match="unknown device 'gpu1'"):
        ultralytics_device("gpu1", "onnx")


@pytest.mark.skipif(torch.cuda.device_count() > 1, reason="a second GPU would run the export asked for")
def test_an_onnx_export_on_gpu_1_goes_to_gpu_1_not_the_cpu(tmp_path: Path) -> None:
    """Here, without a second GPU, Ultralytics refuses it (it exported on the CPU instead)."""
    from dgdehaze_core.detection.export import export_detector
    from dgdehaze_core.detection.offline import offline_ultralytics

    offline_ultralytics().YOLO("yolov8n.yaml", task="detect").save(str(tmp_path / "small.pt"))
    with pytest.raises(RuntimeError, match="could not export .* 'device=1'"):
        export_detector(tmp_path / "small.pt", "onnx", imgsz=64, cache_dir=tmp_path / "cache", device="1")
    assert not list((tmp_path / "cache").glob("*.onnx"))
