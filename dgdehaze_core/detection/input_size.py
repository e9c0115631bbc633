"""The detector's input size (`imgsz`): the sizes a YOLO detector takes, checked alike by the detector, the node's
`imgsz` parameter and every command's `--imgsz`."""
from __future__ import annotations

IMGSZ_RANGE = (32, 4096, 32)
"""From, to and step: the detector's stride is 32."""


def check_imgsz(imgsz: int) -> int:
    """`imgsz` when the detector takes it (a multiple of 32 in [32, 4096]), else ValueError saying so."""
    low, high, step = IMGSZ_RANGE
    if not low <= imgsz <= high or imgsz % step:
        raise ValueError(f"imgsz must be a multiple of {step} in [{low}, {high}], got {imgsz}")
    return imgsz


def imgsz_option(text: str) -> int:
    """`--imgsz` as argparse's type: a number the detector takes; ValueError with the reason otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"imgsz must be a whole number of pixels, got {text!r}") from None
    return check_imgsz(value)
