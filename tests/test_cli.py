"""The `dgdehaze` command line as a whole: on an installation that lacks a package one command needs (rosbags, on a
machine that only trains) that command says what to install and every other command works; every command refuses
an empty path."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from dgdehaze_core.datasets.paths import REPO_DIR

WITHOUT_ROSBAGS = """
import json, os, sys, tempfile, traceback
sys.modules["rosbags"] = None  # `import rosbags` fails as it does where the package is not installed
from dgdehaze_core.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            code = main(argv)
        except SystemExit as exit:  # argparse's --help and usage errors
            code = exit.code
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        out.seek(0)
        err.seek(0)
        results.append({"returncode": code, "stdout": out.read(), "stderr": err.read()})
print(json.dumps(results))
"""
"""Runs the commands its argument lists (JSON) one after the other with `import rosbags` failing, each as the
`dgdehaze` command runs it (its exit status, standard output and error), and prints what each gave (JSON)."""


@pytest.fixture(scope="module")
def without_rosbags(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SimpleNamespace]:
    """The commands of the tests below, run where rosbags is not installed, in one interpreter (importing torch and
    the commands once, not once a command), by name: each with its returncode, stdout and stderr."""
    folder = tmp_path_factory.mktemp("without_rosbags")
    recipe = (REPO_DIR / "training" / "smoke.yaml").read_text().replace(
        "    - path: ${DATA}/hazy-real/urhi", f"    - path: {REPO_DIR / 'data' / 'demo' / 'rural_fog_day'}")
    assert "rural_fog_day" in recipe
    (folder / "bag.yaml").write_text(recipe)
    commands = {
        "help": ["--help"],
        "bag-eval": ["bag-eval", "some.mcap", "--method", "dcp"],
        "train help": ["train", "--help"],
        "dehaze": ["dehaze", "no-such-image.png", "--method", "dcp", "--out", str(folder / "out.png")],
        "train a bag": ["train", "--config", str(folder / "bag.yaml"), "--out", str(folder / "run"), "--iterations",
                        "1", "--no-progress"]}
    ran = subprocess.run([sys.executable, "-c", WITHOUT_ROSBAGS, json.dumps(list(commands.values()))], cwd=REPO_DIR,
                         capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    return {name: SimpleNamespace(**result) for name, result in zip(commands, json.loads(ran.stdout.splitlines()[-1]))}


def test_a_command_whose_package_is_missing_says_what_to_install(without_rosbags: dict[str, SimpleNamespace]) -> None:
    listed = without_rosbags["help"]
    assert listed.returncode == 0
    assert "bag-eval     (unavailable: needs the Python package 'rosbags')" in listed.stdout
    refused = without_rosbags["bag-eval"]
    assert refused.returncode == 2
    assert "needs the Python package 'rosbags'" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_the_other_commands_work_without_it(without_rosbags: dict[str, SimpleNamespace]) -> None:
    trained = without_rosbags["train help"]
    assert trained.returncode == 0 and "--resume" in trained.stdout
    refused = without_rosbags["dehaze"]
    assert refused.returncode == 2 and "no such input: no-such-image.png" in refused.stderr


def test_train_reads_a_bag_source_only_with_rosbags_and_says_so_without(
        without_rosbags: dict[str, SimpleNamespace]) -> None:
    """The lent GPU machine has no rosbags: train works there, and a recipe naming a bag says what it needs."""
    refused = without_rosbags["train a bag"]
    assert refused.returncode == 2 and "needs the Python package 'rosbags'" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize("args", [
    ["bag-eval", "", "--out", "OUT"], ["bag-eval", "BAG", "--out", ""],
    ["bag-eval", "BAG", "--out", "OUT", "--json", ""], ["eval", "--dataset", ""],
    ["eval", "--dataset", "D", "--json", ""], ["eval", "--dataset", "D", "--detector", ""],
    ["bag-eval", "BAG", "--out", "OUT", "--detector", ""],
    ["train", "--config", ""], ["train", "--config", "C", "--out", ""], ["train", "--config", "C", "--json", ""],
    ["train-depth", "--config", "C", "--export", ""], ["bench", "dcp", "--json", ""],
    ["bench", "training", "--train-config", ""]], ids=lambda args: " ".join(args))
def test_an_empty_path_is_refused_by_every_command_not_taken_for_the_current_folder(
        args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """An unset shell variable (`--json "$OUT"`) gives an empty path, Path("") the current folder: a bag-eval read or
    wrote the folder it ran in, or failed on its --json only after the whole evaluation; an empty --detector ran the
    shipped detector in its place."""
    from dgdehaze_core.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2 and "an empty path" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_tilde_the_shell_left_in_a_path_is_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shell expands ~ only at a word's start: `--out=~/x` and a quoted '~/bag' reached the command as they
    were, so bag-eval said 'no such bag: ~/bag' of a bag that was there and wrote its report into a folder named ~
    in the working folder (train's --export alike), while its checks, a recipe's paths and the node's parameters
    read ~ as the home folder."""
    from dgdehaze_core.cli import main
    from test_bag_io import demo_frames, write_camera_bag

    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    write_camera_bag(home / "bag", "mcap", demo_frames(1))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    assert main(["bag-eval", "~/bag", "--out=~/out", "--method", "dcp", "--no-detection", "--no-progress"]) == 0
    assert (home / "out" / "summary.json").is_file() and list(work.iterdir()) == []


