"""Export of the dehazing networks to ONNX (the file ONNX Runtime and TensorRT run) and the graph rewrites
that file needs."""
