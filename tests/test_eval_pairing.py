"""Pairing hazy images with their ground truth: the naming rule, the layouts the public benchmarks are published in,
and a clear error for every broken set."""
from __future__ import annotations

import json
import re
import shutil
import unicodedata
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from dgdehaze_core.cli import main
from dgdehaze_core.datasets.paired_sets import PairingError, find_pairs, hazy_images, is_paired_set, load_pair


def _write(path: Path, size: tuple[int, int] = (24, 16), value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size[1], size[0], 3), value, np.uint8))


def _make_set(root: Path, hazy: list[str], clear: list[str], clear_folder: str = "clear") -> Path:
    for name in hazy:
        _write(root / "hazy" / name, value=180)
    for name in clear:
        _write(root / clear_folder / name, value=60)
    return root


def test_names_pair_by_prefix_and_the_longest_clear_name_wins(tmp_path: Path):
    root = _make_set(tmp_path, ["1400_2.png", "1400_7.png", "0016_0.8_0.08.jpg", "a_b_1.png", "27.png"],
                     ["1400.png", "0016.jpg", "a.png", "a_b.png", "27.png"])
    pairs = {pair.name: pair for pair in find_pairs(root)}
    assert {name: pair.clear.name for name, pair in pairs.items()} == {
        "0016_0.8_0.08": "0016.jpg", "1400_2": "1400.png", "1400_7": "1400.png", "a_b_1": "a_b.png", "27": "27.png"}
    assert pairs["1400_7"].scene == "1400"
    hazy, clear = load_pair(pairs["1400_2"])
    assert hazy.shape == clear.shape == (16, 24, 3) and int(hazy[0, 0, 0]) == 180 and int(clear[0, 0, 0]) == 60


def test_gt_folder_is_accepted(tmp_path: Path):
    root = _make_set(tmp_path, ["5_hazy.png"], ["5.png"], clear_folder="GT")
    assert is_paired_set(root)
    assert [p.clear.parent.name for p in find_pairs(root)] == ["GT"]


def test_names_in_either_unicode_form_pair(tmp_path: Path):
    # macOS writes "é" decomposed (NFD, e + U+0301) where Linux and Windows keep the one character a user typed
    # (NFC): a hazy folder copied from a Mac beside ground truth renamed elsewhere shows the same names on screen
    root = _make_set(tmp_path, [unicodedata.normalize("NFD", "scène été_hazy.png")],
                     [unicodedata.normalize("NFC", "scène été.png")], clear_folder="GT")
    assert [pair.clear.name for pair in find_pairs(root)] == [unicodedata.normalize("NFC", "scène été.png")]


def test_a_hazy_image_without_its_clear_image_is_named(tmp_path: Path):
    root = _make_set(tmp_path, ["1400_2.png", "1499_2.png"], ["1400.png"])
    with pytest.raises(PairingError, match=r"1 hazy image.*1499_2\.png"):
        find_pairs(root)


@pytest.mark.parametrize("hazy, clear, message", [
    ([], ["1.png"], r"hazy.* holds no images"),
    (["1_a.png"], [], r"clear.* holds no images"),
    (["1_a.png"], ["1.png", "1.jpg"], r"several files for one name: 1 \(1\.jpg, 1\.png\)"),
])
def test_empty_and_ambiguous_folders(tmp_path: Path, hazy, clear, message):
    root = _make_set(tmp_path, hazy, clear)
    (root / "hazy").mkdir(exist_ok=True)
    (root / "clear").mkdir(exist_ok=True)
    with pytest.raises(PairingError, match=message):
        find_pairs(root)


def test_missing_folders(tmp_path: Path):
    with pytest.raises(PairingError, match="no such paired set"):
        find_pairs(tmp_path / "absent")
    _write(tmp_path / "hazy" / "1_a.png")
    with pytest.raises(PairingError, match=r"holds hazy images in hazy/ but no clear folder \(clear/, GT/ or clean/"):
        find_pairs(tmp_path)


