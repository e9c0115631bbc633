"""--input-bits, the significant bits of 16-bit samples as the node's input_bits, shared by the commands that read
them (`dehaze`, `eval`, `bag-eval`, `export`)."""
from __future__ import annotations

import argparse

from dgdehaze_core.io.images import SAMPLE_BITS, check_sample_bits

IMAGE_FILES = "16-bit image files (PNG, TIFF; a PGM's or PPM's header gives its own range)"


def add_input_bits_option(parser: argparse.ArgumentParser, what: str = IMAGE_FILES, tail: str = "") -> None:
    """--input-bits N: the significant bits of `what`'s samples; `tail` ends its help. argparse checks the value
    (`input_bits`), so an error names the flag."""
    parser.add_argument("--input-bits", type=input_bits, default=SAMPLE_BITS, metavar="N",
                        help=f"significant bits of {what}, as the node's input_bits: 12 for a 12-bit sensor's "
                             f"0..4095 (default 16: the full range){tail}")


def input_bits(text: str) -> int:
    """--input-bits' value: a whole number of bits, 8..16 (`images.check_sample_bits`); else ArgumentTypeError,
    which argparse prints after the flag's name."""
    try:
        return check_sample_bits(int(text))
    except ValueError as exc:
        reason = str(exc) if text.strip().lstrip("+-").isdigit() else f"give a whole number 8..16, got {text!r}"
        raise argparse.ArgumentTypeError(reason) from None
