"""launch/dgdehaze.launch.py, config/dgdehaze.yaml and their installation.

launch/launch_ros are not on PyPI, so here the launch file is checked as source (it compiles, declares the
arguments users pass, overrides only declared parameters); where launch_ros exists it is also built. The YAML is
loaded by the real node through rclpy's `--params-file`, exactly as `ros2 launch` hands it over.
"""
from __future__ import annotations

import ast
import contextlib
import math
import os
import py_compile
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ElementTree
from distutils.core import run_setup
from pathlib import Path
from typing import Iterator

import pytest
import yaml

pytest.importorskip("rclpy", reason="needs ROS 2 (pip ros-* wheels or a ROS install)")

import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.exceptions import ParameterException  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from ros_harness import DOMAIN_ID  # noqa: E402

from dgdehaze_ros.node import DehazeNode  # noqa: E402
from dgdehaze_ros.parameters import SPEC_BY_NAME, SPECS, ParameterSpec, check_values  # noqa: E402
from dgdehaze_ros.tools.child_process import stop  # noqa: E402

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / "launch" / "dgdehaze.launch.py"
CONFIG_FILE = ROOT / "config" / "dgdehaze.yaml"
LAUNCH_ARGUMENTS = {"namespace", "image", "camera_info", "params_file", "backend", "model", "image_reliability",
                    "input_transport", "autostart", "use_sim_time", "fastdds_large_images"}


def shipped_parameters() -> dict[str, object]:
    document = yaml.safe_load(CONFIG_FILE.read_text())
    assert list(document) == ["/**"] and list(document["/**"]) == ["ros__parameters"]
    return document["/**"]["ros__parameters"]


def launch_source() -> ast.Module:
    return ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))


def test_the_launch_file_compiles_and_declares_the_arguments_users_pass() -> None:
    py_compile.compile(str(LAUNCH_FILE), doraise=True)
    tree = launch_source()
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    imports = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert ("launch_ros.actions", "LifecycleNode") in imports
    assert ("ament_index_python.packages", "get_package_share_directory") in imports
    declared = {call.args[0].value for call in ast.walk(tree)
                if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "DeclareLaunchArgument"
                and call.args and isinstance(call.args[0], ast.Constant)}
    overrides = next(ast.literal_eval(n.value) for n in tree.body
                     if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "OVERRIDES")
    assert LAUNCH_ARGUMENTS <= declared | set(overrides), LAUNCH_ARGUMENTS - declared - set(overrides)
    assert set(overrides) <= set(SPEC_BY_NAME), "a launch argument overrides an undeclared parameter"
    assert "dgdehaze_node" in LAUNCH_FILE.read_text()
    assert ("dgdehaze_ros.fastdds_profile", "launch_environment") in imports
    node_keywords = {k.arg for call in ast.walk(tree) if isinstance(call, ast.Call)
                     and getattr(call.func, "id", "") == "LifecycleNode" for k in call.keywords}
    assert "additional_env" in node_keywords, "the node's process gets the Fast DDS profile the launch chose"


def test_docs_ros_md_lists_every_launch_argument_with_its_default() -> None:
    """The table of launch arguments against the launch file's DeclareLaunchArgument calls (each OVERRIDES name
    is declared with default ""), and no row for an argument the file lacks."""
    tree = launch_source()
    declared = {call.args[0].value: next((ast.literal_eval(k.value) for k in call.keywords
                                          if k.arg == "default_value" and isinstance(k.value, ast.Constant)), None)
                for call in ast.walk(tree) if isinstance(call, ast.Call)
                and getattr(call.func, "id", "") == "DeclareLaunchArgument"
                and call.args and isinstance(call.args[0], ast.Constant)}
    overrides = next(ast.literal_eval(n.value) for n in tree.body
                     if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "OVERRIDES")
    declared.update(dict.fromkeys(overrides, ""))
    section = (ROOT / "docs" / "ROS.md").read_text().split("Launch arguments of `launch/dgdehaze.launch.py`:")[1]
    rows = {}
    for line in section.split("\n\n")[1].splitlines()[2:]:
        names, default = [cell.strip() for cell in line.split("|")[1:3]]
        rows.update(dict.fromkeys((name.strip().strip("`") for name in names.split(",")), default.strip("`")))
    assert set(rows) == set(declared)
    assert {name: rows[name] for name, default in declared.items() if default is not None} == \
        {name: default or '""' for name, default in declared.items() if default is not None}
    assert rows["params_file"] == "share/dgdehaze/config/dgdehaze.yaml", "the package's share folder, as installed"


