"""Bad image input gets a clear ImageError, never a traceback from inside numpy or OpenCV."""
from __future__ import annotations

import os
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from dgdehaze_core.io.atomic_files import JSON_CHECK_BYTES, atomic_path, atomic_write_text, check_json_output
from dgdehaze_core.io.images import (ImageError, ImageReader, NarrowSamples, check_size, read_image, to_bgr8,
                                     uint8_to_uint16, uint16_to_uint8, write_image)


def test_missing_empty_and_non_image_files(tmp_path: Path):
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "absent.png")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="0 bytes"):
        read_image(empty)
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    with pytest.raises(ImageError, match="not a readable image"):
        read_image(text)
    with pytest.raises(ImageError, match="folder"):
        read_image(tmp_path)


def test_conversions_to_bgr8(tmp_path: Path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert to_bgr8(gray).shape == (3, 4, 3)
    deep = np.full((2, 2), 65535, np.uint16)
    assert to_bgr8(deep).max() == 255 and to_bgr8(deep).dtype == np.uint8
    bgra = np.zeros((2, 2, 4), np.uint8)
    assert to_bgr8(bgra).shape == (2, 2, 3)
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), (np.linspace(0, 65535, 100).reshape(10, 10)).astype(np.uint16))
    frame = read_image(path)
    assert frame.shape == (10, 10, 3) and frame[-1, -1, 0] == 255


def test_pgm_and_ppm_files_read_on_the_range_their_header_declares(tmp_path: Path):
    """A netpbm file's maximum value (4095 for a 12-bit camera's PGM) is white, not 1/16 of it."""
    twelve_bit = np.array([[0, 2048], [4095, 4095]], ">u2")
    (tmp_path / "camera12.pgm").write_bytes(b"P5\n# a 12-bit sensor\n2 2\n4095\n" + twelve_bit.tobytes())
    frame = read_image(tmp_path / "camera12.pgm")
    assert frame.shape == (2, 2, 3) and frame[1, 1, 0] == 255 and frame[0, 0, 0] == 0
    assert abs(int(frame[0, 1, 0]) - 128) <= 1
    (tmp_path / "low.ppm").write_bytes(b"P6 1 1 100\n" + bytes([100, 50, 0]))  # 8-bit samples up to 100
    assert read_image(tmp_path / "low.ppm")[0, 0].tolist() == [0, 128, 255]  # BGR of RGB (100, 50, 0) of 100
    cv2.imwrite(str(tmp_path / "full.pgm"), np.full((3, 3), 200, np.uint8))  # OpenCV's own, maximum 255
    assert (read_image(tmp_path / "full.pgm") == 200).all()
    (tmp_path / "cut.pgm").write_bytes(b"P5\n4 4\n255\n" + bytes(5))  # 16 pixels declared, 5 stored
    with pytest.raises(ImageError, match="not a readable image"):
        read_image(tmp_path / "cut.pgm")


