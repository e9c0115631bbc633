"""When the node's process (launch file, `ros2 run`, node replay, bench node) is given the shipped Fast DDS profile,
under which variable, and what that file is.

The profile's effect itself is measured over real Fast DDS in test_ros_transport.py; here, the choice: a user's own
Fast DDS settings or another middleware are never overridden, and a /dev/shm without room for the segment (a
container's default) keeps Fast DDS's defaults.
"""
from __future__ import annotations

import importlib.metadata
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from dgdehaze_ros.fastdds_profile import (CHOICE_VARIABLE, FAST_DDS_2_VARIABLE, FAST_DDS_3_VARIABLE,
                                          FASTDDS_SETTINGS, SHARED_MEMORY, WORKING_DIRECTORY_PROFILES,
                                          large_image_environment, launch_environment, node_environment,
                                          profile_variables, room_problem, segment_bytes, shipped_profile,
                                          transport_summary)

NAMESPACE = "{http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles}"
ROOMY = Path(__file__).resolve().parent  # a folder on the disk, with room for two segments
"""Stands for a /dev/shm with room to spare where a test is about something else."""


def test_the_shipped_profile_is_a_default_participant_profile_whose_segment_holds_a_4k_frame() -> None:
    assert segment_bytes(shipped_profile()) >= 3840 * 2160 * 4, "a 4K frame in bgra8, or its 32FC1 depth"
    root = ElementTree.parse(shipped_profile()).getroot()
    participant, = root.iter(f"{NAMESPACE}participant")
    assert participant.get("is_default_profile") == "true", "applies to the participant rmw_fastrtps creates"
    used = {t.text for t in participant.iter(f"{NAMESPACE}transport_id")}
    assert {"shm_large_images", "udp"} == used, "UDP stays, for discovery and other machines"


def test_the_profile_is_named_in_the_variable_the_distributions_fast_dds_reads() -> None:
    assert profile_variables({"ROS_DISTRO": "humble"}) == (FAST_DDS_2_VARIABLE,)
    assert profile_variables({"ROS_DISTRO": "jazzy"}) == (FAST_DDS_2_VARIABLE,)
    assert profile_variables({"ROS_DISTRO": "kilted"}) == (FAST_DDS_3_VARIABLE,), \
        "Fast DDS 3's rmw warns that the old name is deprecated"
    try:  # ROS from pip (this venv): the ros-fastdds wheel says which Fast DDS it is
        major = importlib.metadata.version("ros-fastdds").split(".")[0]
    except importlib.metadata.PackageNotFoundError:
        assert profile_variables({}) == (FAST_DDS_2_VARIABLE, FAST_DDS_3_VARIABLE), "unknown: both"
    else:
        assert profile_variables({}) == ((FAST_DDS_2_VARIABLE,) if major == "2" else (FAST_DDS_3_VARIABLE,))


