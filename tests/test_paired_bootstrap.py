"""The paired bootstrap of detection comparisons (`dgdehaze eval --bootstrap`) on matches whose answer is known."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dgdehaze_core.cli import main
from dgdehaze_core.datasets.paths import REPO_DIR
from dgdehaze_core.evaluation.detection_eval import ImageMatches
from dgdehaze_core.evaluation.paired_bootstrap import BOOTSTRAP_COLUMNS, Group, paired_bootstrap

DAWN_SPLIT = REPO_DIR / "data" / "splits" / "dawn-fog.yaml"


def _image(found: bool) -> ImageMatches:
    """One car in the image; the method's one detection finds it or lies elsewhere."""
    return ImageMatches(classes=["car"], scores=[0.9], correct=[found], references=Counter(car=1))


def _matches(**found: list[bool]) -> dict[str, list[ImageMatches]]:
    return {name: [_image(hit) for hit in hits] for name, hits in found.items()}


def test_a_method_against_itself_differs_by_nothing():
    matches = _matches(a=[True, False, True, True], b=[True, False, True, True])
    row = paired_bootstrap(matches, [(Group("a", ("a",)), [Group("b", ("b",))])], samples=200)["b vs a"]
    assert set(row) == set(BOOTSTRAP_COLUMNS)
    for figure in ("map50", "f1"):
        assert row[f"{figure}_diff"] == row[f"{figure}_diff_lo"] == row[f"{figure}_diff_hi"] == 0.0
        assert row[f"{figure}_p_better"] == 0.5
    assert row["images"] == 4 and row["samples"] == 200


def test_a_method_better_on_every_image_is_better_in_every_redraw():
    matches = _matches(base=[False] * 6, better=[True] * 6)
    row = paired_bootstrap(matches, [(Group("base", ("base",)), [Group("better", ("better",))])], 300)["better vs base"]
    for column in ("map50_diff", "map50_diff_lo", "map50_diff_hi", "f1_diff_lo"):
        assert row[column] == pytest.approx(1.0)
    assert row["map50_p_better"] == row["f1_p_better"] == 1.0


def test_one_better_image_of_ten_is_not_a_settled_lead():
    """The baseline misses one car of ten: a redraw without that image (about a third of them) ties."""
    matches = _matches(base=[True] * 9 + [False], better=[True] * 10)
    row = paired_bootstrap(matches, [(Group("base", ("base",)), [Group("better", ("better",))])], 1000,
                           seed=1)["better vs base"]
    assert row["map50_diff"] == pytest.approx(0.1)
    assert row["map50_diff_lo"] == 0.0 < row["map50_diff_hi"]
    assert 0.7 < row["map50_p_better"] < 0.95  # 1 - 0.9**10 / 2 = 0.83
    again = paired_bootstrap(matches, [(Group("base", ("base",)), [Group("better", ("better",))])], 1000, seed=1)
    assert again["better vs base"] == row


def test_a_group_scores_the_mean_of_its_methods():
    matches = _matches(base=[False] * 4, good=[True] * 4, same=[False] * 4)
    rows = paired_bootstrap(matches, [(Group("base", ("base",)), [Group("recipe", ("good", "same"))])], 100)
    assert rows["recipe vs base"]["map50_diff"] == rows["recipe vs base"]["map50_diff_lo"] == 0.5
    assert Group.parse("recipe=good, same") == Group("recipe", ("good", "same"))
    assert Group.parse("lite") == Group("lite", ("lite",))


def test_a_set_without_any_reference_has_nothing_to_compare():
    empty = ImageMatches(classes=["car"], scores=[0.5], correct=[False], references=Counter())
    with pytest.raises(ValueError, match="no reference objects"):
        paired_bootstrap({"a": [empty, empty], "b": [empty, empty]}, [(Group("a", ("a",)), [Group("b", ("b",))])], 10)


def test_redraws_without_any_reference_are_left_out_and_not_counted():
    """One photo holds a car, the other nothing: a redraw of the empty photo twice (a quarter of them) has no
    figures, and `samples` counts the redraws that had."""
    empty = ImageMatches(classes=["car"], scores=[0.5], correct=[False], references=Counter())
    matches = {"a": [_image(False), empty], "b": [_image(True), empty]}
    row = paired_bootstrap(matches, [(Group("a", ("a",)), [Group("b", ("b",))])], 200, seed=5)["b vs a"]
    rng = np.random.default_rng(5)
    assert row["samples"] == sum(0 in rng.integers(0, 2, 2) for _ in range(200)) < 180


