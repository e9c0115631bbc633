"""--input-bits, the significant bits of 16-bit samples as the node's input_bits, shared by the commands that read
them (`dehaze`, `eval`, `bag-eval`, `export`)."""
from __future__ import annotations

import argparse

from dgdehaze_core.io.images import SAMPLE_BITS

IMAGE_FILES = "16-bit image files (PNG, TIFF; a PGM's or PPM's header gives its own range)"


def add_input_bits_option(parser: argparse.ArgumentParser, what: str = IMAGE_FILES, tail: str = "") -> None:
    """--input-bits N: the significant bits of `what`'s samples; `tail` ends its help. The command checks the value
    (`images.check_sample_bits`: 8..16) before any work."""
    parser.add_argument("--input-bits", type=int, default=SAMPLE_BITS, metavar="N",
                        help=f"significant bits of {what}, as the node's input_bits: 12 for a 12-bit sensor's "
                             f"0..4095 (default 16: the full range){tail}")
