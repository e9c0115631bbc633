"""Adapting a model to one's own camera: a run that starts from shipped or trained weights (`init_weights`) and
training images taken from the frames of bags (ROS 2 folders and files, ROS 1 bags)."""
from __future__ import annotations

import dataclasses
import logging
import math
import shutil
from pathlib import Path
from typing import Collection

import cv2
import numpy as np
import pytest
import torch

from dgdehaze_core.bags.io import IMAGE_TYPE, BagSource
from dgdehaze_core.bags.writer import BagWriter
from dgdehaze_core.datasets.paths import REPO_DIR
from dgdehaze_core.io.images import ImageError, read_image
from dgdehaze_core.models import build_model, load_model, save_checkpoint, shipped_weights_path
from dgdehaze_core.training.datasets import RandomCrops, collect_images, decode_training_images, load_validation
from dgdehaze_core.training.recipe import ImageSource, RecipeError, load_recipe, recipe_from_dict
from dgdehaze_core.training.trainer import Trainer
from test_bag_io import START, PERIOD, demo_frames, image_msg, write_camera_bag
from test_bag_ros1 import write_ros1_bag
from test_image_io import twelve_bit_export

DEMO_BAG = REPO_DIR / "data" / "demo" / "rural_fog_day"
DEMO_TOPIC = "/camera/image_raw/compressed"
SMOKE = REPO_DIR / "training" / "smoke.yaml"
FINETUNE = REPO_DIR / "training" / "finetune.yaml"


def _tiny(shared_data: Path, **fields) -> dict:
    """A recipe of 1 iteration on tiny crops of the smoke data, changed by `fields`."""
    raw = {"name": "tiny", "iterations": 1, "crop_size": 64, "batch_size": 2, "max_side": 128, "num_workers": 0,
           "device": "cpu", "amp": False, "warmup_iterations": 0, "checkpoint_every": 1,
           "data": {"clear": [str(shared_data / "clear" / "bdd")], "hazy": [str(shared_data / "hazy-real" / "urhi")]}}
    raw.update(fields)
    return raw