def test_the_qos_probe_refuses_an_empty_json_path(capsys: pytest.CaptureFixture[str]) -> None:
    from dgdehaze_ros.tools.qos_probe import main

    with pytest.raises(SystemExit) as stopped:
        main(["--json", ""])
    assert stopped.value.code == 2 and "an empty path" in capsys.readouterr().err


def test_the_qos_probe_s_usage_shows_what_a_user_types(capsys: pytest.CaptureFixture[str]) -> None:
    """Its usage line ended in `{publish,listen} ...` as if a role were required: the two roles are the processes the
    probe starts itself, not the user's to type."""
    from dgdehaze_ros.tools.qos_probe import main

    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    shown = capsys.readouterr().out
    assert stopped.value.code == 0 and "--sizes" in shown
    assert "{publish,listen}" not in shown and "started by the probe itself" not in shown


def test_the_v_an_error_asks_for_is_taken_after_the_command_too(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """An error of several lines ends '(and N more lines: run with -v)'; -v added at the end of the command, where
    one adds it, was refused as an unrecognised argument."""
    from dgdehaze_core.cli import main

    recipe = tmp_path / "two\nlines.yaml"  # a name that holds a line break: its error is two lines
    assert main(["train", "--config", str(recipe)]) == 2
    assert "more lines: run with -v" in capsys.readouterr().err
    for argv in (["train", "--config", str(recipe), "-v"], ["-v", "train", "--config", str(recipe)]):
        with pytest.raises(FileNotFoundError, match="no such recipe"):
            main(argv)


def test_a_json_over_the_export_names_it_as_the_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json and --export on one file were refused as '--json F would overwrite the input F': the export is the
    run's output, not its input."""
    from dgdehaze_core.cli import main

    both = tmp_path / "lite.pt"
    for command, recipe in (("train", "smoke.yaml"), ("train-depth", "depth_kitti.yaml")):
        assert main([command, "--config", str(REPO_DIR / "training" / recipe), "--out", str(tmp_path / "run"),
                     "--export", str(both), "--json", str(both)]) == 2
        assert f"--json {both} would overwrite --export {both}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_train_depth_s_resume_asks_for_no_clear_depth_network(capsys: pytest.CaptureFixture[str]) -> None:
    """train-depth's --help said a resumed run needs 'the same clear-depth network file', which only train reads
    (a recipe's clear_depth): train-depth has none to keep."""
    from dgdehaze_core.cli import main

    for command, named in (("train", True), ("train-depth", False)):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert ("clear-depth network file" in " ".join(capsys.readouterr().out.split())) == named, command


def test_dehaze_s_help_says_which_method_runs_when_none_is_given(capsys: pytest.CaptureFixture[str]) -> None:
    """`dgdehaze dehaze DIR --out OUT` ran the dark channel prior, while the node, bag-eval and the README's
    "default model" are the shipped lite, and --help listed the choices without saying which one runs unasked: it
    runs lite, and says so."""
    from dgdehaze_core.cli import build_parser, main

    assert build_parser().parse_args(["dehaze", "IMG", "--out", "OUT"]).method == "lite"
    with pytest.raises(SystemExit):
        main(["dehaze", "--help"])
    assert "(default: lite" in " ".join(capsys.readouterr().out.split())


def test_every_option_that_has_a_default_says_it_in_its_help() -> None:
    """bench's --help gave no default of --max-seconds (60 s a row), --repeats, --sizes, --imgsz or the node's rate
    and seconds, bag-eval's none of --conf, --timeout or --output-prefix, and no guide had them either: a user read
    the source to learn what a command left unasked would do."""
    import argparse

    from dgdehaze_core.cli import build_parser

    commands = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    silent = [f"{name} {'/'.join(action.option_strings) or action.dest} ({action.default!r})"
              for name, parser in commands.choices.items() for action in parser._actions
              if action.default not in (None, False, "", 0, [], argparse.SUPPRESS)
              and not isinstance(action, argparse._HelpAction) and "default" not in (action.help or "")]
    assert not silent


@pytest.mark.parametrize("command", [["dehaze", "IMG", "--out", "OUT"],
                                     ["eval", "--measure", "quality", "--dataset", "D"],
                                     ["bag-eval", "BAG", "--out", "OUT"],
                                     ["export", "--config", "lite", "--int8", "--calib", "."]],
                         ids=lambda args: args[0])
def test_an_input_bits_out_of_range_names_the_flag(command: list[str], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`--input-bits 7` was refused as "the significant bits of 16-bit samples must lie in 8..16, got 7", naming no
    flag (and dehaze and eval refused it only once at their images)."""
    from dgdehaze_core.cli import main

    monkeypatch.chdir(tmp_path)
    for value, reason in (("7", "must lie in 8..16, got 7"), ("twelve", "give a whole number 8..16, got 'twelve'")):
        with pytest.raises(SystemExit) as stopped:
            main([*command, "--input-bits", value])
        assert stopped.value.code == 2
        assert f"argument --input-bits: {'the significant bits of 16-bit samples ' * (value == '7')}{reason}" \
            in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_refused_json_is_said_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`train --config R --json R` said "--json R exists and holds no JSON", then added "--json R was not written by
    this run: it holds what it held before": a note meant for a run that failed after its work began."""
    from dgdehaze_core.cli import main

    recipe = tmp_path / "smoke.yaml"
    recipe.write_text((REPO_DIR / "training" / "smoke.yaml").read_text())
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").touch()  # empty, as JSON may be replaced: the train command's own check refuses it
    for json_path, refusal in ((recipe, "exists and holds no JSON"), (run / "last.pt", "would overwrite")):
        assert main(["train", "--config", str(recipe), "--out", str(run), "--json", str(json_path)]) == 2
        error = capsys.readouterr().err
        assert f"--json {json_path} {refusal}" in error and "was not written by this run" not in error, error


def test_an_error_that_begins_like_a_json_refusal_still_says_the_json_file_is_an_earlier_run_s(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A refused --json was told from other errors by its message beginning "--json PATH": an eval of a folder named
    `--json figures.json-x` failed saying "--json figures.json-x fits none of the measures", was taken for a
    refusal of --json figures.json, and the note that figures.json holds an earlier run's figures was left out."""
    import os

    from dgdehaze_core.cli import main

    monkeypatch.chdir(tmp_path)
    Path("figures.json").write_text('{"dcp": {"psnr": 20.0}}')
    os.utime("figures.json", (1_700_000_000, 1_700_000_000))
    Path("--json figures.json-x").mkdir()
    assert main(["eval", "--dataset=--json figures.json-x", "--method", "dcp", "--json", "figures.json"]) == 2
    error = capsys.readouterr().err
    assert "error: --json figures.json-x fits none of the measures" in error
    assert "--json figures.json was not written by this run: it holds what it held before" in error, error


def test_json_dash_writes_the_json_document_alone_to_stdout(shared_data: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """`--json -` wrote a file literally named `-` in the current folder, beside a table on stdout: `| jq` read the
    table. Now stdout holds the JSON document alone (the table, and the detector library's log bound to stdout, go
    to stderr), in a process of its own and inside one whose stdout is a stream of Python's."""
    import json
    import os

    from dgdehaze_core.cli import main

    common = ["eval", "--dataset", str(shared_data / "paired" / "sots-outdoor"), "--method", "dcp", "--limit", "2",
              "--no-progress", "--json", "-"]
    ran = subprocess.run([sys.executable, "-m", "dgdehaze_core.cli", *common, "--measure", "quality,detection"],
                         cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO_DIR)})
    assert ran.returncode == 0, ran.stderr
    assert set(json.loads(ran.stdout)) == {"quality/dcp", "detection/dcp"}
    assert "psnr" in ran.stderr and "ONNX Runtime" in ran.stderr  # the table and Ultralytics' log
    assert main([*common, "--measure", "quality"]) == 0
    out, err = capsys.readouterr()
    assert list(json.loads(out)) == ["dcp"] and "psnr" in err  # one measure: rows by method alone
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stop_signal, code, line", [("SIGINT", 130, "dgdehaze: interrupted"),
                                                     ("SIGTERM", 143, "dgdehaze: terminated (SIGTERM)")])
