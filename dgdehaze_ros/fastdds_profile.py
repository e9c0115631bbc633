"""The shipped Fast DDS profile for large images between processes on one machine, and when to give it.

Fast DDS sends to a process on the same machine through the sender's shared-memory segment, 512 KiB by default. A
frame larger than that (a 640x360 bgr8 frame; the node's 32FC1 depth, 1.2 MB at 640x480) crosses as UDP fragments
over loopback, which overflow the receive buffer in bursts: a best_effort reader loses the frame, a reliable one
waits for the missing fragments to be sent again, which takes up to seconds (docs/ROS.md, "Input QoS").
config/fastdds_large_images.xml gives a participant a segment that holds frames up to 4K.

`large_image_environment` is what a process is started with so that it uses that profile: nothing where the
environment already configures Fast DDS (a profile file, its built-in transports, a DEFAULT_FASTRTPS_PROFILES.xml
in the working directory) or where the middleware is not Fast DDS, since those are the user's choice.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

PROFILE_NAME = "fastdds_large_images.xml"
PROFILE_VARIABLE = "FASTRTPS_DEFAULT_PROFILES_FILE"
"""The variable that names a profile file to every Fast DDS release ROS 2 uses (Humble's reads only this one)."""
FASTDDS_SETTINGS = (PROFILE_VARIABLE, "FASTDDS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS")
"""Environment variables by which a user configures Fast DDS's transports."""
WORKING_DIRECTORY_PROFILE = "DEFAULT_FASTRTPS_PROFILES.xml"
"""A profile file Fast DDS loads from the working directory when no variable names one."""


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


def uses_fastdds(environ: Mapping[str, str]) -> bool:
    """Whether a ROS process started with `environ` runs on Fast DDS (ROS 2's default middleware)."""
    return environ.get("RMW_IMPLEMENTATION", "").strip() in ("", "rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")


def configured_fastdds(environ: Mapping[str, str], cwd: Path | None = None) -> str | None:
    """How `environ` (and a profile file in `cwd`, default the working directory) already configures Fast DDS's
    transports, e.g. "FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA"; None where it is left at its defaults."""
    for name in FASTDDS_SETTINGS:
        if environ.get(name, "").strip():
            return f"{name}={environ[name].strip()}"
    local = (cwd or Path.cwd()) / WORKING_DIRECTORY_PROFILE
    return str(local) if local.is_file() else None


def large_image_environment(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> dict[str, str]:
    """The variables to add to `environ` (default os.environ) so that a process started with it sends large images
    to processes on this machine whole: {FASTRTPS_DEFAULT_PROFILES_FILE: the shipped profile}, or {} where the
    middleware is not Fast DDS, the environment configures Fast DDS already, or the profile is not installed."""
    environ = os.environ if environ is None else environ
    profile = shipped_profile()
    if not uses_fastdds(environ) or configured_fastdds(environ, cwd) is not None or not profile.is_file():
        return {}
    return {PROFILE_VARIABLE: str(profile)}


def launch_environment(choice: str, environ: Mapping[str, str] | None = None,
                       cwd: Path | None = None) -> dict[str, str]:
    """The variables the launch file adds to the node's environment for its `fastdds_large_images` argument: `auto`
    is `large_image_environment`, `off` nothing. Raises ValueError for any other value."""
    choice = choice.strip().lower()
    if choice not in ("auto", "off"):
        raise ValueError(f"fastdds_large_images must be auto or off, got {choice!r}")
    return large_image_environment(environ, cwd) if choice == "auto" else {}


def transport_summary(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> str:
    """One line saying how a process started with `environ` sends large images to others on this machine."""
    environ = os.environ if environ is None else environ
    if not uses_fastdds(environ):
        return f"middleware {environ['RMW_IMPLEMENTATION'].strip()}"
    configured = configured_fastdds(environ, cwd)
    if configured is None:
        return ("Fast DDS with its default transports: an image over 512 KiB (the 32FC1 depth from 640x480 up) "
                f"reaches another process on this machine as UDP fragments, late or not at all; {PROFILE_VARIABLE}="
                f"{shipped_profile()} avoids that (docs/ROS.md, Input QoS)")
    return f"Fast DDS configured by {configured}"
