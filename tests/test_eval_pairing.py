"""Pairing hazy images with their ground truth: the naming rule, and a clear error for every broken set."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dgdehaze_core.datasets.paired_sets import PairingError, find_pairs, is_paired_set, load_pair


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
    with pytest.raises(PairingError, match=r"no clear/ \(or GT/\) folder"):
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


def test_the_shared_paired_sets_pair_completely(shared_data: Path):
    counts = {name: len(find_pairs(shared_data / "paired" / name)) for name in ("sots-indoor", "sots-outdoor", "o-haze")}
    assert counts == {"sots-indoor": 50, "sots-outdoor": 2, "o-haze": 2}