def test_the_launch_description_builds_where_launch_ros_is_installed() -> None:
    pytest.importorskip("launch_ros", reason="launch_ros is not on PyPI; needs a ROS 2 install")
    import importlib.util

    spec = importlib.util.spec_from_file_location("dgdehaze_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    names = {a.name for a in description.get_launch_arguments()}
    assert LAUNCH_ARGUMENTS <= names


def test_the_config_names_every_parameter_with_its_default_and_valid_values() -> None:
    values = shipped_parameters()
    assert set(values) == set(SPEC_BY_NAME), set(values) ^ set(SPEC_BY_NAME)
    for spec in SPECS:
        value = values[spec.name]
        if spec.default is None:
            assert value == [], f"{spec.name}: an unset list is written as []"
            continue
        assert type(value) is type(spec.default), f"{spec.name}: {value!r} is not a {type(spec.default).__name__}"
        assert value == spec.default, f"{spec.name}: the config says {value!r}, the node's default is {spec.default!r}"
        if spec.int_range is not None:
            assert spec.int_range[0] <= value <= spec.int_range[1]
        if spec.float_range is not None:
            assert spec.float_range[0] <= value <= spec.float_range[1]
    assert check_values(values) is None
    for line in CONFIG_FILE.read_text().splitlines():
        if line.startswith("    ") and ":" in line:
            assert "#" in line, f"no comment on {line.strip()!r}"


@pytest.fixture()
def ros_context() -> Context:
    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    yield context
    rclpy.try_shutdown(context=context)


def test_the_node_configures_from_the_shipped_config_under_any_name_and_a_later_file_overrides_it(
        ros_context: Context, tmp_path: Path) -> None:
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "detection_interval": 5, "image_reliability": "reliable", "threshold": 0.4, "classes": ["car", "person"]}}}))
    node = DehazeNode("front_dehaze", namespace="/robot1", context=ros_context,
                      cli_args=["--ros-args", "--params-file", str(CONFIG_FILE), "--params-file", str(override),
                                "-p", "model:=dcp"])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        shipped = shipped_parameters()
        changed = {"detection_interval": 5, "image_reliability": "reliable", "threshold": 0.4, "model": "dcp"}
        for name, value in {**shipped, **changed}.items():
            if name == "classes":
                continue
            actual = node.get_parameter(name).value
            assert actual == value or (isinstance(value, float) and math.isclose(actual, value)), name
        assert list(node.get_parameter("classes").value) == ["car", "person"]
    finally:
        node.destroy_node()


def test_an_out_of_range_value_in_a_params_file_is_refused_at_start(ros_context: Context, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"detection_interval": 0}}}))
    with pytest.raises(ParameterException, match="detection_interval"):
        DehazeNode("dgdehaze", context=ros_context, cli_args=["--ros-args", "--params-file", str(bad)])


@pytest.mark.parametrize("name, value", [("image_reliability", "best-effort"), ("input_transport", "jpeg")])
def test_a_read_only_parameter_outside_its_choices_is_refused_at_start(ros_context: Context, name: str,
                                                                       value: str) -> None:
    """Read-only: a node started with it could never be configured, and no parameter call could mend it."""
    with pytest.raises(ParameterException, match=name):
        DehazeNode("dgdehaze", context=ros_context, parameter_overrides=[Parameter(name, value=value)])


@contextlib.contextmanager
def _executable(name: str, *params: str, until: str, stop_with: int,
                **env: str) -> Iterator[tuple[subprocess.Popen, list[str]]]:
    """`python -m dgdehaze_ros.node` as `name` with the parameters `params` (`model:=base`) and the variables `env`
    on this session's domain, its stderr lines read up to the first that holds `until` (all, if it ends first);
    stopped with the signal `stop_with` on leaving. Killed after 120 s: one that never says so fails the test, not
    hangs it."""
    node = subprocess.Popen([sys.executable, "-m", "dgdehaze_ros.node", "--ros-args", "-r", f"__node:={name}",
                             *[arg for param in params for arg in ("-p", param)]],
                            env={**os.environ, "ROS_DOMAIN_ID": str(DOMAIN_ID), **env}, stderr=subprocess.PIPE,
                            text=True)
    watchdog = threading.Timer(120.0, node.kill)
    watchdog.start()
    try:
        lines = []
        for line in node.stderr:  # type: ignore[union-attr]
            lines.append(line)
            if until in line:
                break
        yield node, lines
    finally:
        watchdog.cancel()
        stop(node, stop_with, 30.0)


def test_with_autostart_a_failed_configure_leaves_the_node_up_and_unconfigured_as_a_lifecycle_node() -> None:
    with _executable("unconfigured", "model:=base",  # base ships no weights: configure fails
                     until="stays unconfigured", stop_with=signal.SIGTERM) as (node, lines):
        assert any("configure failed" in line and "no shipped weights" in line for line in lines), lines
        time.sleep(1.0)
        assert node.poll() is None, "the process ended instead of waiting to be configured again"
        assert "lifecycle set /unconfigured configure" in lines[-1]


def test_the_executable_gives_the_core_s_lines_of_its_node_to_its_rclpy_logger_printed_once(tmp_path: Path) -> None:
    """The core's lines (here the model its configure loads) went to Python's stderr handler alone: neither on
    /rosout nor in the log file under ROS_LOG_DIR (~/.ros/log). They now go through the node's rclpy logger, which
    prints them itself: once, not a second time as `INFO dgdehaze_core.models: ...`."""
    with _executable("core_logs", "model:=lite", "backend:=torch", "detection_enabled:=false",
                     until="active: listening", stop_with=signal.SIGINT, ROS_LOG_DIR=str(tmp_path)) as (_, lines):
        pass  # stopped once active, its log file then complete
    loaded = [line for line in lines if "loaded lite model from" in line]
    assert len(loaded) == 1 and loaded[0].startswith("[INFO] [") and \
        "[core_logs]: dgdehaze_core.models: loaded lite model from" in loaded[0], lines
    assert "dgdehaze_core.models: loaded lite model from" in "".join(
        path.read_text() for path in tmp_path.glob("*.log")), "not in the node's log file"


def test_the_executable_exits_with_a_clear_error_on_a_bad_parameter_at_start() -> None:
    result = subprocess.run([sys.executable, "-m", "dgdehaze_ros.node", "--ros-args", "--params-file",
                             str(CONFIG_FILE), "-p", "model:=dcp", "-p", "image_qos_depth:=0"],
                            env={**os.environ, "ROS_DOMAIN_ID": str(DOMAIN_ID)}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "invalid parameter" in result.stderr and "image_qos_depth" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("rule", [["--log-level", "verbose"], ["-r", "image:="]])
def test_the_executable_exits_with_a_clear_error_on_a_ros_argument_rcl_cannot_parse(rule: list[str]) -> None:
    """What the launch file hands the node for `log_level:=verbose` and for an empty `image:=`: rcl refuses the rule
    in rclpy.init, and the node says so in one line with code 2 instead of a traceback."""
    result = subprocess.run([sys.executable, "-m", "dgdehaze_ros.node", "--ros-args", *rule, "-p", "model:=dcp"],
                            env={**os.environ, "ROS_DOMAIN_ID": str(DOMAIN_ID)}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr
    assert "invalid ROS arguments" in result.stderr and " ".join(rule) in result.stderr
    assert "Traceback" not in result.stderr


def test_the_package_installs_the_launch_and_config_files_and_depends_on_what_they_import() -> None:
    package = ElementTree.parse(ROOT / "package.xml").getroot()
    assert package.tag == "package" and package.get("format") == "3"
    assert package.findtext("name") == "dgdehaze"
    assert package.findtext("export/build_type") == "ament_python"
    exec_depends = {e.text for e in package.findall("exec_depend")}
    assert {"rclpy", "launch", "launch_ros", "ament_index_python", "lifecycle_msgs", "sensor_msgs",
            "diagnostic_msgs", "vision_msgs"} <= exec_depends, exec_depends

    distribution = run_setup(str(ROOT / "setup.py"), stop_after="init")
    data_files = dict(distribution.data_files)
    assert data_files["share/dgdehaze/launch"] == ["launch/dgdehaze.launch.py"]
    assert {"config/dgdehaze.yaml", "config/fastdds_large_images.xml"} <= set(data_files["share/dgdehaze/config"])
    assert data_files["share/dgdehaze"] == ["package.xml"]
    assert (ROOT / "resource" / "dgdehaze").is_file()
    for files in data_files.values():
        assert files and all((ROOT / f).is_file() for f in files)
    scripts = distribution.entry_points["console_scripts"]
    assert "dgdehaze_node = dgdehaze_ros.executable:main" in scripts, "the launch file starts executable dgdehaze_node"
    assert "install_scripts=$base/lib/dgdehaze" in (ROOT / "setup.cfg").read_text(), \
        "ros2 launch finds executables in lib/<package>"


DOCUMENTED_RULES = {"max_detail_gain": "0, or 1..100", "image_rectified": "auto, true, false"}
"""Range cells of docs/ROS.md that say what `check_values` adds to the descriptor's range."""


def documented_range(spec: ParameterSpec) -> str:
    """The range / choices cell docs/ROS.md gives `spec`: its choices, `LOW..HIGH` (with ` step N` when not 1), or
    empty (a string, a bool, a list)."""
    if spec.name in DOCUMENTED_RULES:
        return DOCUMENTED_RULES[spec.name]
    if spec.choices:
        return ", ".join(choice or '""' for choice in spec.choices)
    if spec.int_range is not None:
        low, high, step = spec.int_range
        return f"{low}..{high}" + (f" step {step}" if step != 1 else "")
    if spec.float_range is not None:
        return "..".join(f"{bound:g}" for bound in spec.float_range)
    return ""


def documented_change(spec: ParameterSpec) -> str:
    """The "changes at run time" cell docs/ROS.md gives `spec`."""
    if spec.read_only:
        return "no (read-only)"
    return f"yes, reloads the {' and the '.join(spec.reloads)}" if spec.reloads else "yes"


def test_docs_ros_md_lists_every_parameter_with_its_default_range_and_whether_it_changes_at_run_time() -> None:
    """Its parameter table row by row against the declarations, and no row for a parameter the node lacks."""
    section = (ROOT / "docs" / "ROS.md").read_text().split("\n## Parameters\n")[1].split("\n## ")[0]
    rows = {cells[0].strip("`"): cells[1:4] for line in section.splitlines() if line.startswith("| `")
            for cells in [[cell.strip() for cell in line.split("|")[1:-1]]]}
    assert list(rows) == [spec.name for spec in SPECS], "docs/ROS.md's rows are the declared parameters, in order"
    for spec in SPECS:
        default, range_, change = rows[spec.name]
        if spec.default is None:
            assert default.startswith("unset"), spec.name
        else:
            text = str(spec.default).lower() if isinstance(spec.default, bool) else str(spec.default)
            assert default == (f"`{text}`" if text else '`""`'), \
                f"docs/ROS.md says {spec.name} defaults to {default}, the node to {spec.default!r}"
        assert range_ == documented_range(spec), f"{spec.name}: docs/ROS.md says {range_!r}"
        assert change == documented_change(spec), f"{spec.name}: docs/ROS.md says {change!r}"


def test_the_config_marks_the_read_only_parameters() -> None:
    marked = {line.split(":")[0].strip() for line in CONFIG_FILE.read_text().splitlines()
              if line.startswith("    ") and "(read-only" in line.partition("#")[2]}
    assert marked == {spec.name for spec in SPECS if spec.read_only}


MODULE_SOURCES = {
    "numpy": "python3-numpy", "cv2": "python3-opencv", "PIL": "python3-pil", "yaml": "python3-yaml",
    "tqdm": "python3-tqdm",
    "scipy": "python3-scipy", "skimage": "python3-skimage", "matplotlib": "python3-matplotlib",
    "onnxruntime": "python3-onnxruntime-pip", "ultralytics": "python3-ultralytics-pip",
    "rosbags": "python3-rosbags-pip", "rclpy": "rclpy", "rcl_interfaces": "rcl_interfaces",
    "lifecycle_msgs": "lifecycle_msgs", "sensor_msgs": "sensor_msgs", "std_msgs": "std_msgs",
    "diagnostic_msgs": "diagnostic_msgs", "vision_msgs": "vision_msgs", "launch": "launch",
    "launch_ros": "launch_ros", "ament_index_python": "ament_index_python", "tf2_ros": "tf2_ros_py",
    "torch": "pip:torch", "torchvision": "pip:torchvision", "onnx": "pip:onnx", "onnxscript": "pip:onnxscript",
    "pywt": "pip:PyWavelets", "packaging": "python3-packaging",
}
"""Third-party module -> the rosdep key in package.xml, or pip:NAME in requirements-ros.txt, that installs it."""
OPTIONAL_MODULES = {"tensorrt", "ray", "pyfade"}
"""Imported only where present: the TensorRT backend (the platform provides it), the bag fleet's Ray (the
optional `fleet` extra, requirements-fleet.txt) and FADE's fade-python (eval's haze measure; it needs numpy 2,
which a ROS install keeps out)."""


TEST_MODULE_SOURCES = {
    "pytest": "python3-pytest", "psutil": "python3-psutil", "builtin_interfaces": "builtin_interfaces",
    "rosgraph_msgs": "rosgraph_msgs",
}
"""Third-party module only the tests import -> its <test_depend> in package.xml."""
TEST_OPTIONAL_MODULES = {"pycocotools", "tensorboard"}
"""Imported only by tests that skip without them (pytest.importorskip): the reference COCO evaluation, TensorBoard."""


def third_party_imports(*folders: str) -> set[str]:
    """The top-level modules the `.py` files under `folders` import, less the standard library and this package."""
    imported: set[str] = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    imported |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    imported.add(node.module.split(".")[0])
    return imported - set(sys.stdlib_module_names) - {"dgdehaze_core", "dgdehaze_ros"}


def package_depends(tag: str) -> set[str]:
    """The keys of package.xml's `<tag>` elements (exec_depend, test_depend)."""
    return {element.text for element in ElementTree.parse(ROOT / "package.xml").getroot().findall(tag)}


def test_every_module_the_package_imports_is_installed_by_rosdep_or_requirements_ros() -> None:
    third_party = third_party_imports("dgdehaze_core", "dgdehaze_ros", "launch") - OPTIONAL_MODULES
    assert third_party <= set(MODULE_SOURCES), f"imported but not declared: {sorted(third_party - set(MODULE_SOURCES))}"
    exec_depends = package_depends("exec_depend")
    pip_names = {line.split(">=")[0].split("==")[0].strip().lower()
                 for line in (ROOT / "requirements-ros.txt").read_text().splitlines()
                 if line.strip() and not line.startswith("#")}
    for module in sorted(third_party):
        source = MODULE_SOURCES[module]
        if source.startswith("pip:"):
            assert source[4:].lower() in pip_names, f"{module}: {source[4:]} missing from requirements-ros.txt"
        else:
            assert source in exec_depends, f"{module}: <exec_depend>{source}</exec_depend> missing in package.xml"
    assert not pip_names & {"opencv-python", "opencv-python-headless", "scipy", "pyyaml"}, \
        "requirements-ros.txt must leave the distribution's numpy, OpenCV, SciPy and PyYAML alone"
    numpy_lines = [line.strip() for line in (ROOT / "requirements-ros.txt").read_text().splitlines()
                   if line.strip().lower().startswith("numpy")]
    assert numpy_lines == ["numpy<2"], "numpy is only capped (the distribution's 1.x stays), never pinned or raised"
    assert "python3-torch" not in exec_depends, "python3-torch has no apt candidate on some distros: pip or JetPack"


def test_every_module_the_tests_import_is_a_test_depend_and_pytest_ini_s_plugins_too() -> None:
    """`colcon test` on a ROS install runs these tests with what rosdep installed: a module only the tests import
    needs its <test_depend> (psutil had none), and pytest.ini's `timeout` is an unknown option, warned about and
    ignored, without pytest-timeout."""
    local = {path.stem for folder in ("tests", "tools") for path in (ROOT / folder).glob("*.py")} | {"tools"}
    third_party = third_party_imports("tests") - local - OPTIONAL_MODULES - TEST_OPTIONAL_MODULES
    undeclared = third_party - set(MODULE_SOURCES) - set(TEST_MODULE_SOURCES)
    assert not undeclared, f"imported by the tests but not declared: {sorted(undeclared)}"
    test_depends = package_depends("test_depend")
    for module in sorted(third_party & set(TEST_MODULE_SOURCES)):
        source = TEST_MODULE_SOURCES[module]
        assert source in test_depends, f"{module}: <test_depend>{source}</test_depend> missing in package.xml"
    assert "timeout" in (ROOT / "pytest.ini").read_text()
    assert "python3-pytest-timeout" in test_depends, "pytest.ini's timeout needs pytest-timeout"


def test_a_misspelt_parameter_in_a_params_file_is_warned_of_at_start(ros_context: Context, tmp_path: Path,
                                                                       capfd: pytest.CaptureFixture) -> None:
    """ROS 2 ignores a name the node does not declare: `thresold: 0.4` left the threshold at 0.25 without a word."""
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"thresold": 0.4, "threshold": 0.3,
                                                                "use_sim_time": False}}}))
    for files, warned in (([CONFIG_FILE], None), ([CONFIG_FILE, mine], "foo, thresold: given at start but no "
                                                                        "parameter of this node")):
        capfd.readouterr()
        args = [option for path in files for option in ("--params-file", str(path))]
        node = DehazeNode("dgdehaze", context=ros_context,
                          cli_args=["--ros-args", *args, *(["-p", "foo:=1"] if warned else [])])
        node.destroy_node()
        lines = [line for line in capfd.readouterr().err.splitlines() if "no parameter of this node" in line]
        assert lines == [] if warned is None else (len(lines) == 1 and warned in lines[0]), lines