def _two_camera_bag(path: Path, broken: Collection[int] = (), count: int = 4) -> list[np.ndarray]:
    """A bag with `count` bgr8 frames on /left/image_raw and their mirror images on /right/image_raw; the frames
    `broken` of /right are recorded in an encoding no decoder knows. Returns the left frames."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (72, 96, 3), dtype=np.uint8) for _ in range(count)]
    with BagWriter(path, "mcap") as writer:
        for index, frame in enumerate(frames):
            stamp = START + index * PERIOD
            header = writer.header(stamp, "camera")
            writer.write("/left/image_raw", IMAGE_TYPE, stamp, image_msg(writer, header, frame, "bgr8"))
            encoding = "no-such-encoding" if index in broken else "bgr8"
            writer.write("/right/image_raw", IMAGE_TYPE, stamp,
                         image_msg(writer, header, np.ascontiguousarray(frame[:, ::-1]), encoding))
    return frames


# --- init_weights -------------------------------------------------------------------------------------------------

def test_a_run_with_init_weights_lite_starts_from_exactly_the_shipped_weights_and_records_it(
        shared_data: Path, tmp_path: Path) -> None:
    shipped = load_model("lite").state_dict()
    recipe = recipe_from_dict(_tiny(shared_data, init_weights="lite"), tmp_path)
    trainer = Trainer(recipe, tmp_path / "run", device="cpu")
    assert all(torch.equal(value, shipped[name]) for name, value in trainer.model.state_dict().items())
    assert not trainer.optimizer.state  # the optimizer starts fresh
    trainer.train(progress=False)
    meta = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=True)["meta"]
    assert meta["started_from"]["init_weights"] == "lite"
    assert meta["started_from"]["file"].endswith("dgdehaze_lite.pt") and len(meta["started_from"]["sha256"]) == 64
    scratch = Trainer(recipe_from_dict(_tiny(shared_data), tmp_path), tmp_path / "other", device="cpu")
    assert scratch.meta()["started_from"] == {"init_weights": ""}
    assert not all(torch.equal(value, shipped[name]) for name, value in scratch.model.state_dict().items())


def test_init_weights_of_another_network_missing_or_not_finite_are_refused_naming_the_file(
        shared_data: Path, tmp_path: Path) -> None:
    save_checkpoint(build_model("base"), tmp_path / "base.pt")
    with pytest.raises(ValueError, match=r"base\.pt holds a 'base' network .* recipe trains 'lite'"):
        Trainer(recipe_from_dict(_tiny(shared_data, init_weights="base.pt"), tmp_path), tmp_path / "a", device="cpu")
    unguided = save_checkpoint(build_model("lite", depth_guidance=False), tmp_path / "unguided.pt")
    with pytest.raises(ValueError, match=r"unguided\.pt holds a 'lite' network with depth_guidance False"):
        Trainer(recipe_from_dict(_tiny(shared_data, init_weights=str(unguided)), tmp_path), tmp_path / "b",
                device="cpu")
    with pytest.raises(FileNotFoundError, match=r"init_weights: no such weights file: .*missing\.pt"):
        Trainer(recipe_from_dict(_tiny(shared_data, init_weights="missing.pt"), tmp_path), tmp_path / "c",
                device="cpu")
    with pytest.raises(FileNotFoundError, match=r"init_weights: no trained weights for the 'base' model at .*; "
                                                r"train them .* or pass the path of a checkpoint"):
        Trainer(recipe_from_dict(_tiny(shared_data, model="base", init_weights="base"), tmp_path), tmp_path / "e",
                device="cpu")  # base ships none: not 'no such weights file' inside the package, as if it were broken
    model = build_model("lite")
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    save_checkpoint(model, tmp_path / "nan.pt")
    with pytest.raises(ValueError, match=r"init_weights: .*nan\.pt holds weights that are not finite"):
        Trainer(recipe_from_dict(_tiny(shared_data, init_weights="nan.pt"), tmp_path), tmp_path / "d", device="cpu")


def test_a_resumed_run_continues_from_last_pt_and_ignores_init_weights(shared_data: Path, tmp_path: Path) -> None:
    shutil.copy(shipped_weights_path("lite"), tmp_path / "start.pt")
    recipe = recipe_from_dict(_tiny(shared_data, init_weights="start.pt"), tmp_path)
    Trainer(recipe, tmp_path / "run", device="cpu").train(progress=False)
    saved = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=True)
    (tmp_path / "start.pt").unlink()  # read no more: the resumed run starts from last.pt
    resumed = Trainer(dataclasses.replace(recipe, iterations=2), tmp_path / "run", device="cpu", resume=True)
    resumed.load_last()
    assert all(torch.equal(value, saved["state_dict"][name]) for name, value in resumed.model.state_dict().items())
    assert resumed.meta()["started_from"] == saved["meta"]["started_from"]


# --- bag sources --------------------------------------------------------------------------------------------------

def test_a_recipe_whose_hazy_sources_are_the_demo_bag_and_a_ros1_bag_trains(shared_data: Path,
                                                                           tmp_path: Path) -> None:
    write_ros1_bag(tmp_path / "drive.bag", demo_frames(4))
    raw = _tiny(shared_data, iterations=2)
    raw["data"]["hazy"] = [{"path": str(DEMO_BAG), "frame_step": 10}, {"path": "drive.bag", "frame_step": 2}]
    recipe = recipe_from_dict(raw, tmp_path)
    trainer = Trainer(recipe, tmp_path / "run", device="cpu")
    result = trainer.train(progress=False)
    assert result.iterations == 2 and np.isfinite(result.last_loss)
    bag_size = sum(file.stat().st_size for file in DEMO_BAG.iterdir())  # a folder's own size is the file system's
    assert trainer.history.data["hazy"][:2] == [("rural_fog_day#0", bag_size), ("rural_fog_day#10", bag_size)]
    assert [name for name, _ in trainer.history.data["hazy"]][-2:] == ["drive.bag#0", "drive.bag#2"]


def test_a_bag_source_gives_every_frame_step_th_frame_decoded_as_bag_eval_decodes_it(tmp_path: Path) -> None:
    with BagSource(DEMO_BAG, as_ros2=False) as bag:
        count = bag.topics()[DEMO_TOPIC][1]
        frame = [f for f in bag.frames(DEMO_TOPIC, max_frames=31)][30].image
    listed = collect_images([ImageSource(DEMO_BAG, frame_step=15)], "hazy")
    assert len(listed) == math.ceil(count / 15)
    assert [(image.frame, image.topic) for image, _, _ in listed] == [(i, DEMO_TOPIC) for i in range(0, count, 15)]
    crops = RandomCrops([ImageSource(DEMO_BAG, frame_step=15)], 128, 320, (1.0, 1.0), 0, "hazy")
    (tmp_path / "png").mkdir()
    cv2.imwrite(str(tmp_path / "png" / "frame30.png"), frame)  # the same frame as an image file, scaled as files are
    as_file = RandomCrops([ImageSource(tmp_path / "png")], 128, 320, (1.0, 1.0), 0, "hazy").images[0]
    assert crops.images[2].shape == (180, 320, 3) and np.array_equal(crops.images[2], as_file)


def test_topic_picks_one_of_two_cameras_and_is_required_then_and_refused_on_a_folder(tmp_path: Path) -> None:
    left = _two_camera_bag(tmp_path / "two")
    with pytest.raises(ValueError, match=r"'topic' in the hazy source.*2 image topics: /left/image_raw, "
                                         r"/right/image_raw"):
        collect_images([ImageSource(tmp_path / "two")], "hazy")
    chosen = [image for image, _, _ in collect_images([ImageSource(tmp_path / "two", topic="/right/image_raw",
                                                                   frame_step=2)], "hazy")]
    assert [image.frame for image in chosen] == [0, 2]
    images = decode_training_images(chosen, max_side=96)
    assert np.array_equal(images[chosen[1]], left[2][:, ::-1, ::-1])
    with pytest.raises(ImageError, match=r"no image topic '/front'; its image topics: /left/image_raw, /right"):
        collect_images([ImageSource(tmp_path / "two", topic="/front")], "hazy")
    folder = tmp_path / "folder"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), left[0])
    with pytest.raises(ImageError, match=r"'topic' '/left/image_raw' names a bag's image topic, but .*folder"):
        collect_images([ImageSource(folder, topic="/left/image_raw")], "hazy")
    with pytest.raises(RecipeError, match=r"'topic' in 'data.hazy' names a bag's image topic; .*folder"):
        recipe_from_dict({"name": "r", "iterations": 1, "data": {
            "clear": [str(folder)], "hazy": [{"path": str(folder), "topic": "/left/image_raw"}]}}, tmp_path)


def test_a_bag_frame_that_does_not_decode_is_skipped_with_one_warning_and_a_bag_of_none_refused(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _two_camera_bag(tmp_path / "two", broken={1, 3})
    source = ImageSource(tmp_path / "two", topic="/right/image_raw")
    with caplog.at_level(logging.WARNING):
        crops = RandomCrops([source], 64, 96, (1.0, 1.0), 0, "hazy")
    assert [image.frame for image in crops.sources] == [0, 2]
    assert np.allclose(crops.probabilities, 1 / 2)
    warnings = [r.getMessage() for r in caplog.records if "do not decode" in r.getMessage()]
    assert len(warnings) == 1 and "2 of the 4 frames" in warnings[0] and "frame 1 at" in warnings[0]
    _two_camera_bag(tmp_path / "broken", broken=range(4))
    with pytest.raises(ImageError, match=r"broken: none of the 4 frames taken from '/right/image_raw' decodes, "
                                         r"e\.g\. frame 0 at"):
        RandomCrops([ImageSource(tmp_path / "broken", topic="/right/image_raw")], 64, 96, (1.0, 1.0), 0, "hazy")


def test_a_bag_that_several_sources_list_is_decoded_once_and_each_source_draws_what_it_drew_alone(
        shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bag listed as clear and as hazy, or twice, was decoded once for each listing and held in memory as often."""
    _two_camera_bag(tmp_path / "two", broken={1, 3})
    every, even = (ImageSource(tmp_path / "two", topic="/right/image_raw", frame_step=step, weight=step)
                   for step in (1, 2))
    alone = [RandomCrops(sources, 64, 96, (1.0, 2.0), 0, kind) for sources, kind in (([even], "clear"),
                                                                                     ([even, every], "hazy"))]
    decoded: list[int] = []
    decode_frame = BagSource.decode_frame
    monkeypatch.setattr(BagSource, "decode_frame", lambda self, *args: decoded.append(args[3]) or
                        decode_frame(self, *args))
    cache: dict = {}
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        shared = [RandomCrops(sources, 64, 96, (1.0, 2.0), 0, kind, cache=cache)
                  for sources, kind in (([even], "clear"), ([even, every], "hazy"))]
    assert sorted(decoded) == [0, 1, 2, 3], "each frame decoded once"
    for one, other in zip(alone, shared):
        assert one.sources == other.sources and np.array_equal(one.probabilities, other.probabilities)
        assert all(np.array_equal(a, b) for a, b in zip(one.images, other.images))
        assert all(torch.equal(one[index], other[index]) for index in range(8))
    assert all(a is b for a, b in zip(shared[0].images, shared[1].images)), "held in memory once"
    warnings = [r.getMessage() for r in caplog.records if "do not decode" in r.getMessage()]
    assert len(warnings) == 1 and "2 of the 4 frames" in warnings[0], "the source of the frames that fail is warned"
    raw = _tiny(shared_data)
    decoded.clear()
    Trainer(recipe_from_dict({**raw, "data": {
        "clear": [{"path": str(tmp_path / "two"), "topic": "/left/image_raw"}],
        "hazy": [{"path": str(tmp_path / "two"), "topic": "/left/image_raw"}]}}, tmp_path), tmp_path / "run",
        device="cpu").train(progress=False)
    assert sorted(decoded) == [0, 1, 2, 3], "a run decodes a bag listed as clear and as hazy once"