def twelve_bit_export(photo: np.ndarray, path: Path) -> Path:
    """`photo` (uint8) as a 12-bit camera's frame exported to a 16-bit PNG: samples 0..4095."""
    assert cv2.imwrite(str(path), ((photo.astype(np.uint32) * 4095 + 127) // 255).astype(np.uint16))
    return path


def test_a_12_bit_camera_s_16_bit_png_reads_whole_with_12_significant_bits(shared_data: Path, tmp_path: Path):
    photo = read_image(shared_data / "detection" / "dawn-fog" / "foggy-001.jpg")
    export = twelve_bit_export(photo, tmp_path / "camera12.png")
    assert read_image(export).mean() < 20  # read with all 16 bits: nearly black
    for frame in (read_image(export, bits=12), ImageReader(12)(export)):
        assert frame.shape == photo.shape and np.abs(frame.astype(int) - photo).max() <= 1
    twelve_bit = np.array([[0, 2048], [4095, 4095]], ">u2")  # a PGM's header declares its range: bits do not apply
    (tmp_path / "camera12.pgm").write_bytes(b"P5\n2 2\n4095\n" + twelve_bit.tobytes())
    assert read_image(tmp_path / "camera12.pgm", bits=12).tolist() == read_image(tmp_path / "camera12.pgm").tolist()
    for bits in (7, 17):
        with pytest.raises(ValueError, match="8..16"):
            read_image(export, bits=bits)
        with pytest.raises(ValueError, match="8..16"):
            ImageReader(bits)


def test_a_run_reading_12_bit_exports_with_16_bits_is_warned_once_and_no_other_file_is(shared_data: Path,
                                                                                     tmp_path: Path, caplog):
    photo = read_image(shared_data / "detection" / "dawn-fog" / "foggy-002.jpg")
    export = twelve_bit_export(photo, tmp_path / "camera12.png")
    eight = tmp_path / "eight.png"
    cv2.imwrite(str(eight), photo)
    full = tmp_path / "full.png"
    cv2.imwrite(str(full), photo.astype(np.uint16) * 257)
    pgm = tmp_path / "camera12.pgm"
    pgm.write_bytes(b"P5\n2 1\n65535\n" + np.array([[100, 4095]], ">u2").tobytes())
    with caplog.at_level("WARNING", logger="dgdehaze_core.io.images"):
        quiet = ImageReader()
        for path in (eight, full, pgm, eight):
            quiet(path)
        assert not caplog.records
        ImageReader(12)(export)
        assert not caplog.records
        run = ImageReader()
        for _ in range(3):
            run(export)
        assert len(caplog.records) == 1
        assert "camera12.png" in caplog.text and "none above 4095" in caplog.text and "--input-bits 12" in caplog.text
        ImageReader()(export)  # another run is warned again
        assert len(caplog.records) == 2
        wide = ImageReader(12)  # the other way round: all 16 bits read as 12, most of the photo white
        wide(full)
        wide(full)
        said = "full.png: 100 % of the 16-bit samples lie above 4095, the range of the 12 significant bits"
        assert len(caplog.records) == 3 and said in caplog.text


def test_a_stream_is_tested_on_its_first_and_every_nth_16_bit_image_and_warned_once(shared_data: Path) -> None:
    """The node's and a bag's test (`NarrowSamples`): the verdict follows every `every`-th 16-bit image read with 16
    bits, and at once an 8-bit image or one read with fewer bits; the warning comes once, naming the remedy."""
    photo = read_image(shared_data / "detection" / "dawn-fog" / "foggy-002.jpg")[:, :, 1]
    twelve = ((photo.astype(np.uint32) * 4095 + 127) // 255).astype(np.uint16)
    full = photo.astype(np.uint16) * 257
    said: list[str] = []
    stream = NarrowSamples("set input_bits: 12", "frames on /camera", every=3, warn=said.append)
    verdicts = []
    for samples in (twelve, full, full, full, twelve, twelve, twelve):
        stream.see(samples, 16)
        verdicts.append(stream.narrow)
    assert verdicts == [True, True, True, False, False, False, True]
    assert len(said) == 1 and said[0].startswith("frames on /camera: 16-bit samples but none above 4095")
    assert said[0].endswith("set input_bits: 12")
    stream.see(twelve, 12)
    assert not stream.narrow
    stream.see(twelve, 16)
    stream.see(photo, 16)
    assert not stream.narrow and len(said) == 1
    black = NarrowSamples("", warn=said.append)
    black.see(np.zeros_like(twelve), 16)  # a black frame holds no samples: no camera's range to tell
    assert not black.narrow and len(said) == 1
    hot = twelve.copy()
    hot.flat[::1000] = 65535  # a 12-bit sensor's hot pixels, 0.1 %: they saturate, no more
    wide = NarrowSamples("", "frames on /camera", every=2, warn=said.append)
    for samples in (twelve, full, hot, full):  # the first and third tested
        wide.see(samples, 12)
    assert len(said) == 1
    wide.see(full, 12)
    assert len(said) == 2 and said[1].startswith("frames on /camera: 100 %") and "read them with 16" in said[1]
    wide.see(full, 12)
    wide.see(full, 12)
    assert len(said) == 2, "said once"


def test_samples_convert_to_nearest_and_saturate_and_limits_are_inclusive(shared_data: Path, tmp_path: Path):
    """A real photo's samples: 8 bits to 16 of any significant bits and back are nearest (a 12-bit 128 is
    128 * 4095 / 255 = 2055.5 -> 2056) and return the photo; a 12-bit read saturates samples above 4095 (a hot pixel,
    a 16-bit frame read with 12 bits) at 255 instead of wrapping; a float image in [0, 1] reads as the photo to
    the nearest level; 8 and 16 significant bits are accepted, and a frame of exactly MAX_PIXELS is."""
    photo = read_image(shared_data / "detection" / "dawn-fog" / "foggy-001.jpg")
    levels = np.arange(256, dtype=np.uint8)
    for bits in (8, 10, 12, 16):
        top = (1 << bits) - 1
        wide = uint8_to_uint16(levels, bits)
        assert np.abs(wide - levels.astype(np.float64) * top / 255).max() <= 0.5
        np.testing.assert_array_equal(uint16_to_uint8(wide, bits), levels)
    assert uint8_to_uint16(np.uint8(128), 12) == 2056
    hot = np.array([0, 4095, 4096, 40000, 65535], np.uint16)
    assert uint16_to_uint8(hot, 12).tolist() == [0, 255, 255, 255, 255]
    np.testing.assert_array_equal(to_bgr8((photo.astype(np.float32) - 0.4).clip(0) / 255), photo)  # to nearest
    assert cv2.imwrite(str(tmp_path / "eight.png"), photo.astype(np.uint16))  # 16-bit samples of 8 significant bits
    np.testing.assert_array_equal(read_image(tmp_path / "eight.png", bits=8), photo)
    check_size(7680, 4320)
    with pytest.raises(ImageError, match="exceeds the limit"):
        check_size(7680, 4321)


@pytest.mark.parametrize("bad, reason", [
    (np.zeros((0, 5, 3), np.uint8), "empty"),
    (np.zeros((4, 4, 2), np.uint8), "shape"),
    (np.full((2, 2, 3), np.nan, np.float32), "NaN"),
    (np.zeros((2, 2, 3), np.complex64), "unsupported"),
])
def test_unusable_arrays(bad, reason):
    with pytest.raises(ImageError, match=reason):
        to_bgr8(bad)


def test_huge_frames_are_refused_before_allocation():
    huge = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), shape=(10000, 10000, 3), strides=(0, 0, 0))
    with pytest.raises(ImageError, match="exceeds"):
        to_bgr8(huge)


def test_an_image_file_declaring_a_huge_size_is_refused_from_its_header(tmp_path: Path):
    png = bytearray(cv2.imencode(".png", np.zeros((48, 64, 3), np.uint8))[1].tobytes())
    png[16:24] = (20_000).to_bytes(4, "big") * 2  # the header says 20000x20000, with its checksum
    png[29:33] = zlib.crc32(bytes(png[12:29])).to_bytes(4, "big")
    (tmp_path / "bomb.png").write_bytes(bytes(png))
    with pytest.raises(ImageError, match="bomb.png: image of 20000x20000 exceeds the limit"):
        read_image(tmp_path / "bomb.png")
    gray = np.arange(48 * 64, dtype=np.uint16).reshape(48, 64).astype(np.uint8)
    for suffix in (".pgm", ".tif", ".webp", ".bmp"):  # the header check passes every readable format
        cv2.imwrite(str(tmp_path / f"gray{suffix}"), gray)
        assert read_image(tmp_path / f"gray{suffix}").shape == (48, 64, 3), suffix


def test_atomic_writes_leave_the_old_file_on_failure(tmp_path: Path):
    target = tmp_path / "report.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
    write_image(tmp_path / "frame.png", np.zeros((3, 3, 3), np.uint8))
    assert read_image(tmp_path / "frame.png").shape == (3, 3, 3)


def test_a_folder_write_stopped_between_its_two_renames_puts_the_old_folder_back(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch):
    """Ctrl-C or SIGTERM raised just after the old folder was set aside, before the new one took its place: the new
    one was removed, and the old one stayed hidden in the set-aside folder with no lock to find it by, for good."""
    target = tmp_path / "out"
    target.mkdir()
    (target / "summary.json").write_text("earlier")
    real_replace = os.replace

    def interrupted(source, destination):
        if str(source).endswith(".part"):  # where the interrupt of the rename before it is raised
            raise KeyboardInterrupt
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "summary.json").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (target / "summary.json").read_text() == "earlier"


