"""Rewrites of an exported dgdehaze graph that keep its outputs and make ONNX Runtime's CPU provider faster.

ONNX Runtime's NCHWc layout transformer (graph optimisation level "all" on x86) runs convolutions on channel
blocks of 8 or 16 and carries the blocked layout on through the ops that follow. The transmission and depth heads
are one-channel convolutions followed by a 4x bilinear upsample to full resolution and a sigmoid / softplus; in the
blocked layout those full-resolution ops run on 16 channels, 15 of them padding, and a reorder follows. A no-op
`Reshape` (shape [0, 0, 0, 0]: every dimension kept) between such a head and its `Resize` ends the blocked layout
at the head's small output, so the full-resolution work runs on one channel. On lite at 640x480 this took 14% off
ONNX Runtime's time with outputs equal to 1e-7 (docs/BENCHMARKS.md); other runtimes see a reshape that does nothing.

`rewrite_for_runtimes(proto)` applies every rewrite in place and returns how many places it changed. Bump
`GRAPH_REWRITES_VERSION` when a rewrite changes, so that cached exports are rebuilt.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

GRAPH_REWRITES_VERSION = 1
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


def rewrite_for_runtimes(proto: onnx.ModelProto) -> int:
    """Apply every rewrite to `proto` in place; the number of places changed."""
    return planar_single_channel_resizes(proto.graph)