def test_a_process_on_default_fast_dds_gets_the_shipped_profile(tmp_path: Path) -> None:
    kilted = {"ROS_DISTRO": "kilted"}
    expected = {FAST_DDS_3_VARIABLE: str(shipped_profile())}
    assert large_image_environment(kilted, tmp_path, ROOMY) == expected
    assert large_image_environment({**kilted, "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}, tmp_path, ROOMY) == expected
    assert large_image_environment({**kilted, "RMW_IMPLEMENTATION": "rmw_fastrtps_dynamic_cpp"}, tmp_path,
                                   ROOMY) == expected
    assert large_image_environment({**kilted, **{name: " " for name in FASTDDS_SETTINGS}}, tmp_path,
                                   ROOMY) == expected, "a variable set to nothing configures nothing"
    assert launch_environment("auto", kilted, tmp_path, ROOMY) == {CHOICE_VARIABLE: "auto", **expected}
    assert launch_environment(" AUTO ", {"ROS_DISTRO": "humble"}, tmp_path, ROOMY) == {
        CHOICE_VARIABLE: "auto", FAST_DDS_2_VARIABLE: str(shipped_profile())}


@pytest.mark.parametrize("name", FASTDDS_SETTINGS)
def test_fast_dds_settings_of_the_users_own_are_kept(tmp_path: Path, name: str) -> None:
    environ = {name: "/robot/fastdds.xml" if "PROFILES" in name else "LARGE_DATA"}
    assert large_image_environment(environ, tmp_path, ROOMY) == {}
    assert launch_environment("auto", environ, tmp_path, ROOMY) == {CHOICE_VARIABLE: "auto"}
    assert node_environment(environ, tmp_path, ROOMY) == {CHOICE_VARIABLE: "auto"}
    assert transport_summary(environ, tmp_path, ROOMY) == f"Fast DDS configured by {name}={environ[name]}"


@pytest.mark.parametrize("name", WORKING_DIRECTORY_PROFILES)
def test_a_profile_file_in_the_working_directory_is_the_users_own(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("<profiles/>")
    assert large_image_environment({}, tmp_path, ROOMY) == {}
    assert transport_summary({}, tmp_path, ROOMY) == f"Fast DDS configured by {tmp_path / name}"


def test_another_middleware_gets_no_fast_dds_profile(tmp_path: Path) -> None:
    environ = {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}
    assert large_image_environment(environ, tmp_path, ROOMY) == {}
    assert transport_summary(environ, tmp_path, ROOMY) == "middleware rmw_cyclonedds_cpp"


def test_a_shared_memory_without_room_for_two_segments_keeps_the_defaults_and_says_how_to_make_room() -> None:
    segment = segment_bytes(shipped_profile())
    container_default = 64 * 10**6  # Docker's /dev/shm
    problem = room_problem(container_default, segment)
    assert problem is not None and problem.startswith(f"{SHARED_MEMORY} has 61 MiB free, under the 64 MiB")
    assert "--shm-size=256m or --ipc=host" in problem
    assert room_problem(256 * 2**20, segment) is None and room_problem(2 * segment, segment) is None


def test_this_machines_dev_shm_is_measured_where_it_exists(tmp_path: Path) -> None:
    if not SHARED_MEMORY.is_dir():
        pytest.skip("no /dev/shm on this system")
    import shutil

    roomy = room_problem(shutil.disk_usage(SHARED_MEMORY).free, segment_bytes(shipped_profile())) is None
    assert bool(large_image_environment({"ROS_DISTRO": "kilted"}, tmp_path)) == roomy
    assert ("--shm-size" in transport_summary({}, tmp_path)) != roomy


def test_a_system_without_dev_shm_gets_the_profile(tmp_path: Path) -> None:
    assert large_image_environment({"ROS_DISTRO": "kilted"}, tmp_path, tmp_path / "no-shm") == {
        FAST_DDS_3_VARIABLE: str(shipped_profile())}


def test_off_gives_nothing_and_a_bad_choice_is_refused(tmp_path: Path) -> None:
    assert launch_environment("off", {}, tmp_path, ROOMY) == {CHOICE_VARIABLE: "off"}
    with pytest.raises(ValueError, match="fastdds_large_images must be auto or off, got 'yes'"):
        launch_environment("yes", {}, tmp_path, ROOMY)


def test_the_node_started_without_the_launch_file_gives_itself_the_profile_unless_told_off(tmp_path: Path) -> None:
    """`ros2 run` sets no variable: the node decides as the launch file's `auto` would. What the launch file
    passes (its choice and, for auto, the profile) comes back unchanged, so the node does not decide twice."""
    kilted = {"ROS_DISTRO": "kilted"}
    profile = {FAST_DDS_3_VARIABLE: str(shipped_profile())}
    assert node_environment(kilted, tmp_path, ROOMY) == {CHOICE_VARIABLE: "auto", **profile}
    launched = {**kilted, **launch_environment("auto", kilted, tmp_path, ROOMY)}
    assert {**launched, **node_environment(launched, tmp_path, ROOMY)} == launched
    assert node_environment({**kilted, CHOICE_VARIABLE: "off"}, tmp_path, ROOMY) == {CHOICE_VARIABLE: "off"}
    with pytest.raises(ValueError, match="got 'on'"):
        node_environment({CHOICE_VARIABLE: "on"}, tmp_path, ROOMY)


def test_default_fast_dds_is_named_with_what_it_does_to_large_images_and_the_way_out(tmp_path: Path) -> None:
    summary = transport_summary({"ROS_DISTRO": "kilted"}, tmp_path, ROOMY)
    assert summary.startswith("Fast DDS with its default transports: an image over 512 KiB")
    assert f"{FAST_DDS_3_VARIABLE}={shipped_profile()} avoids that" in summary
