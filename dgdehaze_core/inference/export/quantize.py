"""Static int8 quantisation of an exported dgdehaze ONNX file: a QDQ model (QuantizeLinear/DequantizeLinear pairs
around each quantised operator), the explicitly quantised form that ONNX Runtime runs and that TensorRT builds an
int8 engine from without a calibrator of its own. Scales are symmetric (zero point 0), as TensorRT requires, per
output channel for weights.

Calibration runs the float file on the images of a folder (and its subfolders), each made into the network's input
as the pipeline makes a camera frame (`pipeline.network_batch`), resized to the file's fixed size, or for a file of
free size to CALIBRATION_SIZE (the calibrator pools each activation over the images, so they share one size). Each
activation's range is the given percentile of its magnitudes over the calibration images (outliers of a few pixels
do not stretch the scale). Only the operators in `operators` are quantised, less those FLOAT_WEIGHTS
(PAPER_FLOAT_WEIGHTS for the paper's network) names; the rest of the graph (layer norms, softmax, the heads'
non-linearities) stays float between them. The file keeps the float file's dgdehaze metadata, with the digest of
its own weights, and records `dgdehaze_quantization`. How these settings were chosen: training/MODEL_CARD_lite.md,
"int8".
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Container, Iterator, Sequence

import cv2
import numpy as np
import onnx

from dgdehaze_core.inference.pipeline import network_batch
from dgdehaze_core.io.atomic_files import atomic_path
from dgdehaze_core.io.images import SAMPLE_BITS, ImageReader, ReadImage, images_under, read_image
from dgdehaze_core.io.onnx_files import weights_record
from dgdehaze_core.models import PAPER

LOG = logging.getLogger(__name__)

CALIBRATION_SIZE = (640, 480)
"""(width, height) of the calibration inputs of a file of free size: a common camera frame."""
DEFAULT_OPERATORS = ("Conv",)
"""Quantised by default: the convolutions (patch embeddings, the depth network, the decoder). The attention's
matrix products stay float: quantising them as well lost more on the validation rooms."""
DEFAULT_PERCENTILE = 99.99
FLOAT_WEIGHTS = ("stem.", "head.")
"""Operators whose module path (`module_paths`) contains one of these stay float: the stems, the first
convolutions, which read the image itself (a symmetric int8 scale over [0, 1] keeps 128 levels, half of an 8-bit
frame's), and the output heads (transmission, depth, the decoder's image), whose outputs the pipeline divides by,
takes the logarithm of or shows."""
PAPER_FLOAT_WEIGHTS = ("depth_es.conv0.", "patch_embed1.proj.", "depth_es.finalconv.", "output1.2.")
"""The same for the paper's network (`dgdehaze_config` paper), whose layers are named otherwise: the convolutions
that read the image (its DenseNet's first, its transformer's first patch embedding) and its output convolutions
(depth, image)."""


def _input_of(model: onnx.ModelProto) -> tuple[str, tuple[int, int] | None, int]:
    """(input name, fixed (height, width) or None, stride) of a dgdehaze ONNX file."""
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    if "dgdehaze_stride" not in metadata:
        raise ValueError("not a dgdehaze export (no dgdehaze_stride in its metadata)")
    graph_input = model.graph.input[0]
    if graph_input.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ValueError("int8 quantisation starts from an fp32 export (this file's input is not float32)")
    dims = graph_input.type.tensor_type.shape.dim
    fixed = (dims[2].dim_value, dims[3].dim_value) if dims[2].HasField("dim_value") and \
        dims[3].HasField("dim_value") else None
    return graph_input.name, fixed, int(metadata["dgdehaze_stride"])


def calibration_batches(images: Sequence[Path], fixed: tuple[int, int] | None, stride: int,
                        read: ReadImage = read_image) -> Iterator[np.ndarray]:
    """The network input of each readable image, read by `read` (a run's `ImageReader` of its --input-bits), one
    at a time (unreadable ones are skipped with a warning)."""
    for path in images:
        try:
            frame = read(path)
        except ValueError as exc:
            LOG.warning("calibration skips %s: %s", path, exc)
            continue
        size = (fixed[1], fixed[0]) if fixed is not None else CALIBRATION_SIZE
        if size != (frame.shape[1], frame.shape[0]):
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        yield network_batch([frame], size, stride)


def module_paths(node: onnx.NodeProto, weights: Container[str]) -> tuple[str, ...]:
    """Where `node` comes from in the torch model, as dotted module paths: its weight's name (its second input where
    that is one of `weights`, the graph's initializers: another node's output is named after that node), and its own
    name (the TorchScript exporter's `/model/dehazer/stem/0/Conv`), which keeps the path where a convolution folded
    with the batch norm after it gets a weight of a new name (`onnx::Conv_123`)."""
    return (*(name for name in node.input[1:2] if name in weights), node.name.replace("/", "."))


def quantize_onnx(float_onnx: str | os.PathLike[str], calib_dir: str | os.PathLike[str],
                  target: str | os.PathLike[str], operators: Sequence[str] = DEFAULT_OPERATORS,
                  percentile: float = DEFAULT_PERCENTILE, float_weights: Sequence[str] | None = None,
                  bits: int = SAMPLE_BITS) -> Path:
    """Write the QDQ int8 model of `float_onnx` (an fp32 dgdehaze export) calibrated on the images of `calib_dir`
    to `target`, atomically; returns `target`. `bits`: the significant bits of the images' 16-bit samples (as
    `dgdehaze export --input-bits`: 12 for a 12-bit camera's exports, which read with 16 would calibrate the
    activations of nearly black images), read by one `ImageReader` that warns once when they look 12-bit.
    `float_weights`: the operators kept float, by their module's path (`module_paths`); by default FLOAT_WEIGHTS,
    or PAPER_FLOAT_WEIGHTS for the paper's network."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    images = images_under(calib_dir)
    if not images:
        raise ValueError(f"no images to calibrate int8 with in {calib_dir}")
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    read = ImageReader(bits)
    model = onnx.load(str(float_onnx))
    name, fixed, stride = _input_of(model)
    if float_weights is None:
        paper = any(entry.key == "dgdehaze_config" and entry.value == PAPER for entry in model.metadata_props)
        float_weights = PAPER_FLOAT_WEIGHTS if paper else FLOAT_WEIGHTS
    weights = {init.name for init in model.graph.initializer}
    kept_float = [node.name for node in model.graph.node
                  if any(part in path for path in module_paths(node, weights) for part in float_weights)]

    class FolderReader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = calibration_batches(images, fixed, stride, read)
            self.read = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            self.read += batch is not None
            return None if batch is None else {name: batch}

    reader = FolderReader()
    with tempfile.TemporaryDirectory(prefix="dgdehaze-quantize-") as folder:
        quantized = Path(folder) / "model_int8.onnx"
        try:
            quantize_static(str(float_onnx), str(quantized), reader, quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(operators), nodes_to_exclude=kept_float, per_channel=True,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.Percentile,
                            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                           "CalibPercentile": percentile},
                            calibration_providers=["CPUExecutionProvider"])
        except Exception:
            if reader.read == 0:  # ONNX Runtime says only "No data is collected"
                raise ValueError(f"none of the {len(images)} images in {calib_dir} could be read to calibrate int8 "
                                 "(see the warnings above)") from None
            raise
        result = onnx.load(str(quantized))
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    metadata["dgdehaze_quantization"] = (f"int8 QDQ, symmetric, per-channel weights; operators {','.join(operators)}; "
                                         f"activations at the {percentile:g}th percentile of {reader.read} images"
                                         + (f" read with {bits} significant bits" if bits != SAMPLE_BITS else ""))
    metadata.update(weights_record(result))  # its own weights, not the float file's
    onnx.helper.set_model_props(result, metadata)
    with atomic_path(target) as tmp:
        onnx.save(result, str(tmp))
    LOG.info("quantised %s to %s (%s)", float_onnx, target, metadata["dgdehaze_quantization"])
    return Path(target)
