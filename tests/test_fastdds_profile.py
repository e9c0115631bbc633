"""When the node's process (launch file, node replay) is given the shipped Fast DDS profile, and what that file is.

The profile's effect itself is measured over real Fast DDS in test_ros_transport.py; here, the choice: a user's own
Fast DDS settings or another middleware are never overridden.
"""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from dgdehaze_ros.fastdds_profile import (FASTDDS_SETTINGS, PROFILE_VARIABLE, WORKING_DIRECTORY_PROFILE,
                                          large_image_environment, launch_environment, shipped_profile,
                                          transport_summary)

NAMESPACE = "{http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles}"


def test_the_shipped_profile_is_a_default_participant_profile_whose_segment_holds_a_4k_frame() -> None:
    root = ElementTree.parse(shipped_profile()).getroot()
    segments = [int(d.findtext(f"{NAMESPACE}segment_size")) for d in root.iter(f"{NAMESPACE}transport_descriptor")
                if d.findtext(f"{NAMESPACE}type") == "SHM"]
    assert segments and min(segments) >= 3840 * 2160 * 4, "a 4K frame in bgra8, or its 32FC1 depth"
    participant, = root.iter(f"{NAMESPACE}participant")
    assert participant.get("is_default_profile") == "true", "applies to the participant rmw_fastrtps creates"
    used = {t.text for t in participant.iter(f"{NAMESPACE}transport_id")}
    assert {"shm_large_images", "udp"} == used, "UDP stays, for discovery and other machines"


def test_a_process_on_default_fast_dds_gets_the_shipped_profile(tmp_path: Path) -> None:
    expected = {PROFILE_VARIABLE: str(shipped_profile())}
    assert large_image_environment({}, tmp_path) == expected
    assert large_image_environment({"RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}, tmp_path) == expected
    assert large_image_environment({"RMW_IMPLEMENTATION": "rmw_fastrtps_dynamic_cpp"}, tmp_path) == expected
    assert large_image_environment({name: " " for name in FASTDDS_SETTINGS}, tmp_path) == expected, \
        "a variable set to nothing configures nothing"
    assert launch_environment("auto", {}, tmp_path) == expected
    assert launch_environment(" AUTO ", {}, tmp_path) == expected


@pytest.mark.parametrize("name", FASTDDS_SETTINGS)
def test_fast_dds_settings_of_the_users_own_are_kept(tmp_path: Path, name: str) -> None:
    environ = {name: "/robot/fastdds.xml" if "PROFILES" in name else "LARGE_DATA"}
    assert large_image_environment(environ, tmp_path) == {}
    assert launch_environment("auto", environ, tmp_path) == {}
    assert transport_summary(environ, tmp_path) == f"Fast DDS configured by {name}={environ[name]}"


def test_a_profile_file_in_the_working_directory_is_the_users_own(tmp_path: Path) -> None:
    (tmp_path / WORKING_DIRECTORY_PROFILE).write_text("<profiles/>")
    assert large_image_environment({}, tmp_path) == {}
    assert transport_summary({}, tmp_path) == f"Fast DDS configured by {tmp_path / WORKING_DIRECTORY_PROFILE}"


def test_another_middleware_gets_no_fast_dds_profile(tmp_path: Path) -> None:
    environ = {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}
    assert large_image_environment(environ, tmp_path) == {}
    assert transport_summary(environ, tmp_path) == "middleware rmw_cyclonedds_cpp"


def test_off_gives_nothing_and_a_bad_choice_is_refused(tmp_path: Path) -> None:
    assert launch_environment("off", {}, tmp_path) == {}
    with pytest.raises(ValueError, match="fastdds_large_images must be auto or off, got 'yes'"):
        launch_environment("yes", {}, tmp_path)


def test_default_fast_dds_is_named_with_what_it_does_to_large_images_and_the_way_out(tmp_path: Path) -> None:
    summary = transport_summary({}, tmp_path)
    assert summary.startswith("Fast DDS with its default transports: an image over 512 KiB")
    assert f"{PROFILE_VARIABLE}={shipped_profile()}" in summary
