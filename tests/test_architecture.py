"""The layout's rules (docs/ARCHITECTURE.md), read from the source: no import cycles, counting imports inside
functions; the core imports nothing from the ROS package; few plain modules at the top of the core; the node, bag
evaluation and the chain benchmark share one frame chain; the document's module map names every module and folder
where it is, and nothing that is gone."""
from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dgdehaze_core", "dgdehaze_ros")
MAX_TOP_LEVEL_MODULES = 8


def module_files() -> dict[str, Path]:
    """Every module of both packages by dotted name (a package by its own name)."""
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that `name` imports anywhere in its file (top level, functions, TYPE_CHECKING)."""
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    edges = set()
    for target in found:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            edges.add(target)
    return edges


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle_through_three_modules_and_none_in_a_chain() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_module_imports_itself_back_through_others() -> None:
    assert cycles(import_graph()) == []


def test_the_core_imports_nothing_from_the_ros_package() -> None:
    graph = import_graph()
    offenders = {name: sorted(t for t in targets if t.startswith("dgdehaze_ros"))
                 for name, targets in graph.items() if name.startswith("dgdehaze_core")}
    assert {name: targets for name, targets in offenders.items() if targets} == {}


def test_the_top_of_the_core_holds_few_plain_modules() -> None:
    plain = sorted(p.name for p in (ROOT / "dgdehaze_core").glob("*.py"))
    assert len(plain) <= MAX_TOP_LEVEL_MODULES, plain


@pytest.mark.parametrize("user", ["dgdehaze_ros.node", "dgdehaze_core.bags.evaluation",
                                  "dgdehaze_core.benchmarks.networks"])
def test_the_node_bag_evaluation_and_the_chain_benchmark_run_the_one_frame_chain(user: str) -> None:
    graph = import_graph()
    assert "dgdehaze_core.inference.frame_chain" in graph[user]
    names = {node.id if isinstance(node, ast.Name) else node.attr
             for node in ast.walk(ast.parse(module_files()[user].read_text()))
             if isinstance(node, (ast.Name, ast.Attribute))}
    assert not names & {"FrameDetector", "median_depth"}, "the chain's steps are written again outside it"


def test_every_name_imported_from_the_packages_exists_there_function_level_imports_included() -> None:
    """A name imported inside a function is looked up only when that function runs: the TensorRT backend's
    `from ...tensorrt_backend import _onnx_stride` outlived the function it named, and every pipeline on TensorRT
    failed with ImportError, which no test here ran (TensorRT is absent). Each such name must exist."""
    missing = []
    for path in module_files().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or node.level or not (node.module or "").startswith(PACKAGES):
                continue
            module = importlib.import_module(node.module)
            missing += [f"{path.relative_to(ROOT)}:{node.lineno}: {node.module}.{alias.name}" for alias in node.names
                        if not hasattr(module, alias.name) and not (
                            hasattr(module, "__path__") and importlib.util.find_spec(f"{node.module}.{alias.name}"))]
    assert not missing, missing


def documented_module_map() -> dict[str, set[str]]:
    """{folder relative to the repository: the names ending in .py or / that docs/ARCHITECTURE.md's module map
    gives under it}. An entry starts at an indentation of two spaces per folder level; the lines that continue it
    are indented further, past the entries' column."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    block = text.split("```\n")[1]
    folders: list[str] = []
    found: dict[str, set[str]] = {}
    here = ""
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip())
        entry = line.split()[0].rstrip(",")
        if indent < 20:  # an entry, not a continued description
            level = indent // 2
            parent = "/".join(folders[:level])
            if entry.endswith("/"):
                folders[level:] = [entry.rstrip("/")]
                found.setdefault(parent, set()).add(entry)
                here = "/".join(folders)
            else:
                here = parent
        found.setdefault(here, set()).update(re.findall(r"\b\w+\.py\b", line))
    return found


def test_the_architecture_map_names_every_module_in_its_folder_and_none_that_is_gone() -> None:
    documented = documented_module_map()
    actual: dict[str, set[str]] = {"": {f"{package}/" for package in PACKAGES}}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*"):
            if "__pycache__" in path.parts or path.name == "__init__.py" or not (path.is_dir() or path.suffix == ".py"):
                continue
            folder = str(path.parent.relative_to(ROOT))
            actual.setdefault(folder, set()).add(path.name + ("/" if path.is_dir() else ""))
    assert {folder: sorted(names - documented.get(folder, set())) for folder, names in actual.items()
            if names - documented.get(folder, set())} == {}, "modules or folders docs/ARCHITECTURE.md lacks"
    assert {folder: sorted(names - actual.get(folder, set())) for folder, names in documented.items()
            if names - actual.get(folder, set())} == {}, "docs/ARCHITECTURE.md names what is not there"
