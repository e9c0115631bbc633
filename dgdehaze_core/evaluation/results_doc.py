"""The generated blocks of docs/RESULTS.md from the JSON that `dgdehaze eval` writes, so that every figure in them
comes from a file (the doc names the few tables it copies by hand, and tests/test_results_doc.py checks those).

`record NAME -- EVAL ARGS` runs `dgdehaze eval EVAL ARGS --json docs/results/NAME.json` and writes
`NAME.meta.json` beside it: the command, the code's commit, when it ran, how long it took, the machine's load, and
the weights each method used (file, sha256, training iterations and commit). `tools/make_results.sh` records every
evaluation this way. `render` then rewrites the generated blocks of docs/RESULTS.md and keeps all text outside them:

    <!-- results NAME MEASURE [SET] -->      a table of MEASURE's rows in NAME.json (SET: the rows of that set),
    ...                                      then the command, data, commit and weights that produced it
    <!-- /results -->
    <!-- targets -->                         the project's targets, each computed from the JSON: met or not met
    ...
    <!-- /targets -->
    <!-- runtime -->                         how long the recorded evaluations took, and the machine's load
    <!-- /runtime -->

`render --check` exits 1 when a generated block differs from what the JSON gives (a typed or stale figure);
both stop (exit 2, the doc untouched) where the markers do not pair up or one is not a marker render reads.
Usage: python -m dgdehaze_core.evaluation.results_doc {record NAME -- ARGS | render [--check]}
The tables come from `results_tables`, the targets from `results_targets`, the recording from `results_record`.
"""
from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

from dgdehaze_core.datasets.paths import REPO_DIR
from dgdehaze_core.evaluation.results_record import record
from dgdehaze_core.evaluation.results_tables import NOT_MEASURED, RESULTS_DIR, read_meta, render_block
from dgdehaze_core.evaluation.results_targets import targets_markdown
from dgdehaze_core.io.atomic_files import atomic_write_text

LOG = logging.getLogger(__name__)

DOC_PATH = REPO_DIR / "docs" / "RESULTS.md"
BLOCK = re.compile(r"<!-- results (?P<name>\S+) (?P<measure>\S+)(?: (?P<set>\S+))? -->\n.*?<!-- /results -->",
                   re.DOTALL)
TARGETS_BLOCK = re.compile(r"<!-- targets -->\n.*?<!-- /targets -->", re.DOTALL)
RUNTIME_BLOCK = re.compile(r"<!-- runtime -->\n.*?<!-- /runtime -->", re.DOTALL)
MARKER = re.compile(r"<!--\s*/?\s*(?:results|targets|runtime)\b.*?-->", re.DOTALL)
"""Anything that looks like a block's opening or closing marker, well formed or not."""
OPENING = re.compile(r"<!-- (?:results \S+ \S+(?: \S+)?|targets|runtime) -->\n")


def check_markers(doc_text: str) -> None:
    """ValueError naming the line of the first marker that does not open or close a block as `render` reads them:
    an opening it would not recognise (its block left as it is, stale), one opened before the last was closed, or
    a closing without its opening. Without this check a block missing its closing marker ran on to the next block's
    closing marker, and the rendering dropped that block's opening marker and all the text between them."""
    opened: tuple[int, str, str] | None = None  # the open block's line, kind and opening marker
    for match in MARKER.finditer(doc_text):
        line, marker = doc_text.count("\n", 0, match.start()) + 1, match[0]
        closing = re.fullmatch(r"<!-- /(results|targets|runtime) -->", marker)
        if opened is not None and (closing is None or closing[1] != opened[1]):
            raise ValueError(f"line {opened[0]}: {opened[2]} has no closing marker <!-- /{opened[1]} --> before "
                             f"{marker} on line {line}")
        if closing is not None:
            if opened is None:
                raise ValueError(f"line {line}: {marker} closes no block")
            opened = None
        elif OPENING.match(doc_text, match.start()) is None:
            raise ValueError(f"line {line}: {marker} is not a block marker render reads (<!-- results NAME MEASURE "
                             "[SET] -->, <!-- targets --> or <!-- runtime -->, each alone on its line)")
        else:
            opened = (line, marker.split()[1], marker)
    if opened is not None:
        raise ValueError(f"line {opened[0]}: {opened[2]} has no closing marker <!-- /{opened[1]} -->")