def test_tied_scores_rank_as_score_matches_ranks_them():
    """21 photos of one car each: 10 hits and 10 misses all at one score, then a sure hit, which rank as
    `score_matches` ranks them: the sure hit, then the tied in the photos' order (AP 11/21), not the misses first
    (1/21 + 10/21 * 11/21) or mixed among the hits, as numpy's default (unstable) sort mixes more than 16."""
    sure = ImageMatches(classes=["car"], scores=[0.9], correct=[True], references=Counter(car=1))
    tied = [ImageMatches(classes=["car"], scores=[0.5], correct=[hit], references=Counter(car=1))
            for hit in [True] * 10 + [False] * 10]
    matches = {"tied": [*tied, sure], "all": [sure] * 21}
    row = paired_bootstrap(matches, [(Group("tied", ("tied",)), [Group("all", ("all",))])], 10)["all vs tied"]
    assert row["map50_diff"] == pytest.approx(1 - 11 / 21)


@pytest.mark.parametrize("baseline, groups, samples, message", [
    (Group("a", ("a",)), [Group("c", ("c",))], 10, "not evaluated"),
    (Group("a", ("a",)), [Group("b", ("b",))], 0, "at least one sample"),
    (Group("a", ("a",)), [Group("again", ("a",))], 10, "baseline itself"),
    (Group("a", ("a",)), [Group("a", ("b",))], 10, "distinct names"),
    (Group("a", ("a",)), [Group("short", ("short",))], 10, "different numbers of images"),
])
def test_bad_comparisons_are_refused(baseline, groups, samples, message):
    matches = {**_matches(a=[True, False], b=[True, True]), "short": [_image(True)]}
    with pytest.raises(ValueError, match=message):
        paired_bootstrap(matches, [(baseline, groups)], samples)


@pytest.mark.parametrize("text", ["", "=a", "name=", "x=a,a"])
def test_malformed_groups_are_refused(text):
    with pytest.raises(ValueError, match="comparison group"):
        Group.parse(text)


