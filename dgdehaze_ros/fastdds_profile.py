"""The shipped Fast DDS profile for large images between processes on one machine, and when to give it.

Fast DDS sends to a process on the same machine through the sender's shared-memory segment, 512 KiB by default. A
frame larger than that (a 640x360 bgr8 frame; the node's 32FC1 depth, 1.2 MB at 640x480) crosses as UDP fragments
over loopback, which overflow the receive buffer in bursts: a best_effort reader loses the frame, a reliable one
waits for the missing fragments to be sent again, which takes up to seconds (docs/ROS.md, "Input QoS").
config/fastdds_large_images.xml gives a participant a segment that holds frames up to 4K.

The node gives its own process the profile before its middleware starts (`node_environment`), whether the launch
file or `ros2 run` started it. `large_image_environment` is what a process is started with so that it uses that
profile: nothing where the environment already configures Fast DDS (a profile file, its built-in transports, a
default profile file in the working directory) or where the middleware is not Fast DDS, since those are the user's
choice; nothing either where /dev/shm has no room for the segment (a container's 64 MB default), where Fast DDS
would log errors and fall back to UDP alone.
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Mapping

PROFILE_NAME = "fastdds_large_images.xml"
FAST_DDS_2_VARIABLE = "FASTRTPS_DEFAULT_PROFILES_FILE"
"""The variable naming a profile file to Fast DDS 2 (Humble, Jazzy); Fast DDS 3's rmw still reads it, with a
deprecation warning."""
FAST_DDS_3_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"
"""The variable naming a profile file to Fast DDS 3 (Kilted and later)."""
FAST_DDS_2_DISTROS = ("foxy", "galactic", "humble", "iron", "jazzy")
FASTDDS_SETTINGS = (FAST_DDS_2_VARIABLE, FAST_DDS_3_VARIABLE, "FASTDDS_BUILTIN_TRANSPORTS")
"""Environment variables by which a user configures Fast DDS's transports."""
WORKING_DIRECTORY_PROFILES = ("DEFAULT_FASTRTPS_PROFILES.xml", "DEFAULT_FASTDDS_PROFILES.xml")
"""Profile files Fast DDS 2 and 3 load from the working directory when no variable names one."""
CHOICE_VARIABLE = "DGDEHAZE_FASTDDS_LARGE_IMAGES"
"""`auto` (the default) or `off`: whether dgdehaze_node runs with the shipped profile (`node_environment`). The launch
file sets it from its `fastdds_large_images` argument; with `ros2 run`, `off` is given by exporting it."""
SHARED_MEMORY = Path("/dev/shm")
SHARED_MEMORY_MARGIN = 2
"""/dev/shm must have room for this many of the profile's segments: the node's, and another process's."""
_NAMESPACE = "{http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles}"


def shipped_profile() -> Path:
    """config/fastdds_large_images.xml of the source tree, else of the installed share/dgdehaze."""
    local = Path(__file__).resolve().parents[1] / "config" / PROFILE_NAME
    if local.is_file():
        return local
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return local
    try:
        return Path(get_package_share_directory("dgdehaze")) / "config" / PROFILE_NAME
    except PackageNotFoundError:
        return local


def segment_bytes(profile: Path) -> int:
    """The largest shared-memory segment `profile` gives a participant, in bytes."""
    root = ElementTree.parse(profile).getroot()
    sizes = [int(d.findtext(f"{_NAMESPACE}segment_size") or 0) for d in root.iter(f"{_NAMESPACE}transport_descriptor")
             if d.findtext(f"{_NAMESPACE}type") == "SHM"]
    return max(sizes, default=0)


def uses_fastdds(environ: Mapping[str, str]) -> bool:
    """Whether a ROS process started with `environ` runs on Fast DDS (ROS 2's default middleware)."""
    return environ.get("RMW_IMPLEMENTATION", "").strip() in ("", "rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")