def test_unreadable_and_mismatched_pairs_name_the_file(tmp_path: Path):
    root = _make_set(tmp_path, ["1_a.png"], ["1.png"])
    (root / "hazy" / "2_a.png").write_bytes(b"not a png")
    _write(root / "clear" / "2.png")
    _write(root / "hazy" / "3_a.png", size=(24, 16))
    _write(root / "clear" / "3.png", size=(20, 16))
    pairs = {pair.name: pair for pair in find_pairs(root)}
    with pytest.raises(PairingError, match=r"pair 2_a: .*2_a\.png is not a readable image"):
        load_pair(pairs["2_a"])
    with pytest.raises(PairingError, match=r"pair 3_a: 3_a\.png is 24x16 but 3\.png is 20x16"):
        load_pair(pairs["3_a"])


def test_sots_indoor_as_published_pairs_its_framed_640x480_ground_truth(shared_data: Path, tmp_path: Path):
    """RESIDE's SOTS indoor keeps the NYU frames' 10-pixel white border on its gt/ images (640x480) and not on the
    hazy images made from them (620x460): every pair was refused as 'a pair must share one size'. The frame is
    left out; any other difference in size is still refused."""
    source = shared_data / "paired" / "sots-indoor"
    (tmp_path / "hazy").mkdir()
    (tmp_path / "gt").mkdir()
    shutil.copy(source / "hazy" / "1430_2.png", tmp_path / "hazy")
    clear = cv2.imread(str(source / "clear" / "1430.png"))
    cv2.imwrite(str(tmp_path / "gt" / "1430.png"), cv2.copyMakeBorder(clear, 10, 10, 10, 10, cv2.BORDER_CONSTANT,
                                                                       value=(255, 255, 255)))
    (pair,) = find_pairs(tmp_path)
    hazy, framed = load_pair(pair)
    assert hazy.shape == (460, 620, 3) and np.array_equal(framed, clear)
    cv2.imwrite(str(tmp_path / "gt" / "1430.png"), cv2.copyMakeBorder(clear, 5, 5, 5, 5, cv2.BORDER_REPLICATE))
    with pytest.raises(PairingError, match=r"1430_2\.png is 620x460 but 1430\.png is 630x470"):
        load_pair(pair)


def test_a_colour_image_paired_with_a_grayscale_one_is_refused(shared_data: Path, tmp_path: Path):
    """A grayscale ground truth beside colour hazy photos (a copy saved in grey, or the wrong folder) was scored:
    every method's colour output against grey, figures that say nothing. A pair of grayscale images is scored."""
    source = shared_data / "paired" / "sots-indoor"
    (tmp_path / "hazy").mkdir()
    (tmp_path / "clear").mkdir()
    shutil.copy(source / "hazy" / "1430_2.png", tmp_path / "hazy")
    grey = cv2.cvtColor(cv2.imread(str(source / "clear" / "1430.png")), cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(tmp_path / "clear" / "1430.png"), grey)
    (pair,) = find_pairs(tmp_path)
    with pytest.raises(PairingError, match=r"pair 1430_2: 1430\.png is grayscale but 1430_2\.png is in colour"):
        load_pair(pair)
    cv2.imwrite(str(tmp_path / "hazy" / "1430_2.png"), cv2.cvtColor(cv2.imread(str(pair.hazy)), cv2.COLOR_BGR2GRAY))
    hazy, clear = load_pair(pair)
    assert np.array_equal(clear[:, :, 0], grey) and np.array_equal(clear[:, :, 2], grey)


def test_dehaze_outputs_written_into_the_hazy_folder_are_refused_not_scored_as_hazy_images(tmp_path: Path):
    """`dgdehaze dehaze hazy --out hazy/dehazed` put 1_a_dehazed.png and 1_a_depth.png in a subfolder of hazy/, which
    is read with its subfolders (OTS's parts): eval scored them as two more hazy images of scene 1, without a word."""
    root = _make_set(tmp_path, ["1_a.png"], ["1.png"])
    assert main(["dehaze", str(root / "hazy"), "--method", "dcp", "--out", str(root / "hazy" / "dehazed")]) == 0
    with pytest.raises(PairingError, match=r"hazy holds the outputs of a dgdehaze dehaze run in dehazed/"):
        find_pairs(root)


