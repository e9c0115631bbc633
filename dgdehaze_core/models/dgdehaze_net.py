"""DGDehazeNet: the depth network and the DGHAT dehazer as one model, as trained and deployed."""
from __future__ import annotations

import math

import torch
from torch import nn

from dgdehaze_core.models.depth_net import DepthNet
from dgdehaze_core.models.dghat import DGHAT


class DGDehazeNet(nn.Module):
    """`forward(hazy)` -> {"clear", "transmission", "airlight", "depth"}; `forward(hazy, with_clear=False)` leaves
    out "clear" (the physics output path needs only transmission, airlight and depth).

    hazy: (B, 3, H, W) RGB in [0, 1], H and W multiples of `stride`. The depth network predicts depth from the
    hazy image and the dehazer uses it as guidance. With `depth_guidance=False` (the ablation) the dehazer is fed
    a constant depth instead, so its cross-attention queries carry no depth; "depth" is still predicted.
    `guide_trains_depth` (the recipe field of that name; not saved with the weights): whether the dehazer's losses
    reach the depth network through the guide it reads; False detaches the guide, so that the depth network learns
    from its own losses only.
    """

    def __init__(self, config_name: str, depth_net: DepthNet, dehazer: DGHAT, depth_guidance: bool = True) -> None:
        super().__init__()
        self.config_name = config_name
        self.depth_guidance = depth_guidance
        self.guide_trains_depth = True
        self.depth_net = depth_net
        self.dehazer = dehazer
        self.stride = math.lcm(depth_net.stride, dehazer.stride)

    def forward(self, hazy: torch.Tensor, with_clear: bool = True) -> dict[str, torch.Tensor]:
        depth = self.depth_net(hazy)
        if not self.depth_guidance:
            guide = torch.ones_like(depth)
        else:
            guide = depth if self.guide_trains_depth else depth.detach()
        outputs = self.dehazer(hazy, guide, with_clear=with_clear)
        outputs["depth"] = depth
        return outputs