def runtime_markdown(results_dir: Path) -> str:
    """How long the recorded evaluations took together, and on what. Each step is recorded on its own (`ONLY=`
    re-records some), so this gives the range of their start times and every commit they ran at (in the order of
    their starts), not one run's."""
    metas = sorted((read_meta(path) for path in sorted(results_dir.glob("*.meta.json"))),
                   key=lambda meta: meta["started"])
    if not metas:
        return NOT_MEASURED
    loads = [meta["load_before"] for meta in metas]
    first, last = metas[0]["started"], metas[-1]["started"]
    commits = list(dict.fromkeys(meta["commit"] for meta in metas))
    machines = list(dict.fromkeys(meta["machine"] for meta in metas))
    steps = f"{len(metas)} step{'s' if len(metas) > 1 else ''} of `tools/make_results.sh`, each recorded on its own"
    when = f"started {first}" if first == last else f"started between {first} and {last}"
    code = (f"at commit `{commits[0]}`" if len(commits) == 1 else
            f"at {len(commits)} commits ({', '.join(f'`{commit}`' for commit in commits)})")
    return (f"The recorded evaluations: {steps}, {when} {code}; {sum(meta['seconds'] for meta in metas) / 60:.1f} "
            f"minutes of evaluation in all on {' and '.join(machines)}, load average {min(loads):.1f}-{max(loads):.1f} "
            "at the starts of the steps (the evaluation alone keeps it near 2; more means other work shared the "
            "cores). Each table names the commit and time of its own step.")


def render(doc_text: str, results_dir: Path = RESULTS_DIR) -> str:
    """`doc_text` with every generated block rewritten from the JSON in `results_dir`; ValueError where its markers
    do not pair up (`check_markers`)."""
    check_markers(doc_text)
    described: set[str] = set()

    def block(match: re.Match[str]) -> str:
        name, measure, set_name = match["name"], match["measure"], match["set"]
        opening = f"<!-- results {name} {measure}{f' {set_name}' if set_name else ''} -->"
        body = render_block(results_dir, name, measure, set_name, first=name not in described)
        if body != NOT_MEASURED:  # the run's provenance is written out under its first table, not a missing one
            described.add(name)
        return f"{opening}\n{body}\n<!-- /results -->"

    text = BLOCK.sub(block, doc_text)
    text = TARGETS_BLOCK.sub(lambda _: f"<!-- targets -->\n{targets_markdown(results_dir)}\n<!-- /targets -->", text)
    return RUNTIME_BLOCK.sub(lambda _: f"<!-- runtime -->\n{runtime_markdown(results_dir)}\n<!-- /runtime -->", text)



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dgdehaze_core.evaluation.results_doc",
                                     description=__doc__.split("\n\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    record_parser = commands.add_parser("record", help="run one dgdehaze eval and keep its JSON and provenance")
    record_parser.add_argument("name", help="result name: docs/results/NAME.json")
    record_parser.add_argument("eval_args", nargs=argparse.REMAINDER, help="-- then the dgdehaze eval arguments")
    record_parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    render_parser = commands.add_parser("render", help="rewrite the generated blocks of docs/RESULTS.md")
    render_parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    render_parser.add_argument("--doc", type=Path, default=DOC_PATH)
    render_parser.add_argument("--check", action="store_true", help="exit 1 if the doc is not what the JSON gives")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _run(args)
    except (OSError, ValueError) as exc:  # an unwritable doc or results folder, a bad argument
        print(f"results_doc {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.command == "record":
        eval_args = args.eval_args[1:] if args.eval_args[:1] == ["--"] else args.eval_args
        return record(args.name, eval_args, args.results)
    current = args.doc.read_text()
    rendered = render(current, args.results)
    if args.check:
        if rendered != current:
            print(f"{args.doc} differs from what {args.results} gives: run "
                  "`python -m dgdehaze_core.evaluation.results_doc render`", file=sys.stderr)
            return 1
        return 0
    atomic_write_text(args.doc, rendered)
    LOG.info("rendered %s from %s", args.doc, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