def test_a_pair_too_small_for_ssim_is_named(shared_data: Path, tmp_path: Path):
    """SSIM's 7x7 window refused a 6x6 pair without saying which of the set's pairs it was."""
    from dgdehaze_core.evaluation.methods import MethodSpec, load_method
    from dgdehaze_core.evaluation.quality_eval import evaluate_quality

    source = shared_data / "paired" / "sots-outdoor"
    for kind, name in (("hazy", "0016_0.8_0.08.jpg"), ("clear", "0016.jpg")):
        (tmp_path / kind).mkdir()
        cv2.imwrite(str(tmp_path / kind / f"{Path(name).stem}.png"), cv2.imread(str(source / kind / name))[:6, :6])
    with pytest.raises(PairingError, match=r"pair 0016_0\.8_0\.08 through dcp: SSIM needs images of at least 7x7"):
        evaluate_quality(find_pairs(tmp_path), [load_method(MethodSpec("dcp", "dcp"))], progress=False)


def test_the_shared_paired_sets_pair_completely(shared_data: Path):
    counts = {name: len(find_pairs(shared_data / "paired" / name))
              for name in ("sots-indoor", "sots-outdoor", "o-haze")}
    assert counts == {"sots-indoor": 50, "sots-outdoor": 2, "o-haze": 2}


O_HAZE_SCENES = ("27", "35")