def test_eval_compares_methods_on_real_fog_photos(shared_data: Path, tmp_path: Path):
    out = tmp_path / "boot.json"
    assert main(["eval", "--dataset", str(shared_data / "detection" / "dawn-fog"), "--measure", "detection",
                 "--include", f"@{DAWN_SPLIT}:validation", "--limit", "4", "--method", "hazy,dcp,again=dcp",
                 "--bootstrap", "100", "--group", "dcp=dcp,again", "--group", "hazy",
                 "--baseline", "hazy", "--baseline", "twice=dcp,again", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert {"hazy", "dcp", "again", "dcp vs hazy", "hazy vs twice"} <= set(rows)
    assert not {"again vs hazy", "hazy vs hazy", "dcp vs twice"} & set(rows)
    assert rows["hazy vs twice"]["map50_diff"] == pytest.approx(-rows["dcp vs hazy"]["map50_diff"])
    row = rows["dcp vs hazy"]
    assert set(row) == set(BOOTSTRAP_COLUMNS) and row["images"] == 4 and 0 < row["samples"] <= 100
    assert row["map50_diff"] == pytest.approx(rows["dcp"]["map50"] - rows["hazy"]["map50"])
    assert row["f1_diff_lo"] <= row["f1_diff"] <= row["f1_diff_hi"] and 0.0 <= row["f1_p_better"] <= 1.0


def test_a_clear_reference_as_a_side_on_photos_without_a_clear_image_is_refused_before_they_run(
        shared_data: Path, capsys):
    """The clear references get no rows on a labelled set: naming one as a side failed after every photo had run,
    saying it was not in --method when it was."""
    assert main(["eval", "--dataset", str(shared_data / "detection" / "dawn-fog"), "--measure", "detection",
                 "--method", "hazy,clear", "--bootstrap", "100", "--baseline", "clear"]) == 2
    err = capsys.readouterr().err
    assert "--baseline/--group name clear: dawn-fog is a set of photos with human boxes and no clear image" in err
    assert "detection dawn-fog:" not in err  # no photo ran


@pytest.mark.parametrize("options, message", [
    (["--baseline", "hazy"], "only apply with --bootstrap"),
    (["--bootstrap", "100", "--group", "x=lite"], "not in --method: lite"),
    (["--bootstrap", "100", "--baseline", "hazy,dcp"], "nothing to compare"),
    (["--bootstrap", "-1"], "must be 0 (off) or at least 100"),
    (["--bootstrap", "100", "--baseline", "X=hazy", "--baseline", "X=dcp"], "--baseline names must be distinct: X"),
    (["--bootstrap", "100", "--group", "G=dcp", "--group", "G=hazy"], "--group names must be distinct: G"),
    (["--bootstrap", "100", "--baseline", "B=hazy", "--group", "B=dcp"], "--group B has the name of a --baseline"),
])
def test_eval_refuses_bad_comparisons_before_loading_anything(shared_data: Path, capsys, options, message):
    assert main(["eval", "--dataset", str(shared_data / "detection" / "dawn-fog"), "--measure", "detection",
                 "--method", "hazy,dcp", *options]) == 2
    assert message in capsys.readouterr().err


def test_a_bootstrap_over_one_photo_is_refused_not_reported_as_certain(shared_data: Path, tmp_path: Path, capsys):
    """One DAWN photo redrawn 100 times is that photo 100 times: dcp came out better than hazy in every redraw,
    with a 95 % interval of [1, 1], a certainty that one photo cannot give."""
    out = tmp_path / "boot.json"
    assert main(["eval", "--dataset", str(shared_data / "detection" / "dawn-fog"), "--measure", "detection",
                 "--include", f"@{DAWN_SPLIT}:validation", "--limit", "1", "--method", "hazy,dcp",
                 "--bootstrap", "100", "--json", str(out), "--no-progress"]) == 2
    assert "a bootstrap over 1 image(s) redraws the same set every time" in capsys.readouterr().err


DAWN_PHOTOS = ("foggy-078.jpg", "haze-084.jpg", "haze-119.jpg", "mist-064.jpg", "mist-161.jpg", "foggy-001.jpg",
               "foggy-002.jpg", "foggy-004.jpg")
"""DAWN fog photos with cars, trucks, people and a bus (none two copies of the same pixels, whose detections would
tie in score across photos and rank by the photos' order)."""


@pytest.fixture(scope="module")
def dawn_matches(shared_data: Path) -> dict[str, list[ImageMatches]]:
    """The detector as `eval` runs it (down to the AP floor) on real fog photos and on their DCP output, matched to
    the human boxes."""
    from dgdehaze_core.detection.detector import Detector
    from dgdehaze_core.evaluation.detection_eval import AP_SCORE_FLOOR, match_image
    from dgdehaze_core.evaluation.labelled_sets import labelled_images
    from dgdehaze_core.io.images import read_image
    from dgdehaze_core.physics.dark_channel import DarkChannelDehazer

    images = labelled_images(shared_data / "detection" / "dawn-fog", keep=lambda name: name in DAWN_PHOTOS)
    assert sorted(item.image.name for item in images) == sorted(DAWN_PHOTOS)
    detector, dcp = Detector(conf=AP_SCORE_FLOOR, max_det=300), DarkChannelDehazer()
    matches: dict[str, list[ImageMatches]] = {"hazy": [], "dcp": []}
    for item in images:
        frame = read_image(item.image)
        matches["hazy"].append(match_image(item.boxes, detector(frame)))
        matches["dcp"].append(match_image(item.boxes, detector(dcp.dehaze(frame).image)))
    return matches


def test_the_bootstrap_is_a_plain_bootstrap_of_score_matches_on_real_detections(dawn_matches):
    """Against the bootstrap done the slow, plain way on the real matches: each redraw is a list of the images drawn
    with replacement (as many as the set holds, by numpy's default_rng(seed)), each side scored on it by
    `score_matches` as eval scores a set; the difference's 2.5 and 97.5 percentiles, and the share of redraws in
    which dcp is better, ties counting half."""
    from dgdehaze_core.evaluation.detection_eval import score_matches

    hazy, dcp = dawn_matches["hazy"], dawn_matches["dcp"]
    count, samples, seed = len(hazy), 300, 3
    whole = [score_matches(side) for side in (hazy, dcp)]
    assert whole[0]["map50"] != whole[1]["map50"] and whole[0]["f1"] != whole[1]["f1"]
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(samples):
        drawn = np.sort(rng.integers(0, count, count))  # a redraw is a multiset: its order changes no figure
        if not sum(sum(hazy[k].references.values()) for k in drawn):
            continue
        figures = [score_matches([side[k] for k in drawn]) for side in (hazy, dcp)]
        differences.append([figures[1][name] - figures[0][name] for name in ("map50", "f1")])
    spread = np.array(differences)
    row = paired_bootstrap(dawn_matches, [(Group("hazy", ("hazy",)), [Group("dcp", ("dcp",))])], samples,
                           seed=seed)["dcp vs hazy"]
    assert row["images"] == count and row["samples"] == len(spread)
    for index, name in enumerate(("map50", "f1")):
        column = spread[:, index]
        assert row[f"{name}_diff"] == pytest.approx(whole[1][name] - whole[0][name], abs=1e-12)
        low, high = np.percentile(column, [2.5, 97.5])
        assert row[f"{name}_diff_lo"] == pytest.approx(low, abs=1e-9) and row[f"{name}_diff_hi"] == pytest.approx(
            high, abs=1e-9)
        assert row[f"{name}_p_better"] == pytest.approx(np.mean(column > 0) + 0.5 * np.mean(column == 0))
        assert low < high, "real photos disagree between redraws"
