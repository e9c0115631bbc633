"""docs/RESULTS.md is rendered from the eval JSON: row selection, tables, targets, provenance, and the real doc."""
from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pytest

from dgdehaze_core.datasets.paths import REPO_DIR
from dgdehaze_core.evaluation.results_doc import DOC_PATH, main, render
from dgdehaze_core.evaluation.results_record import record
from dgdehaze_core.evaluation.results_tables import NOT_MEASURED, RESULTS_DIR, provenance, select_rows
from dgdehaze_core.evaluation.results_targets import ablation_recipe_note, targets_markdown

META = {"command": "dgdehaze eval --dataset X", "commit": "abc1234", "started": "2026-11-25 12:00 UTC",
        "seconds": 12.3, "load_before": 0.4, "load_after": 1.9, "machine": "2 CPU cores (x86_64), no GPU",
        "data": ["../shared/data/paired/sots-indoor", "--include @data/splits/sots-indoor.yaml:judge"],
        "weights": {"lite": {"path": "dgdehaze_core/weights/dgdehaze_lite.pt", "sha256": "0123456789ab",
                             "iterations": 2000, "recipe": "lite", "commit": "def5678"}}}


def _quality(psnr: float, ssim: float) -> dict[str, float]:
    return {"psnr": psnr, "ssim": ssim, "ciede2000": 5.0, "pairs": 20}


STEP_DATA = {"dawn-fog": ["../shared/data/detection/dawn-fog", "--include @data/splits/dawn-fog.yaml:judge"],
             "o-haze": ["../shared/data/paired/o-haze"], "sots-outdoor": ["../shared/data/paired/sots-outdoor"]}
"""What tools/make_results.sh records each step on (META's: SOTS-indoor)."""


def _write(results: Path, name: str, rows: dict, data: list[str] | None = None) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(rows))
    step = name.removeprefix("int8-").split("-work")[0]
    meta = {**META, "data": data or STEP_DATA.get(step, META["data"])}
    (results / f"{name}.meta.json").write_text(json.dumps(meta))


def test_rows_are_selected_by_measure_and_set_prefix():
    rows = {"quality/sots/hazy": {"psnr": 1}, "quality/sots:held-out/hazy": {"psnr": 2},
            "detection/sots/hazy": {"f1": 3}}
    assert select_rows(rows, "quality", "sots") == {"hazy": {"psnr": 1}}
    assert select_rows(rows, "quality", "sots:held-out") == {"hazy": {"psnr": 2}}
    assert select_rows({"hazy": {"psnr": 4}}, "quality", None) == {"hazy": {"psnr": 4}}
    assert select_rows({"haze/hazy": {"fade": 1}, "detection/hazy": {"f1": 1}}, "haze", None) == {"hazy": {"fade": 1}}
    with pytest.raises(ValueError, match="no quality rows of set other"):
        select_rows(rows, "quality", "other")


def test_a_subset_is_never_read_from_the_whole_set_s_rows(tmp_path: Path):
    """A step recorded without --subset has rows without a set: a subset's table showed the whole set's rows (all
    25 SOTS-indoor scenes, 23 of them trained on, as the held-out scenes)."""
    whole = {"quality/dcp": _quality(19.0, 0.80), "quality/lite": _quality(21.0, 0.85)}
    with pytest.raises(ValueError, match="no quality rows of set sots-indoor:held-out"):
        select_rows(whole, "quality", "sots-indoor:held-out")
    assert select_rows(whole, "quality", "sots-indoor") == {"dcp": whole["quality/dcp"], "lite": whole["quality/lite"]}
    _write(tmp_path, "sots-indoor", whole)
    rendered = render("<!-- results sots-indoor quality sots-indoor:held-out -->\n<!-- /results -->\n", tmp_path)
    assert rendered.startswith(f"<!-- results sots-indoor quality sots-indoor:held-out -->\n{NOT_MEASURED}\n")


def test_blocks_become_tables_with_provenance_and_prose_is_kept(tmp_path: Path):
    _write(tmp_path, "sots", {"quality/sots:held-out/dcp": _quality(19.644, 0.8434),
                              "quality/sots:held-out/lite": _quality(21.5, 0.85)})
    doc = ("# Results\nProse stays.\n<!-- results sots quality sots:held-out -->\nstale\n<!-- /results -->\n"
           "Between.\n<!-- results missing haze -->\n<!-- /results -->\n"
           "<!-- results sots quality sots:held-out -->\n<!-- /results -->\n<!-- runtime -->\n<!-- /runtime -->\n"
           "End.\n")
    rendered = render(doc, tmp_path)
    assert rendered.startswith("# Results\nProse stays.\n") and "\nBetween.\n" in rendered
    assert rendered.endswith("End.\n") and "stale" not in rendered
    assert "| dcp | 19.64 | 0.843 | 5.00 | 20 |" in rendered and "| lite | 21.50 | 0.850 | 5.00 | 20 |" in rendered
    assert "`dgdehaze eval --dataset X`" in rendered and "commit `abc1234`" in rendered
    assert "`dgdehaze_core/weights/dgdehaze_lite.pt` (sha256 0123456789ab, 2000 training iterations" in rendered
    assert f"<!-- results missing haze -->\n{NOT_MEASURED}\n<!-- /results -->" in rendered
    assert rendered.count("`dgdehaze eval --dataset X`") == 1  # a second table of one run points to the first
    assert "From the same run as the first table of step `sots`" in rendered
    assert "1 step of `tools/make_results.sh`, each recorded on its own, started 2026-11-25 12:00 UTC at commit " \
           "`abc1234`; 0.2 minutes of evaluation in all on 2 CPU cores" in rendered
    assert render(rendered, tmp_path) == rendered  # rendering again changes nothing


def test_markers_that_do_not_pair_up_stop_the_render_and_leave_the_doc_as_it_was(tmp_path: Path):
    """A block missing its closing marker ran on to the next block's: the render dropped that block's opening
    marker and the prose between them, and wrote the doc so. A marker render does not read (a typo) left its block
    stale and `--check` passing. Both now stop the render with the line, and the doc is left as it was."""
    _write(tmp_path, "sots", {"quality/sots:held-out/lite": _quality(21.5, 0.85)})
    block = "<!-- results sots quality sots:held-out -->\nstale\n<!-- /results -->\n"
    doc = tmp_path / "RESULTS.md"
    for broken, why in ((block.replace("<!-- /results -->\n", "") + "Prose.\n" + block,
                         "line 1: <!-- results sots quality sots:held-out --> has no closing marker"),
                        ("Prose.\n" + block.replace("held-out -->", "held-out  -->"),
                         "line 2: .* is not a block marker render reads"),
                        (block + "<!-- /results -->\n", "line 4: <!-- /results --> closes no block"),
                        ("<!-- targets -->\n" + block, "line 1: <!-- targets --> has no closing marker"),
                        (block + block.replace("<!-- /results -->\n", ""), "line 4: .* has no closing marker")):
        with pytest.raises(ValueError, match=why):
            render(broken, tmp_path)
        doc.write_text(broken)
        assert main(["render", "--results", str(tmp_path), "--doc", str(doc)]) == 2
        assert main(["render", "--check", "--results", str(tmp_path), "--doc", str(doc)]) == 2
        assert doc.read_text() == broken


