"""Checkpoint files: a file that is none says so, and a write that fails (a full disk) names the file."""
from __future__ import annotations

import errno
import hashlib
import io
import os
import struct
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dgdehaze_core.cli import main
from dgdehaze_core.datasets.paths import REPO_DIR
from dgdehaze_core.io.checkpoints import read_checkpoint, read_checkpoint_and_digest, save_error
from dgdehaze_core.models import shipped_weights_path


def test_random_bytes_or_a_yaml_file_are_no_torch_checkpoint(tmp_path: Path) -> None:
    """torch's restricted unpickler read such a file as a pickle and refused its first byte as an unsafe
    'operand': the message spoke of code outside torch's safe set."""
    noise = tmp_path / "noise.pt"
    noise.write_bytes(bytes([187]) + os.urandom(4095))
    recipe = tmp_path / "recipe.pt"
    recipe.write_bytes((REPO_DIR / "training" / "smoke.yaml").read_bytes())
    for path in (noise, recipe):
        for read in (read_checkpoint, read_checkpoint_and_digest):
            with pytest.raises(ValueError, match="not a torch checkpoint") as refused:
                read(path, "resumable training checkpoint")
            assert "safe set" not in str(refused.value) and str(path) in str(refused.value)
    legacy = tmp_path / "legacy.pt"
    torch.save({"a": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(read_checkpoint(legacy)["a"], torch.ones(2))  # torch's format before 1.6 still reads
    contents, sha256 = read_checkpoint_and_digest(legacy)  # from the bytes it hashes, read once
    assert torch.equal(contents["a"], torch.ones(2)) and sha256 == hashlib.sha256(legacy.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match="missing.pt is not a readable checkpoint: .*No such file"):
        read_checkpoint_and_digest(tmp_path / "missing.pt")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full, whose every write fails")
def test_a_failed_torch_save_becomes_an_os_error_naming_the_checkpoint(tmp_path: Path) -> None:
    """torch says only '[enforce fail at inline_container.cc] unexpected pos' when its writes fail."""
    with pytest.raises(RuntimeError) as raised:
        torch.save({"w": torch.zeros(10 ** 5)}, "/dev/full")  # every write fails: ENOSPC
    error = save_error(raised.value, tmp_path / "last.pt", "/dev/full")
    assert isinstance(error, OSError) and str(tmp_path / "last.pt") in str(error)
    assert "could not be written" in str(error)


FULL_DISK_SCRIPT = """
import errno, sys
from pathlib import Path
from dgdehaze_core.training.recipe import recipe_from_dict
from dgdehaze_core.training.trainer import Trainer
run = Path(sys.argv[1]) / "run"
trainer = Trainer(recipe_from_dict({"name": "r", "iterations": 1, "device": "cpu",
                                    "data": {"clear": ["a"], "hazy": ["b"]}}, run), run)
try:
    trainer.save_last()
except OSError as exc:
    print(exc.errno == errno.ENOSPC, exc, sorted(path.name for path in run.iterdir()))
"""


def test_a_full_disk_is_an_enospc_error_naming_last_pt(small_disk) -> None:
    """A 1 MB tmpfs (`small_disk`) takes no whole last.pt; what was written of it is removed."""
    disk = small_disk.folder
    result = small_disk.run([sys.executable, "-c", FULL_DISK_SCRIPT, str(disk)], "1m", cwd=REPO_DIR, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO_DIR)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (f"True [Errno {errno.ENOSPC}] {disk / 'run' / 'last.pt'} could not be written: "
                                     "no space left on device []")


def test_a_checkpoint_whose_tensor_bytes_changed_is_refused_as_damaged(tmp_path: Path, capsys) -> None:
    """torch reads a checkpoint's zip archive without checking the CRC-32 stored for each file in it: a byte of a
    tensor changed on a disk or in a transfer loaded as other weights, and `dehaze` wrote images made with them."""
    shipped = shipped_weights_path("lite").read_bytes()
    with zipfile.ZipFile(io.BytesIO(shipped)) as archive:
        tensor = max((info for info in archive.infolist() if "/data/" in info.filename), key=lambda i: i.file_size)
    name_length, extra_length = struct.unpack("<HH", shipped[tensor.header_offset + 26:tensor.header_offset + 30])
    damaged = bytearray(shipped)
    damaged[tensor.header_offset + 30 + name_length + extra_length + tensor.file_size // 2] ^= 0x01  # one bit
    weights = tmp_path / "damaged.pt"
    weights.write_bytes(bytes(damaged))
    for read in (read_checkpoint, read_checkpoint_and_digest):
        with pytest.raises(ValueError, match=f"{weights} is not a readable checkpoint: it is damaged .* checksum"):
            read(weights)
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.full((32, 48, 3), 128, np.uint8))
    out = tmp_path / "out"
    assert main(["dehaze", str(image), "--method", str(weights), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"dgdehaze dehaze: error: {weights} is not a readable dgdehaze checkpoint: it is damaged")
    assert not out.exists()
