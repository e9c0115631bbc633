"""The export's graph rewrites change where ONNX Runtime's layouts end, never what the graph computes."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from dgdehaze_core.inference.export.graph_rewrites import KEEP_DIMS, rewrite_for_runtimes


def head_graph() -> onnx.ModelProto:
    """x (1,8,H,W) -> 3x3 conv to 1 channel -> 4x bilinear -> sigmoid, and a 4-channel conv -> 4x bilinear."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(1, 8, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(size=(4, 8, 1, 1)).astype(np.float32), "w4"),
             numpy_helper.from_array(np.array([1, 1, 4, 4], dtype=np.float32), "scales")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["one"], pads=[1, 1, 1, 1], name="head"),
             helper.make_node("Resize", ["one", "", "scales"], ["up1"], mode="linear", name="up_head"),
             helper.make_node("Sigmoid", ["up1"], ["t"]),
             helper.make_node("Conv", ["x", "w4"], ["four"], name="wide"),
             helper.make_node("Resize", ["four", "", "scales"], ["u4"], mode="linear", name="up_wide")]
    graph = helper.make_graph(nodes, "heads", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, "h", "w"])],
                              [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 1, "H", "W"]),
                               helper.make_tensor_value_info("u4", TensorProto.FLOAT, [1, 4, "H", "W"])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def run(proto: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def test_single_channel_heads_get_a_no_op_reshape_and_outputs_stay_equal() -> None:
    original = head_graph()
    rewritten = head_graph()
    assert rewrite_for_runtimes(rewritten) == 1, "only the one-channel head's Resize"
    onnx.checker.check_model(rewritten)
    resizes = {n.name: n for n in rewritten.graph.node if n.op_type == "Resize"}
    producers = {o: n for n in rewritten.graph.node for o in n.output}
    barrier = producers[resizes["up_head"].input[0]]
    assert barrier.op_type == "Reshape" and barrier.input == ["one", KEEP_DIMS]
    assert producers[resizes["up_wide"].input[0]].name == "wide"
    x = np.random.default_rng(1).random((1, 8, 30, 40), dtype=np.float32)
    for before, after in zip(run(original, x), run(rewritten, x)):
        assert before.shape == after.shape
        np.testing.assert_allclose(after, before, atol=1e-6)  # blocked and planar kernels round differently
    assert rewrite_for_runtimes(head_graph()) == 1 and rewrite_for_runtimes(rewritten) == 0, "idempotent"


def softplus_graph() -> onnx.ModelProto:
    """torch's thresholded softplus of x plus a floor, and a bare Softplus read as an output."""
    inits = [numpy_helper.from_array(np.array(20.0, np.float32), "threshold"),
             numpy_helper.from_array(np.array(0.1, np.float32), "floor")]
    nodes = [helper.make_node("Softplus", ["x"], ["sp"], name="sp"),
             helper.make_node("Greater", ["x", "threshold"], ["above"]),
             helper.make_node("Where", ["above", "x", "sp"], ["thresholded"]),
             helper.make_node("Add", ["thresholded", "floor"], ["depth"]),
             helper.make_node("Softplus", ["x"], ["bare"], name="bare")]
    value = helper.make_tensor_value_info
    graph = helper.make_graph(nodes, "softplus", [value("x", TensorProto.FLOAT, [1, 1, "h", "w"])],
                              [value("depth", TensorProto.FLOAT, [1, 1, "h", "w"]),
                               value("bare", TensorProto.FLOAT, [1, 1, "h", "w"])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_softplus_becomes_its_overflow_free_form_and_the_threshold_goes() -> None:
    rewritten = softplus_graph()
    assert rewrite_for_runtimes(rewritten) == 2
    onnx.checker.check_model(rewritten)
    ops = [node.op_type for node in rewritten.graph.node]
    assert "Softplus" not in ops and "Where" not in ops and "Greater" not in ops
    assert "threshold" not in {init.name for init in rewritten.graph.initializer}, "nothing reads it any more"
    x = np.linspace(-60.0, 90.0, 3000, dtype=np.float32).reshape(1, 1, 30, 100)
    for before, after in zip(run(softplus_graph(), x), run(rewritten, x)):
        assert np.isfinite(after).all()
        np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6)
    assert rewrite_for_runtimes(rewritten) == 0, "idempotent"


def gelu_graph(shared_half: bool = False) -> onnx.ModelProto:
    """torch's exact GELU as the export writes it, x * (0.5 * (1 + erf(x / sqrt 2))); with `shared_half` the
    0.5 * (...) product is also an output, so that reordering it would change what the graph gives."""
    inits = [numpy_helper.from_array(np.array(np.sqrt(2.0), np.float32), "root2"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one"),
             numpy_helper.from_array(np.array(0.5, np.float32), "half")]
    nodes = [helper.make_node("Div", ["x", "root2"], ["scaled"]),
             helper.make_node("Erf", ["scaled"], ["erf"]),
             helper.make_node("Add", ["erf", "one"], ["sum"]),
             helper.make_node("Mul", ["half", "sum"], ["halved"]),
             helper.make_node("Mul", ["x", "halved"], ["gelu"])]
    value = helper.make_tensor_value_info
    outputs = [value("gelu", TensorProto.FLOAT, [1, "n", 48])]
    if shared_half:
        outputs.append(value("halved", TensorProto.FLOAT, [1, "n", 48]))
    graph = helper.make_graph(nodes, "gelu", [value("x", TensorProto.FLOAT, [1, "n", 48])], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def optimized_ops(proto: onnx.ModelProto, folder) -> set[str]:
    """The op types of `proto` after ONNX Runtime's CPU graph optimisations."""
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(folder / "optimized.onnx")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return {node.op_type for node in onnx.load(str(folder / "optimized.onnx")).graph.node}


def test_the_exported_gelu_is_reordered_into_the_form_onnx_runtime_fuses(tmp_path) -> None:
    assert "Erf" in optimized_ops(gelu_graph(), tmp_path), "as exported, ONNX Runtime leaves it unfused"
    rewritten = gelu_graph()
    assert rewrite_for_runtimes(rewritten) == 1
    onnx.checker.check_model(rewritten)
    assert optimized_ops(rewritten, tmp_path) == {"Gelu"}
    x = np.linspace(-8.0, 8.0, 4800, dtype=np.float32).reshape(1, 100, 48)
    np.testing.assert_allclose(run(rewritten, x)[0], run(gelu_graph(), x)[0], rtol=1e-6, atol=1e-7)
    assert rewrite_for_runtimes(rewritten) == 0, "idempotent"
    shared = gelu_graph(shared_half=True)
    assert rewrite_for_runtimes(shared) == 0, "a product read elsewhere is left as it is"