def test_an_atomic_write_to_a_link_replaces_what_it_points_at_and_keeps_the_link(tmp_path: Path):
    """`bag-eval --out LINK` with LINK pointing at an earlier output on another disk: the link itself was set aside
    and replaced by a new folder beside it, so the target kept the old output and the up-front checks had looked at
    the target's disk, not the one written. A file behind a link (a checkpoint's) was replaced the same way."""
    (tmp_path / "disk").mkdir()
    real, link = tmp_path / "disk" / "out", tmp_path / "out"
    real.mkdir()
    (real / "summary.json").write_text("earlier")
    link.symlink_to(real)
    with atomic_path(link) as tmp:
        tmp.mkdir()
        (tmp / "summary.json").write_text("new")
    assert link.is_symlink() and (real / "summary.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk", "out"]
    assert [p.name for p in real.parent.iterdir()] == ["out"]
    (tmp_path / "disk" / "last.pt").write_text("earlier")
    (tmp_path / "last.pt").symlink_to(tmp_path / "disk" / "last.pt")
    atomic_write_text(tmp_path / "last.pt", "new")
    assert (tmp_path / "last.pt").is_symlink() and (tmp_path / "disk" / "last.pt").read_text() == "new"


def test_a_json_target_may_replace_figures_or_an_empty_file_and_nothing_else(tmp_path: Path):
    """`mktemp --suffix .json`'s empty file was refused as holding no JSON, while a set's COCO labels or a run
    record, JSON but no figures, were taken for an earlier run's figures and replaced."""
    allowed = {"empty.json": b"", "figures.json": b'{"dcp": {"psnr": 20.0}, "hazy": {}}'}
    refused = {"photo.json": cv2.imencode(".png", np.zeros((2, 2, 3), np.uint8))[1].tobytes(),
               "coco.json": b'{"images": [], "annotations": [], "categories": []}',
               "record.json": b'{"method": "dcp", "weights": null}', "list.json": b"[1, 2]"}
    for name, content in {**allowed, **refused}.items():
        (tmp_path / name).write_bytes(content)
        if name in allowed:
            assert check_json_output(tmp_path / name) == tmp_path / name
        else:
            with pytest.raises(ValueError, match=f"--json {tmp_path / name} exists and holds "):
                check_json_output(tmp_path / name)
        assert (tmp_path / name).read_bytes() == content
    large = tmp_path / "recording.json"  # a bag or weights given by mistake: refused unread, and said so
    with open(large, "wb") as handle:
        handle.truncate(JSON_CHECK_BYTES + 1)
    with pytest.raises(ValueError, match=f"--json {large} exists and is larger than 64 MiB, more than a --json writes"):
        check_json_output(large)


