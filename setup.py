"""ament_python package `dgdehaze`; also installs with `pip install -e .` outside a ROS workspace."""
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "dgdehaze"
ROOT = Path(__file__).parent


def share(folder: str, *patterns: str) -> tuple[str, list[str]]:
    files = sorted(str(p) for pattern in patterns for p in (ROOT / folder).glob(pattern) if p.is_file())
    return (f"share/{PACKAGE}/{folder}", [str(Path(f).relative_to(ROOT)) for f in files])


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["dgdehaze_core", "dgdehaze_core.*", "dgdehaze_ros", "dgdehaze_ros.*"]),
    package_data={"dgdehaze_core": ["weights/*.pt", "weights/*.onnx", "weights/*.md", "configs/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        (f"share/{PACKAGE}", ["package.xml"]),
        share("launch", "*.launch.py"),
        share("config", "*.yaml", "*.xml"),
    ],
    install_requires=["setuptools"],
    extras_require={"fleet": ["ray>=2.9"]},  # several bags at once on Ray (requirements-fleet.txt pins it)
    zip_safe=False,
    maintainer="dgdehaze maintainers",
    maintainer_email="maintainers@dgdehaze.org",
    description="Depth-guided self-supervised dehazing for ROS 2 robot cameras",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "dgdehaze = dgdehaze_core.cli:main",
            "dgdehaze_node = dgdehaze_ros.executable:main",
        ],
        "dgdehaze.ros_modes": [  # found by dgdehaze_core/commands/ros_modes.py: the core imports no ROS code
            "bag_replay = dgdehaze_ros.tools.bag_replay:replay_bag",
            "node_benchmark = dgdehaze_ros.tools.node_benchmark:run_node_benchmark",
            "params_file = dgdehaze_ros.params_file:read_params_file",
        ],
    },
)
