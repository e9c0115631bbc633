"""Rewrites of an exported dgdehaze graph that keep its outputs and make ONNX Runtime's CPU provider faster.

ONNX Runtime's NCHWc layout transformer (graph optimisation level "all" on x86) runs convolutions on channel
blocks of 8 or 16 and carries the blocked layout on through the ops that follow. The transmission and depth heads
are one-channel convolutions followed by a 4x bilinear upsample to full resolution and a sigmoid / softplus; in the
blocked layout those full-resolution ops run on 16 channels, 15 of them padding, and a reorder follows. A no-op
`Reshape` (shape [0, 0, 0, 0]: every dimension kept) between such a head and its `Resize` ends the blocked layout
at the head's small output, so the full-resolution work runs on one channel, with outputs equal to 1e-7 (what it
saves: docs/BENCHMARKS.md); other runtimes see a reshape that does nothing.

The depth head's softplus is exported as torch computes it, `Where(x > 20, x, Softplus(x))`, at full resolution;
ONNX Runtime's CPU Softplus is a scalar loop, and the threshold costs two more full-resolution passes. It becomes
max(x, 0) - log(sigmoid(|x|)), the same function (-log sigmoid(|x|) = log(1 + exp(-|x|))) in a form that cannot
overflow for any x, so the threshold goes, of ops that ONNX Runtime vectorises and without a constant, so that it
holds in fp16 graphs too, equal to 1e-6.

The MLPs' exact GELU is exported as x * (0.5 * (1 + erf(x / sqrt 2))). ONNX Runtime fuses an erf GELU into one
kernel only when the products come as (x * (1 + erf(...))) * 0.5 or (x * 0.5) * (1 + erf(...)); the export's order
leaves five element-wise passes over every token of each MLP. Swapping the two products' operands gives the first
form: the same ops and constants (no contrib op, so other runtimes read the same standard graph), the same value
to rounding.

`rewrite_for_runtimes(proto)` applies every rewrite in place and returns how many places it changed. Bump
`GRAPH_REWRITES_VERSION` when a rewrite changes, so that cached exports are rebuilt.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

GRAPH_REWRITES_VERSION = 3
KEEP_DIMS = "dgdehaze_keep_dims"


def _single_channel_conv_outputs(graph: onnx.GraphProto) -> set[str]:
    weights = {init.name: init for init in graph.initializer}
    return {node.output[0] for node in graph.node
            if node.op_type == "Conv" and node.input[1] in weights and weights[node.input[1]].dims[0] == 1}


def planar_single_channel_resizes(graph: onnx.GraphProto) -> int:
    """Put a no-op Reshape between each one-output-channel Conv and the Resize that consumes it."""
    single = _single_channel_conv_outputs(graph)
    targets = [node for node in graph.node if node.op_type == "Resize" and node.input[0] in single]
    if not targets:
        return 0
    if all(init.name != KEEP_DIMS for init in graph.initializer):
        graph.initializer.append(numpy_helper.from_array(np.zeros(4, dtype=np.int64), KEEP_DIMS))
    for resize in targets:
        planar = f"{resize.input[0]}_planar"
        barrier = helper.make_node("Reshape", [resize.input[0], KEEP_DIMS], [planar], name=f"{resize.name}_planar")
        graph.node.insert(list(graph.node).index(resize), barrier)
        resize.input[0] = planar
    return len(targets)


def _thresholded(graph: onnx.GraphProto, softplus: onnx.NodeProto,
                 producers: dict[str, onnx.NodeProto]) -> onnx.NodeProto | None:
    """The `Where(x > c, x, softplus(x))` around `softplus`, when that is its only consumer and nothing else reads
    the condition (`producers`: each node by its outputs)."""
    readers = [node for node in graph.node if softplus.output[0] in node.input]
    graph_outputs = {output.name for output in graph.output}
    if len(readers) != 1 or softplus.output[0] in graph_outputs:
        return None
    where = readers[0]
    condition = producers.get(where.input[0])
    if (where.op_type != "Where" or list(where.input[1:]) != [softplus.input[0], softplus.output[0]]
            or condition is None or condition.op_type != "Greater" or condition.input[0] != softplus.input[0]
            or sum(where.input[0] in node.input for node in graph.node) != 1):
        return None
    return where


def _drop_unread_initializers(graph: onnx.GraphProto, names: list[str]) -> None:
    for init in [init for init in graph.initializer if init.name in names]:
        if not any(init.name in node.input for node in graph.node):
            graph.initializer.remove(init)


def stable_softplus(graph: onnx.GraphProto) -> int:
    """Replace each Softplus by max(x, 0) - log(sigmoid(|x|)), and drop torch's threshold around it."""
    targets = [node for node in graph.node if node.op_type == "Softplus"]
    producers = {output: node for node in graph.node for output in node.output}
    for softplus in targets:
        x, name = softplus.input[0], softplus.name or softplus.output[0]
        output = softplus.output[0]
        where = _thresholded(graph, softplus, producers)
        if where is not None:
            output = where.output[0]
            condition = producers[where.input[0]]
            graph.node.remove(condition)
            graph.node.remove(where)
            _drop_unread_initializers(graph, condition.input[1:])
        nodes, previous = [], x
        for op in ("Abs", "Sigmoid", "Log"):
            nodes.append(helper.make_node(op, [previous], [f"{name}_stable_{op.lower()}"], name=f"{name}_stable_{op}"))
            previous = nodes[-1].output[0]
        nodes.append(helper.make_node("Relu", [x], [f"{name}_stable_relu"], name=f"{name}_stable_relu"))
        nodes.append(helper.make_node("Sub", [f"{name}_stable_relu", previous], [output], name=f"{name}_stable"))
        position = list(graph.node).index(softplus)
        graph.node.remove(softplus)
        for offset, node in enumerate(nodes):
            graph.node.insert(position + offset, node)
    return len(targets)


