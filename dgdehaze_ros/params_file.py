"""A node parameters file read as the node reads it at start, without starting one.

`dgdehaze bag-eval --params-file` evaluates a bag offline with the settings a user's file gives their node (and,
with `--node`, must know them for the report's `hazy` row). The node's own checks decide: each value's type and
range as its descriptor (`parameters.SPECS`) declares them, an integer taken for a double, then `check_values` over
the whole set. No node is created: nothing appears on the ROS graph.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from rclpy.parameter import Parameter

from dgdehaze_ros.parameters import DOUBLE_NAMES, SPEC_BY_NAME, SPECS, NodeSettings, ParameterSpec, read_settings
from dgdehaze_ros.rcl_yaml import RclYamlError, load_documents

LOG = logging.getLogger(__name__)

ROS_PARAMETERS = frozenset({"use_sim_time"})
"""Parameters every ROS 2 node has, which a node's file may set beside its own."""


def read_params_file(path: Path, node_name: str = "dgdehaze") -> NodeSettings:
    """The settings a dgdehaze node named `node_name` (after its namespace if any: front/dgdehaze) starts with from
    `path`, a ROS 2 parameters file (the `ros__parameters` of its sections that name the node, `_given`, as the node
    takes them from --params-file), and its defaults for the rest. ValueError naming the file and the first problem:
    no such file, no parameters file, no section for the node, a value of another type or out of its range, or a
    set the node refuses (`check_values`). Names that are no parameter of the node are warned of: the node ignores
    them, and a misspelt name leaves its parameter at the default."""
    given = _given(path, node_name)
    unknown = sorted(set(given) - set(SPEC_BY_NAME) - ROS_PARAMETERS)
    if unknown:
        LOG.warning("%s: %s %s no parameter of the dgdehaze node: ignored, as the node ignores %s", path,
                    ", ".join(unknown), "is" if len(unknown) == 1 else "are", "it" if len(unknown) == 1 else "them")
    if not isinstance(given.get("use_sim_time", False), bool):  # rclpy declares it a bool on every node
        raise ValueError(f"{path}: use_sim_time must be of type bool, got {given['use_sim_time']!r}")
    values = {name: value for name, value in given.items() if name in SPEC_BY_NAME}
    for name, value in values.items():
        problem = _type_or_range_problem(SPEC_BY_NAME[name], value)
        if problem:
            raise ValueError(f"{path}: {problem}")
    values.update({name: float(value) for name, value in values.items()
                   if name in DOUBLE_NAMES and isinstance(value, int)})
    defaults = NodeSettings({spec.name: spec.default for spec in SPECS})
    try:
        return read_settings(None, changes=values, base=defaults)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _given(path: Path, node_name: str) -> dict[str, Any]:
    """{name: value} of the parameters `path` gives the node, nested names joined with dots, from each section that
    names it (rcl's wildcards: `/**` any namespaces, `/*` one name; `/**`, `/*`, `/**/NAME`, `NAME`, `/NAME`) in
    the file's order, later ones winning."""
    try:
        documents = load_documents(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"no such parameters file: {path}") from None
    except (OSError, UnicodeDecodeError, RclYamlError) as exc:
        raise ValueError(f"{path} cannot be read as a YAML file: {exc}") from None
    sections: list[tuple[str, dict[str, Any]]] = []
    strays: list[str] = []
    for document in documents:  # rcl reads a document after `---` as going on from the one before
        found, document_strays = _sections(document) if isinstance(document, dict) else ({}, [])
        sections += found.items()
        strays += document_strays
    if not sections:
        raise ValueError(f"{path} is no ROS 2 parameters file: it has no `NODE: ros__parameters:` section "
                         "(config/dgdehaze.yaml shows the layout)")
    if strays:
        raise ValueError(f"{path}: {strays[0]} is no node's section (`NODE: ros__parameters:` and a mapping of "
                         "parameters), which ROS 2's parameters file parser refuses: a node does not start with "
                         "this file")
    applying = [parameters for key, parameters in sections if _names_node(key, node_name)]
    if not applying:
        raise ValueError(f"{path} has no parameters for a node /{node_name}: its sections are "
                         f"{', '.join(dict.fromkeys(key for key, _ in sections))} (use /** for any node, or give "
                         "the node's name)")
    elsewhere = list(dict.fromkeys(key for key, _ in sections if key.rstrip("/").endswith(f"/{node_name}")
                                   and not _names_node(key, node_name)))
    if elsewhere:  # a robot's file with a section per camera's namespace (docs/ROS.md, "Several cameras")
        name = node_name.rsplit("/", 1)[-1]
        LOG.warning("%s: %s %s for a node %s in another namespace than bag-eval's /%s, and not read "
                    "(--node-name NAMESPACE/%s reads a namespace's section)", path, ", ".join(elsewhere),
                    "is" if len(elsewhere) == 1 else "are", name, node_name, name)
    given: dict[str, Any] = {}
    for parameters in applying:
        given.update(_flattened(parameters))
    for name, value in given.items():
        try:
            Parameter.Type.from_parameter_value(value)
        except TypeError:
            raise ValueError(f"{path}: {name} must be one value or a list of values of one type, got "
                             f"{value!r}") from None
    return given


