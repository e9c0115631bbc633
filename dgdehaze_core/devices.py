"""The one device check: which torch device a requested name means on this machine.

Every loader (training, the torch backend, backend selection, the node's parameters) resolves its `device` here,
so "auto", "cpu", "cuda" and "cuda:N" mean the same everywhere and a missing GPU is the same error everywhere.
"""
from __future__ import annotations

import torch


class DeviceUnavailable(RuntimeError):
    """The requested device does not exist on this machine (CUDA asked for without a GPU)."""


def parse_device(name: str | torch.device) -> torch.device:
    """The torch device a name other than "auto" means, whether or not this machine has it: "cpu", "cuda" and
    "cuda:N" as given, "N" (Ultralytics' and the node's short form, which torch.device refuses) as "cuda:N";
    ValueError for any other name."""
    if isinstance(name, str) and name.isascii() and name.isdigit():
        name = f"cuda:{name}"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or N") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or N")
    return device


def resolve_device(name: str | torch.device) -> torch.device:
    """"auto" -> the first CUDA GPU when torch sees one, else the CPU; "cpu", "cuda" and "cuda:N" as given; "N"
    (Ultralytics' and the node's short form) -> "cuda:N".

    ValueError for any other name; DeviceUnavailable for CUDA without a GPU (an error, never a silent fallback).
    """
    if isinstance(name, str) and name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = parse_device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(f"device {str(name)!r} was requested but CUDA is not available on this machine")
    return device