def _constant(graph: onnx.GraphProto, name: str) -> float | None:
    """The value of a one-element initializer `name`, else None."""
    for init in graph.initializer:
        if init.name == name:
            value = numpy_helper.to_array(init)
            return float(value.ravel()[0]) if value.size == 1 else None
    return None


def _other(node: onnx.NodeProto, known: str) -> str | None:
    """The input of a two-input node that is not `known`."""
    rest = [name for name in node.input if name != known]
    return rest[0] if len(node.input) == 2 and len(rest) == 1 else None


def _sole_reader(readers: dict[str, list[onnx.NodeProto]], name: str, op_type: str) -> onnx.NodeProto | None:
    """The one node reading `name`, when there is exactly one and it is an `op_type`."""
    found = readers.get(name, [])
    return found[0] if len(found) == 1 and found[0].op_type == op_type else None


def _gelu_products(graph: onnx.GraphProto, erf: onnx.NodeProto, root: str,
                   readers: dict[str, list[onnx.NodeProto]]) -> tuple[onnx.NodeProto, ...] | None:
    """(the Add, the Mul by 0.5, the Mul by `root`) of erf -> Add(1) -> Mul(0.5) -> Mul(root), each read once;
    else None."""
    add = _sole_reader(readers, erf.output[0], "Add")
    if add is None or _constant(graph, _other(add, erf.output[0]) or "") != 1.0:
        return None
    half = _sole_reader(readers, add.output[0], "Mul")
    if half is None or _constant(graph, _other(half, add.output[0]) or "") != 0.5:
        return None
    outer = _sole_reader(readers, half.output[0], "Mul")
    if outer is None or _other(outer, half.output[0]) != root:
        return None
    return add, half, outer


def fusable_gelu(graph: onnx.GraphProto) -> int:
    """Reorder x * (0.5 * (1 + erf(x / sqrt 2))) into (x * (1 + erf(x / sqrt 2))) * 0.5, ONNX Runtime's fusable
    form; the number of GELUs reordered."""
    producers = {output: node for node in graph.node for output in node.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    for output in graph.output:  # a graph output is read by the caller: never the sole reader's to change
        readers.setdefault(output.name, []).append(onnx.NodeProto(op_type="GraphOutput"))
    changed = 0
    for erf in [node for node in graph.node if node.op_type == "Erf"]:
        divide = producers.get(erf.input[0])
        if divide is None or divide.op_type != "Div" or not np.isclose(_constant(graph, divide.input[1]) or 0.0,
                                                                       np.sqrt(2.0), rtol=1e-3):
            continue
        products = _gelu_products(graph, erf, divide.input[0], readers)
        if products is None:
            continue
        add, half, outer = products
        half_constant = _other(half, add.output[0])
        half.input[:] = [divide.input[0], add.output[0]]
        outer.input[:] = [half.output[0], half_constant]
        changed += 1
    return changed


def rewrite_for_runtimes(proto: onnx.ModelProto) -> int:
    """Apply every rewrite to `proto` in place; the number of places changed."""
    return planar_single_channel_resizes(proto.graph) + stable_softplus(proto.graph) + fusable_gelu(proto.graph)