def _sections(document: dict[Any, Any], namespace: str = "") -> tuple[dict[str, dict[str, Any]], list[str]]:
    """({node name: its ros__parameters} of each section of `document`, a namespace's nested sections named
    NAMESPACE/NODE; the names of the entries that are neither, for which rcl refuses the file)."""
    sections: dict[str, dict[str, Any]] = {}
    strays: list[str] = []
    for key, value in document.items():
        name = f"{namespace}/{str(key).strip('/')}" if namespace else str(key)
        if not isinstance(value, dict) or not isinstance(value.get("ros__parameters", {}), dict):
            strays.append(name)
            continue
        if "ros__parameters" in value:
            sections[name] = value["ros__parameters"]
        nested, nested_strays = _sections({k: v for k, v in value.items() if k != "ros__parameters"}, name)
        sections.update(nested)
        strays += nested_strays
    return sections, strays


def _names_node(key: str, node_name: str) -> bool:
    """Whether the section `key` applies to the node `node_name` (after its namespace if any), as rcl matches it:
    `/**` any namespaces (none too), `/*` one name."""
    pattern = re.escape("/" + key.lstrip("/")).replace(re.escape("/**"), "(/[^/]+)*").replace(re.escape("/*"),
                                                                                               "/[^/]+")
    return re.fullmatch(pattern, "/" + node_name.lstrip("/")) is not None


def _flattened(parameters: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in parameters.items():
        if isinstance(value, dict):
            flat.update(_flattened(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _type_or_range_problem(spec: ParameterSpec, value: Any) -> str | None:
    """What rclpy's declaration refuses in `value` for `spec`: another type (an integer for a double aside), a
    number outside the descriptor's range or off its step."""
    if spec.dynamic_typing:
        return None
    wanted = Parameter.Type.from_parameter_value(spec.default)
    got = Parameter.Type.from_parameter_value(value)
    if got != wanted and not (spec.name in DOUBLE_NAMES and got == Parameter.Type.INTEGER):
        return f"{spec.name} must be of type {wanted.name.lower()}, got {value!r}"
    if spec.int_range is not None:
        low, high, step = spec.int_range
        if not low <= value <= high or ((value - low) % step and value != high):
            return f"{spec.name} must be in {low}..{high}{f' in steps of {step}' if step > 1 else ''}, got {value}"
    if spec.float_range is not None and not spec.float_range[0] <= value <= spec.float_range[1]:
        return f"{spec.name} must be in {spec.float_range[0]:g}..{spec.float_range[1]:g}, got {value}"
    return None
