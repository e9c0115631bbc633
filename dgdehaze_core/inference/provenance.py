"""What a network file says of the weights it holds, whatever its kind: one record for a checkpoint (`.pt`), an ONNX
export and a TensorRT engine, and one line that tells a person how they were made.

A checkpoint carries its training's metadata (`checkpoints.weights_provenance`); an export of a checkpoint (by
`dgdehaze export`, or on the way to ONNX Runtime or TensorRT when a `.pt` runs on them) keeps the checkpoint's record
(`models.load_model_and_record`, taken from the very read that loaded the model) in its ONNX metadata
(`to_onnx.EXPORTED_FROM`), and an engine built from such an export keeps the same record in its sidecar
(`engine_cache`). The pipeline keeps the record of the weights it loaded (`pipeline.weights`, and `weights_line` of
it as `pipeline.weights_summary`), which the node's /diagnostics, bag-eval's report and the results record of an
eval (`results_record`, whose tables say it in words with `how_made`) name, so that a figure or a running vehicle
names the trained weights behind it, not only the file it was given, and never a file put in its place since.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from dgdehaze_core.io.file_paths import file_suffix


def exported_from(metadata: Mapping[str, str]) -> dict[str, Any] | None:
    """The record of the weights an export was made from, from its ONNX metadata; None when it has none (an
    export of untrained weights, or one made by another tool or an older version)."""
    from dgdehaze_core.inference.export.to_onnx import EXPORTED_FROM

    text = metadata.get(EXPORTED_FROM)
    if not text:
        return None
    try:
        found = json.loads(text)
    except json.JSONDecodeError:
        return None
    return found if isinstance(found, dict) else None


def network_file_provenance(path: Path, engine_record: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What `path` says of itself: its sha256 (12 hex digits) and, by kind,
    - `.pt`: the checkpoint's training metadata (`checkpoints.PROVENANCE_KEYS`);
    - `.onnx`: `onnx_config`, `onnx_quantization` ("" for float), `onnx_precision` (fp16 for an export made with
      half, whose input and weights are float16, else fp32) and `exported_from` when it records it;
    - `.engine`: `engine_precision`, `engine_runtime`, `engine_device` from its sidecar, and `exported_from`; from
      `engine_record` where the engine's loader read its trusted sidecar (`engine_cache.read_trusted`) with the
      bytes it runs, so that the engine is read and hashed once.
    ValueError naming the file when a checkpoint does not read or an engine's sidecar cannot be trusted."""
    from dgdehaze_core.io.checkpoints import weights_provenance
    from dgdehaze_core.io.onnx_files import input_is_half, read_onnx

    if file_suffix(path) == ".engine":
        from dgdehaze_core.inference.backends.engine_cache import trusted_record

        record = engine_record if engine_record is not None else trusted_record(path)
        key: Mapping[str, Any] = record["key"]
        found: dict[str, Any] = {"sha256": str(record["sha256"])[:12], "engine_precision": key.get("precision", "?"),
                                 "engine_runtime": key.get("runtime", "?"), "engine_device": key.get("device", "?")}
        if isinstance(record.get("exported_from"), dict):
            found["exported_from"] = record["exported_from"]
        return found
    found = weights_provenance(path)
    if file_suffix(path) == ".onnx":
        model = read_onnx(path)
        metadata = {prop.key: prop.value for prop in model.metadata_props}
        found.update(onnx_config=metadata.get("dgdehaze_config", "unknown"),
                     onnx_quantization=metadata.get("dgdehaze_quantization", ""),
                     onnx_precision="fp16" if model.graph.input and input_is_half(model) else "fp32")
        source = exported_from(metadata)
        if source is not None:
            found["exported_from"] = source
    return found


def training_line(weights: Mapping[str, Any]) -> str:
    """How a checkpoint's weights were trained, from what its metadata says (`checkpoints.weights_provenance`, or an
    export's record of it, which another tool may have written otherwise: a `started_from` that is no record is
    left out)."""
    if "iterations" not in weights and "recipe" not in weights:
        return "a checkpoint that records no training of this package (the paper's released file, say)"
    made = (f"{weights.get('iterations', '?')} training iterations of recipe {weights.get('recipe', '?')} "
            f"at commit `{weights.get('commit', '?')}`")
    started = weights.get("started_from")
    if isinstance(started, Mapping) and started.get("init_weights"):
        made += f", started from `{started['init_weights']}` (sha256 {str(started.get('sha256', '?'))[:12]})"
    return made


def how_made(entry: Mapping[str, Any]) -> str:
    """How the weights of a `network_file_provenance` record were made, in words: a checkpoint's training, or what
    an export or engine is and the checkpoint it was made from (when it records one)."""
    if "engine_precision" in entry:
        made = (f"a TensorRT engine, {entry['engine_precision']}, built with {entry['engine_runtime']} for "
                f"{entry['engine_device']}")
    elif "onnx_config" in entry:
        made = f"an ONNX export of a `{entry['onnx_config']}` network" + (
            f", {entry.get('onnx_quantization') or entry.get('onnx_precision', 'fp32')}")
    else:
        return training_line(entry)
    source = entry.get("exported_from")
    if source:
        made += f", of `{source.get('path', '?')}` (sha256 {source.get('sha256', '?')}, {training_line(source)})"
    return made


def weights_record(path: Path, engine_record: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The record of the exported network file `path` (an `.onnx` or `.engine`, which its runtime is handed by
    path): its name (`path`) and `network_file_provenance` (an engine's from the `engine_record` its loader read);
    the pipeline reads it once, as it loads the file."""
    return {"path": path.name, **network_file_provenance(path, engine_record)}


def weights_line(record: Mapping[str, Any]) -> str:
    """One line naming the weights of a record (`weights_record`, `models.load_model_and_record`) and how they were
    made, for logs, reports and /diagnostics: "<file> (sha256 <12 digits>, <how_made>)"."""
    return f"{record['path']} (sha256 {record['sha256']}, {how_made(record)})"