@pytest.fixture()
def o_haze_small(shared_data: Path, tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    """The real O-HAZE pairs of the shared data scaled to 160x120: {scene: (hazy file, clear file)}."""
    source, small = shared_data / "paired" / "o-haze", tmp_path / "source"
    small.mkdir()
    files = {}
    for scene in O_HAZE_SCENES:
        for kind, path in (("hazy", source / "hazy" / f"{scene}_hazy.png"),
                           ("clear", source / "clear" / f"{scene}.png")):
            image = cv2.resize(cv2.imread(str(path), cv2.IMREAD_COLOR), (160, 120), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(small / f"{scene}-{kind}.png"), image)
        files[scene] = (small / f"{scene}-hazy.png", small / f"{scene}-clear.png")
    return files


# (hazy folder, clear folder, hazy name, clear name) of each layout: as the shared O-HAZE pairs are kept, then as
# the benchmarks are published ("" for the flat folder of NH-HAZE)
LAYOUTS = {
    "shared-o-haze": ("hazy", "clear", "{}_hazy.png", "{}.png"),
    "o-haze": ("hazy", "GT", "{}_outdoor_hazy.png", "{}_outdoor_GT.png"),
    "i-haze": ("hazy", "GT", "{}_indoor_hazy.png", "{}_indoor_GT.png"),
    "dense-haze": ("hazy", "GT", "{}_hazy.png", "{}_GT.png"),
    "nh-haze": ("", "", "{}_hazy.png", "{}_GT.png"),
    "folders-in-other-cases": ("HAZY", "Clean", "{}_Haze.png", "{}_CLEAN.png"),
    "hsts": ("synthetic", "original", "{}.png", "{}.png"),
}


def _published(root: Path, layout: str, files: dict[str, tuple[Path, Path]]) -> Path:
    """`files` copied byte for byte into `root` in one of LAYOUTS."""
    hazy_folder, clear_folder, hazy_name, clear_name = LAYOUTS[layout]
    (root / hazy_folder).mkdir(parents=True, exist_ok=True)
    (root / clear_folder).mkdir(parents=True, exist_ok=True)
    for scene, (hazy, clear) in files.items():
        shutil.copyfile(hazy, root / hazy_folder / hazy_name.format(scene))
        shutil.copyfile(clear, root / clear_folder / clear_name.format(scene))
    return root


@pytest.mark.parametrize("layout", [layout for layout in LAYOUTS if layout != "shared-o-haze"])
def test_published_layouts_pair_each_hazy_image_with_its_own_ground_truth(o_haze_small, tmp_path: Path, layout):
    root = _published(tmp_path / layout, layout, o_haze_small)
    assert is_paired_set(root)
    pairs = find_pairs(root)
    assert [pair.hazy for pair in pairs] == hazy_images(root)
    assert len(pairs) == len(O_HAZE_SCENES)
    for pair, scene in zip(pairs, O_HAZE_SCENES):
        hazy, clear = o_haze_small[scene]
        assert pair.hazy.read_bytes() == hazy.read_bytes() and pair.clear.read_bytes() == clear.read_bytes()
        assert pair.scene.startswith(scene)


def test_a_flat_set_is_one_only_with_both_kinds_of_name_and_a_folder_of_photos_is_not(o_haze_small, tmp_path: Path,
                                                                                     shared_data: Path):
    flat = _published(tmp_path / "nh-haze", "nh-haze", o_haze_small)
    assert is_paired_set(flat) and hazy_images(flat) == [flat / "27_hazy.png", flat / "35_hazy.png"]
    (flat / "35_GT.png").unlink()
    assert is_paired_set(flat)
    with pytest.raises(PairingError, match=r"1 hazy image\(s\) in .*nh-haze have no clear image NAME_GT.*: "
                                           r"35_hazy\.png$"):
        find_pairs(flat)
    (flat / "27_GT.png").unlink()
    assert not is_paired_set(flat), "hazy photos alone (as hazy-real/o-haze holds them) are photos, not a set"
    photos = tmp_path / "photos"
    photos.mkdir()
    for scene, (hazy, _) in o_haze_small.items():
        shutil.copyfile(hazy, photos / f"{scene}.png")
    assert not any(is_paired_set(folder) for folder in (photos, shared_data / "hazy-real" / "urhi",
                                                        shared_data / "hazy-real" / "o-haze"))


def test_a_flat_set_with_an_image_named_as_neither_kind_is_refused_naming_it(o_haze_small, tmp_path: Path):
    flat = _published(tmp_path / "nh-haze", "nh-haze", o_haze_small)
    shutil.copyfile(o_haze_small["27"][0], flat / "27_extra.png")
    with pytest.raises(PairingError, match=r"1 image\(s\) named as neither: 27_extra\.png"):
        find_pairs(flat)


def test_a_flat_set_with_its_ground_truth_named_without_gt_says_how_to_name_it(o_haze_small, tmp_path: Path,
                                                                              capsys):
    """`27_hazy.png` beside `27.png` in one folder was refused for quality as a folder of photos that "fits haze: give
    --measure haze", which would score the ground truth as a hazy photo; the refusal now names the file and the
    names the flat layout takes."""
    flat = _published(tmp_path / "nh-haze", "nh-haze", o_haze_small)
    (flat / "27_GT.png").rename(flat / "27.png")
    (flat / "35_GT.png").unlink()
    capsys.readouterr()
    assert main(["eval", "--dataset", str(flat), "--measure", "quality", "--method", "hazy"]) == 2
    error = capsys.readouterr().err
    assert "27.png" in error and "27_GT.png" in error and "fits haze" not in error


@pytest.mark.parametrize("clear, message", [
    (["clear/01.png", "clear/01_GT.png"], r"several files for one name: 01 \(01\.png, 01_GT\.png\)"),
    (["01_GT.png", "01_gt.png"], r"several files for one name: 01 \(01_GT\.png, 01_gt\.png\)"),
    (["GT/01.png", "gt/01.png"], r"2 clear folders \(GT/, gt/\)"),
    (["clear/01.png", "Hazy/01_hazy.png"], r"2 hazy folders \(Hazy/, hazy/\)"),
])
def test_ambiguous_sets_are_refused_naming_the_files(tmp_path: Path, clear: list[str], message: str):
    hazy = "01_hazy.png" if "/" not in clear[0] else "hazy/01_hazy.png"
    for name in [hazy, *clear]:
        _write(tmp_path / name)
    if len(list(tmp_path.iterdir())) < len({name.split("/")[0] for name in [hazy, *clear]}):
        pytest.skip("the filesystem does not tell names apart by case")
    with pytest.raises(PairingError, match=message):
        find_pairs(tmp_path)


def test_eval_scores_a_flat_set_as_the_same_pairs_in_folders(o_haze_small, tmp_path: Path):
    """Quality and haze figures of NH-HAZE's flat layout equal those of hazy/ + clear/ of the same files: the flat
    set's ground truth is neither scored as a hazy photo nor left unpaired."""
    rows = {}
    for layout in ("shared-o-haze", "nh-haze"):
        root = _published(tmp_path / layout, layout, o_haze_small)
        out = tmp_path / f"{layout}.json"
        assert main(["eval", "--dataset", str(root), "--measure", "quality,haze", "--method", "hazy",
                     "--json", str(out)]) == 0
        rows[layout] = json.loads(out.read_text())
    assert rows["nh-haze"] == rows["shared-o-haze"]
    assert rows["nh-haze"]["quality/hazy"]["pairs"] == rows["nh-haze"]["haze/hazy"]["images"] == len(O_HAZE_SCENES)
    assert 5.0 < rows["nh-haze"]["quality/hazy"]["psnr"] < 40.0


def test_reside_hsts_pairs_synthetic_with_original_and_its_root_names_the_set_in_it(o_haze_small, tmp_path: Path,
                                                                                    capsys: pytest.CaptureFixture):
    """RESIDE's HSTS keeps its synthetic pairs as HSTS/synthetic/synthetic/0586.jpg (hazy) beside
    HSTS/synthetic/original/0586.jpg (ground truth) and its real hazy photos in HSTS/real-world/: eval refused
    HSTS/synthetic/ as fitting no measure."""
    hsts = tmp_path / "HSTS"
    root = _published(hsts / "synthetic", "hsts", o_haze_small)
    (hsts / "real-world").mkdir()
    shutil.copyfile(o_haze_small["27"][0], hsts / "real-world" / "27.png")
    out = tmp_path / "hsts.json"
    assert main(["eval", "--dataset", str(root), "--measure", "quality", "--method", "hazy", "--no-progress",
                 "--json", str(out)]) == 0
    by_hand = np.mean([peak_signal_noise_ratio(cv2.imread(str(clear)), cv2.imread(str(hazy)), data_range=255)
                       for hazy, clear in o_haze_small.values()])
    figures = json.loads(out.read_text())["hazy"]
    assert figures["pairs"] == len(O_HAZE_SCENES) and figures["psnr"] == pytest.approx(by_hand, abs=1e-6)
    capsys.readouterr()
    assert main(["eval", "--dataset", str(hsts), "--measure", "quality", "--method", "hazy"]) == 2
    assert "(its subfolder synthetic/ does: give it as --dataset)" in capsys.readouterr().err
    shutil.rmtree(root / "original")
    assert not is_paired_set(root), "a synthetic/ folder without original/ beside it is no hazy folder"


SOTS_OUTDOOR = {"0016_0.8_0.08.jpg": "0016.jpg", "0030_0.95_0.12.jpg": "0030.jpg"}


@pytest.mark.parametrize("hazy_parts, clear_folder", [
    (("OTS/haze/part1", "OTS/haze/part2"), "OTS/clear"),
    (("OTS/hazy/part1", "OTS/hazy/part1"), "OTS/clear/clear_images"),
    (("OTS/HAZE", "OTS/HAZE"), "OTS/clear"),
])
def test_reside_ots_as_unpacked_pairs_its_haze_folder_and_its_parts(shared_data: Path, tmp_path: Path,
                                                                    hazy_parts, clear_folder):
    """RESIDE-beta's OTS names its hazy folder `haze/` and comes in zip parts unpacked as `haze/part1/` ...: such a
    set was refused as having no hazy/ folder, or as a hazy folder holding no images. Real SOTS-outdoor files laid
    out so pair with their own clear images, and score as the shared set in hazy/ + clear/ does."""
    source = shared_data / "paired" / "sots-outdoor"
    for part, (hazy, clear) in zip(hazy_parts, SOTS_OUTDOOR.items()):
        (tmp_path / part).mkdir(parents=True, exist_ok=True)
        (tmp_path / clear_folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / "hazy" / hazy, tmp_path / part / hazy)
        shutil.copyfile(source / "clear" / clear, tmp_path / clear_folder / clear)
    root = tmp_path / "OTS"
    assert is_paired_set(root)
    pairs = find_pairs(root)
    assert [pair.hazy for pair in pairs] == hazy_images(root) == [tmp_path / part / hazy for part, hazy in
                                                                  zip(hazy_parts, SOTS_OUTDOOR)]
    assert {pair.name: pair.clear.name for pair in pairs} == {Path(h).stem: c for h, c in SOTS_OUTDOOR.items()}
    assert all(pair.clear.read_bytes() == (source / "clear" / pair.clear.name).read_bytes() for pair in pairs)
    rows = {}
    for name, dataset in (("ots", root), ("shared", source)):
        out = tmp_path / f"{name}.json"
        assert main(["eval", "--dataset", str(dataset), "--measure", "quality", "--method", "hazy",
                     "--json", str(out)]) == 0
        rows[name] = json.loads(out.read_text())
    assert rows["ots"] == rows["shared"] and rows["ots"]["hazy"]["pairs"] == 2


def test_one_hazy_name_in_two_parts_is_refused_naming_both(shared_data: Path, tmp_path: Path):
    source = shared_data / "paired" / "sots-outdoor"
    for part in ("part1", "part2"):
        (tmp_path / "haze" / part).mkdir(parents=True)
        shutil.copyfile(source / "hazy" / "0016_0.8_0.08.jpg", tmp_path / "haze" / part / "0016_0.8_0.08.jpg")
    (tmp_path / "clear").mkdir()
    shutil.copyfile(source / "clear" / "0016.jpg", tmp_path / "clear" / "0016.jpg")
    with pytest.raises(PairingError, match=r"haze holds several files for one name: 0016_0\.8_0\.08 "
                                           r"\(part1/0016_0\.8_0\.08\.jpg, part2/0016_0\.8_0\.08\.jpg\)"):
        find_pairs(tmp_path)


CITYSCAPES_ZIPS = {"leftImg8bit": "leftImg8bit_trainvaltest", "leftImg8bit_foggy": "leftImg8bit_trainvaltest_foggy",
                   "gtFine": "gtFine_trainvaltest"}
"""The folder each of the official zips (`leftImg8bit_trainvaltest.zip`, ...) unpacks its data folder into."""


def _foggy_cityscapes(shared_data: Path, root: Path, unzipped: bool = False) -> dict[str, Path]:
    """Real SOTS images laid out as Foggy Cityscapes beside Cityscapes (each written as a PNG as those are):
    {foggy file name: the SOTS hazy image it is}. val/frankfurt holds one scene at two densities (SOTS indoor's
    light and dense haze of room 1430), test/berlin one (SOTS outdoor's 0016); gtFine/ is there as it is in a
    Cityscapes download. `unzipped`: each data folder one deeper, in its zip's folder beside the zip's README and
    license.txt (`leftImg8bit_trainvaltest/leftImg8bit/`), as the official zips unpack."""
    indoor, outdoor = shared_data / "paired" / "sots-indoor", shared_data / "paired" / "sots-outdoor"
    scenes = {("val", "frankfurt_000000_000294"): (indoor / "clear" / "1430.png", {
                  "0.01": indoor / "hazy" / "1430_2.png", "0.02": indoor / "hazy" / "1430_7.png"}),
              ("test", "berlin_000000_000019"): (outdoor / "clear" / "0016.jpg", {
                  "0.02": outdoor / "hazy" / "0016_0.8_0.08.jpg"})}
    data = {folder: root / zip_folder / folder if unzipped else root / folder
            for folder, zip_folder in CITYSCAPES_ZIPS.items()}
    for folder in data.values():
        for name in ("README", "license.txt") if unzipped else ():
            folder.parent.mkdir(parents=True, exist_ok=True)
            (folder.parent / name).write_text("The Cityscapes Dataset\n")
    foggy = {}
    for (split, name), (clear, hazy) in scenes.items():
        city = name.split("_")[0]
        for folder in data.values():
            (folder / split / city).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(data["leftImg8bit"] / split / city / f"{name}_leftImg8bit.png"), cv2.imread(str(clear)))
        cv2.imwrite(str(data["gtFine"] / split / city / f"{name}_gtFine_labelIds.png"), np.zeros((8, 8), np.uint8))
        for beta, source in hazy.items():
            file_name = f"{name}_leftImg8bit_foggy_beta_{beta}.png"
            cv2.imwrite(str(data["leftImg8bit_foggy"] / split / city / file_name), cv2.imread(str(source)))
            foggy[file_name] = source
    return foggy


