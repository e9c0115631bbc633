"""Running a dehazing method on frames: the pipeline (pad, run, crop, invert), the frame chain the node, bag
evaluation and benchmarks share, the latest-frame worker, the runtime backends and the ONNX export."""
