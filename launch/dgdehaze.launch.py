"""Launch dgdehaze_node, the dehazing lifecycle node, with its parameters from a YAML file.

    ros2 launch dgdehaze dgdehaze.launch.py image:=/camera/image_raw camera_info:=/camera/camera_info
    ros2 launch dgdehaze dgdehaze.launch.py namespace:=front image:=/front/image_raw/compressed \
        input_transport:=compressed model:=lite backend:=tensorrt params_file:=/path/to/my_dgdehaze.yaml

All tuning lives in `params_file` (default: share/dgdehaze/config/dgdehaze.yaml). The launch arguments `model`,
`backend`, `image_reliability`, `input_transport` and `autostart` override the file when they are not empty.
`use_sim_time:=true` makes the node follow /clock (a bag played with `ros2 bag play --clock`): the stamps of its
own messages and the latency on /diagnostics are then measured against the bag's time; left empty, a
`use_sim_time` in params_file applies (as in Nav2's files), else false.
The node's process gets the shipped Fast DDS profile config/fastdds_large_images.xml (a shared-memory segment that
holds frames up to 4K) unless the environment configures Fast DDS itself, runs another middleware or has too little
/dev/shm for it (a container's default), so that its large images (the 32FC1 depth) reach rviz, rosbag2 and other
processes on this machine whole and without the seconds a reliable reader waits for lost UDP fragments;
`fastdds_large_images:=off` leaves its middleware's default (the node makes the same choice itself under `ros2
run`).
With autostart:=false the node waits unconfigured for a lifecycle manager (e.g. nav2_lifecycle_manager, with
`bond_timeout: 0.0`: the node keeps no bond): configure loads the models and builds engines, activate subscribes
and publishes.
Outputs are under the node: /<namespace>/<node_name>/{image_dehazed,depth,depth_relative,visibility,camera_info,
detections,haze_density,label_info,debug_image}, and image_transport's forms of its images while subscribed:
{image_dehazed,debug_image}/compressed, {depth,depth_relative}/compressedDepth (docs/ROS.md).
"""
from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from dgdehaze_ros.fastdds_profile import launch_environment

PACKAGE = "dgdehaze"

OVERRIDES = {
    "model": "dehazing method: dcp, lite, or base with a weights file",
    "backend": "network backend: auto, torch, onnxruntime or tensorrt",
    "image_reliability": "input QoS reliability: reliable, best_effort or system_default",
    "input_transport": "raw (sensor_msgs/Image on `image`) or compressed (CompressedImage on `image`/compressed)",
    "autostart": "true: configure and activate at start; false: wait for a lifecycle manager",
}
"""Launch arguments that override the parameter of the same name when given (empty: keep params_file's value)."""


def _parameter_overrides(context: LaunchContext) -> dict[str, str | bool]:
    overrides: dict[str, str | bool] = {}
    for name in OVERRIDES:
        value = LaunchConfiguration(name).perform(context).strip()
        if name == "autostart" and value:
            if value.lower() not in ("true", "false"):
                raise ValueError(f"autostart must be true or false, got {value!r}")
            overrides[name] = value.lower() == "true"
        elif value:
            overrides[name] = value
    return overrides


def _use_sim_time(context: LaunchContext) -> dict[str, bool]:
    """{"use_sim_time": ...} when the argument is given; empty (params_file's value, else false) when it is not."""
    value = LaunchConfiguration("use_sim_time").perform(context).strip().lower()
    if not value:
        return {}
    if value not in ("true", "false"):
        raise ValueError(f"use_sim_time must be true or false, got {value!r}")
    return {"use_sim_time": value == "true"}


def _launch_setup(context: LaunchContext) -> list[LifecycleNode]:
    image = LaunchConfiguration("image").perform(context).strip()
    image_topic = image.removesuffix("/compressed")  # image_transport naming: <topic> and <topic>/compressed
    camera_info = LaunchConfiguration("camera_info").perform(context).strip()  # empty: the node reads the one
    node = LifecycleNode(
        package=PACKAGE,
        executable="dgdehaze_node",
        name=LaunchConfiguration("node_name"),
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[LaunchConfiguration("params_file"), _parameter_overrides(context), _use_sim_time(context)],
        remappings=[
            ("image", image_topic),
            ("image/compressed", f"{image_topic}/compressed"),
            *([("camera_info", camera_info)] if camera_info else []),
        ],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
        additional_env=launch_environment(LaunchConfiguration("fastdds_large_images").perform(context)),
    )
    return [node]


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "dgdehaze.yaml")
    arguments = [
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its outputs"),
        DeclareLaunchArgument("node_name", default_value="dgdehaze", description="name of the node"),
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="input image topic; with input_transport:=compressed the node "
                                          "subscribes to <image>/compressed (either name may be given)"),
        DeclareLaunchArgument("camera_info", default_value="",
                              description="input sensor_msgs/CameraInfo topic (empty: camera_info beside the "
                                          "image topic, as image_transport's CameraSubscriber reads it)"),
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="YAML file with the node's parameters (under `/**: ros__parameters:`)"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error or fatal"),
        DeclareLaunchArgument("fastdds_large_images", default_value="auto",
                              description="auto: the node runs with config/fastdds_large_images.xml unless the "
                                          "environment configures Fast DDS or another middleware, or /dev/shm "
                                          "has too little room free for it; off: the middleware's defaults"),
        DeclareLaunchArgument("use_sim_time", default_value="",
                              description="true: follow /clock (ros2 bag play --clock) for stamps and latency "
                                          "(empty: from params_file, else false)"),
    ]
    arguments += [DeclareLaunchArgument(name, default_value="", description=f"{text} (empty: from params_file)")
                  for name, text in OVERRIDES.items()]
    return LaunchDescription([*arguments, OpaqueFunction(function=_launch_setup)])
