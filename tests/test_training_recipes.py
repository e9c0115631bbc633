"""Training recipes and data: bad recipes, bad or judging images and the committed recipes each named clearly."""
from __future__ import annotations

import dataclasses
import logging
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from dgdehaze_core.cli import main
from dgdehaze_core.datasets.paths import REPO_DIR
from dgdehaze_core.io.images import ImageError
from dgdehaze_core.training.datasets import RandomCrops, collect_images, load_validation, validation_pairs
from dgdehaze_core.training.recipe import ImageSource, RecipeError, load_recipe, read_yaml, recipe_from_dict


SMOKE = REPO_DIR / "training" / "smoke.yaml"
RECIPES = sorted(p for p in (REPO_DIR / "training").glob("*.yaml") if not p.name.startswith("depth_"))
"""The dehazer recipes (depth_*.yaml are `train-depth` recipes, checked in test_self_supervised_depth)."""


def test_a_folder_source_takes_every_frame_step_th_image_and_a_strip_too_thin_to_crop_is_refused(
        tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(8):
        cv2.imwrite(str(frames / f"frame_{index:02d}.png"), np.full((40, 40, 3), 10 * index, np.uint8))
    taken = collect_images([ImageSource(frames, frame_step=3)], "clear")
    assert [image.path.name for image, _, _ in taken] == ["frame_00.png", "frame_03.png", "frame_06.png"]
    strip = tmp_path / "strip"
    strip.mkdir()
    cv2.imwrite(str(strip / "strip.png"), np.full((1, 16000, 3), 90, np.uint8))  # 64 rows would be 1024000 wide
    with pytest.raises(ImageError, match="strip.png: a 16000x1 image would be scaled to 1024000x64"):
        RandomCrops([ImageSource(strip)], 64, 128, (1.0, 1.0), 0, "clear")


@pytest.mark.parametrize("damage", ["middle", "tail"])
def test_a_video_s_frames_from_one_that_does_not_decode_on_are_left_out_with_one_warning(
        damage: str, shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A fog video with bytes lost in its middle, or at the end of its frames (a recording cut by a power loss, its
    index whole), refused the whole run as one that 'ends before frame N', where a bag's frames that do not decode are
    left out with one warning."""
    data = bytearray((shared_data / "video" / "fog_river.mp4").read_bytes())  # 36 frames, its index at the end
    index = data.find(b"moov") - 4
    start = int(len(data) * 0.7) if damage == "middle" else index - 60_000
    data[start:start + (4000 if damage == "middle" else 60_000)] = bytes(4000 if damage == "middle" else 60_000)
    video = tmp_path / "fog.mp4"
    video.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="dgdehaze_core.training"):
        crops = RandomCrops([ImageSource(video, frame_step=2)], 64, 96, (1.0, 1.0), 0, "hazy")
    kept = [image.frame for image in crops.sources]
    assert 0 < len(kept) < 18 and kept == list(range(0, 2 * len(kept), 2))  # every frame before the damage
    assert np.allclose(crops.probabilities, 1 / len(kept))
    warnings = [r.getMessage() for r in caplog.records if "do not decode" in r.getMessage()]
    assert len(warnings) == 1 and f"video {video}: {18 - len(kept)} of the 18 frames taken" in warnings[0]
    assert f"frame {2 * len(kept)} does not decode" in warnings[0]


def test_the_videos_and_bags_in_a_folder_source_are_named_not_left_out_without_a_word(
        shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A folder source reads its images only: the fog videos and bags beside them were left out with no word, and a
    folder of videos alone was 'no images in' it."""
    folder = tmp_path / "fog"
    shutil.copytree(shared_data / "clear" / "bdd", folder)
    shutil.copy(shared_data / "video" / "fog_river.mp4", folder / "drive.MP4")
    shutil.copytree(REPO_DIR / "data" / "demo" / "rural_fog_day", folder / "bags" / "rural_fog_day")
    (folder / "._drive.MP4").write_bytes(b"\x00\x05\x16\x07 AppleDouble sidecar")
    with caplog.at_level(logging.WARNING):
        taken = collect_images([ImageSource(folder)], "hazy")
    assert sorted(image.path.name for image, _, _ in taken) == sorted(p.name for p in (shared_data / "clear" /
                                                                                      "bdd").iterdir())
    warnings = [record.getMessage() for record in caplog.records]
    assert warnings == [f"hazy images: {folder} holds 2 video(s) or bag(s) that a folder source does not read "
                        "(bags/rural_fog_day, drive.MP4): name each as a source of its own"]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        collect_images([ImageSource(folder, include=("*.jpg",))], "hazy")
    assert not caplog.records, "the videos and bags that include leaves out are not named"
    for image in folder.glob("*.jpg"):
        image.unlink()
    with pytest.raises(ImageError, match=r"no images in .*fog; .* holds 2 video\(s\) or bag\(s\) .*"
                                         r"\(bags/rural_fog_day, drive\.MP4\): name each as a source of its own"):
        collect_images([ImageSource(folder)], "hazy")


def test_a_training_image_that_is_a_loop_of_links_is_refused_naming_it(shared_data: Path, tmp_path: Path) -> None:
    """A loop of links named as an image was left out of the images without a word; listed, the check for images
    that only judge resolved it and failed with Python's 'Symlink loop from ...'."""
    folder = tmp_path / "clear"
    folder.mkdir()
    cv2.imwrite(str(folder / "good.png"), np.full((80, 80, 3), 128, np.uint8))
    (folder / "c.png").symlink_to("d.png")
    (folder / "d.png").symlink_to("c.png")
    with pytest.raises(ImageError, match="c.png is a link to d.png, which leads to no file"):
        RandomCrops([ImageSource(folder)], 64, 128, (1.0, 1.0), 0, "clear")


def test_bad_data_gets_clear_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageError, match="no images"):
        collect_images([ImageSource(empty)], "clear")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        collect_images([ImageSource(tmp_path / "missing")], "hazy")
    broken = tmp_path / "broken"
    broken.mkdir()
    cv2.imwrite(str(broken / "good.png"), np.full((80, 80, 3), 128, np.uint8))
    (broken / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ImageError, match="bad.png"):
        RandomCrops([ImageSource(broken)], 64, 128, (1.0, 1.0), 0, "clear")
    paired = tmp_path / "paired"
    (paired / "hazy").mkdir(parents=True)
    (paired / "clear").mkdir()
    cv2.imwrite(str(paired / "hazy" / "a_1.png"), np.zeros((40, 40, 3), np.uint8))
    cv2.imwrite(str(paired / "clear" / "b.png"), np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(ValueError, match="a_1.png"):
        load_validation([ImageSource(paired)], 64)
    code = main(["train", "--config", str(SMOKE), "--out", str(tmp_path / "run"), "--no-progress",
                 "--set", f"data.clear=[{empty}]"])
    assert code == 2


def test_a_validation_pair_too_thin_for_ssim_is_refused_before_training(sots_pairs: Path, tmp_path: Path) -> None:
    """A pair whose short side fell below SSIM's 7 pixels at val_max_side stopped the run at its first validation,
    after val_every iterations (and every resume again there), with an error that named no file."""
    for path in sorted(sots_pairs.rglob("*.png")):  # the real scene's middle rows, 13:1
        image = cv2.imread(str(path))
        cv2.imwrite(str(path), image[image.shape[0] // 2 - 24:image.shape[0] // 2 + 24])
    assert len(load_validation([ImageSource(sots_pairs)], 640)) == 2
    with pytest.raises(ImageError, match=r"validation pair .*1400_2.png: 64x5 pixels at val_max_side 64, and SSIM"):
        load_validation([ImageSource(sots_pairs)], 64)
    code = main(["train", "--config", str(SMOKE), "--out", str(tmp_path / "run"), "--no-progress", "--iterations",
                 "3", "--set", f"data.validation=[{sots_pairs}]", "--set", "val_max_side=64"])
    assert code == 2 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("change, message", [
    ({"loss": {"dark_chanel": 1.0}}, "unknown loss"),
    ({"loss": {"cycle": -1}}, "must be a finite number >= 0"),
    ({"loss": {"cycle": float("nan")}}, "must be a finite number >= 0"),
    ({"lr": float("inf")}, "'lr' must be a finite number"),
    ({"lr": 1e39}, "'lr' must be > 0 and a float32 \\(at most 3.4e\\+38\\)"),
    ({"crop_size": 100}, "multiple of 16"),
    ({"beta_indoor": [1.8, 0.6]}, "beta_indoor"),
    ({"batch_sise": 4}, "unknown recipe field"),
    ({"data": {"hazy": ["x"]}}, "'data.clear' must list"),
    ({"val_output": "decoder"}, "val_output"),
    ({"seed": -1}, "'seed' must lie in"),
    ({"data": {"clear": ["a"], "hazy": [{"path": "b", "weight": float("inf")}]}}, "positive finite number"),
    ({"data": {"clear": ["a"], "hazy": [{"path": "b", "weight": float("nan")}]}}, "positive finite number"),
    ({"data": {"clear": ["a"], "hazy": [{"path": "b", "include": 5}]}}, "a pattern or a list of patterns"),
    ({"data": {"clear": ["a"], "hazy": [{"path": "b", "include": "@split.yaml:judge"}]}}, "never train"),
    ({"data": {"clear": ["a"], "hazy": [{"path": "fog.MP4", "include": "x*"}]}}, "fog.MP4 is a video"),
    ({"val_max_side": 1}, "'val_max_side' must be at least 64"),  # failed at the first validation, every resume too
    ({"name": "/tmp/elsewhere"}, "'name' names the run folder runs/NAME"),
    ({"name": ".."}, "'name' names the run folder runs/NAME"),
    ({"loss": {"cycle": True}}, "must be a finite number >= 0"),
    # the paper's network built, and the first step failed with a KeyError traceback (it has no transmission)
    ({"model": "paper"}, "'model' must be one of lite, base .the paper's released network is run, not trained"),
    ({"model": "huge"}, "'model' must be one of lite, base"),
    # validation scores every pair of its folder: a frame_step of 2 still scored them all, without a word
    ({"data": {"clear": ["a"], "hazy": ["b"], "validation": [{"path": "c", "frame_step": 2}]}},
     "'data.validation' scores every pair of its folder: choose the pairs with 'include'"),
    ({"data": {"clear": ["a"], "hazy": ["b"], "validation": [{"path": "c", "weight": 2}]}},
     "'weight' and 'frame_step' share out and thin the training draws"),
])
def test_bad_recipes_name_the_problem(tmp_path: Path, change: dict, message: str) -> None:
    raw = {"name": "r", "iterations": 2, "data": {"clear": ["a"], "hazy": ["b"]}}
    raw.update(change)
    with pytest.raises(RecipeError, match=message):
        recipe_from_dict(raw, tmp_path)


def test_a_recipe_of_the_other_training_or_a_folder_is_named_so(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A train-depth recipe given to train (or the reverse) listed a score of unknown and known fields, and a folder
    of recipes was 'no such recipe': the user could not tell they had the wrong file or the wrong command."""
    training = REPO_DIR / "training"
    for command, recipe, other in (("train", "depth_kitti.yaml", "train-depth"), ("train-depth", "lite.yaml", "train")):
        assert main([command, "--config", str(training / recipe), "--out", str(tmp_path / "run")]) == 2
        error = capsys.readouterr().err
        assert f"a `dgdehaze {other}` recipe" in error and f"run `dgdehaze {other} --config` with it" in error, error
        assert "unknown recipe field" not in error
        assert main([command, "--config", str(training), "--out", str(tmp_path / "run")]) == 2
        assert f"{training} is a folder: give a recipe file" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_an_empty_recipe_file_is_named_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty recipe (or one of comments alone) was "a recipe must be a mapping of fields, got NoneType", for
    train and train-depth alike: YAML's None for the user's empty file."""
    for text in ("", "# to fill in\n"):
        empty = tmp_path / "empty.yaml"
        empty.write_text(text)
        for command in ("train", "train-depth"):
            assert main([command, "--config", str(empty), "--out", str(tmp_path / "run")]) == 2
            error = capsys.readouterr().err
            assert f"{empty} is empty (or holds only comments): a recipe is a mapping of fields" in error, error
            assert "NoneType" not in error
    assert not (tmp_path / "run").exists()


def test_a_recipe_or_split_file_that_is_not_utf8_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A recipe or split file saved in Latin-1 failed with the decoder's "'utf-8' codec can't decode byte 0xf6",
    naming no file."""
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("name: k\u00f6ln\niterations: 1\n".encode("latin-1"))
    for command in ("train", "train-depth"):
        assert main([command, "--config", str(latin1), "--out", str(tmp_path / "run")]) == 2
        assert f"{latin1} is not UTF-8 text" in capsys.readouterr().err
    split = tmp_path / "split.yaml"
    split.write_bytes("dataset: x\nparts:\n  learn: [k\u00f6ln.jpg]\n".encode("latin-1"))
    assert main(["train", "--config", str(SMOKE), "--out", str(tmp_path / "run"),
                 "--set", f"data.clear=[{{path: {tmp_path}, include: '@{split}:learn'}}]"]) == 2
    assert f"{split} is not a readable YAML split file" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_field_given_twice_is_refused_not_taken_from_its_last_line(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """PyYAML keeps the last of a key given twice: an `iterations: 1` added above the recipe's own was dropped
    without a word (and one added below replaced it). An anchor's keys merged with `<<` may still be given again."""
    twice = tmp_path / "twice.yaml"
    twice.write_text(SMOKE.read_text() + "iterations: 1\n")
    assert main(["train", "--config", str(twice), "--out", str(tmp_path / "run")]) == 2
    line = SMOKE.read_text().splitlines().index("iterations: 6") + 1
    assert f"{twice} is not valid YAML: 'iterations' is given twice, on lines {line} and " in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    with pytest.raises(RecipeError, match="'cycle' is given twice"):
        load_recipe(SMOKE, ["loss={cycle: 1, cycle: 2}"])
    merged = read_yaml("base: &base\n  cycle: 1.0\n  airlight: 0.5\nloss:\n  <<: *base\n  cycle: 2.0\n")
    assert merged["loss"] == {"cycle": 2.0, "airlight": 0.5}


def test_exponent_numbers_read_as_numbers_and_a_malformed_override_is_one_clear_error(tmp_path: Path) -> None:
    text = SMOKE.read_text().replace("lr: 0.002", "lr: 2e-3")
    assert text != SMOKE.read_text()
    (tmp_path / "r.yaml").write_text(text)
    recipe = load_recipe(tmp_path / "r.yaml", ["loss.cycle=1E-1", "weight_decay=5e-5"])
    assert (recipe.lr, recipe.loss.cycle, recipe.weight_decay) == (0.002, 0.1, 5e-5), "YAML 1.1 read 2e-3 as a string"
    for override in ("lr=[1,2", "data.clear=[{path: ${DATA}/clear/bdd}]"):
        with pytest.raises(RecipeError, match="the value is not valid YAML"):
            load_recipe(SMOKE, [override])


def test_a_field_name_yaml_reads_as_a_number_or_a_boolean_is_one_clear_error(tmp_path: Path) -> None:
    """A key such as 2 or on beside an unknown field stopped both trainings with a TypeError traceback (the unknown
    names were sorted, and a number or a boolean does not sort with a string)."""
    from dgdehaze_core.training.depth_recipe import load_depth_recipe

    cases = {"2: 3\nbatch_sise: 4\n": (load_recipe, "2 in the recipe"),
             "loss: {on: 1, cycel: 2}\n": (load_recipe, "True in 'loss'"),
             "data:\n  clear: [{path: a, 5: 1, wieght: 2}]\n  hazy: [b]\n": (load_recipe, "5 in 'data.clear\\[0\\]'"),
             "sequences: [a]\narchitecture: {1: 2, x: 3}\n": (load_depth_recipe, "1 in 'architecture'")}
    for text, (load, where) in cases.items():
        recipe = tmp_path / "r.yaml"
        recipe.write_text("name: r\niterations: 1\n" + ("" if "data" in text or "sequences" in text else
                                                          "data: {clear: [a], hazy: [b]}\n") + text)
        with pytest.raises(RecipeError, match=f"{where} is no field name .YAML reads an unquoted number"):
            load(recipe)


def test_a_data_folder_that_is_not_there_is_never_swapped_for_the_shared_one(shared_data: Path, tmp_path: Path,
                                                                             monkeypatch, caplog) -> None:
    """DGDEHAZE_DATA naming no folder (a mistyped path, a kit not unpacked) fell back to ../shared/data without a
    word: the smoke recipe's ${DATA} read the images beside the repository instead of those asked for."""
    from dgdehaze_core.datasets.paths import shared_data_dir

    monkeypatch.setenv("DGDEHAZE_DATA", str(tmp_path / "kit" / "data"))
    assert shared_data_dir() is None
    assert f"DGDEHAZE_DATA={tmp_path / 'kit' / 'data'} is not a folder" in caplog.text
    with pytest.raises(RecipeError, match="needs the shared data folder"):
        load_recipe(SMOKE)
    monkeypatch.setenv("DGDEHAZE_DATA", str(shared_data))
    assert shared_data_dir() == shared_data and load_recipe(SMOKE).clear


def test_a_run_s_recipe_yaml_reads_back_as_the_recipe_it_ran(shared_data: Path, tmp_path: Path) -> None:

    recipe = load_recipe(REPO_DIR / "training" / "lite_real_fog.yaml")
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe.as_recipe_file()))
    again = load_recipe(tmp_path / "recipe.yaml")
    assert dataclasses.replace(again, source_file=None) == dataclasses.replace(recipe, source_file=None)
    assert read_yaml((tmp_path / "recipe.yaml").read_text())["data"]["hazy"], "the layout of a recipe file"


def test_images_that_only_judge_are_refused_however_a_recipe_reaches_them(shared_data: Path) -> None:
    """The recipe check refuses an include naming the judge part; a folder without include, or a plain glob,
    reached the 100 DAWN photos that only judge all the same."""
    from dgdehaze_core.datasets.splits import SplitError, expand_patterns, load_split

    dawn = shared_data / "detection" / "dawn-fog"
    judge = load_split(REPO_DIR / "data" / "splits" / "dawn-fog.yaml").names("judge")
    for source, count in ((ImageSource(dawn), len(judge)), (ImageSource(shared_data / "detection"), len(judge)),
                          (ImageSource(dawn, ("foggy-*",)), sum(name.startswith("foggy-") for name in judge))):
        with pytest.raises(SplitError, match=f"hazy images: {count} file\\(s\\) that only judge may not train or "
                                             "choose a setting, e.g. .*dawn-fog/.* \\(the judge part of dawn-fog.yaml"):
            collect_images([source], "hazy")
    with pytest.raises(SplitError, match="1 file"):
        collect_images([ImageSource(dawn, (judge[0], "foggy-004.jpg"))], "hazy")
    learn = collect_images([ImageSource(dawn, tuple(expand_patterns(["@data/splits/dawn-fog.yaml:learn"],
                                                                     REPO_DIR)))], "hazy")
    assert learn and not {image.path.name for image, _, _ in learn} & set(judge)



def test_the_held_out_sots_indoor_rooms_are_refused_as_training_images(shared_data: Path) -> None:
    """Rooms 1430-1448 are the only SOTS-indoor rooms docs/RESULTS.md reports; a recipe reaching them, clear or
    hazy, by the whole folder or by a glob, is refused, while the rooms the shipped recipes learn from are not."""
    from dgdehaze_core.datasets.splits import SplitError

    sots = shared_data / "paired" / "sots-indoor"
    for source, count in ((ImageSource(sots / "clear"), 10), (ImageSource(sots / "hazy", ("144?_*",)), 10)):
        with pytest.raises(SplitError, match=f"{count} file\\(s\\) that only judge .* \\(the judge part of "
                                             "sots-indoor.yaml"):
            collect_images([source], "clear")
    assert len(collect_images([ImageSource(sots / "clear", ("140?.png", "141?.png", "142[0-2].png"))], "clear")) == 12


@pytest.mark.parametrize("recipe_file", RECIPES, ids=lambda path: path.name)
def test_committed_recipes_validate_and_keep_validation_pairs_out_of_training(recipe_file: Path,
                                                                              shared_data: Path) -> None:
    recipe = load_recipe(recipe_file)
    trained = {image.path.resolve()
               for image, _, _ in collect_images(recipe.clear, "clear") + collect_images(recipe.hazy, "hazy")}
    pairs = validation_pairs(recipe.validation)
    assert pairs or not recipe.validation
    leaked = [pair.name for pair in pairs if pair.hazy.resolve() in trained or pair.clear.resolve() in trained]
    assert not leaked, f"{recipe_file.name} trains on its validation pairs: {leaked}"


def test_lists_nested_too_deeply_to_read_are_one_error_naming_the_file(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """PyYAML reads nested lists recursively: a recipe or a split file of some thousand `[` ended in Python's
    RecursionError, whose line, 'maximum recursion depth exceeded', named no file."""
    deep = tmp_path / "deep.yaml"
    deep.write_text(SMOKE.read_text() + "zoom_range: " + "[" * 3000 + "]" * 3000 + "\n")
    for command in ("train", "train-depth"):
        assert main([command, "--config", str(deep), "--out", str(tmp_path / "run")]) == 2
        assert f"{deep} is not valid YAML: its lists or mappings are nested too deeply to read" in \
            capsys.readouterr().err
    split = tmp_path / "split.yaml"
    split.write_text("dataset: x\nparts:\n  learn: " + "[" * 3000 + "]" * 3000 + "\n")
    assert main(["train", "--config", str(SMOKE), "--out", str(tmp_path / "run"),
                 "--set", f"data.clear=[{{path: {tmp_path}, include: '@{split}:learn'}}]"]) == 2
    assert f"{split} is not a readable YAML split file: its lists or mappings are nested too deeply" in \
        capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_recipe_whose_aliases_expand_without_bound_is_refused_before_its_fields_are_walked(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """PyYAML keeps an alias (*name) as one more reference to its node: seven lines of nine aliases each hold 9**7
    values in a file of a few hundred bytes, which the recipe's checks walked and printed value by value (nine such
    lines took two minutes to refuse, each line more nine times as long); a node holding itself never ended."""
    nested = "&a [1, 1, 1, 1, 1, 1, 1, 1, 1]"
    for level in range(6):
        nested = f"&{chr(98 + level)} [{nested}, " + ", ".join([f"*{chr(97 + level)}"] * 8) + "]"
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(SMOKE.read_text() + f"zoom_range: {nested}\n")
    loop = tmp_path / "loop.yaml"
    loop.write_text(SMOKE.read_text() + "zoom_range: &z [1, *z]\n")
    for recipe, reason in ((bomb, "its aliases .* expand it to 5.38e\\+06 values, beyond the 1000000 a file may hold"),
                           (loop, "a list or mapping in it holds itself")):
        assert main(["train", "--config", str(recipe), "--out", str(tmp_path / "run")]) == 2
        assert re.search(f"{re.escape(str(recipe))} is not valid YAML: {reason}", capsys.readouterr().err)
    assert not (tmp_path / "run").exists()
    assert read_yaml("a: &a [x, x]\nb: [*a, *a]\n") == {"a": ["x", "x"], "b": [["x", "x"], ["x", "x"]]}


def test_a_batch_whose_images_alone_exceed_the_memory_is_refused_with_the_recipe(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A batch_size (or a train-depth width) of many digits passed the recipe's checks and failed once the data was
    read, in the data loader: an OverflowError or a MemoryError traceback, or OpenCV's for a frame size."""
    depth = REPO_DIR / "training" / "depth_kitti.yaml"
    for command, recipe, override in (("train", SMOKE, "batch_size=10000000000000000000000"),
                                      ("train", SMOKE, "batch_size=100000000"),
                                      ("train-depth", depth, "width=10000000000000000000000")):
        assert main([command, "--config", str(recipe), "--out", str(tmp_path / "run"), "--set", override]) == 2
        error = capsys.readouterr().err
        assert re.search(f"{recipe}: a batch of .* needs .* GiB for its images alone, more than this machine's", error)
    assert not (tmp_path / "run").exists()