def profile_variables(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The variables that name a profile file to the Fast DDS a process started with `environ` loads: by
    ROS_DISTRO, else by the ros-fastdds wheel of a pip-installed ROS, else both."""
    distro = environ.get("ROS_DISTRO", "").strip().lower()
    if distro:
        return (FAST_DDS_2_VARIABLE,) if distro in FAST_DDS_2_DISTROS else (FAST_DDS_3_VARIABLE,)
    try:
        major = importlib.metadata.version("ros-fastdds").split(".")[0]
    except importlib.metadata.PackageNotFoundError:
        return FAST_DDS_2_VARIABLE, FAST_DDS_3_VARIABLE
    return (FAST_DDS_2_VARIABLE,) if major == "2" else (FAST_DDS_3_VARIABLE,)


def configured_fastdds(environ: Mapping[str, str], cwd: Path | None = None) -> str | None:
    """How `environ` (and a profile file in `cwd`, default the working directory) already configures Fast DDS's
    transports, e.g. "FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA"; None where it is left at its defaults."""
    for name in FASTDDS_SETTINGS:
        if environ.get(name, "").strip():
            return f"{name}={environ[name].strip()}"
    for name in WORKING_DIRECTORY_PROFILES:
        local = (cwd or Path.cwd()) / name
        if local.is_file():
            return str(local)
    return None


def users_own_transport(environ: Mapping[str, str], cwd: Path | None = None) -> str | None:
    """The middleware setting of the user's own that a process started with `environ` keeps ("middleware
    rmw_cyclonedds_cpp", "Fast DDS configured by ..."), or None where it would run Fast DDS at its defaults."""
    if not uses_fastdds(environ):
        return f"middleware {environ['RMW_IMPLEMENTATION'].strip()}"
    configured = configured_fastdds(environ, cwd)
    return f"Fast DDS configured by {configured}" if configured is not None else None


def shared_memory_shortfall(profile: Path, shared_memory: Path = SHARED_MEMORY) -> str | None:
    """Why `shared_memory` (/dev/shm) cannot hold SHARED_MEMORY_MARGIN of `profile`'s segments, or None if it can.
    A system without it (not Linux), or one that will not say how much is free, has no shortfall to report: Fast DDS
    places its segments elsewhere there, and without room it falls back to UDP."""
    try:
        free = shutil.disk_usage(shared_memory).free
    except OSError:
        return None
    return room_problem(free, segment_bytes(profile), shared_memory)


def room_problem(free: int, segment: int, shared_memory: Path = SHARED_MEMORY) -> str | None:
    """Why `free` bytes in `shared_memory` are too few for SHARED_MEMORY_MARGIN segments of `segment` bytes."""
    needed = SHARED_MEMORY_MARGIN * segment
    if free >= needed:
        return None
    return (f"{shared_memory} has {free / 2**20:.0f} MiB free, under the {needed / 2**20:.0f} MiB the large-image "
            "profile's segments need (a container's default is 64 MB: give it --shm-size=256m or --ipc=host)")


def large_image_environment(environ: Mapping[str, str] | None = None, cwd: Path | None = None,
                            shared_memory: Path = SHARED_MEMORY) -> dict[str, str]:
    """The variables to add to `environ` (default os.environ) so that a process started with it sends large images
    to processes on this machine whole: the shipped profile under `profile_variables`, or {} where the middleware
    is not Fast DDS, the environment configures Fast DDS already, the profile is not installed or /dev/shm has no
    room for it."""
    environ = os.environ if environ is None else environ
    profile = shipped_profile()
    if (users_own_transport(environ, cwd) is not None or not profile.is_file()
            or shared_memory_shortfall(profile, shared_memory) is not None):
        return {}
    return {name: str(profile) for name in profile_variables(environ)}


def launch_environment(choice: str, environ: Mapping[str, str] | None = None, cwd: Path | None = None,
                       shared_memory: Path = SHARED_MEMORY) -> dict[str, str]:
    """The variables the launch file adds to the node's environment for its `fastdds_large_images` argument: the
    choice under CHOICE_VARIABLE, and for `auto` `large_image_environment`. Raises ValueError for a choice other than
    auto or off."""
    choice = choice.strip().lower()
    if choice not in ("auto", "off"):
        raise ValueError(f"fastdds_large_images must be auto or off, got {choice!r}")
    return {CHOICE_VARIABLE: choice, **(large_image_environment(environ, cwd, shared_memory) if choice == "auto"
                                        else {})}


def node_environment(environ: Mapping[str, str] | None = None, cwd: Path | None = None,
                     shared_memory: Path = SHARED_MEMORY) -> dict[str, str]:
    """The variables dgdehaze_node adds to its own environment (default os.environ) before its middleware starts, so
    that `ros2 run` gets what the launch file gives: `launch_environment` of the choice under CHOICE_VARIABLE, `auto`
    where it is unset. Raises ValueError for a choice other than auto or off."""
    environ = os.environ if environ is None else environ
    return launch_environment(environ.get(CHOICE_VARIABLE, "auto"), environ, cwd, shared_memory)


def transport_summary(environ: Mapping[str, str] | None = None, cwd: Path | None = None,
                      shared_memory: Path = SHARED_MEMORY) -> str:
    """One line saying how a process started with `environ` sends large images to others on this machine."""
    environ = os.environ if environ is None else environ
    own = users_own_transport(environ, cwd)
    if own is not None:
        return own
    profile = shipped_profile()
    shortfall = shared_memory_shortfall(profile, shared_memory) if profile.is_file() else None
    return ("Fast DDS with its default transports: an image over 512 KiB (the 32FC1 depth from 640x480 up) reaches "
            "another process on this machine as UDP fragments, late or not at all; "
            + (shortfall if shortfall is not None else
               f"{profile_variables(environ)[-1]}={profile} avoids that (docs/ROS.md, Input QoS)"))