@pytest.mark.parametrize("unzipped", [False, True], ids=["data-folders", "as-the-zips-unpack"])
def test_foggy_cityscapes_pairs_each_foggy_image_with_its_clear_image(shared_data: Path, tmp_path: Path,
                                                                     unzipped: bool):
    """Foggy Cityscapes (leftImg8bit_foggy/SPLIT/CITY/..._foggy_beta_B.png beside leftImg8bit/SPLIT/CITY/...png) was
    refused as having no hazy/ folder, and so was the folder the official zips unpack into, a folder each
    (leftImg8bit_trainvaltest_foggy/leftImg8bit_foggy/ beside leftImg8bit_trainvaltest/leftImg8bit/): the user had
    to move the data folders up. Each foggy image pairs with its own clear image, named by its stem with the beta;
    --include chooses by file name: a density, or a split by its cities."""
    root = tmp_path / "cityscapes"
    foggy = _foggy_cityscapes(shared_data, root, unzipped)
    data = {folder: root / zip_folder / folder if unzipped else root / folder
            for folder, zip_folder in CITYSCAPES_ZIPS.items()}
    assert sorted(p.name for p in root.iterdir()) == sorted(CITYSCAPES_ZIPS.values() if unzipped else data)
    assert is_paired_set(root)
    pairs = find_pairs(root)
    assert [pair.name for pair in pairs] == [
        "berlin_000000_000019_leftImg8bit_foggy_beta_0.02", "frankfurt_000000_000294_leftImg8bit_foggy_beta_0.01",
        "frankfurt_000000_000294_leftImg8bit_foggy_beta_0.02"]
    for pair in pairs:
        assert pair.hazy.parent.relative_to(data["leftImg8bit_foggy"]) == \
            pair.clear.parent.relative_to(data["leftImg8bit"])
        assert pair.clear.name == pair.scene + ".png" and pair.name.startswith(pair.scene + "_foggy_beta_")
        hazy, clear = load_pair(pair)
        assert np.array_equal(hazy, cv2.imread(str(foggy[pair.hazy.name])))
    rows = {}
    for name, dataset, include in (("val", root, "frankfurt_*"), ("dense", root, "*_beta_0.02.png"),
                                   ("sots", shared_data / "paired" / "sots-indoor", "1430_*")):
        out = tmp_path / f"{name}.json"
        assert main(["eval", "--dataset", str(dataset), "--measure", "quality", "--method", "hazy",
                     "--include", include, "--json", str(out)]) == 0
        rows[name] = json.loads(out.read_text())["hazy"]
    assert rows["val"] == rows["sots"] and rows["val"]["pairs"] == rows["dense"]["pairs"] == 2


