"""A frozen detector backbone as a training loss: the dehazed image should look like the clear one to a detector.

Detection recovery (docs/RESULTS.md) asks whether the detector finds on the dehazed image what it finds on the
clear image. PSNR-driven losses leave errors a detector is sensitive to (texture, local contrast of far objects)
and ones it is blind to (a slight global tint) weighted alike. `DetectorFeatures` runs the backbone of the shipped
YOLOv8n (rebuilt in float from its int8 ONNX file, `detection.rebuild`) and returns its P3, P4 and P5 feature maps
(strides 8, 16, 32); `detector_feature_loss` compares them between the dehazed synthetic image and the clear image
it was hazed from. Only the synthetic branch is used, so training still needs no hazy/clean pairs. The backbone is
frozen (no parameter trains) and run in float32 outside autocast; gradients flow to its input.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BACKBONE_LAYERS = 10
"""YOLOv8's backbone: layers 0-9 (Conv, C2f, ..., SPPF), each fed by the one before it."""
FEATURE_LAYERS = (4, 6, 9)
"""P3/8, P4/16 and P5/32: the backbone outputs the detection neck reads."""


class DetectorFeatures(nn.Module):
    """The shipped detector's backbone, frozen: RGB in [0, 1] (B,3,H,W) -> its P3, P4, P5 feature maps."""

    def __init__(self) -> None:
        super().__init__()
        from dgdehaze_core.detection.rebuild import rebuild_float_detector

        with torch.random.fork_rng(devices=[]):  # building the YOLO model draws random initial weights
            layers = rebuild_float_detector().model.model[:BACKBONE_LAYERS]
        for index, layer in enumerate(layers):
            if layer.f != -1:
                raise ValueError(f"detector layer {index} reads layer {layer.f}, not the one before it: "
                                 f"not a YOLOv8 backbone")
        self.layers = nn.ModuleList(layers)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "DetectorFeatures":
        """Always in eval mode: the backbone is frozen, whatever its owner asks."""
        return super().train(False)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        features = []
        x = image.float()
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index in FEATURE_LAYERS:
                features.append(x)
        return features


def detector_feature_loss(backbone: DetectorFeatures, restored: torch.Tensor, clear: torch.Tensor) -> torch.Tensor:
    """Mean over P3, P4, P5 of the L1 between the features of `restored` (clipped to [0, 1], as the pipeline
    writes it) and of `clear`, each divided by the clear features' mean magnitude so that every level counts alike."""
    with torch.no_grad():
        targets = backbone(clear.float())
    outputs = backbone(restored.float().clamp(0.0, 1.0))
    levels = [F.l1_loss(out, target) / target.abs().mean().clamp_min(1e-6) for out, target in zip(outputs, targets)]
    return torch.stack(levels).mean()