def test_a_malformed_record_stops_the_render_naming_its_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A meta.json without a key the render reads, or weights without their sha256, stopped it with a traceback
    and exit 1, which `render --check` uses for "the doc is stale"; a JSON that did not parse was reported without
    its file. Each now exits 2 with the file named, and the doc is left as it was."""
    doc = tmp_path / "RESULTS.md"
    text = "<!-- results sots quality -->\n<!-- /results -->\n<!-- runtime -->\n<!-- /runtime -->\n"
    doc.write_text(text)
    results = tmp_path / "results"
    without_load = {key: value for key, value in META.items() if key != "load_before"}
    without_sha256 = {**META, "weights": {"lite": {"path": "dgdehaze_core/weights/dgdehaze_lite.pt"}}}
    for rows, meta, why in (({"lite": _quality(21.0, 0.85)}, without_load, "sots.meta.json is not a results record: "
                             "it lacks load_before"),
                            ({"lite": _quality(21.0, 0.85)}, without_sha256, "sots.meta.json: the weights of 'lite'"),
                            (["lite"], META, "sots.json is not a table of eval rows"),
                            ({"lite": 21.0}, META, "sots.json is not a table of eval rows")):
        _write(results, "sots", rows)
        (results / "sots.meta.json").write_text(json.dumps(meta))
        for check in ([], ["--check"]):
            assert main(["render", *check, "--results", str(results), "--doc", str(doc)]) == 2
            assert why in capsys.readouterr().err
    (results / "sots.json").write_text('{"lite": {"psnr": 21.0}')
    assert main(["render", "--results", str(results), "--doc", str(doc)]) == 2
    assert f"{results / 'sots.json'} is not JSON" in capsys.readouterr().err
    assert doc.read_text() == text


def test_targets_are_judged_from_the_figures(tmp_path: Path):
    _write(tmp_path, "sots-indoor", {
        "quality/dcp": _quality(20.0, 0.84),
        "quality/lite": _quality(21.2, 0.83),
        "quality/lite-no-depth": _quality(21.2, 0.83),
        **{f"detection/{m}": {"f1": f1} for m, f1 in
           (("hazy", 0.78), ("dcp", 0.82), ("lite", 0.90), ("lite-no-depth", 0.91))}})
    lines = targets_markdown(tmp_path).splitlines()
    held_out = [line for line in lines if "held-out" in line and "(#23)" not in line]
    assert "lite 21.20 dB, DCP 20.00 dB (+1.20 dB) | **met**" in held_out[0]
    assert "lite 0.830, DCP 0.840 (-0.010) | **not met**" in held_out[1]
    assert "hazy 0.780, DCP 0.820, lite 0.900 | **met**" in held_out[2]
    assert "networks at 320x240 | not measured" in held_out[3]     # no working-resolution run in this folder
    assert "gap to clear-jpeg90 closed (#17) | SOTS-indoor held-out | not measured" in held_out[4]  # no JPEG row
    assert held_out[5].endswith("(+0.000) | **no difference** |")  # PSNR: the ablation ties
    assert held_out[6].endswith("(-0.010) | **does not help** |")  # detection F1: the ablation is better
    _write(tmp_path, "sots-indoor-work320x240", {
        f"detection/{m}": {"f1": f1} for m, f1 in (("hazy", 0.78), ("dcp", 0.82), ("lite", 0.88))})
    work = [line for line in targets_markdown(tmp_path).splitlines() if "networks at 320x240" in line]
    assert "hazy 0.780, DCP 0.820, lite 0.880 | **not met**" in work[0]  # above DCP but under 0.89
    assert any("O-HAZE | not measured" in line for line in lines)


def test_a_figure_just_short_of_its_goal_is_not_shown_as_the_goal(tmp_path: Path):
    """A gain of 0.996 dB showed as "+1.00 dB" beside "not met", an F1 of 0.8896 as "0.890" against the 0.89 goal:
    the rounding hid the difference the verdict turns on. Such a figure gets the decimals that show it."""
    _write(tmp_path, "sots-indoor", {
        "quality/dcp": _quality(20.0, 0.84),
        "quality/lite": _quality(20.996, 0.8396),
        **{f"detection/{m}": {"f1": f1} for m, f1 in
           (("hazy", 0.78), ("dcp", 0.82), ("lite", 0.8896))}})
    _write(tmp_path, "int8-o-haze", {"lite-fp32": _quality(18.8, 0.77), "lite-int8": _quality(18.498, 0.77)},
           data=["../shared/data/paired/o-haze"])
    lines = targets_markdown(tmp_path).splitlines()
    assert any("lite 21.00 dB, DCP 20.00 dB (+0.996 dB) | **not met**" in line for line in lines)
    assert any("lite 0.840, DCP 0.840 (-0.0004) | **not met**" in line for line in lines)
    assert any("hazy 0.780, DCP 0.820, lite 0.8896 | **not met**" in line for line in lines)
    assert any("fp32 18.80 dB, int8 18.50 dB (-0.302 dB) | **not met**" in line for line in lines)


def test_a_step_recorded_on_part_of_its_set_or_on_another_set_judges_no_target(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    rows = {"quality/dcp": _quality(20.0, 0.84), "quality/lite": _quality(21.2, 0.85)}
    label = "| SOTS-indoor, held-out scenes 1430-1448 |"
    _write(tmp_path, "sots-indoor", rows)
    assert f"(#4) {label} lite 21.20 dB, DCP 20.00 dB (+1.20 dB) | **met** |" in targets_markdown(tmp_path)
    for data, why in ((["../shared/data/paired/sots-indoor", "--limit 1"], "recorded with --limit 1"),
                      (["/tmp/p1"], "recorded on /tmp/p1, not paired/sots-indoor"),
                      (["../shared/data/paired/sots-indoor"],  # every room, the trained-on ones too
                       "not paired/sots-indoor --include @data/splits/sots-indoor.yaml:judge")):
        _write(tmp_path, "sots-indoor", rows, data)
        assert f"SSIM not below DCP {label} not measured |" in targets_markdown(tmp_path)
        assert why in caplog.text
    _write(tmp_path, "dawn-fog", {f"detection/{m}": {"map50": 0.5, "f1": 0.5} for m in ("hazy", "dcp", "lite")},
           ["../shared/data/detection/dawn-fog"])
    assert "DAWN fog, judging photos | not measured" in targets_markdown(tmp_path), "all 200 photos: not the judges"


def test_the_ablation_is_checked_to_differ_only_in_depth_guidance(tmp_path: Path):
    recipe = {"name": "lite", "depth_guidance": True, "teacher_floor": 0.1, "lr": 0.0015}
    file = {"path": "w.pt", "sha256": "0123456789ab", "iterations": 2000}
    weights = {"lite": {**file, "recipe_fields": recipe},
               "lite-no-depth": {**file, "recipe_fields": {**recipe, "name": "lite_no_depth", "depth_guidance": False}}}
    (tmp_path / "a.meta.json").write_text(json.dumps({**META, "weights": weights}))
    assert ablation_recipe_note(tmp_path).startswith("lite and lite-no-depth were trained with the same recipe")
    weights["lite-no-depth"]["recipe_fields"]["teacher_floor"] = 0.5
    weights["lite-no-depth"]["iterations"] = 1500
    (tmp_path / "a.meta.json").write_text(json.dumps({**META, "weights": weights}))
    assert "not like for like**: lite and lite-no-depth differ in iterations trained, teacher_floor" in \
        ablation_recipe_note(tmp_path)
    # a damaged record is named: it stopped the render with a decoder's message or an AttributeError naming no file
    for damaged in ('{"weights": 3', json.dumps({**META, "weights": {"lite": ["w.pt"]}})):
        (tmp_path / "a.meta.json").write_text(damaged)
        with pytest.raises(ValueError, match=f"^{tmp_path / 'a.meta.json'}"):
            ablation_recipe_note(tmp_path)


@contextmanager
def _once_loaded(method: str, act: Callable[[], None]) -> Iterator[None]:
    """Within the block, `act` runs when eval says it has loaded `method` (`methods.load_method` logs "method NAME:
    ..."): a change made while the evaluation runs."""
    class Loaded(logging.Handler):
        def emit(self, entry: logging.LogRecord) -> None:
            if entry.getMessage().startswith(f"method {method}: "):
                act()

    logger = logging.getLogger("dgdehaze_core.evaluation.methods")
    handler, level = Loaded(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _one_pair(shared_data: Path, tmp_path: Path) -> Path:
    """A paired set of one SOTS-indoor pair (room 1400, light haze) in `tmp_path`."""
    pairs = tmp_path / "sots1"
    for folder, name in (("clear", "1400.png"), ("hazy", "1400_2.png")):
        (pairs / folder).mkdir(parents=True)
        shutil.copy(shared_data / "paired" / "sots-indoor" / folder / name, pairs / folder)
    return pairs


def test_record_runs_eval_and_keeps_its_provenance(shared_data: Path, tmp_path: Path):
    pairs = _one_pair(shared_data, tmp_path)
    results = tmp_path / "results"
    assert record("tiny", ["--dataset", str(pairs), "--method", "hazy,dcp"], results) == 0
    rows = json.loads((results / "tiny.json").read_text())
    meta = json.loads((results / "tiny.meta.json").read_text())
    assert set(rows) == {"hazy", "dcp"} and rows["dcp"]["pairs"] == 1
    assert meta["command"].startswith("dgdehaze eval --dataset ") and meta["command"].endswith("tiny.json")
    assert meta["data"] == [str(pairs)] and meta["weights"] == {} and meta["seconds"] > 0
    assert meta["commit"] != "" and "CPU cores" in meta["machine"] and "detector" not in meta, "quality only"
    assert record("detected", ["--dataset", str(pairs), "--method", "hazy", "--measure", "detection",
                               "--detector-precision", "file"], results) == 0
    detected = json.loads((results / "detected.meta.json").read_text())
    assert detected["detector"] == "`dgdehaze_core/weights/yolov8n_int8.onnx`, as it is (--detector-precision file)"
    assert record("spelt", [f"--dataset={pairs}", "--method=hazy", "--method", "dcp", "--limit=1"], results) == 0
    spelt = json.loads((results / "spelt.meta.json").read_text())
    assert spelt["data"] == [str(pairs), "--limit 1"] and set(json.loads((results / "spelt.json").read_text())) \
        == {"hazy", "dcp"}, "eval's own spellings: --opt=value, a repeated --method"
    with pytest.raises(ValueError, match="leave it out"):
        record("x", ["--json=y.json"], results)
    assert record("broken", ["--dataset", str(tmp_path / "absent")], results) == 2
    assert not (results / "broken.meta.json").exists()
    with pytest.raises(ValueError, match="leave it out"):
        record("x", ["--json", "y.json"], results)
    (results / "stuck.meta.json").mkdir()  # the provenance cannot be written: the figures must not land alone
    assert main(["record", "--results", str(results), "stuck", "--", "--dataset", str(pairs), "--method", "dcp"]) == 2
    assert not (results / "stuck.json").exists()
    assert sorted(p.name for p in results.iterdir()) == ["detected.json", "detected.meta.json", "spelt.json",
                                                         "spelt.meta.json", "stuck.meta.json", "tiny.json",
                                                         "tiny.meta.json"]



def test_a_record_whose_meta_was_written_for_other_figures_is_refused(shared_data: Path, tmp_path: Path):
    """record writes the meta, then moves the figures into place: a stop between the two left a new meta (commit,
    date, weights) beside the old figures, rendered as if they were its own. The meta names its figures' sha256."""
    pairs = _one_pair(shared_data, tmp_path)
    results = tmp_path / "results"
    assert record("tiny", ["--dataset", str(pairs), "--method", "hazy,dcp"], results) == 0
    doc = "<!-- results tiny quality -->\n<!-- /results -->\n"
    assert "| dcp |" in render(doc, results)
    stale = json.loads((results / "tiny.json").read_text())
    stale["dcp"]["psnr"] += 1.0
    (results / "tiny.json").write_text(json.dumps(stale))
    with pytest.raises(ValueError, match="tiny.meta.json was written for other figures than tiny.json holds .* "
                                         "record step tiny again"):
        render(doc, results)


def test_the_record_names_the_weights_the_eval_ran_not_a_file_put_in_their_place(shared_data: Path, tmp_path: Path):
    """The record read each weights file again after the eval: a checkpoint replaced once the eval had loaded it (a
    training run saving its last.pt meanwhile) was named for figures its weights never made. It now names the
    record the pipeline kept of the bytes it loaded."""
    import hashlib

    from dgdehaze_core.models import build_model, save_checkpoint

    weights = tmp_path / "last.pt"
    save_checkpoint(build_model("lite"), weights, {"iterations": 7, "recipe": "ran", "commit": "abc1234"})
    ran = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
    pairs = _one_pair(shared_data, tmp_path)
    with _once_loaded("mine", lambda: save_checkpoint(build_model("lite"), weights,
                                                       {"iterations": 9, "recipe": "later", "commit": "fed9876"})):
        assert record("ran", ["--dataset", str(pairs), "--method", f"mine={weights}", "--working-size", "96x64"],
                      tmp_path / "results") == 0
    assert hashlib.sha256(weights.read_bytes()).hexdigest()[:12] != ran, "the file was replaced during the eval"
    meta = json.loads((tmp_path / "results" / "ran.meta.json").read_text())
    assert meta["weights"]["mine"] == {"path": str(weights), "sha256": ran, "iterations": 7, "recipe": "ran",
                                       "commit": "abc1234"}


def test_a_fine_tuned_model_s_record_says_which_weights_it_started_from(shared_data: Path, tmp_path: Path):
    """The record copied a checkpoint's recipe fields (init_weights: 'lite', a name) but not `started_from`, the
    file and sha256 the fine-tune was adapted from: its figures did not say from which model."""
    from dgdehaze_core.io.file_digest import file_sha256
    from dgdehaze_core.models import shipped_weights_path
    from dgdehaze_core.training.recipe import recipe_from_dict
    from dgdehaze_core.training.trainer import Trainer

    recipe = recipe_from_dict({"name": "tiny", "iterations": 1, "crop_size": 64, "batch_size": 2, "max_side": 128,
                               "num_workers": 0, "device": "cpu", "amp": False, "init_weights": "lite",
                               "data": {"clear": [str(shared_data / "clear" / "bdd")],
                                        "hazy": [str(shared_data / "hazy-real" / "urhi")]}}, tmp_path)
    Trainer(recipe, tmp_path / "run", device="cpu").train(progress=False)
    pairs = _one_pair(shared_data, tmp_path)
    results = tmp_path / "results"
    assert record("mine", ["--dataset", str(pairs), "--method", f"mine={tmp_path / 'run' / 'last.pt'},lite"],
                  results) == 0
    meta = json.loads((results / "mine.meta.json").read_text())
    lite_sha256 = file_sha256(shipped_weights_path("lite"))
    assert meta["weights"]["mine"]["started_from"]["sha256"] == lite_sha256
    assert meta["weights"]["mine"]["started_from"]["init_weights"] == "lite"
    assert "started_from" not in meta["weights"]["lite"]  # trained before it was recorded: nothing is made up
    lines = provenance(meta, "mine").splitlines()
    assert lines[-2].endswith(f"1 training iterations of recipe tiny at commit `{meta['weights']['mine']['commit']}`"
                              f", started from `lite` (sha256 {lite_sha256[:12]}))")
    assert lines[-1].endswith("training iterations of recipe lite at commit `"
                              f"{meta['weights']['lite']['commit']}`)")


def test_the_recorded_commit_is_dirty_when_a_split_or_a_tool_changed(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch):
    """A figure depends on which photos judge (data/splits) and on the scripts that run it (tools/), not only on
    the package: a change to either left the commit recorded clean."""
    from dgdehaze_core.training import run_files

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    files = ["dgdehaze_core/a.py", "data/splits/dawn-fog.yaml", "tools/make_results.sh", "docs/RESULTS.md"]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "x")
    monkeypatch.setattr(run_files, "REPO_DIR", tmp_path)
    assert not run_files.source_commit().endswith("+dirty")
    for name in files:
        (tmp_path / name).write_text("y\n")
        assert run_files.source_commit().endswith("+dirty") != (name == "docs/RESULTS.md"), name
        git("checkout", "-q", "--", name)


def test_a_package_installed_in_another_project_s_repository_records_no_commit_of_that_project(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """dgdehaze installed into a virtual environment inside another project's git work tree (ignored there) recorded
    that project's commit as the code's in checkpoints, shipped weights and figures records."""
    from dgdehaze_core.training import run_files

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                              check=True, capture_output=True, text=True).stdout.strip()

    site = tmp_path / ".venv" / "lib" / "site-packages"
    (site / "dgdehaze_core").mkdir(parents=True)
    (site / "dgdehaze_core" / "__init__.py").write_text("x\n")
    (tmp_path / ".gitignore").write_text(".venv/\n")
    (tmp_path / "app.py").write_text("x\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "x")
    monkeypatch.setattr(run_files, "REPO_DIR", site)
    monkeypatch.delenv("DGDEHAZE_COMMIT", raising=False)
    assert run_files.source_commit() == "unknown"
    monkeypatch.setenv("DGDEHAZE_COMMIT", "0a1b2c3")
    assert run_files.source_commit() == "0a1b2c3"
    git("add", "-f", ".venv")  # a project that does track the package (vendored): its commit names the code
    git("commit", "-q", "-m", "y")
    assert run_files.source_commit() == git("rev-parse", "--short", "HEAD")


def test_the_record_names_the_commit_the_eval_started_at(shared_data: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    """The commit was read when the eval had finished: a commit made while it ran (minutes, per step) was named for
    figures code before it made. The record now names the commit at the start, marked +dirty when the code moved."""

    from dgdehaze_core.training import run_files

    repo = tmp_path / "repo"

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                              capture_output=True, text=True).stdout.strip()

    (repo / "dgdehaze_core").mkdir(parents=True)
    (repo / "dgdehaze_core" / "a.py").write_text("x\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "x")
    before = git("rev-parse", "--short", "HEAD")
    monkeypatch.setattr(run_files, "REPO_DIR", repo)
    def commit_a_change() -> None:
        (repo / "dgdehaze_core" / "a.py").write_text("y\n")
        git("commit", "-q", "-am", "y")

    pairs = _one_pair(shared_data, tmp_path)
    with _once_loaded("dcp", commit_a_change):
        assert record("moved", ["--dataset", str(pairs), "--method", "dcp"], tmp_path / "results") == 0
    assert git("rev-parse", "--short", "HEAD") != before, "a commit was made during the eval"
    assert json.loads((tmp_path / "results" / "moved.meta.json").read_text())["commit"] == f"{before}+dirty"
    assert record("still", ["--dataset", str(pairs), "--method", "dcp"], tmp_path / "results") == 0
    assert json.loads((tmp_path / "results" / "still.meta.json").read_text())["commit"] == \
        git("rev-parse", "--short", "HEAD")


def test_the_committed_results_doc_is_what_its_json_gives():
    """Every generated block of docs/RESULTS.md is what docs/results/*.json gives (none typed by hand, none stale)."""
    if not DOC_PATH.is_file() or not RESULTS_DIR.is_dir():
        pytest.skip("docs/RESULTS.md or docs/results/ is absent (run `make results`)")
    current = DOC_PATH.read_text()
    assert render(current) == current, "run `python -m dgdehaze_core.evaluation.results_doc render`"


def test_per_class_rows_get_their_own_table_and_real_fog_targets_are_checked(tmp_path: Path):
    def row(map50: float, f1: float, objects: int) -> dict:
        return {"precision": 0.5, "recall": 0.5, "f1": f1, "f1_pooled": f1, "map50": map50, "objects": objects,
                "detections": 3, "images": 100, "reference": "human boxes"}

    rows = {"detection/hazy": row(0.40, 0.45, 50), "detection/dcp": row(0.43, 0.50, 50),
            "detection/lite": row(0.52, 0.55, 50), "detection/lite+hazy": row(0.55, 0.54, 50),
            "detection/lite[car]": row(0.6, 0.7, 40), "detection/lite[bus]": row(0.2, 0.1, 10),
            "detection/hazy[car]": row(0.5, 0.6, 40), "haze/lite": {"fade": 0.5}}
    _write(tmp_path, "dawn-fog", rows)
    assert set(select_rows(rows, "detection", None)) == {"hazy", "dcp", "lite", "lite+hazy"}
    assert set(select_rows(rows, "detection-classes", None)) == {"lite[car]", "lite[bus]", "hazy[car]"}
    doc = "<!-- results dawn-fog detection-classes -->\n<!-- /results -->\n<!-- targets -->\n<!-- /targets -->\n"
    rendered = render(doc, tmp_path)
    lines = rendered.splitlines()
    assert lines[1] == "| class | objects | lite AP50 | hazy AP50 | lite F1 | hazy F1 |"
    assert lines[3] == "| car | 40 | 0.600 | 0.500 | 0.700 | 0.600 |"  # most objects first
    assert lines[4] == "| bus | 10 | 0.200 | n/a | 0.100 | n/a |"  # the hazy input found no bus row
    assert "| lite mAP50 ≥ 0.50 and > DCP (#17) | DAWN fog, 100 judging photos | hazy 0.400, DCP 0.430, lite 0.520 " \
           "| **met** |" in rendered
    assert "| fused detection above both its parts (#17) | DAWN fog, 100 judging photos | hazy 0.400, lite 0.520, " \
           "lite+hazy 0.550 | **met** |" in rendered


def test_bootstrap_comparisons_get_their_own_table_and_settle_the_ablation_verdict(tmp_path: Path):
    def row(map50: float, f1: float) -> dict:
        return {"precision": 0.5, "recall": 0.5, "f1": f1, "f1_pooled": f1, "map50": map50, "objects": 50,
                "detections": 3, "images": 100, "reference": "human boxes"}

    def compared(diff: float, low: float, high: float) -> dict:
        return {"map50_diff": diff, "map50_diff_lo": low, "map50_diff_hi": high, "map50_p_better": 0.6,
                "f1_diff": diff, "f1_diff_lo": low + 0.05, "f1_diff_hi": high + 0.05, "f1_p_better": 0.99,
                "images": 100, "samples": 2000}

    rows = {"detection/hazy": row(0.40, 0.45), "detection/lite": row(0.42, 0.50),
            "detection/lite-no-depth": row(0.41, 0.47), "detection/hazy+clahe": row(0.44, 0.53),
            "detection/lite vs hazy": compared(0.02, -0.03, 0.07),
            "detection/lite vs lite-no-depth": compared(0.01, -0.04, 0.05),
            "detection/hazy+clahe vs lite": compared(0.02, -0.01, 0.04)}
    _write(tmp_path, "dawn-fog", rows)
    assert set(select_rows(rows, "detection", None)) == {"hazy", "lite", "lite-no-depth", "hazy+clahe"}
    assert set(select_rows(rows, "detection-bootstrap", None)) == {"lite vs hazy", "lite vs lite-no-depth",
                                                                   "hazy+clahe vs lite"}
    doc = "<!-- results dawn-fog detection-bootstrap -->\n<!-- /results -->\n<!-- targets -->\n<!-- /targets -->\n"
    rendered = render(doc, tmp_path)
    assert "| lite vs hazy | 0.020 | -0.030 | 0.070 | 0.600 | 0.020 | 0.020 | 0.120 | 0.990 | 2000 |" in rendered
    # mAP50's interval spans zero: not settled, though lite is ahead; F1's lies above zero: helps
    assert "| depth guidance helps: mAP50 against human boxes | DAWN fog, judging photos | lite 0.420, " \
           "lite-no-depth 0.410 (+0.010), 95 % interval -0.040 to +0.050 | **not settled** |" in rendered
    assert "| depth guidance helps: F1 against human boxes | DAWN fog, judging photos | lite 0.500, " \
           "lite-no-depth 0.470 (+0.030), 95 % interval +0.010 to +0.100 | helps |" in rendered
    # the contrast-only baseline's interval, turned round: lite behind on F1 (the whole interval), unsettled on mAP50
    assert "| dehazing beats a contrast stretch: mAP50 | DAWN fog, judging photos | lite 0.420, hazy+clahe 0.440 " \
           "(-0.020), 95 % interval -0.040 to +0.010 | **not settled** |" in rendered
    assert "| dehazing beats a contrast stretch: F1 | DAWN fog, judging photos | lite 0.500, hazy+clahe 0.530 " \
           "(-0.030), 95 % interval -0.090 to -0.040 | **behind** |" in rendered


def test_int8_targets_compare_the_quantised_model_with_its_fp32_export(tmp_path: Path):
    _write(tmp_path, "int8-sots-indoor", {"quality/lite-fp32": _quality(22.17, 0.86),
                                          "quality/lite-int8": _quality(21.90, 0.86)})
    _write(tmp_path, "int8-o-haze", {"lite-fp32": _quality(18.80, 0.77), "lite-int8": _quality(18.40, 0.76)})
    _write(tmp_path, "int8-dawn-fog", {"lite-fp32": {"map50": 0.382, "f1": 0.49, "images": 20},
                                       "lite-int8": {"map50": 0.370, "f1": 0.48, "images": 20}})
    lines = [line for line in targets_markdown(tmp_path).splitlines() if "(#23)" in line]
    assert "fp32 22.17 dB, int8 21.90 dB (-0.27 dB) | **met**" in lines[0]   # within 0.3 dB
    assert "SOTS-outdoor | not measured" in lines[1]
    assert "fp32 18.80 dB, int8 18.40 dB (-0.40 dB) | **not met**" in lines[2]
    assert "fp32 0.382, int8 0.370 (-0.012) | **not met**" in lines[3]       # more than 0.01 of mAP50
    assert "| DAWN fog, 20 judging photos |" in lines[3]  # the photos counted (EVAL_ARGS="--limit 20"), not 100


def test_onnx_weights_are_described_by_their_metadata(tmp_path: Path):
    meta = {**META, "weights": {"lite-int8": {"path": "out/int8/lite_int8.onnx", "sha256": "64aa9d8f75dc",
                                              "onnx_config": "lite", "onnx_quantization": "int8 QDQ, symmetric"},
                                "lite-fp32": {"path": "out/int8/lite_fp32.onnx", "sha256": "a76a6e91ab8f",
                                              "onnx_config": "lite", "onnx_quantization": ""}}}
    text = provenance(meta, "int8-o-haze")
    assert "`out/int8/lite_int8.onnx` (sha256 64aa9d8f75dc, an ONNX export of a `lite` network, int8 QDQ" in text
    assert "`out/int8/lite_fp32.onnx` (sha256 a76a6e91ab8f, an ONNX export of a `lite` network, fp32)" in text
    assert "?" not in text


def test_per_class_ties_are_ordered_by_name_whatever_the_hash_seed(tmp_path: Path):
    """Classes of equal object count come by name: the doc must not change between runs (PYTHONHASHSEED)."""
    names = ["truck", "bus", "person", "bicycle", "motorcycle"]
    rows = {f"detection/lite[{name}]": {"map50": 0.5, "f1": 0.5, "objects": 4} for name in names}
    rows["detection/lite[car]"] = {"map50": 0.6, "f1": 0.6, "objects": 40}
    _write(tmp_path, "dawn-fog", rows)
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- results dawn-fog detection-classes -->\n<!-- /results -->\n")
    script = ("import sys; from pathlib import Path; from dgdehaze_core.evaluation.results_doc import render; "
              "print(render(Path(sys.argv[1]).read_text(), Path(sys.argv[2])))")
    orders = set()
    for seed in ("0", "1", "2", "3"):
        done = subprocess.run([sys.executable, "-c", script, str(doc), str(tmp_path)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}, check=True, timeout=120)
        table = [line for line in done.stdout.splitlines() if line.startswith("| ")][1:]
        orders.add(tuple(line.split(" | ")[0].removeprefix("| ") for line in table))
    assert orders == {("car", "bicycle", "bus", "motorcycle", "person", "truck")}


def test_null_and_infinite_figures_render_as_such_and_judge_nothing(tmp_path: Path):
    """eval writes a figure it could not compute as null and an infinite one as "inf": neither may stop the render or
    pass for a finite measurement in a verdict; the table shows an infinite figure as one (a visibility error is
    infinite when most frames have no estimate: "n/a" hid that failure)."""
    _write(tmp_path, "sots-indoor", {
        "quality/dcp": _quality(20.0, 0.84),
        "quality/lite": {**_quality(21.2, 0.85), "psnr": None},
        "quality/lite-no-depth": _quality(21.0, 0.83),
        **{f"detection/{m}": {"f1": f1} for m, f1 in
           (("hazy", 0.78), ("dcp", 0.82), ("lite", 0.90), ("lite-no-depth", None), ("clear-jpeg90", None))}})
    (tmp_path / "o-haze.json").write_text('{"dcp": {"psnr": 17.0, "ssim": 0.7, "ciede2000": "inf", "pairs": 2}, '
                                          '"lite": {"psnr": Infinity, "ssim": 0.8, "ciede2000": 5.0, "pairs": 2}}')
    (tmp_path / "o-haze.meta.json").write_text(json.dumps({**META, "data": STEP_DATA["o-haze"]}))
    _write(tmp_path, "int8-o-haze", {"lite-fp32": _quality(18.8, 0.77), "lite-int8": {**_quality(18.4, 0.76),
                                                                                       "psnr": "inf"}})
    doc = ("<!-- results o-haze quality -->\n<!-- /results -->\n<!-- targets -->\n<!-- /targets -->\n")
    rendered = render(doc, tmp_path)
    assert "| dcp | 17.00 | 0.700 | ∞ | 2 |" in rendered and "| lite | ∞ | 0.800 | 5.00 | 2 |" in rendered
    lines = [line for line in rendered.splitlines() if line.startswith("| ")]
    assert "| lite ≥ DCP + 1 dB PSNR (#4) | SOTS-indoor, held-out scenes 1430-1448 | not measured | — |" in lines
    assert "| lite SSIM not below DCP (#4) | SOTS-indoor, held-out scenes 1430-1448 | lite 0.850, DCP 0.840 " \
           "(+0.010) | **met** |" in lines
    assert "| lite ≥ DCP + 1 dB PSNR (#4) | O-HAZE | not measured | — |" in lines
    assert "| detection-recovery F1: lite > DCP and ≥ 0.89 (#9) | SOTS-indoor, held-out scenes 1430-1448 | " \
           "hazy 0.780, DCP 0.820, lite 0.900 | **met** |" in lines  # the JPEG copy's null F1 is left out
    assert "| depth guidance helps: PSNR (dB) | SOTS-indoor held-out | not measured | — |" in lines
    assert "| depth guidance helps: detection F1 | SOTS-indoor held-out | not measured | — |" in lines
    assert "| int8 PSNR within 0.3 dB of fp32 (#23) | O-HAZE | not measured | — |" in lines
    assert not any("inf" in line or "nan" in line for line in lines)


def test_a_block_without_rows_is_not_measured_and_the_rest_renders(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """A dawn-fog JSON recorded without --bootstrap has no `vs` rows: its bootstrap block says not measured (with a
    warning naming it), and the run's provenance goes under its first table that is rendered."""
    _write(tmp_path, "dawn-fog", {"detection/hazy": {"f1": 0.44, "map50": 0.33, "objects": 665},
                                  "detection/lite": {"f1": 0.49, "map50": 0.38, "objects": 665}})
    doc = ("<!-- results dawn-fog detection-bootstrap -->\n<!-- /results -->\n"
           "<!-- results dawn-fog detection -->\n<!-- /results -->\n<!-- targets -->\n<!-- /targets -->\n")
    with caplog.at_level("WARNING", logger="dgdehaze_core.evaluation.results_tables"):
        rendered = render(doc, tmp_path)
    assert rendered.startswith(f"<!-- results dawn-fog detection-bootstrap -->\n{NOT_MEASURED}\n<!-- /results -->")
    assert "| lite | n/a | n/a | 0.490 | n/a | 0.380 | 665 | n/a | n/a |" in rendered
    assert "- Command (step `dawn-fog` of `tools/make_results.sh`)" in rendered and "From the same run" not in rendered
    assert "| lite mAP50 ≥ 0.50 and > DCP (#17) | DAWN fog, judging photos | not measured | — |" in rendered
    assert "results block 'dawn-fog detection-bootstrap' rendered as not measured: no detection-bootstrap rows" \
        in caplog.text


def test_shares_of_redraws_never_round_to_a_certainty(tmp_path: Path):
    """0.997 of the redraws is not "every redraw": three decimals, and a share that rounds to 0 or 1 without being it
    is shown as <0.001 or >0.999."""
    shares = {"a vs b": (0.997, 0.9995), "c vs b": (1.0, 0.0004), "d vs b": (0.0, 0.5)}
    _write(tmp_path, "dawn-fog", {f"detection/{key}": {"map50_diff": 0.05, "map50_diff_lo": 0.01, "map50_diff_hi": 0.1,
                                                       "map50_p_better": p_map50, "f1_diff": 0.05, "f1_diff_lo": 0.01,
                                                       "f1_diff_hi": 0.1, "f1_p_better": p_f1, "samples": 2000}
                                  for key, (p_map50, p_f1) in shares.items()})
    rendered = render("<!-- results dawn-fog detection-bootstrap -->\n<!-- /results -->\n", tmp_path)
    assert "| a vs b | 0.050 | 0.010 | 0.100 | 0.997 | 0.050 | 0.010 | 0.100 | >0.999 | 2000 |" in rendered
    assert "| c vs b | 0.050 | 0.010 | 0.100 | 1.000 | 0.050 | 0.010 | 0.100 | <0.001 | 2000 |" in rendered
    assert "| d vs b | 0.050 | 0.010 | 0.100 | 0.000 | 0.050 | 0.010 | 0.100 | 0.500 | 2000 |" in rendered


def test_the_runtime_line_spans_every_recorded_step(tmp_path: Path):
    """Steps recorded on different days at different commits are not one run: the line gives the range of their
    start times and each commit, in the order they ran."""
    for name, started, commit, seconds in (("kitti-tiny", "2026-12-01 09:54 UTC", "ca6a7e3", 60.0),
                                           ("dawn-fog", "2026-12-02 15:02 UTC", "aae80fb", 120.0),
                                           ("o-haze", "2026-12-01 04:45 UTC", "26772c8", 30.0),
                                           ("sots-outdoor", "2026-12-01 09:49 UTC", "ca6a7e3", 30.0)):
        _write(tmp_path, name, {"hazy": _quality(12.0, 0.7)})
        (tmp_path / f"{name}.meta.json").write_text(json.dumps({**META, "started": started, "commit": commit,
                                                                "seconds": seconds}))
    rendered = render("<!-- runtime -->\n<!-- /runtime -->\n", tmp_path)
    assert "4 steps of `tools/make_results.sh`, each recorded on its own, started between 2026-12-01 04:45 UTC and " \
           "2026-12-02 15:02 UTC at 3 commits (`26772c8`, `ca6a7e3`, `aae80fb`); 4.0 minutes of evaluation" in rendered


def _run_make_results(tmp_path: Path, only: str, **env_extra: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """tools/make_results.sh with ONLY=`only` (and `env_extra`) and a stand-in python that logs its arguments and
    does nothing, so no evaluation, export or render can start whatever the script does; (the run, the stand-in's
    calls)."""
    venv, calls = tmp_path / "venv", tmp_path / "calls.txt"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\n')
    python.chmod(0o755)
    calls.unlink(missing_ok=True)
    env = {**os.environ, "ONLY": only, "VENV": str(venv), "DGDEHAZE_DATA": str(tmp_path),
           "RESULTS": str(tmp_path / "results"), "DOC": str(tmp_path / "RESULTS.md"), "EXPORTS": str(tmp_path / "out"),
           **env_extra}
    done = subprocess.run(["bash", str(REPO_DIR / "tools" / "make_results.sh")], env=env, capture_output=True,
                          text=True, timeout=60)
    return done, calls.read_text().splitlines() if calls.exists() else []


def test_make_results_refuses_an_unknown_only_name_before_running_anything(tmp_path: Path):
    """A misspelt ONLY= name ran no step and exited 0, as if the step had been re-recorded."""
    done, calls = _run_make_results(tmp_path, "dawn-fog,sots-indor")
    assert done.returncode == 2 and calls == []
    assert "unknown step 'sots-indor' in ONLY=dawn-fog,sots-indor; the steps are: sots-indoor,sots-outdoor,o-haze," \
        in done.stderr and ",int8-dawn-fog" in done.stderr
    done, calls = _run_make_results(tmp_path, "dawn-fog,int8-o-haze")
    assert done.returncode == 0, done.stderr
    recorded = [call.split()[5] for call in calls if call.startswith("-m dgdehaze_core.evaluation.results_doc record")]
    assert recorded == ["dawn-fog", "int8-o-haze"]
    assert calls[-1].startswith("-m dgdehaze_core.evaluation.results_doc render")
    done, calls = _run_make_results(tmp_path, "")  # every step: STEPS must list each one the script records
    assert done.returncode == 0, done.stderr
    assert [call.split()[5] for call in calls if " record " in f" {call} "] == [
        "sots-indoor", "sots-outdoor", "o-haze", "sots-indoor-work320x240", "sots-outdoor-work320x240",
        "o-haze-work320x240", "dawn-fog", "kitti-tiny", "middlebury2003", "kitti-tiny-visibility",
        "kitti-tiny-clear", "middlebury2003-clear", "int8-sots-indoor", "int8-sots-outdoor", "int8-o-haze",
        "int8-dawn-fog"]


def test_make_results_runs_the_lite_checkpoint_it_is_given_in_every_lite_row(tmp_path: Path):
    """`LITE=runs/x/last.pt make results` recorded the fused and contrast rows (`lite+hazy`, `lite+clahe`) with the
    shipped weights, beside a `lite` row of the checkpoint."""
    from dgdehaze_core.evaluation.methods import parse_methods

    checkpoint = "runs/candidate/last.pt"
    done, calls = _run_make_results(tmp_path, "sots-indoor,dawn-fog,int8-o-haze", LITE=checkpoint)
    assert done.returncode == 0, done.stderr
    names, sources = set(), set()
    for call in calls:
        arguments = call.split()
        if "--method" in arguments:
            for spec in parse_methods(arguments[arguments.index("--method") + 1]):
                names.add(spec.name)
                if spec.name.split("+")[0] == "lite":
                    sources.add(spec.source)
        if "export" in arguments:
            assert arguments[arguments.index("--weights") + 1] == checkpoint
    assert {"lite", "lite+hazy", "lite+clahe", "lite+hazy+clahe"} <= names
    assert sources == {checkpoint}


def _hand_table(section: str, label: str) -> list[str]:
    """The cells after the label of the row `label` in the table under `### section` of docs/RESULTS.md, unbolded."""
    text = DOC_PATH.read_text().split(f"\n### {section}", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in text.splitlines() if line.startswith(f"| {label} |")]
    assert len(rows) == 1, f"{label!r} under {section!r}"
    return [cell.strip().strip("*") for cell in rows[0].strip("|").split("|")[1:]]


def test_the_hand_copied_tables_are_what_their_json_gives():
    """docs/RESULTS.md names five tables copied by hand from JSON outside the generated blocks: each figure must be
    that JSON's (rounded as the generated tables round: dB to 2 decimals, the rest to 3, metres to whole ones)."""
    if not DOC_PATH.is_file() or not RESULTS_DIR.is_dir():
        pytest.skip("docs/RESULTS.md or docs/results/ is absent (run `make results`)")

    def read(path: str) -> dict:
        return json.loads((RESULTS_DIR / path).read_text())

    for label, part, key in (("SOTS-indoor held-out (20 pairs)", "indoor", "lite"),
                             ("SOTS-outdoor (2 pairs)", "outdoor", "sots-outdoor/lite"),
                             ("O-HAZE (2 pairs)", "outdoor", "o-haze/lite")):
        rows = [read(f"image-output/pd-{part}-{output}-{size}.json")[key]
                for size in ("full", "320x240") for output in ("decoder", "physics")]
        assert _hand_table("Image output", label) == [f"{row['psnr']:.2f} / {row['ssim']:.3f}" for row in rows]
    for label, name, prefix in (("SOTS-indoor held-out scenes 1430-1448 (20 pairs)", "sots-indoor",
                                 "sots-indoor:held-out/"),
                                ("SOTS-outdoor (2 pairs)", "sots-outdoor", ""), ("O-HAZE (2 pairs)", "o-haze", "")):
        runs = [read(f"transmission-refinement/{name}-{kind}.json") for kind in ("raw", "refined")]
        assert _hand_table("Transmission refinement", label) == [
            f"{run[f'quality/{prefix}lite']['psnr']:.2f} / {run[f'quality/{prefix}lite']['ssim']:.3f} / "
            f"{run[f'detection/{prefix}lite']['f1']:.3f}" for run in runs]
    floors = read("recipe-variants/radiance-floor-validation.json")
    for label in ("none", "floor 0", "floor 0.01", "floor 0.02", "floor 0.04"):
        dawn, rooms = floors[f"dawn-learn-validation/{label}"], floors[f"sots-indoor-validation/{label}"]
        clear = floors[f"kitti-seq-clear/{label}"]
        assert _hand_table("The boundary constraint", label) == [
            f"{dawn['map50']:.3f} / {dawn['f1']:.3f}", f"{rooms['psnr']:.2f} / {rooms['ssim']:.3f}",
            f"{clear['psnr']:.2f} / {clear['ssim']:.3f}", f"{clear['brightness_change']:.1f}",
            f"{clear['crushed']:.3f} / {clear['blown']:.3f}", f"{clear['f1']:.3f}"]
    photos = read("dawn-visibility.json")
    for kind in ("foggy", "haze", "mist", "all"):
        names = [name for name in photos if kind in ("all", name.split("-")[0])]
        cells = []
        for method in ("lite", "dcp"):
            measured = [photos[name][method]["visibility_m"] for name in names
                        if photos[name][method]["visibility_m"] is not None]
            cells += [f"{statistics.median(measured):.0f}", str(len(names) - len(measured))]
        assert _hand_table("Real fog on the road, no ground truth", f"{kind} ({len(names)})") == cells
    distances = read("detection-distance-kitti-tiny.json")
    for label, rule in (("the box's median depth (the rule before)", "median"),
                        ("the road under the box, else the median (the node's rule)", "ground,median"),
                        ("the road under the box alone", "ground")):
        rows = [distances[f"{rule}@{source}"] for source in ("lidar", "fog150", "fog50")]
        assert _hand_table("How far each detected object is", label) == [
            *(f"{row['median_rel']:.3f} / {row['p90_rel']:.3f}" for row in rows), f"{rows[0]['count']:.0f}"]


def test_the_model_card_s_figures_are_the_results_json_s():
    """training/MODEL_CARD_lite.md says its metrics are copied from docs/RESULTS.md; after a re-record its quality
    and FADE rows still held older figures (O-HAZE SSIM 0.812 against 0.798, URHI FADE 0.531 against 0.565). Each
    of its rows from a generated table must be that table's JSON, rounded as the table rounds."""
    card = REPO_DIR / "training" / "MODEL_CARD_lite.md"
    if not card.is_file() or not RESULTS_DIR.is_dir():
        pytest.skip("training/MODEL_CARD_lite.md or docs/results/ is absent")
    methods = ("hazy", "dcp", "lite", "lite-no-depth")
    text = card.read_text().split("\n## Metrics", 1)[1].split("\n## ", 1)[0]

    def cells(label: str) -> list[str]:
        rows = [line for line in text.splitlines() if line.startswith(f"| {label} |")]
        assert len(rows) == 1, label
        return [cell.replace("**", "").strip() for cell in rows[0].strip("|").split("|")[1:]]

    def rows(name: str, measure: str) -> dict:
        return select_rows(json.loads((RESULTS_DIR / f"{name}.json").read_text()), measure, None)

    for label, name in (("SOTS-indoor held-out scenes 1430-1448 (20 pairs)", "sots-indoor"),
                        ("SOTS-outdoor (2 pairs)", "sots-outdoor"), ("O-HAZE 27, 35 (real haze)", "o-haze")):
        quality = rows(name, "quality")
        assert cells(f"{label}, PSNR / SSIM") == [f"{quality[m]['psnr']:.2f} / {quality[m]['ssim']:.3f}"
                                                  for m in methods], label
    scattering = rows("sots-indoor", "scattering")
    for label, key in (("airlight error against each pair's fitted A", "airlight_error"),
                       ("transmission error against each pair's fitted t", "t_mae")):
        assert cells(f"{label}, SOTS-indoor held-out") == ["–", *(f"{scattering[m][key]:.3f}" for m in methods[1:])]
    haze = rows("dawn-fog", "haze")
    assert cells("FADE on the DAWN judging photos (lower is clearer)") == [f"{haze[m]['fade']:.3f}" for m in methods]
    for label, name in (("depth AbsRel, KITTI under dense synthesized haze (median-scaled)", "kitti-tiny"),
                        ("depth AbsRel, Middlebury 2003 under dense synthesized haze", "middlebury2003")):
        depth = rows(name, "depth")
        assert cells(label) == ["–", *(f"{depth[f'{m}@t0.25']['absrel']:.3f}" for m in methods[1:])], label


def _signed(value: float) -> str:
    """A difference as the model card prints it: three decimals, signed, 0.000 unsigned."""
    text = f"{value:+.3f}"
    return text.lstrip("+-") if float(text) == 0 else text


@pytest.mark.parametrize("title, rooms, dawn", [
    ("Round sixteen", "round-sixteen-rooms", {"100": "round-sixteen-dawn", "20": "round-sixteen-dawn-validation"}),
    ("Round seventeen", "round-seventeen-rooms", {"": "round-seventeen-dawn"})])
def test_the_model_card_s_recipe_rounds_print_their_json(title: str, rooms: str, dawn: dict[str, str]) -> None:
    """Rounds sixteen and seventeen of training/MODEL_CARD_lite.md were written by hand from their JSON and printed
    five figures it does not hold (hazy F1 0.466 for 0.4655, an interval end -0.039 for -0.03846). Each table row's
    rooms, mAP50 / F1 and bootstrap cells must be the JSON's, rounded as printed."""
    card = (REPO_DIR / "training" / "MODEL_CARD_lite.md").read_text()
    section = card.split(f"\n### {title}", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    folder = RESULTS_DIR / "recipe-variants"
    quality = json.loads((folder / f"{rooms}.json").read_text())
    detection = {photos: json.loads((folder / f"{name}.json").read_text()) for photos, name in dawn.items()}
    names = {"hazy input": "hazy", "DCP": "dcp", "V (shipped)": "V", "V's ablation (shipped)": "V-no-depth",
             "C's ablation": "C-no-depth"}
    rows = [[cell.replace("**", "").strip() for cell in line.strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| ") and not line.startswith("| run |")]
    assert len(rows) >= 6, title
    for row in rows:
        label, room_cell, *rest = row
        name = names.get(label, label.split(":")[0])
        photos, figures, compared = rest if len(rest) == 3 else ("", *rest)
        if room_cell:
            assert room_cell == f"{quality[name]['psnr']:.2f} / {quality[name]['ssim']:.3f}", row
        found = detection[photos]
        assert figures == f"{found[name]['map50']:.3f} / {found[name]['f1']:.3f}", row
        if not compared:
            continue
        baseline = "V-no-depth" if compared.startswith("against V's ablation") else "V"
        diff = found[f"{name} vs {baseline}"]
        shown = compared.split(": ", 1)[-1]
        assert shown.startswith(f"{_signed(diff['map50_diff'])} [{_signed(diff['map50_diff_lo'])}, "
                                f"{_signed(diff['map50_diff_hi'])}]"), row
        assert f", {_signed(diff['f1_diff'])}" in shown, row
        if "%" in shown:
            for text, share in zip(shown.rsplit("; ", 1)[1].split(", "),
                                   (diff["map50_p_better"], diff["f1_p_better"])):
                assert (text == "<1 %" and share < 0.01) or abs(float(text.rstrip(" %")) - 100 * share) <= 0.5, row
