"""The `dgdehaze` command lines the documentation gives: each one a user can copy parses as the command line
interface reads it, the files of this repository it names exist, and a training command's recipe loads with its
overrides, so that an option, a recipe field or a file renamed or removed is not left behind in the README, docs/ or
a model card. Nothing runs.

Lines that stand for a family of commands rather than one (a placeholder written as `...`, `a|b` or `[optional]`,
though a list value such as `--set 'beta_outdoor=[0.0,1.2]'` is no optional part) are not parsed; those with a
placeholder in capitals (`--set loss.NAME=0`) are parsed, but their recipes not loaded.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from dgdehaze_core.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "training").glob("*.md"))]
COMMAND = re.compile(r"^(?:\$ )?(?:dgdehaze|torchrun .*-m dgdehaze_core\.cli)(?: |$)")


def code_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the document's code: fenced blocks, and blocks indented by 3 or more spaces (with
    that indentation removed, so that a continued line keeps the spaces a shell would see)."""
    found, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced:
            found.append((number, line))
        elif line.startswith("   "):
            found.append((number, line[4:] if line.startswith("    ") else line[3:]))
    return found


def documented_commands(path: Path) -> list[tuple[str, list[str]]]:
    """("FILE:LINE", arguments after the program name) of every documented dgdehaze command in `path`, its
    backslash-continued lines joined as a shell joins them."""
    lines = code_lines(path.read_text())
    commands = []
    index = 0
    while index < len(lines):
        number, text = lines[index]
        if COMMAND.match(text.lstrip()):
            text = text.lstrip()
            while text.endswith("\\") and index + 1 < len(lines):
                index += 1
                text = text[:-1] + lines[index][1]
            words = shlex.split(text, comments=True)
            if words[0] == "$":
                words = words[1:]
            if words[0] == "torchrun":
                words = ["dgdehaze", *words[words.index("dgdehaze_core.cli") + 1:]]
            commands.append((f"{path.relative_to(ROOT)}:{number}", words[1:]))
        index += 1
    return commands


def is_a_family(arguments: list[str]) -> bool:
    """Whether the line stands for several commands (a placeholder for a choice, an optional part or a list); a
    list value (`--set 'beta_outdoor=[0.0,1.2]'`) is one command's."""
    return any("..." in word or "|" in word or word.startswith("[") or (word.endswith("]") and "=[" not in word)
               for word in arguments)


def has_placeholder(arguments: list[str]) -> bool:
    """Whether a word holds a placeholder in capitals (NAME, X, FILE), which a user replaces before running it."""
    return any(re.search(r"(?<![A-Za-z])[A-Z]+(?![A-Za-z])", word) for word in arguments)


COMMANDS = [command for path in DOCUMENTS for command in documented_commands(path)]
SINGLE = [command for command in COMMANDS if not is_a_family(command[1])]
TRAINING = [command for command in SINGLE if command[1][0] in ("train", "train-depth")
            and not has_placeholder(command[1])]
REPOSITORY_INPUTS = ("training/", "data/", "config/", "dgdehaze_core/weights/")


def test_the_documents_give_commands_to_check() -> None:
    assert len(SINGLE) >= 50 and any(place.startswith("README.md") for place, _ in SINGLE)
    assert any(arguments[0] == "train" for _, arguments in TRAINING)


@pytest.mark.parametrize("place, arguments", SINGLE, ids=[place for place, _ in SINGLE])
def test_a_documented_command_parses(place: str, arguments: list[str], capsys: pytest.CaptureFixture) -> None:
    try:
        build_parser().parse_args(arguments)
    except SystemExit as exc:
        assert exc.code == 0, f"{place}: `dgdehaze {shlex.join(arguments)}` is refused: {capsys.readouterr().err}"


def test_the_repository_files_documented_commands_read_exist() -> None:
    """Recipes, splits (`@data/splits/dawn-fog.yaml:judge`), configurations and shipped weights, also inside a
    list of methods (`lite-no-depth=dgdehaze_core/weights/...`); wildcards are left to the shell."""
    missing = []
    for place, arguments in COMMANDS:
        for word in arguments:
            for part in re.split(r"[,=]", word):
                path = part.lstrip("@").split(":")[0]
                if path.startswith(REPOSITORY_INPUTS) and not re.search(r"[*?[]", path) and not (ROOT / path).exists():
                    missing.append(f"{place}: {path}")
    assert not missing


@pytest.mark.parametrize("place, arguments", TRAINING, ids=[place for place, _ in TRAINING])
def test_a_documented_training_command_s_recipe_loads_with_its_overrides(place: str, arguments: list[str],
                                                                       shared_data: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Its recipe and every `--set` (a field renamed since is refused), with the data the recipe reads."""
    from dgdehaze_core.training.depth_recipe import load_depth_recipe
    from dgdehaze_core.training.recipe import load_recipe

    monkeypatch.chdir(ROOT)  # the documents' paths are the repository's
    args = build_parser().parse_args(arguments)
    (load_recipe if arguments[0] == "train" else load_depth_recipe)(args.config, args.overrides)