def test_a_stop_while_the_commands_load_their_libraries_exits_with_one_line(
        shared_data: Path, stop_signal: str, code: int, line: str) -> None:
    """Ctrl-C in the seconds `dgdehaze` spends importing torch and the commands' other libraries, before any
    command runs, printed a KeyboardInterrupt traceback some thirty lines long, and SIGTERM (a process manager's
    stop) ended it by the signal, without a word. -X importtime says on stderr when numpy has loaded, the first of
    them: OpenCV, torch, torchvision and the rest load after it."""
    import signal

    run = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "dgdehaze_core.cli", "dehaze",
                            str(shared_data / "video" / "mist_park.mp4"), "--method", "dcp", "--out", "unused"],
                           cwd=REPO_DIR, stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert run.stderr is not None
    for imported in run.stderr:
        if imported.split("|")[-1].strip() == "numpy":
            break
    run.send_signal(getattr(signal, stop_signal))
    rest = run.stderr.read()
    assert run.wait(60) == code, rest[-3000:]
    assert "Traceback" not in rest and rest.splitlines()[-1] == line, rest[-3000:]
    assert not (REPO_DIR / "unused").exists()


def test_the_command_line_starts_without_torchvision_and_torch_dynamo() -> None:
    """Every command, and the node through the same imports, loaded torchvision at start for the paper's network
    alone, and with it torch._dynamo: seconds of each start, for nothing unless that network is built."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys; from dgdehaze_core.cli import build_parser; build_parser(); "
         "print(sorted(name for name in ('torchvision', 'torch._dynamo') if name in sys.modules))"],
        cwd=REPO_DIR, capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0 and loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr
