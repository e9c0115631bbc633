"""A node parameters file read as the node reads it (`dgdehaze_ros.params_file`), for `bag-eval --params-file`:
the same files taken and refused as a real rclpy node declaring the node's parameters takes and refuses them."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

pytest.importorskip("rclpy", reason="the node's parameters need rclpy (ROS 2 from pip or a ROS install)")

import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.exceptions import ParameterException  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy._rclpy_pybind11 import RCLInvalidROSArgsError  # noqa: E402

from dgdehaze_core.datasets.paths import REPO_DIR  # noqa: E402
from dgdehaze_ros.parameters import declare_parameters, read_settings  # noqa: E402
from dgdehaze_ros.params_file import read_params_file  # noqa: E402
from ros_harness import DOMAIN_ID  # noqa: E402

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def ros_context() -> Context:
    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    yield context
    rclpy.try_shutdown(context=context)


def _as_a_node_starts(context: Context, path: Path, name: str = "dgdehaze") -> dict | str:
    """The settings a node named `name` declaring the node's parameters takes from `path` (`changed`), or the
    word "refused"."""
    try:
        node = Node(name, context=context, cli_args=["--ros-args", "--params-file", str(path)],
                    start_parameter_services=False)
    except (RCLInvalidROSArgsError, ParameterException):  # rcl's parser: a list of mixed types, no YAML; the
        return "refused"  # parameters every node declares (use_sim_time)
    try:
        declare_parameters(node)
        return read_settings(node).changed()
    except (ParameterException, ValueError):
        return "refused"
    finally:
        node.destroy_node()


def _as_read(path: Path, name: str = "dgdehaze") -> dict | str:
    try:
        return read_params_file(path, name).changed()
    except ValueError:
        return "refused"


def test_the_shipped_configuration_reads_as_the_node_s_defaults() -> None:
    assert read_params_file(REPO_DIR / "config" / "dgdehaze.yaml").changed() == {}


@pytest.mark.parametrize("section, parameters", [
    ("/**", {"max_detail_gain": 0.0, "working_width": 96, "threshold": 0.4, "classes": ["car", "bus"]}),
    ("/**", {"classes": ["car", 2]}),  # rcl's parser takes lists of one type only
    ("/**", {"camera_height": 2, "camera_pitch": 0.05}),  # integers for doubles: taken as doubles
    ("dgdehaze", {"imgsz": 4096}),  # the top of a stepped range, which rclpy takes off its step too
    ("/dgdehaze", {"image_dehazed": {"compressed": {"format": "png"}}, "image_rectified": True}),
    ("/**", {"imgsz": 500}),  # off the detector's stride of 32
    ("/**", {"threshold": 2.0}),
    ("/**", {"model": 1}),
    ("/**", {"half": "yes"}),
    ("/**", {"model": "base"}),  # no shipped weights: the node's own check refuses it
    ("/**", {"road_region": [0.3, 0.5, 0.7]}),
    ("/**", {"device": "cuda"}),  # this machine has none
    ("/**", {"max_detail_gain": 0.5}),  # neither the exact inversion nor a gain of 1 or more
    ("/**", {"image_reliability": "best-effort"}),
])
def test_a_file_is_taken_and_refused_as_the_node_takes_and_refuses_it(ros_context: Context, tmp_path: Path,
                                                                      section: str, parameters: dict) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({section: {"ros__parameters": parameters}}))
    assert _as_read(path) == _as_a_node_starts(ros_context, path)


@pytest.mark.parametrize("text", [
    "/**:\n  ros__parameters:\n    radiance_floor: 1e-3\n    max_visibility: 1.5E3\n",  # YAML 1.1 reads strings
    "/**:\n  ros__parameters:\n    road_region: [3e-1, 0.5, 0.7, 1e0]\n",
    "common: &common\n  threshold: 0.4\n/**:\n  ros__parameters:\n    <<: *common\n",  # rcl takes no alias
    "/**: &all\n  ros__parameters:\n    threshold: 0.4\n/dgdehaze: *all\n",
    "version: 2\n/**:\n  ros__parameters:\n    threshold: 0.4\n",  # an entry that is no node's section
    "/**/*:\n  ros__parameters:\n    threshold: 0.4\n",  # rcl's wildcards
    "/**:\n  dgdehaze:\n    ros__parameters:\n      threshold: 0.4\n",  # a namespace's nested node
    "/**:\n  ros__parameters:\n    threshold: 0.4\n  dgdehaze:\n    ros__parameters:\n      imgsz: 320\n",
    "robot: {}\n/**:\n  ros__parameters:\n    imgsz: 320\n",  # an empty namespace
    "/**:\n  ros__parameters:\n    threshold: 0.4\n  other: 1\n",
    "/**:\n  ros__parameters:\n    use_sim_time: 'true'\n",  # every node's own parameter, a bool
    # rcl types an unquoted scalar by its own rules (dgdehaze_ros/rcl_yaml.py), whatever YAML 1.1 says:
    "/**:\n  ros__parameters:\n    detection_enabled: n\n    image_rectified: Y\n",  # booleans in rcl
    "/**:\n  ros__parameters:\n    classes: [car, n]\n",  # a string and a boolean: a list of two types
    "/**:\n  ros__parameters:\n    imgsz: 3_20\n",  # a string in rcl, 320 in YAML 1.1
    "/**:\n  ros__parameters:\n    max_detail_gain: 1_0.0\n",
    "/**:\n  ros__parameters:\n    classes: [1_0, 2]\n",
    "/**:\n  ros__parameters:\n    imgsz: 0X140\n    working_width: 0640\n",  # strtol: hexadecimal, octal
    "/**:\n  ros__parameters:\n    imgsz: 0b101000000\n",  # no binary in strtol
    "/**:\n  ros__parameters:\n    threshold: 0x1p-1\n",  # strtod: a hexadecimal float
    "/**:\n  ros__parameters:\n    imgsz: !!float 320\n    classes: [!!str 2, car]\n",  # only !!str counts
    "/**:\n  ros__parameters:\n    classes: ~\n",  # the string "~", not null
    "/**:\n  ros__parameters:\n    classes: [car, null]\n",
    "/**:\n  ros__parameters:\n    classes:\n",  # no value
    "/**:\n  ros__parameters:\n    threshold: 0.4\n---\n/**:\n  ros__parameters:\n    imgsz: 320\n",
])
def test_a_file_s_yaml_is_read_as_rcl_reads_it(ros_context: Context, tmp_path: Path, text: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    assert _as_read(path) == _as_a_node_starts(ros_context, path)


def test_a_file_for_another_node_or_no_parameters_file_is_refused_and_unknown_names_are_warned_of(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"/robot/front_dehaze": {"ros__parameters": {"threshold": 0.4}}}))
    with pytest.raises(ValueError, match="no parameters for a node /dgdehaze: its sections are /robot/front_dehaze"):
        read_params_file(path)
    for text, message in (("threshold: 0.4\n", "no ROS 2 parameters file"),
                          ("/**: [1\n", "cannot be read as a YAML file: line 2, column 1: "),
                          ("", "no ROS 2 parameters file")):
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            read_params_file(path)
    with pytest.raises(ValueError, match="no such parameters file"):
        read_params_file(tmp_path / "missing.yaml")
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"thresold": 0.4, "use_sim_time": True}}}))
    with caplog.at_level(logging.WARNING):
        assert read_params_file(path).changed() == {}
    assert "thresold is no parameter of the dgdehaze node" in caplog.text and "use_sim_time" not in caplog.text
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"threshold": 0.3}},
                                    "/front/dgdehaze": {"ros__parameters": {"threshold": 0.5}}}))
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # a robot's file with a section per camera
        assert read_params_file(path).changed() == {"threshold": 0.3}
    assert "/front/dgdehaze is for a node dgdehaze in another namespace than bag-eval's /dgdehaze" in caplog.text
    assert read_params_file(path, "front/dgdehaze").changed() == {"threshold": 0.5}, "the camera's own section"


def test_of_several_sections_those_naming_the_node_apply_in_the_file_s_order(ros_context: Context,
                                                                             tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"threshold": 0.3, "imgsz": 320}},
                                    "front_dehaze": {"ros__parameters": {"threshold": 0.5}},
                                    "/robot/front_dehaze": {"ros__parameters": {"imgsz": 960}}}, sort_keys=False))
    assert _as_read(path, "front_dehaze") == _as_a_node_starts(ros_context, path, "front_dehaze") \
        == {"threshold": 0.5, "imgsz": 320}


def test_a_started_node_runs_the_replay_s_method_and_activates_itself_whatever_the_file_says(
        ros_context: Context, tmp_path: Path) -> None:
    """bag-eval --node --params-file: a file's `autostart: false` left the started node waiting for a lifecycle
    manager until the replay gave up after 120 s, and a file's `weights` ran in the node where the report named
    --method's model (the node runs `weights` when it is set)."""
    from dgdehaze_core.models import shipped_weights_path
    from dgdehaze_ros.tools.bag_replay import _node_command

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "autostart": False, "threshold": 0.4, "weights": str(shipped_weights_path("lite"))}}}))
    command = _node_command("dgdehaze", "/cam/image_raw", False, None, "dcp", False, params_file=str(path))
    node = Node("dgdehaze", context=ros_context, cli_args=command[command.index("--ros-args"):],
                start_parameter_services=False)
    try:
        declare_parameters(node)
        settings = read_settings(node)
    finally:
        node.destroy_node()
    assert (settings["autostart"], settings["model"], settings["weights"], settings["threshold"]) == (
        True, "dcp", "", 0.4)


def test_a_started_node_in_a_namespace_reads_the_sections_the_reader_reads(ros_context: Context,
                                                                            tmp_path: Path) -> None:
    """bag-eval --node --node-name front/dgdehaze: a robot's file with a section per camera; the node started in the
    namespace takes that camera's section, as the reader does for the hazy row and the report."""
    from dgdehaze_ros.tools.bag_replay import _node_command

    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"threshold": 0.3, "imgsz": 320}},
                                    "/front/dgdehaze": {"ros__parameters": {"threshold": 0.5}},
                                    "/rear/dgdehaze": {"ros__parameters": {"imgsz": 960}}}, sort_keys=False))
    command = _node_command("front/dgdehaze", "/cam/image_raw", False, None, "lite", False, params_file=str(path))
    node = Node("ignored", context=ros_context, cli_args=command[command.index("--ros-args"):],
                start_parameter_services=False)
    try:
        assert node.get_fully_qualified_name() == "/front/dgdehaze"
        declare_parameters(node)
        started = read_settings(node)
    finally:
        node.destroy_node()
    read = read_params_file(path, "front/dgdehaze")
    assert (started["threshold"], started["imgsz"]) == (read["threshold"], read["imgsz"]) == (0.5, 320)