def test_one_of_the_two_cityscapes_zips_unpacked_alone_is_named_with_the_one_missing(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """With one side alone the error said only that there was no hazy/ (or no clear/) folder, or that the folder
    fitted no measure."""
    root = tmp_path / "cityscapes"
    _foggy_cityscapes(shared_data, root, unzipped=True)
    shutil.move(root / "leftImg8bit_trainvaltest", tmp_path / "clear_aside")
    assert not is_paired_set(root)
    with pytest.raises(PairingError, match=r"holds hazy images in leftImg8bit_trainvaltest_foggy/leftImg8bit_foggy/ "
                                           r"but no clear folder .*leftImg8bit/"):
        find_pairs(root)
    capsys.readouterr()
    assert main(["eval", "--dataset", str(root), "--measure", "quality", "--method", "hazy"]) == 2
    assert "leftImg8bit_trainvaltest_foggy/leftImg8bit_foggy/ but no clear folder" in capsys.readouterr().err
    shutil.move(tmp_path / "clear_aside", root / "leftImg8bit_trainvaltest")
    shutil.move(root / "leftImg8bit_trainvaltest_foggy", tmp_path / "hazy_aside")
    with pytest.raises(PairingError, match=r"holds ground truth in leftImg8bit_trainvaltest/leftImg8bit/ but no "
                                           r"hazy folder .*leftImg8bit_foggy/"):
        find_pairs(root)


def test_foggy_cityscapes_beside_its_refined_copy_is_refused_naming_both(shared_data: Path, tmp_path: Path):
    _foggy_cityscapes(shared_data, tmp_path)
    shutil.copytree(tmp_path / "leftImg8bit_foggy", tmp_path / "leftImg8bit_foggyDBF")
    with pytest.raises(PairingError, match=r"2 hazy folders \(leftImg8bit_foggy/, leftImg8bit_foggyDBF/\)"):
        find_pairs(tmp_path)
    shutil.rmtree(tmp_path / "leftImg8bit_foggy")
    assert len(find_pairs(tmp_path)) == 3


def test_a_selection_pairs_only_what_it_chooses(shared_data: Path, tmp_path: Path, capsys):
    """A partial download of Foggy Cityscapes (train/aachen's foggy images without their clear images) was refused
    whole even with --include 'frankfurt_*', which leaves aachen out: pairing ran before the selection. Now only
    the selected hazy images must pair, whether chosen by globs, by a split part or by a training recipe's
    validation include; a selected image without its clear image, or a clash among the selected, is still
    refused naming it, and a selection of nothing says so."""
    from dgdehaze_core.training.datasets import validation_pairs
    from dgdehaze_core.training.recipe import ImageSource

    def refused(include: str) -> str:
        assert main(["eval", "--dataset", str(root), "--measure", "quality", "--method", "hazy",
                     "--include", include, "--no-progress"]) == 2
        return capsys.readouterr().err.strip().splitlines()[-1]

    root = tmp_path / "cityscapes"
    _foggy_cityscapes(shared_data, root)
    aachen = root / "leftImg8bit_foggy" / "train" / "aachen"
    aachen.mkdir(parents=True)
    foggy = "aachen_000000_000019_leftImg8bit_foggy_beta_0.02.png"
    source = shared_data / "paired" / "sots-outdoor" / "hazy" / "0030_0.95_0.12.jpg"
    cv2.imwrite(str(aachen / foggy), cv2.imread(str(source)))
    split = tmp_path / "split.yaml"
    split.write_text(f"dataset: cityscapes\nparts:\n  train:\n  - {foggy}\n  val:\n"
                     "  - frankfurt_000000_000294_leftImg8bit_foggy_beta_0.01.png\n"
                     "  - frankfurt_000000_000294_leftImg8bit_foggy_beta_0.02.png\n")
    with pytest.raises(PairingError, match=rf"1 hazy image.* have no clear image .*: {re.escape(foggy)}$"):
        find_pairs(root)
    assert re.search(rf"1 hazy image.* have no clear image .*: {re.escape(foggy)}$", refused(f"@{split}:train"))
    # clashes outside the selection: the aachen image in two cities, berlin's clear image twice
    shutil.copytree(aachen, root / "leftImg8bit_foggy" / "train" / "bochum")
    berlin = root / "leftImg8bit" / "test" / "berlin" / "berlin_000000_000019_leftImg8bit.png"
    shutil.copyfile(berlin, berlin.with_suffix(".jpg"))
    rows = {}
    for name, dataset, include in (("val", root, "frankfurt_*"), ("split", root, f"@{split}:val"),
                                   ("sots", shared_data / "paired" / "sots-indoor", "1430_*")):
        out = tmp_path / f"{name}.json"
        assert main(["eval", "--dataset", str(dataset), "--measure", "quality", "--method", "hazy",
                     "--include", include, "--no-progress", "--json", str(out)]) == 0
        rows[name] = json.loads(out.read_text())["hazy"]
    assert rows["val"] == rows["split"] == rows["sots"] and rows["val"]["pairs"] == 2
    assert [pair.name for pair in validation_pairs([ImageSource(path=root, include=("frankfurt_*",))])] == [
        "frankfurt_000000_000294_leftImg8bit_foggy_beta_0.01", "frankfurt_000000_000294_leftImg8bit_foggy_beta_0.02"]
    assert refused("aachen_*").endswith(f"several files for one name: {Path(foggy).stem} (train/aachen/{foggy}, "
                                        f"train/bochum/{foggy})")
    assert refused("berlin_*").endswith("several files for one name: berlin_000000_000019_leftImg8bit "
                                        "(test/berlin/berlin_000000_000019_leftImg8bit.jpg, "
                                        "test/berlin/berlin_000000_000019_leftImg8bit.png)")
    assert re.search(r"no image in \S+ matches --include zurich_\*$", refused("zurich_*"))