def test_atomic_writes_reach_the_disk_before_they_return(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The rename was not synced (nor a new folder's files): after a power cut, common on a robot, a checkpoint or
    bag folder could be gone or hold empty files. Each fsync is recorded by the path of its descriptor."""
    real_fsync, synced = os.fsync, []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd))
    target = tmp_path / "runs" / "report.md"
    atomic_write_text(target, "# report")
    assert synced[-1] == str(target.parent) and len(synced) == 2  # the file's data (as its part), then the rename
    synced.clear()
    with atomic_path(tmp_path / "bag") as folder:
        (folder / "meta").mkdir(parents=True)
        (folder / "meta" / "metadata.yaml").write_text("x")
        (folder / "bag_0.mcap").write_bytes(b"\0" * 10)
    written = [Path(path).name for path in synced]
    assert {"metadata.yaml", "bag_0.mcap", "meta"} <= set(written[:-2])  # every file and folder inside first
    assert written[-2].endswith(".part") and synced[-1] == str(tmp_path)  # the new folder, then the rename


def test_what_a_killed_writer_left_goes_with_the_next_write_and_a_live_writer_s_part_stays(tmp_path: Path):
    import subprocess
    import sys
    import threading

    target = tmp_path / "out"
    write = ("import os, signal, sys, time; from pathlib import Path; "
             "from dgdehaze_core.io.atomic_files import atomic_path\n"
             "with atomic_path(Path(sys.argv[1])) as tmp:\n"
             "    tmp.mkdir(); (tmp / 'bag.mcap').write_bytes(bytes(1 << 20)); print(tmp.name, flush=True)\n"
             "    os.kill(os.getpid(), signal.SIGKILL) if sys.argv[2] == 'die' else sys.stdin.read()\n")
    killed = subprocess.run([sys.executable, "-c", write, str(target), "die"], capture_output=True, text=True,
                            timeout=120)
    dead_part = tmp_path / killed.stdout.strip()
    assert killed.returncode == -9 and dead_part.is_dir()
    aside = tmp_path / dead_part.name.replace(".part", ".old")  # as if killed between setting aside and renaming
    (aside / "out").mkdir(parents=True)
    (aside / "out" / "summary.json").write_text("earlier")
    atomic_write_text(tmp_path / "other", "a write of another target leaves them")
    assert dead_part.exists() and aside.exists() and not target.exists()
    live = subprocess.Popen([sys.executable, "-c", write, str(target), "wait"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    watchdog = threading.Timer(120.0, live.kill)  # a writer that hangs fails the test (its stdout ends), not hangs it
    watchdog.start()
    try:
        live_part = tmp_path / live.stdout.readline().strip()
        assert (target / "summary.json").read_text() == "earlier", "the set-aside folder is put back"
        live_lock = live_part.name.removesuffix(".part") + ".lock"
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", "other", live_part.name, live_lock])
        with atomic_path(target) as tmp:
            tmp.mkdir()
        assert live_part.is_dir(), "a running writer's part is its own, while it holds its lock"
    finally:
        live.communicate("")
        watchdog.cancel()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "out"]
    long_name = tmp_path / ("é" * 120 + ".json")  # 245 bytes: a legal name
    twin = tmp_path / ("é" * 120 + ".yaml")  # the same first 100 bytes: another target's siblings are not its own
    killed = subprocess.run([sys.executable, "-c", write, str(twin), "die"], capture_output=True, text=True,
                            timeout=120)
    atomic_write_text(long_name, "a long but legal name")
    assert long_name.read_text() == "a long but legal name"
    assert (tmp_path / killed.stdout.strip()).is_dir(), "a write of another target leaves its leftovers"


def test_a_writer_whose_lock_file_was_just_made_keeps_it_and_its_part_goes_once_it_is_killed(tmp_path: Path):
    """Between making a write's lock file and locking it, another write of the target found the lock free, took it
    for a killed writer's and unlinked it: the write then ran without one, so once it was killed no later write
    found its part (a bag folder's size) to remove."""
    import subprocess
    import sys

    from dgdehaze_core.io.atomic_files import remove_leftovers

    target = tmp_path / "out"
    write = ("import fcntl, os, signal, sys; from pathlib import Path; "
             "from dgdehaze_core.io.atomic_files import atomic_path\n"
             "locking = fcntl.flock\n"
             "def paused(fd, operation):\n"  # the pause between making the lock file and locking it, stretched
             "    if operation == fcntl.LOCK_EX: print('made', flush=True); sys.stdin.readline()\n"
             "    locking(fd, operation)\n"
             "fcntl.flock = paused\n"
             "with atomic_path(Path(sys.argv[1])) as tmp:\n"
             "    tmp.mkdir(); print(tmp.name, flush=True); os.kill(os.getpid(), signal.SIGKILL)\n")
    writer = subprocess.Popen([sys.executable, "-c", write, str(target)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "made\n"
        remove_leftovers(target)  # what another write of the target does first
        writer.stdin.write("\n")
        writer.stdin.flush()
        part = tmp_path / writer.stdout.readline().strip()
    finally:
        writer.communicate(timeout=120)
    assert writer.returncode == -9 and part.is_dir()
    atomic_write_text(target, "the next write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_lock_file_a_writer_killed_before_locking_it_left_goes_once_it_is_old(tmp_path: Path) -> None:
    """A writer killed between making its lock file and locking it (`new_lock` makes it under a `.new` name, locks
    it, then renames it) left the `.new` file for good: nothing looked for it. A later write removes it once it is
    older than UNLOCKED_GRACE_S (its maker locks it within microseconds), and leaves a fresh one."""
    import subprocess
    import sys

    from dgdehaze_core.io.atomic_files import UNLOCKED_GRACE_S

    target = tmp_path / "out"
    write = ("import fcntl, os, signal, sys; from pathlib import Path; "
             "from dgdehaze_core.io.atomic_files import atomic_path\n"
             "locking = fcntl.flock\n"
             "def killed(fd, operation):\n"  # killed as new_lock locks its file (a cleanup's try goes on)
             "    os.kill(os.getpid(), signal.SIGKILL) if operation == fcntl.LOCK_EX else locking(fd, operation)\n"
             "fcntl.flock = killed\n"
             "with atomic_path(Path(sys.argv[1])) as tmp:\n"
             "    tmp.mkdir()\n")
    for _ in range(2):
        assert subprocess.run([sys.executable, "-c", write, str(target)], timeout=120).returncode == -9
    old, fresh = sorted(tmp_path.glob(".out~*.lock.new"))
    aged = time.time() - UNLOCKED_GRACE_S - 1
    os.utime(old, (aged, aged))
    atomic_write_text(target, "the next write")
    assert sorted(tmp_path.iterdir()) == sorted([target, fresh]), "the old one goes, the fresh one stays"


def test_hidden_files_and_folders_are_not_images(tmp_path: Path):
    from dgdehaze_core.io.images import images_under, list_images

    pixels = np.full((8, 8, 3), 90, np.uint8)
    for name in ("a.png", "._a.png", ".ipynb_checkpoints/a-checkpoint.png", "sub/b.PNG"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / name), pixels)
    assert [p.name for p in list_images(tmp_path)] == ["a.png"]
    assert [p.relative_to(tmp_path).as_posix() for p in images_under(tmp_path)] == ["a.png", "sub/b.PNG"]


def test_jfif_gif_and_avif_photos_are_read_and_heic_or_raw_ones_are_left_out_saying_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A phone's folder: .jfif (a JPEG by another name), .gif and .avif were left out of every listing without a
    word, as were HEIC photos and a camera's raw files, which OpenCV does not read."""
    from PIL import Image

    from dgdehaze_core.io.images import images_under, list_images

    pixels = np.zeros((24, 32, 3), np.uint8)
    pixels[:, :16] = (40, 90, 200)
    ok, jpeg = cv2.imencode(".jpg", pixels)
    (tmp_path / "a.jfif").write_bytes(jpeg.tobytes())
    Image.fromarray(pixels[:, :, ::-1]).save(tmp_path / "b.gif")  # Pillow's palette holds both colours exactly
    cv2.imwrite(str(tmp_path / "c.avif"), pixels)
    for name in ("d.HEIC", "e.heic", "sub/f.dng", "._g.heic"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"\x00\x00\x00\x18ftypheic")
    assert [p.name for p in list_images(tmp_path)] == ["a.jfif", "b.gif", "c.avif"]
    for path in list_images(tmp_path):
        image = read_image(path)
        assert image.shape == pixels.shape and np.abs(image.astype(int) - pixels).mean() < 8, path.name
    told = [r.getMessage() for r in caplog.records if "photos left out" in r.getMessage()]
    assert told == [f"{tmp_path}: 2 photos left out, .heic files OpenCV does not read (d.HEIC, e.heic): convert "
                    "them to JPEG or PNG to take them in"], "said once, however often the folder is listed"
    assert [p.name for p in images_under(tmp_path)] == ["a.jfif", "b.gif", "c.avif"]
    assert "3 photos left out, .dng/.heic files" in caplog.text
    with pytest.raises(ImageError, match=r"d.HEIC is not a readable image \(OpenCV does not read .heic files: "
                                         "convert it to JPEG or PNG\)"):
        read_image(tmp_path / "d.HEIC")  # named alone


def test_a_linked_folder_of_images_is_followed_and_a_link_loop_ends(tmp_path: Path):
    from dgdehaze_core.io.images import images_under

    data, training = tmp_path / "shared" / "fog", tmp_path / "training"
    data.mkdir(parents=True)
    training.mkdir()
    cv2.imwrite(str(data / "f.png"), np.full((8, 8, 3), 90, np.uint8))
    (training / "fog").symlink_to(data, target_is_directory=True)
    (data / "loop").symlink_to(data.parent, target_is_directory=True)  # shared/fog/loop -> shared
    (training / ".latest").symlink_to(data, target_is_directory=True)  # a hidden link to the same folder
    assert [p.relative_to(training).as_posix() for p in images_under(training)] == ["fog/f.png"]


def test_links_named_as_images_that_lead_nowhere_are_listed_and_reading_one_says_so(tmp_path: Path):
    from dgdehaze_core.io.images import images_under, list_images

    (tmp_path / "sub").mkdir()
    cv2.imwrite(str(tmp_path / "a.png"), np.full((8, 8, 3), 90, np.uint8))
    (tmp_path / "b.png").symlink_to(tmp_path / "unmounted" / "b.png")
    (tmp_path / "sub" / "c.png").symlink_to("d.png")
    (tmp_path / "sub" / "d.png").symlink_to("c.png")
    (tmp_path / "notes.txt").symlink_to("nowhere.txt")
    os.mkfifo(tmp_path / "sub" / "e.png")  # a named pipe, and a folder, named as images: listed as well
    (tmp_path / "f.jpg").mkdir()
    cv2.imwrite(str(tmp_path / "f.jpg" / "g.png"), np.full((8, 8, 3), 90, np.uint8))
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.png", "f.jpg"]
    assert [p.relative_to(tmp_path).as_posix() for p in images_under(tmp_path)] == [
        "a.png", "b.png", "f.jpg/g.png", "sub/c.png", "sub/d.png", "sub/e.png"], "a folder entered as any other"
    with pytest.raises(ImageError, match="b.png is a link to .*unmounted/b.png, which leads to no file"):
        read_image(tmp_path / "b.png")
    with pytest.raises(ImageError, match="loop of links"):
        read_image(tmp_path / "sub" / "c.png")


def test_a_phone_photo_file_is_read_upright_and_a_compressed_camera_frame_as_stored(shared_data: Path,
                                                                                      tmp_path: Path):
    from PIL import Image

    from dgdehaze_core.io.camera_frames import compressed_to_bgr8

    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90": a phone's portrait photo, stored sideways
    path = tmp_path / "tagged.jpg"
    view = Image.open(shared_data / "detection" / "dawn-fog" / "foggy-001.jpg")  # 640x338, sky on top
    view.transpose(Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif)

    class Message:
        format = "jpeg"
        data = path.read_bytes()

    assert read_image(path).shape == (338, 640, 3)  # as viewers show the photo
    assert compressed_to_bgr8(Message()).shape == (640, 338, 3)  # as ROS' image_transport decodes a frame: as stored