def test_a_hazy_source_s_mistake_is_reported_before_any_clear_frame_is_decoded(
        shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run decoded every clear image before it listed its hazy sources: a typo in a fog bag's path, a topic it
    lacks or a bag of two cameras without `topic` was reported only after the clear drives had all been read."""
    _two_camera_bag(tmp_path / "two")
    decoded: list[int] = []
    decode_frame = BagSource.decode_frame
    monkeypatch.setattr(BagSource, "decode_frame", lambda self, *args: decoded.append(args[3]) or
                        decode_frame(self, *args))
    clear = [{"path": str(tmp_path / "two"), "topic": "/left/image_raw"}]
    mistakes = [([{"path": str(tmp_path / "tow"), "topic": "/left/image_raw"}], r"hazy images: no such .*tow"),
                ([{"path": str(tmp_path / "two"), "topic": "/front"}], r"no image topic '/front'"),
                ([str(tmp_path / "two")], r"'topic' in the hazy source.*2 image topics")]
    for index, (hazy, message) in enumerate(mistakes):
        recipe = recipe_from_dict({**_tiny(shared_data), "data": {"clear": clear, "hazy": hazy}}, tmp_path)
        with pytest.raises((FileNotFoundError, ValueError), match=message):
            Trainer(recipe, tmp_path / f"run{index}", device="cpu").train(progress=False)
    assert decoded == [], "no clear frame decoded before the hazy source's mistake"


def test_a_bag_source_s_wrong_path_is_refused_as_a_bag_s_and_its_frames_counted_as_a_source_s(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A fog bag's path with a typo was 'no such folder or video', its metadata.yaml 'not a folder or a video file'
    and a bag's frames were counted as 'from 1 folder(s)': none of them said that a bag is read at all."""
    _two_camera_bag(tmp_path / "drive")
    with pytest.raises(FileNotFoundError, match=r"hazy images: no such folder, video or bag .*drvie"):
        collect_images([ImageSource(tmp_path / "drvie", topic="/left/image_raw")], "hazy")
    with pytest.raises(NotADirectoryError, match=r"metadata\.yaml is not a folder, a video file or a bag \(a rosbag2 "
                                                 r"folder with metadata\.yaml, a \.mcap, \.db3 or \.bag file\)"):
        collect_images([ImageSource(tmp_path / "drive" / "metadata.yaml")], "hazy")
    with caplog.at_level(logging.INFO):
        RandomCrops([ImageSource(tmp_path / "drive", topic="/left/image_raw")], 64, 96, (1.0, 1.0), 0, "hazy")
    assert "hazy: 4 images from 1 source(s)" in caplog.text


def test_a_run_resumed_with_a_bag_added_or_a_source_removed_is_refused_naming_it(shared_data: Path,
                                                                                 tmp_path: Path) -> None:
    """A source added to or removed from `data` was refused as "hazy [{'path': '/work/shared/data/hazy-re... ->
    [{'path': ...", the start of both lists, which named neither the source nor what happened to it."""
    _two_camera_bag(tmp_path / "drive")
    raw = _tiny(shared_data)
    raw["data"]["clear"].append(str(shared_data / "clear" / "kitti"))
    Trainer(recipe_from_dict(raw, tmp_path), tmp_path / "run", device="cpu").train(progress=False)
    added = {**raw, "iterations": 2, "data": {**raw["data"], "hazy": [
        *raw["data"]["hazy"], {"path": str(tmp_path / "drive"), "topic": "/left/image_raw"}]}}
    with pytest.raises(ValueError, match=r"another recipe: hazy 1 -> 2 entries \(added .*drive\) \("):
        Trainer(recipe_from_dict(added, tmp_path), tmp_path / "run", device="cpu", resume=True).train(progress=False)
    removed = {**raw, "iterations": 2, "data": {**raw["data"], "clear": raw["data"]["clear"][:1]}}
    with pytest.raises(ValueError, match=r"another recipe: clear 2 -> 1 entries \(removed .*clear/kitti\) \("):
        Trainer(recipe_from_dict(removed, tmp_path), tmp_path / "run", device="cpu", resume=True).train(progress=False)


def test_a_resume_refuses_a_bag_recorded_again_before_any_frame_is_decoded(
        shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The training data were compared with last.pt's only after every image was decoded: a bag recorded again at
    the same path was refused minutes into a resume of a large run. Its listing (frames, file sizes) shows the change
    before decoding; its frames left out because they do not decode do not refuse a resume of the same bag."""
    _two_camera_bag(tmp_path / "two", broken={1, 3})
    clear = [{"path": str(tmp_path / "two"), "topic": "/right/image_raw"}]

    def resume(iterations: int) -> None:
        recipe = recipe_from_dict({**_tiny(shared_data, iterations=iterations), "data": {
            "clear": clear, "hazy": _tiny(shared_data)["data"]["hazy"]}}, tmp_path)
        Trainer(recipe, tmp_path / "run", device="cpu", resume=iterations > 1).train(progress=False)

    resume(1)
    resume(2)
    assert [name for name, _ in torch.load(tmp_path / "run" / "last.pt", weights_only=True)["training"]["data"][
        "clear"]] == ["two#0", "two#2"], "frames 1 and 3 left out at each start"
    shutil.rmtree(tmp_path / "two")
    _two_camera_bag(tmp_path / "two", broken={1, 3}, count=6)
    decoded: list[int] = []
    decode_frame = BagSource.decode_frame
    monkeypatch.setattr(BagSource, "decode_frame", lambda self, *args: decoded.append(args[3]) or
                        decode_frame(self, *args))
    with pytest.raises(ValueError, match=r"training data changed since it was saved: clear \(2 -> "):
        resume(3)
    assert decoded == [], "no frame decoded before the refusal"


def test_a_ros1_bag_source_lists_its_frames(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(5)]
    write_ros1_bag(tmp_path / "drive.bag", frames)
    listed = [image for image, _, _ in collect_images([ImageSource(tmp_path / "drive.bag", frame_step=2)], "clear")]
    assert [(image.frame, image.topic) for image in listed] == [(0, "/cam/image_raw"), (2, "/cam/image_raw"),
                                                               (4, "/cam/image_raw")]
    assert np.array_equal(decode_training_images(listed, max_side=64)[listed[2]], frames[4][:, :, ::-1])


# --- a 12-bit camera ---------------------------------------------------------------------------------------------

def test_a_12_bit_camera_s_png_exports_train_whole_with_input_bits_12_and_are_warned_once_a_source_without(
        shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    photo = read_image(shared_data / "detection" / "dawn-fog" / "foggy-001.jpg")
    for name in ("camera", "other"):
        (tmp_path / name).mkdir()
        for index in range(2):
            twelve_bit_export(photo, tmp_path / name / f"frame{index}.png")
    recipe = recipe_from_dict({"name": "r", "iterations": 1, "data": {
        "clear": [str(tmp_path / "other")], "hazy": [{"path": str(tmp_path / "camera"), "input_bits": 12}]}}, tmp_path)
    assert recipe.hazy[0].input_bits == 12 and recipe.clear[0].input_bits == 16
    side = max(photo.shape[:2])
    with caplog.at_level(logging.WARNING, logger="dgdehaze_core.io.images"):
        crops = RandomCrops(recipe.hazy, 64, side, (1.0, 1.0), 0, "hazy")
        assert not caplog.records
        assert all(np.abs(image.astype(int) - photo[:, :, ::-1]).max() <= 1 for image in crops.images)
        dark = RandomCrops([*recipe.clear, ImageSource(tmp_path / "camera")], 64, side, (1.0, 1.0), 0, "clear")
    assert all(image.mean() < 20 for image in dark.images)
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 2 and all("set input_bits: 12 on its source" in warning for warning in warnings)
    assert "other" in warnings[0] and "camera" in warnings[1]
    for folder in ("hazy", "clear"):  # a validation set exported by the same camera
        (tmp_path / "val" / folder).mkdir(parents=True)
        twelve_bit_export(photo, tmp_path / "val" / folder / "a.png")
    pair = load_validation([ImageSource(tmp_path / "val", input_bits=12)], side)[0]
    assert all(np.abs(image.astype(int) - photo).max() <= 1 for image in (pair.hazy, pair.clear))


def test_input_bits_reads_a_12_bit_camera_s_bag_frames_whole_and_is_checked_when_the_recipe_is_read(
        shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    photo = cv2.resize(read_image(shared_data / "detection" / "dawn-fog" / "foggy-002.jpg"), (160, 90),
                       interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    for encoding in ("mono12", "png12"):  # mono16 samples 0..4095, raw and as image_transport's 16-bit PNG
        write_camera_bag(tmp_path / encoding, "mcap", [photo, photo], encoding)
        for bits, check in ((12, lambda image: np.abs(image.astype(int) - gray[:, :, None]).max() <= 1),
                            (16, lambda image: image.mean() < 20)):
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="dgdehaze_core.io.images"):
                crops = RandomCrops([ImageSource(tmp_path / encoding, input_bits=bits)], 64, 160, (1.0, 1.0), 0,
                                    "hazy")
            assert check(crops.images[0]), (encoding, bits)
            warnings = [record.getMessage() for record in caplog.records]  # once for the bag, read with 16 bits
            assert len(warnings) == (bits == 16), (encoding, bits, warnings)
            assert all(str(tmp_path / encoding) in w and "set input_bits: 12 on its source" in w for w in warnings)
    folder = tmp_path / "camera"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), photo)
    for item, message in (({"path": str(folder), "input_bits": 17}, r"'input_bits' in 'data.hazy' must be an "
                                                                      r"integer in 8\.\.16.*got 17"),
                          ({"path": str(folder), "input_bits": "12"}, r"'input_bits' in 'data.hazy'.*got '12'"),
                          ({"path": str(folder), "input_bits": True}, r"'input_bits' in 'data.hazy'.*got True"),
                          ({"path": str(tmp_path / "drive.mp4"), "input_bits": 12},
                           r"'input_bits' in 'data.hazy'.*drive\.mp4 is a video, whose frames are 8-bit")):
        with pytest.raises(RecipeError, match=message):
            recipe_from_dict({"name": "r", "iterations": 1, "data": {"clear": [str(folder)], "hazy": [item]}},
                             tmp_path)


# --- the recipe ---------------------------------------------------------------------------------------------------

def test_finetune_recipe_validates_and_starts_from_the_shipped_lite(shared_data: Path) -> None:
    recipe = load_recipe(FINETUNE)
    lite = load_recipe(REPO_DIR / "training" / "lite.yaml")
    assert recipe.init_weights == "lite" and recipe.model == lite.model
    assert recipe.loss == lite.loss and recipe.validation == lite.validation
    assert recipe.lr < lite.lr and recipe.iterations < lite.iterations
    assert collect_images(recipe.hazy, "hazy") and collect_images(recipe.clear, "clear")


def test_image_files_blown_up_past_twice_their_size_to_reach_the_crop_are_warned_of_once(
        shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A thumbnail among a folder of photos (12x9) was scaled up ~7x to the crop without a word: its crops held a few
    pixels blown up, not a camera's."""
    photo = read_image(shared_data / "detection" / "dawn-fog" / "foggy-001.jpg")
    folder = tmp_path / "fog"
    folder.mkdir()
    for name, width in (("photo.png", 128), ("half.png", 40), ("thumb.png", 12)):
        cv2.imwrite(str(folder / name), cv2.resize(photo, (width, width * 3 // 4), interpolation=cv2.INTER_AREA))
    listed = [image for image, _, _ in collect_images([ImageSource(folder)], "hazy")]
    with caplog.at_level(logging.WARNING, logger="dgdehaze_core.training.datasets"):
        decoded = decode_training_images(listed, max_side=256, min_side=64)
        decode_training_images(listed, max_side=256, min_side=64, cache={})
    assert [min(frame.shape[:2]) for frame in decoded.values()] == [64, 96, 64]  # half.png 2.1x, photo.png 1x
    told = [r.getMessage() for r in caplog.records if "scaled up" in r.getMessage()]
    assert told[0] == ("2 of the 3 image files to train on are scaled up more than 2x to reach the crop's 64 pixels "
                       "on their short side, so that their crops hold a few pixels blown up: half.png (40x30, 2.1x), "
                       "thumb.png (12x9, 7.1x); leave them out, or lower crop_size")
    assert len(told) == 2, "once per decoding: a second run's cache decodes them again"
