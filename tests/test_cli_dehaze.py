"""`dgdehaze dehaze` on a real image, a folder with a broken file, a video, and bad input."""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest

from dgdehaze_core.cli import build_parser, main
from dgdehaze_core.commands.dehaze_record import COMPARED
from dgdehaze_core.io.images import read_image
from dgdehaze_core.io.videos import mean_frame_rate


def test_dehaze_folder_writes_images_and_skips_broken_files(shared_data: Path, tmp_path: Path):
    source = tmp_path / "in"
    source.mkdir()
    for path in sorted((shared_data / "hazy-real" / "urhi").glob("*.png"))[:2]:
        shutil.copy(path, source / path.name)
    (source / "broken.png").write_bytes(b"\x89PNG garbage")
    out = tmp_path / "out"
    assert main(["dehaze", str(source), "--method", "dcp", "--out", str(out)]) == 1
    dehazed = sorted(out.glob("*_dehazed.png"))
    assert len(dehazed) == 2 and len(list(out.glob("*_depth.png"))) == 2
    first_in = read_image(sorted(source.glob("*.png"))[0])
    assert read_image(dehazed[0]).shape == first_in.shape
    assert not [p for p in out.iterdir() if ".part" in p.name]


def test_links_named_as_images_that_lead_nowhere_are_skipped_and_named_not_left_out(tmp_path: Path, caplog):
    source = tmp_path / "in"
    source.mkdir()
    cv2.imwrite(str(source / "a.png"), np.full((24, 32, 3), 150, np.uint8))
    (source / "b.png").symlink_to(tmp_path / "unmounted" / "b.png")  # frames on a drive not mounted
    (source / "c.png").symlink_to("d.png")
    (source / "d.png").symlink_to("c.png")  # a loop of links
    out = tmp_path / "out"
    with caplog.at_level("ERROR", logger="dgdehaze_core.commands"):
        assert main(["dehaze", str(source), "--method", "dcp", "--out", str(out)]) == 1
    assert [p.name for p in out.glob("*_dehazed.png")] == ["a_dehazed.png"]
    skipped = [record.getMessage() for record in caplog.records]
    assert len(skipped) == 3 and all("which leads to no file" in message for message in skipped), skipped
    (source / "a.png").unlink()
    assert main(["dehaze", str(source), "--method", "dcp", "--out", str(tmp_path / "o2")]) == 2, \
        "a folder of links that lead nowhere is no folder of images read whole"
    assert main(["dehaze", str(source / "c.png"), "--method", "dcp", "--out", str(tmp_path / "o3")]) == 2


def test_a_named_pipe_or_a_folder_named_as_an_image_in_the_input_folder_is_skipped_and_named_not_left_out(
        tmp_path: Path, caplog) -> None:
    """A named pipe or a folder named as an image (frame.png) among a folder's images was left out without a word,
    unlike a link that leads nowhere; reading it says what it is, and the pipe is never opened (it would wait for
    a writer)."""
    from dgdehaze_core.io.file_digest import file_sha256

    source = tmp_path / "in"
    source.mkdir()
    cv2.imwrite(str(source / "a.png"), np.full((24, 32, 3), 150, np.uint8))
    os.mkfifo(source / "b.png")
    (source / "c.jpg").mkdir()
    out = tmp_path / "out"
    with caplog.at_level("ERROR", logger="dgdehaze_core.commands"):
        assert main(["dehaze", str(source), "--method", "dcp", "--out", str(out)]) == 1
    assert [p.name for p in out.glob("*_dehazed.png")] == ["a_dehazed.png"]
    assert sorted(record.getMessage() for record in caplog.records) == [
        f"skipped: {source / 'b.png'} is no file but a named pipe, a socket or a device: no file to read",
        f"skipped: {source / 'c.jpg'} is a folder, not an image"]
    with pytest.raises(OSError, match="b.png is no file but a named pipe"):  # an int8 calibration set's key
        file_sha256(source / "b.png")
    with pytest.raises(IsADirectoryError):  # open's own error, not "no such file"
        file_sha256(source / "c.jpg")


def fog_clip(shared_data: Path, path: Path, frames: int = 5, codec: str = "mp4v") -> Path:
    """The first `frames` frames of a real fog video at 320x180."""
    capture = cv2.VideoCapture(str(shared_data / "video" / "fog_river.mp4"))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), 10, (320, 180))
    for _ in range(frames):
        ok, frame = capture.read()
        assert ok
        writer.write(cv2.resize(frame, (320, 180)))
    writer.release()
    return path


def test_dehaze_video(shared_data: Path, tmp_path: Path):
    clip = fog_clip(shared_data, tmp_path / "clip.mp4")
    out = tmp_path / "out"
    assert main(["dehaze", str(clip), "--out", str(out)]) == 0
    result = cv2.VideoCapture(str(out / "clip_dehazed.mp4"))
    assert int(result.get(cv2.CAP_PROP_FRAME_COUNT)) == 5


def test_a_video_whose_first_frame_does_not_decode_says_so(shared_data: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    """It was said to hold no frames, right after the warning that later frames decode."""
    clip = fog_clip(shared_data, tmp_path / "clip.mp4", frames=4)
    data = bytearray(clip.read_bytes())
    start = data.index(b"mdat") + 4
    data[start:start + 200] = bytes(200)  # the first frame's data zeroed
    clip.write_bytes(data)
    assert main(["dehaze", str(clip), "--method", "dcp", "--out", str(tmp_path / "o")]) == 2
    assert f"the first frame of {clip} does not decode (a damaged file)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def variable_rate(clip: Path) -> None:
    """Make `clip`, an OpenCV MP4 of an even number of frames at one rate (its index after its frames), show its
    first half at twice that rate and its second half at two thirds of it, its duration kept: a variable frame
    rate, as a phone records."""
    data = bytearray(clip.read_bytes())
    index = data.index(b"moov") - 4
    assert index > data.index(b"mdat"), "a longer index then moves no frame"
    at = data.index(b"stts", index) - 4
    size, _, _, entries, count, delta = struct.unpack(">I4sIIII", data[at:at + 24])
    assert (size, entries, count % 2, delta % 2) == (24, 1, 0, 0)
    half = count // 2
    data[at:at + 24] = struct.pack(">I4sIIIIII", 32, b"stts", 0, 2, half, delta // 2, half, delta * 3 // 2)
    for name in (b"moov", b"trak", b"mdia", b"minf", b"stbl"):
        start = data.index(name, index - 1) - 4
        data[start:start + 4] = struct.pack(">I", struct.unpack(">I", data[start:start + 4])[0] + 8)
    clip.write_bytes(data)


def test_a_video_of_variable_frame_rate_keeps_every_frame_and_says_its_frames_times_move(shared_data: Path,
                                                                                         tmp_path: Path, caplog):
    """OpenCV writes the dehazed videos at the input's mean frame rate: a phone's video, of variable rate, came out
    with its frames at other times than the input's, without a word."""
    clip = fog_clip(shared_data, tmp_path / "clip.mp4", frames=8)
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        assert main(["dehaze", str(clip), "--method", "dcp", "--out", str(out)]) == 0
        assert "variable frame rate" not in caplog.text, "a video of constant rate is written as it is"
        variable_rate(clip)
        assert main(["dehaze", str(clip), "--method", "dcp", "--out", str(out)]) == 0
    assert int(cv2.VideoCapture(str(out / "clip_dehazed.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 8
    assert ("clip.mp4 has a variable frame rate: the dehazed videos show its frames at its mean rate, 10.77 fps "
            "(OpenCV's writer keeps no frame times), up to 0.17 s earlier or later") in caplog.text


def _ebml(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(id, start, start of its data, size) of each EBML element of a Matroska file from `start` to `end`, and of
    those in its segment, info, tracks and clusters."""
    at = start
    while at < end:
        id_length = 9 - data[at].bit_length()
        size_length = 9 - data[at + id_length].bit_length()
        body = at + id_length + size_length
        size = int.from_bytes(data[at + id_length:body], "big") & ((1 << 7 * size_length) - 1)
        size = end - body if size == (1 << 7 * size_length) - 1 else size  # of unknown size: to the end
        element = int.from_bytes(data[at:at + id_length], "big")
        yield element, at, body, size
        if element in (0x18538067, 0x1549A966, 0x1654AE6B, 0xAE, 0x1F43B675):
            yield from _ebml(data, body, body + size)
        at = body + size


def variable_rate_mkv(clip: Path, times: list[int]) -> None:
    """Make `clip`, an OpenCV MKV, show its frames at `times` (ms; its one cluster from 0), as an MKV or WebM of
    variable rate (OBS's, a browser's) does: no default frame duration, its duration after the last frame."""
    data = bytearray(clip.read_bytes())
    elements = list(_ebml(data, 0, len(data)))
    blocks = [body for element, _, body, _ in elements if element == 0xA3]  # SimpleBlocks: track, time, flags
    assert len(blocks) == len(times) and [e for e, *_ in elements].count(0x1F43B675) == 1
    for body, time in zip(blocks, times):
        data[body + 1:body + 3] = struct.pack(">h", time)
    for element, at, body, size in elements:
        if element == 0x23E383:  # DefaultDuration, made a Void element of its length
            data[at:body + size] = bytes([0xEC, 0x80 | (body + size - at - 2)]) + bytes(body + size - at - 2)
        if element == 0x4489:  # Duration (ms)
            data[body:body + size] = struct.pack(">d" if size == 8 else ">f", 2 * times[-1] - times[-2])
    clip.write_bytes(data)


def test_an_mkv_of_variable_frame_rate_is_written_at_its_mean_rate(shared_data: Path, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """OpenCV gives an MKV's base rate, not its mean: a recording of variable rate was written at the rate of its
    fastest stretch and played too fast, the warning calling that rate its mean; and a cut H.264 file, whose last
    packets come before the frames shown ahead of them, read 10 fps as 9.4."""
    clip, out = fog_clip(shared_data, tmp_path / "clip.mkv", frames=8), tmp_path / "out"
    variable_rate_mkv(clip, [0, 25, 50, 75, 100, 400, 700, 1000])
    with caplog.at_level("WARNING"):
        assert main(["dehaze", str(clip), "--method", "dcp", "--out", str(out)]) == 0
    written = cv2.VideoCapture(str(out / "clip_dehazed.mp4"))
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == 8
    assert written.get(cv2.CAP_PROP_FPS) == pytest.approx(7, rel=1e-3)
    assert "at its mean rate, 7 fps" in caplog.text
    cut = tmp_path / "cut.mp4"  # H.264 with B-frames, 10 fps, its index before its frames
    cut.write_bytes((shared_data / "video" / "dvd_rural_fog_day.mp4").read_bytes()[:600_000])
    assert mean_frame_rate(cut, 10.0) == 10.0


def test_a_video_whose_frames_stop_decoding_says_so_and_exits_1(shared_data: Path, tmp_path: Path, caplog):
    """OpenCV ends a damaged video at the first frame that does not decode as at its end: half a clip was dehazed
    and the run said it had succeeded."""
    clip = fog_clip(shared_data, tmp_path / "clip.mp4", 20)
    data = bytearray(clip.read_bytes())
    data[len(data) // 2:len(data) // 2 + 4096] = bytes(4096)  # a stretch of its frames' data zeroed
    clip.write_bytes(data)
    out = tmp_path / "out"
    assert main(["dehaze", str(clip), "--method", "dcp", "--out", str(out)]) == 1
    written = int(cv2.VideoCapture(str(out / "clip_dehazed.mp4")).get(cv2.CAP_PROP_FRAME_COUNT))
    assert 0 < written < 20
    assert f"frame {written + 1} does not decode and a later one does (a damaged file)" in caplog.text


@pytest.mark.parametrize("suffix", [".avi", ".mkv"])
def test_a_video_cut_short_says_so_and_exits_1(shared_data: Path, tmp_path: Path, caplog, suffix: str):
    """A dashcam clip whose copy or recording stopped part way ends where its frames do, no later frame to tell
    it from a whole one: half of it was dehazed and the run said it had succeeded, though the container reports
    every frame (an AVI's header counts them, an MKV's duration gives them)."""
    clip, out = fog_clip(shared_data, tmp_path / f"clip{suffix}", 20), tmp_path / "out"
    with caplog.at_level("WARNING"):
        assert main(["dehaze", str(clip), "--method", "dcp", "--out", str(out)]) == 0
        assert "container reports" not in caplog.text, "a whole video is no cut one, its count exact or estimated"
    clip.write_bytes(clip.read_bytes()[:clip.stat().st_size // 2])
    assert main(["dehaze", str(clip), "--method", "dcp", "--out", str(out)]) == 1
    written = int(cv2.VideoCapture(str(out / "clip_dehazed.mp4")).get(cv2.CAP_PROP_FRAME_COUNT))
    assert 0 < written < 20
    assert f"clip{suffix} ends after {written} of the 20 frames its container reports (a file cut short" in caplog.text


@pytest.mark.parametrize(("name", "codec"), [("drive.TS", "mp4v"), ("cam.mjpeg", "MJPG")])
def test_a_dashcam_s_mpeg_ts_or_a_camera_s_mjpeg_stream_is_dehazed_as_a_video(shared_data: Path, tmp_path: Path,
                                                                             name: str, codec: str):
    """Videos were told by six suffixes: a dashcam's MPEG-TS recording was refused as 'not a readable image', and
    a raw MJPEG stream's first frame read as a JPEG photo, the run writing one image of its frames and exiting 0."""
    clip, out = fog_clip(shared_data, tmp_path / name, 6, codec), tmp_path / "out"
    assert main(["dehaze", str(clip), "--method", "dcp", "--out", str(out)]) == 0
    stem = Path(name).stem
    assert {p.name for p in out.iterdir()} == {"dehaze_run.json", f"{stem}_dehazed.mp4", f"{stem}_depth.mp4"}
    assert int(cv2.VideoCapture(str(out / f"{stem}_dehazed.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 6


def test_bad_input_gives_one_line_error_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    run = subprocess.run([sys.executable, "-m", "dgdehaze_core.cli", "dehaze", str(tmp_path / "missing.png"),
                          "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert run.returncode == 2, run.stderr  # the installed command's exit status and message, no traceback
    assert "Traceback" not in run.stderr and "error:" in run.stderr
    empty = tmp_path / "zero.png"
    empty.write_bytes(b"")
    for args in (["dehaze", str(empty), "--out", str(tmp_path / "o")],
                 ["dehaze", str(empty), "--method", "nonsense", "--out", str(tmp_path / "o")]):
        assert main(args) == 2
        assert "error:" in capsys.readouterr().err


def test_an_empty_path_an_unset_variable_gives_is_refused_not_taken_for_the_current_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`dgdehaze dehaze "$IN" --out "$OUT"` with a variable unset: Path("") is the current folder, and dehaze wrote
    its outputs there (or dehazed every image in it) with exit 0; export --calib "" calibrated on it."""
    here = tmp_path / "here"
    here.mkdir()
    cv2.imwrite(str(here / "frame.png"), np.full((24, 32, 3), 150, np.uint8))
    cv2.imwrite(str(tmp_path / "photo.png"), np.full((24, 32, 3), 150, np.uint8))
    monkeypatch.chdir(here)
    for args in (["dehaze", str(tmp_path / "photo.png"), "--method", "dcp", "--out", ""],
                 ["dehaze", "", "--method", "dcp", "--out", str(tmp_path / "o")],
                 ["export", "--config", "lite", "--int8", "--calib", "", "--out", str(tmp_path / "q.onnx")]):
        with pytest.raises(SystemExit) as stopped:
            main(args)
        assert stopped.value.code == 2 and "an empty path" in capsys.readouterr().err, args
    assert [p.name for p in here.iterdir()] == ["frame.png"] and not (tmp_path / "o").exists()
    assert not (tmp_path / "q.onnx").exists()


def test_inputs_sharing_a_name_get_outputs_of_their_own_and_no_input_is_overwritten(tmp_path: Path,
                                                                                    capsys: pytest.CaptureFixture):
    source = tmp_path / "in"
    source.mkdir()
    frame = np.full((24, 32, 3), 180, np.uint8)
    frame[8:16, 8:24] = 40
    cv2.imwrite(str(source / "frame.png"), frame)
    cv2.imwrite(str(source / "frame.jpg"), frame[:, ::-1])
    assert main(["dehaze", str(source), "--method", "dcp", "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("*_dehazed.png")) == ["frame_jpg_dehazed.png",
                                                                               "frame_png_dehazed.png"]
    cv2.imwrite(str(source / "frame_png_dehazed.png"), frame)  # an input named as an output would be
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    assert main(["dehaze", str(source), "--method", "dcp", "--out", str(source)]) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before


def test_a_video_write_that_fails_part_way_says_so_and_keeps_the_earlier_output(shared_data: Path,
                                                                                tmp_path: Path) -> None:
    import resource
    import signal

    clip, out = fog_clip(shared_data, tmp_path / "clip.mp4", frames=12), tmp_path / "out"
    arguments = ["dehaze", str(clip), "--method", "dcp", "--out", str(out)]
    command = [sys.executable, "-m", "dgdehaze_core.cli", *arguments]
    assert main(arguments) == 0  # the earlier output, written without a limit: in this process
    earlier = {p.name: p.read_bytes() for p in out.iterdir()}
    limit = min(len(data) for data in earlier.values()) // 2

    def small_files() -> None:  # files over `limit` bytes fail to write (EFBIG), as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    run = subprocess.run(command, capture_output=True, text=True, preexec_fn=small_files)
    assert run.returncode == 2 and "failed (a full disk or a file size limit?)" in run.stderr, run.stderr
    assert "was left as it was" in run.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == earlier, "the earlier videos stay, nothing is left"
    fresh = tmp_path / "fresh"  # a first run: no earlier video to keep, and no empty --out left behind
    run = subprocess.run([*command[:-1], str(fresh)], capture_output=True, text=True, preexec_fn=small_files)
    assert run.returncode == 2 and "; nothing was written" in run.stderr, run.stderr
    assert not fresh.exists()


def test_a_full_disk_in_a_folder_names_the_output_and_how_to_go_on(tmp_path: Path) -> None:
    """An output that could not be written ended the run with '[Errno 27] File too large' alone: no file named,
    nothing of what was kept or of --resume."""
    import resource
    import signal

    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    cv2.imwrite(str(source / "a.png"), np.full((8, 8, 3), 150, np.uint8))  # outputs of a few hundred bytes
    cv2.imwrite(str(source / "b.png"), np.random.default_rng(0).integers(0, 255, (96, 128, 3), np.uint8))

    def small_files() -> None:  # files over 4 kB fail to write (EFBIG), as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    arguments = ["dehaze", str(source), "--method", "dcp", "--out", str(out)]
    run = subprocess.run([sys.executable, "-m", "dgdehaze_core.cli", *arguments], capture_output=True, text=True,
                         preexec_fn=small_files)
    assert run.returncode == 2, run.stderr
    assert "stopped after 1 of the 2 images" in run.stderr and "--resume dehazes the rest" in run.stderr
    assert f"{out / 'b_dehazed.png'} could not be written: File too large" in run.stderr, run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a_dehazed.png", "a_depth.png", "dehaze_run.json"]
    assert main([*arguments, "--resume"]) == 0  # without the limit: in this process
    assert len(list(out.glob("b_*.png"))) == 2


def test_a_second_run_into_the_same_out_is_refused_while_the_first_writes(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Two runs into one --out at once (a command started twice, two terminals) mixed their images under the record
    of whichever wrote it last, so that a --resume took one run's outputs for the other's. The second is refused
    while the first writes; the first's outputs and record are whole, and no lock file is left once it ends."""
    import signal
    import time

    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    for index in range(3):
        cv2.imwrite(str(source / f"{index}.png"), np.random.default_rng(index).integers(0, 255, (96, 128, 3), np.uint8))
    first = subprocess.Popen([sys.executable, "-m", "dgdehaze_core.cli", "dehaze", str(source), "--method", "dcp",
                              "--out", str(out)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "dehaze_run.json").exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        first.send_signal(signal.SIGSTOP)  # held at its first image
        assert (out / "dehaze_run.json").exists(), "the first run writes its record before its first output"
        assert main(["dehaze", str(source), "--method", "dcp", "--out", str(out)]) == 2  # the same command again
        assert f"another dehaze run (pid {first.pid}) is writing into {out}" in capsys.readouterr().err
    finally:
        first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=120) == 0, first.stderr.read()
    assert sorted(p.name for p in out.iterdir()) == ["0_dehazed.png", "0_depth.png", "1_dehazed.png", "1_depth.png",
                                                      "2_dehazed.png", "2_depth.png", "dehaze_run.json"]
    assert json.loads((out / "dehaze_run.json").read_text())["method"] == "dcp"
    assert main(["dehaze", str(source), "--method", "dcp", "--out", str(out), "--resume"]) == 0  # free again


def test_a_folder_dehazed_into_itself_can_be_dehazed_again_and_resumed(shared_data: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """--out the input folder: the run after the first (the --resume that Ctrl-C advises, or the same command
    again) listed the first run's outputs as inputs and was refused, 'the outputs would overwrite the input
    frame_0_dehazed.png'. The outputs of the run whose record the folder holds are not inputs."""
    source = tmp_path / "frames"
    source.mkdir()
    for index, path in enumerate(sorted((shared_data / "hazy-real" / "urhi").glob("*.png"))[:2]):
        cv2.imwrite(str(source / f"frame_{index}.png"), cv2.resize(read_image(path), (64, 48)))
    assert main(["dehaze", str(source), "--method", "dcp", "--out", str(source)]) == 0
    names = {"frame_0.png", "frame_1.png", "dehaze_run.json"} | {f"frame_{index}_{kind}.png" for index in (0, 1)
                                                                for kind in ("dehazed", "depth")}
    assert {p.name for p in source.iterdir()} == names
    (source / "frame_1_depth.png").unlink()  # as a run stopped part way
    assert main(["dehaze", str(source), "--method", "dcp", "--out", str(source), "--resume"]) == 0, \
        capsys.readouterr().err
    assert {p.name for p in source.iterdir()} == names
    assert main(["dehaze", str(source), "--method", "dcp", "--out", str(source)]) == 0, capsys.readouterr().err
    assert {p.name for p in source.iterdir()} == names
    shutil.copy(source / "frame_0.png", source / "frame_0.jpg")  # a photo that shares a stem comes later
    assert main(["dehaze", str(source), "--method", "dcp", "--out", str(source), "--resume"]) == 0
    written = {p.name for p in source.iterdir()} - names
    assert written == {f"frame_0_{suffix}_{kind}.png" for suffix in ("png", "jpg") for kind in ("dehazed", "depth")
                       } | {"frame_0.jpg"}, "the outputs written under the earlier names are no photos to dehaze"


def test_a_resume_left_only_unreadable_images_skips_them_and_exits_1(shared_data: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    """A resumed run whose images left to do were all unreadable said 'no image in DIR could be read', exit 2, as
    for a folder of no image at all: the images its run had dehazed read, and the unreadable ones are skipped."""
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    shutil.copy(sorted((shared_data / "hazy-real" / "urhi").glob("*.png"))[0], source / "a.png")
    (source / "b.png").write_bytes(b"\x89PNG garbage")
    assert main(["dehaze", str(source), "--method", "dcp", "--out", str(out)]) == 1
    kept = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(["dehaze", str(source), "--method", "dcp", "--out", str(out), "--resume"]) == 1
    assert "could be read" not in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == kept


def test_ctrl_c_as_a_video_run_reads_its_frame_count_stops_it_with_130(shared_data: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture) -> None:
    """A signal while the frame count was read, inside the block whose handler says how far the run got, ended
    the run with an UnboundLocalError (exit 1, a traceback: the count it would name was not set yet); a stop from
    the first output file on says how far it got, which the next test checks. The signal is raised where the count
    is read: no timing lands it there every time."""
    import dgdehaze_core.commands.dehaze as dehaze

    def interrupted(path: Path) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(dehaze, "video_frame_count", interrupted)
    clip, out = fog_clip(shared_data, tmp_path / "clip.mp4"), tmp_path / "out"
    assert main(["dehaze", str(clip), "--method", "dcp", "--out", str(out), "--no-progress"]) == 130
    assert "Traceback" not in capsys.readouterr().err
    assert not out.exists() or list(out.iterdir()) == []


def test_sigterm_stops_a_command_like_ctrl_c_and_leaves_no_half_written_file(shared_data: Path,
                                                                            tmp_path: Path) -> None:
    import signal
    import time

    clip, out = fog_clip(shared_data, tmp_path / "clip.mp4", frames=36), tmp_path / "out"
    run = subprocess.Popen([sys.executable, "-m", "dgdehaze_core.cli", "dehaze", str(clip), "--method", "dcp",
                            "--out", str(out)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(".part" in p.name for p in out.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.01)
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 128 + signal.SIGTERM and "terminated (SIGTERM)" in stderr, stderr
    assert not out.exists(), "the videos being written are removed, not left as .part files, and the --out made"
    assert re.search(r"stopped after \d+ of 36 frames of clip\.mp4: a video's outputs are written whole, at its "
                     r"end, so none is kept", stderr), stderr


def test_ctrl_c_in_a_folder_keeps_the_outputs_written_and_says_how_to_go_on_with_resume(
        shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Ctrl-C said only 'interrupted': the outputs written were whole, but nothing said so, and the only way on was
    to dehaze the whole folder again."""
    import signal
    import time

    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    photo = (shared_data / "detection" / "dawn-fog" / "foggy-001.jpg").read_bytes()
    for index in range(40):  # far more than are dehazed before the stop lands
        (source / f"frame_{index:03d}.jpg").write_bytes(photo)
    run = subprocess.Popen([sys.executable, "-m", "dgdehaze_core.cli", "dehaze", str(source), "--method", "dcp",
                            "--out", str(out)], stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (out / "frame_002_depth.png").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 130 and "the same command with --resume dehazes the rest" in stderr, stderr
    earlier = {p: p.stat().st_mtime_ns for p in out.glob("*.png")}
    shape = read_image(source / "frame_000.jpg").shape
    assert 6 <= len(earlier) < 80 and all(read_image(p).shape == shape for p in earlier), "whole images"
    os.utime(source / "frame_000.jpg")  # changed after its outputs were written: dehazed again
    with caplog.at_level("INFO", logger="dgdehaze_core.commands"):
        assert main(["dehaze", str(source), "--method", "dcp", "--out", str(out), "--resume"]) == 0
    done = len([p for p in earlier if p.name.endswith("_depth.png")]) - 1
    assert f"--resume: {done} of 40 images have their outputs in {out} already" in caplog.text
    assert len(list(out.glob("*.png"))) == 80
    kept = {p for p, changed in earlier.items() if p.stat().st_mtime_ns == changed}
    assert {p.name for p in set(earlier) - kept} >= {"frame_000_dehazed.png", "frame_000_depth.png"}
    assert len(kept) >= 2 * done
    with caplog.at_level("INFO", logger="dgdehaze_core.commands"):
        assert main(["dehaze", str(source), "--method", "dcp", "--out", str(out), "--resume"]) == 0
    assert "40 of 40 images have their outputs" in caplog.text


def test_resume_goes_on_only_with_the_run_that_wrote_the_folder(tmp_path: Path, foggy_road: np.ndarray,
                                                                capsys: pytest.CaptureFixture,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """--resume kept whatever outputs a folder held: resumed with other weights (or another output mode or input
    bits), a folder ended up holding images of two runs without a word. The folder's run record says what wrote it,
    and another run is refused before it writes anything, and before it builds a runtime (an ONNX export here, a
    TensorRT engine on a GPU: minutes)."""
    monkeypatch.setenv("DGDEHAZE_ENGINE_CACHE", str(tmp_path / "engines"))
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    photo = cv2.resize(foggy_road, (96, 64), interpolation=cv2.INTER_AREA)
    for index in range(3):
        cv2.imwrite(str(source / f"frame_{index}.png"), photo)
    assert main(["dehaze", str(source), "--method", "lite", "--out", str(out)]) == 0
    record = json.loads((out / "dehaze_run.json").read_text())
    assert record["method"] == "lite" and record["weights"]["path"] == "dgdehaze_lite.pt"
    assert len(record["weights"]["sha256"]) == 12 and (record["output"], record["input_bits"]) == ("auto", 16)
    assert record["radiance_floor"] == 0.02 and record["max_detail_gain"] == 2.0
    (out / "frame_2_dehazed.png").unlink()  # as a run stopped before its last image
    kept = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    for other, differing in ((["--method", "dcp"], "weights differs"),  # not its floor and gain, which dcp lacks
                             (["--method", "lite", "--output", "decoder", "--backend", "onnxruntime"],
                              "output differs"),  # nor the decoder's image
                             (["--method", "lite", "--input-bits", "12"], "input_bits differs"),
                             (["--method", "lite", "--radiance-floor", "none"], "radiance_floor differs"),
                             (["--method", "lite", "--max-detail-gain", "0"], "max_detail_gain differs"),
                             (["--method", "lite", "--working-size", "48x0"], "working_size differs"),
                             (["--method", "dcp", "--input-bits", "12"], "weights, input_bits differ")):
        assert main(["dehaze", str(source), *other, "--out", str(out), "--resume"]) == 2, other
        error = capsys.readouterr().err
        assert f"--resume goes on with the run that wrote {out}, but its {differing} (it ran" in error, error
        assert {p.name: p.read_bytes() for p in out.iterdir()} == kept, "a refused run wrote nothing"
        assert not (tmp_path / "engines").exists(), "a refused run exported nothing"
    shipped = str(Path(__file__).resolve().parents[1] / "dgdehaze_core" / "weights" / "dgdehaze_lite.pt")
    assert main(["dehaze", str(source), "--method", shipped, "--out", str(out), "--resume"]) == 0, \
        "the same weights named by their file are the same run"
    assert (out / "frame_2_dehazed.png").is_file()
    assert (out / "frame_0_dehazed.png").read_bytes() == kept["frame_0_dehazed.png"], "kept, not written again"
    # every output there: another run was told "all done" (exit 0) without its record being checked
    assert main(["dehaze", str(source), "--method", "lite", "--input-bits", "12", "--out", str(out), "--resume"]) == 2
    assert "but its input_bits differs" in capsys.readouterr().err


def test_the_radiance_floor_reaches_the_image_and_a_run_from_before_records_held_it_resumes_only_without_one(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--radiance-floor is the node's radiance_floor for `dehaze`: on a clear KITTI frame lite without it crushes
    pixels to black, with it none. A folder written before the floor existed (its record without the key) was
    dehazed without one: resuming it with the default would mix images of two pipelines, so it is refused, and goes
    on with --radiance-floor none."""
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    frame = read_image(sorted((shared_data / "depth" / "kitti-tiny").rglob("image_02/data/*.png"))[0])
    cv2.imwrite(str(source / "clear.png"), cv2.resize(frame, (310, 94), interpolation=cv2.INTER_AREA))
    crushed = {}
    for floor in ("none", "0.02"):
        assert main(["dehaze", str(source), "--out", str(out / floor), "--radiance-floor", floor]) == 0
        dehazed = read_image(out / floor / "clear_dehazed.png")
        crushed[floor] = float(((dehazed == 0) & (read_image(source / "clear.png") != 0)).any(axis=2).mean())
    assert crushed["none"] > 0.05 and crushed["0.02"] == 0.0, crushed
    record = json.loads((out / "0.02" / "dehaze_run.json").read_text())
    del record["radiance_floor"]  # as a run before the floor existed wrote it
    (out / "0.02" / "dehaze_run.json").write_text(json.dumps(record))
    (out / "0.02" / "clear_depth.png").unlink()
    capsys.readouterr()
    assert main(["dehaze", str(source), "--out", str(out / "0.02"), "--resume"]) == 2
    assert "but its radiance_floor differs" in capsys.readouterr().err
    assert main(["dehaze", str(source), "--out", str(out / "0.02"), "--resume", "--radiance-floor", "none"]) == 0
    assert main(["dehaze", str(source), "--method", "dcp", "--out", str(tmp_path / "dcp"),
                 "--radiance-floor", "0.02"]) == 2
    assert "--radiance-floor and --max-detail-gain choose how a network runs; dcp has none" in capsys.readouterr().err


def test_the_working_size_reaches_the_network_and_the_image_keeps_the_input_s_size(
        foggy_road: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`dehaze` ran each network at the input's size only: a user whose node runs at working_width 48 (the height
    from the aspect ratio) had no way to see its images offline. A folder written before records held the working
    size was dehazed at each input's size: it resumes without the option."""
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    cv2.imwrite(str(source / "road.png"), cv2.resize(foggy_road, (96, 64), interpolation=cv2.INTER_AREA))
    images = {}
    for name, options in (("full", []), ("48x0", ["--working-size", "48x0"])):
        assert main(["dehaze", str(source), "--out", str(out / name), *options]) == 0
        images[name] = read_image(out / name / "road_dehazed.png")
    assert images["48x0"].shape == images["full"].shape == (64, 96, 3)
    assert np.abs(images["48x0"].astype(int) - images["full"]).mean() > 0.5, "the same image: no working size ran"
    record = json.loads((out / "48x0" / "dehaze_run.json").read_text())
    assert record["working_size"] == [48, 0]
    record = json.loads((out / "full" / "dehaze_run.json").read_text())
    del record["working_size"]  # as a run before records held the working size wrote it
    (out / "full" / "dehaze_run.json").write_text(json.dumps(record))
    (out / "full" / "road_depth.png").unlink()
    assert main(["dehaze", str(source), "--out", str(out / "full"), "--resume"]) == 0
    capsys.readouterr()
    for size, reason in (("0x0", "working_size must be positive"), ("48", "a size WxH such as 320x240")):
        with pytest.raises(SystemExit):
            main(["dehaze", str(source), "--out", str(out / "bad"), "--working-size", size])
        assert reason in capsys.readouterr().err


def test_the_detail_gain_reaches_the_image_and_a_run_from_before_records_held_it_resumes_with_the_default(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--max-detail-gain is the node's max_detail_gain for `dehaze`: on a real photo of dense fog the exact inversion
    (0) amplifies the sky's grain beyond the default's limit, and a larger gain lies between. A folder written before
    records held the gain was made with the default: it resumes with it, and not with another."""
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    photo = read_image(shared_data / "detection" / "dawn-fog" / "foggy-001.jpg")
    cv2.imwrite(str(source / "fog.png"), cv2.resize(photo, (320, 240), interpolation=cv2.INTER_AREA))
    grain = {}
    for gain in ("0", "2", "3"):
        assert main(["dehaze", str(source), "--out", str(out / gain), "--max-detail-gain", gain]) == 0
        dehazed = read_image(out / gain / "fog_dehazed.png").astype(np.float32)
        grain[gain] = float(np.abs(dehazed - cv2.GaussianBlur(dehazed, (5, 5), 0)).mean())
    assert grain["2"] < grain["3"] < grain["0"], grain  # about 1.26, 1.50 and 1.65
    record_path = out / "2" / "dehaze_run.json"
    record = json.loads(record_path.read_text())
    assert record["max_detail_gain"] == 2.0 and json.loads((out / "0" / "dehaze_run.json").read_text())[
        "max_detail_gain"] is None
    del record["max_detail_gain"]  # as a run before records held the gain wrote it
    record_path.write_text(json.dumps(record))
    (out / "2" / "fog_depth.png").unlink()
    capsys.readouterr()
    assert main(["dehaze", str(source), "--out", str(out / "2"), "--resume", "--max-detail-gain", "3"]) == 2
    assert "but its max_detail_gain differs" in capsys.readouterr().err
    assert main(["dehaze", str(source), "--out", str(out / "2"), "--resume"]) == 0
    assert (out / "2" / "fog_depth.png").is_file()
    assert main(["dehaze", str(source), "--out", str(tmp_path / "decoder"), "--output", "decoder",
                 "--max-detail-gain", "0"]) == 2, "the decoder's image has no detail gain to set"
    assert "and --output decoder writes the decoder's image, which neither changes" in capsys.readouterr().err
    assert not (tmp_path / "decoder").exists()


def test_resume_of_another_recording_into_its_out_is_refused_not_taken_for_done(
        tmp_path: Path, foggy_road: np.ndarray, capsys: pytest.CaptureFixture[str]) -> None:
    """Cameras name the frames of every recording alike: a folder resumed into an --out that a run over another
    recording had filled was told all its images were done (exit 0), its names holding the other recording's
    images, as their outputs were written after its files and by a run with the same weights (helper 155's case).
    The run record names its input, and a resume of another is refused before any work, the outputs kept."""
    first, second, out = tmp_path / "recording_1", tmp_path / "recording_2", tmp_path / "out"
    photo = cv2.resize(foggy_road, (96, 64), interpolation=cv2.INTER_AREA)
    for folder, shade in ((first, 0), (second, 60)):
        folder.mkdir()
        for index in range(2):
            cv2.imwrite(str(folder / f"frame_{index}.png"), cv2.add(photo, shade + index))
            os.utime(folder / f"frame_{index}.png", (1e9, 1e9))  # recorded before either run
    assert main(["dehaze", str(first), "--method", "dcp", "--out", str(out)]) == 0
    written = {p.name: p.read_bytes() for p in out.glob("*.png")}
    capsys.readouterr()
    assert main(["dehaze", str(second), "--method", "dcp", "--out", str(out), "--resume"]) == 2
    error = capsys.readouterr().err
    assert "but its input differs" in error and str(first.resolve()) in error and str(second.resolve()) in error
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == written
    assert main(["dehaze", str(first), "--method", "dcp", "--out", str(out), "--resume"]) == 0
    record = json.loads((out / "dehaze_run.json").read_text())
    del record["input"], record["made_from"]  # as written before records named their input: taken for any input's
    (out / "dehaze_run.json").write_text(json.dumps(record))
    assert main(["dehaze", str(second), "--method", "dcp", "--out", str(out), "--resume"]) == 0


def test_resume_redoes_the_outputs_an_earlier_run_left_in_the_folder(tmp_path: Path, foggy_road: np.ndarray,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A lite run stopped after its first image, in a folder a dcp run had filled: its record said lite, and
    --resume took dcp's outputs of the other images for its own ("3 of 3 images have their outputs"), exit 0."""
    source, part, out = tmp_path / "in", tmp_path / "part", tmp_path / "out"
    source.mkdir()
    part.mkdir()
    photo = cv2.resize(foggy_road, (96, 64), interpolation=cv2.INTER_AREA)
    for index in range(3):
        cv2.imwrite(str(source / f"frame_{index}.png"), photo + np.uint8(index))
    assert main(["dehaze", str(source), "--method", "dcp", "--out", str(out)]) == 0
    by_dcp = {p.name: p.read_bytes() for p in out.glob("*.png")}
    for index in (1, 2):  # as a lite run stopped after the first image
        (source / f"frame_{index}.png").rename(part / f"frame_{index}.png")
    assert main(["dehaze", str(source), "--method", "lite", "--out", str(out)]) == 0
    for index in (1, 2):
        (part / f"frame_{index}.png").rename(source / f"frame_{index}.png")
    with caplog.at_level("INFO", logger="dgdehaze_core.commands"):
        assert main(["dehaze", str(source), "--method", "lite", "--out", str(out), "--resume"]) == 0
    assert f"--resume: 1 of 3 images have their outputs in {out} already" in caplog.text
    assert all((out / name).read_bytes() != data for name, data in by_dcp.items()), "every output is lite's"
    caplog.clear()
    with caplog.at_level("INFO", logger="dgdehaze_core.commands"):  # the resumed run's outputs are its own
        assert main(["dehaze", str(source), "--method", "lite", "--out", str(out), "--resume"]) == 0
    assert "3 of 3 images have their outputs" in caplog.text

def test_no_progress_leaves_the_bar_out_of_a_log(tmp_path: Path, foggy_road: np.ndarray,
                                               capsys: pytest.CaptureFixture) -> None:
    """bag-eval and train took --no-progress, dehaze did not: a script's log held the bar's every redraw."""
    image = tmp_path / "road.png"
    cv2.imwrite(str(image), cv2.resize(foggy_road, (64, 48), interpolation=cv2.INTER_AREA))
    assert main(["dehaze", str(image), "--method", "dcp", "--out", str(tmp_path / "bar")]) == 0
    assert "dehaze: 100%|" in capsys.readouterr().err
    assert main(["dehaze", str(image), "--method", "dcp", "--out", str(tmp_path / "quiet"), "--no-progress"]) == 0
    assert "%|" not in capsys.readouterr().err and (tmp_path / "quiet" / "road_dehazed.png").is_file()


def test_resume_is_refused_for_a_video(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    clip = fog_clip(shared_data, tmp_path / "clip.mp4", frames=2)
    assert main(["dehaze", str(clip), "--method", "dcp", "--out", str(tmp_path / "o"), "--resume"]) == 2
    assert "--resume is for a folder of images" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_a_video_or_an_out_named_in_latin1_is_refused_in_one_line_not_a_crash(shared_data: Path,
                                                                              tmp_path: Path) -> None:
    """OpenCV's binding crashes the process on a path that is no UTF-8: a video named in Latin-1 (an old camera's,
    a Windows share's) or such an --out ended the command in a segmentation fault, without a word, leaving lock
    files in --out."""
    clip = fog_clip(shared_data, tmp_path / "clip.mp4", frames=2)
    latin1 = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.mp4"))
    shutil.copy(clip, latin1)
    for source, out in ((latin1, tmp_path / "o"), (clip, Path(os.fsdecode(bytes(tmp_path) + b"/sortie\xe9")))):
        run = subprocess.run([sys.executable, "-m", "dgdehaze_core.cli", "dehaze", source, "--method", "dcp",
                              "--out", out], capture_output=True, text=True, errors="replace")
        assert run.returncode == 2 and "only at paths that are UTF-8" in run.stderr, (run.returncode, run.stderr)
        assert not out.exists()


@pytest.mark.parametrize("size", [(1, 1), (64, 1)])
def test_a_video_opencv_cannot_encode_is_refused_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                 opened: list[str], size: tuple[int, int]):
    """A video one pixel high or wide was refused once the network was built, after a warning that its videos
    'come out 64x0', with advice to dehaze its frames as images and no word of how to get them."""
    video = tmp_path / "dot.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    for _ in range(3):
        writer.write(np.full((size[1], size[0], 3), 120, np.uint8))
    writer.release()
    opened.clear()
    assert main(["dehaze", str(video), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.endswith(f"dgdehaze dehaze: error: dot.avi is {size[0]}x{size[1]}: the MPEG-4 "
                                            "videos written take 2 pixels or more each way; dehaze its frames as "
                                            "images to keep every pixel (ffmpeg -i VIDEO FOLDER/%06d.png)\n")
    assert "dgdehaze_lite.pt" not in opened and not (tmp_path / "o").exists()


def test_an_input_with_nothing_to_dehaze_leaves_no_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture):
    """A video without frames made an empty --out before it was found unreadable."""
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "broken.png").write_bytes(b"not a png")
    for source, message in ((tmp_path / "empty.mp4", "is not a readable video"),
                            (tmp_path / "photos", "could be read")):
        assert main(["dehaze", str(source), "--method", "dcp", "--out", str(tmp_path / "o")]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "o").exists()


def test_a_video_that_does_not_read_is_refused_before_the_network_is_built(shared_data: Path, tmp_path: Path,
                                                                           opened: list[str],
                                                                           capsys: pytest.CaptureFixture) -> None:
    """A recording whose index was never written (its power cut: an MP4 keeps its index after its frames) was found
    unreadable only once the network was built, which an ONNX export or a TensorRT engine makes minutes."""
    clip, weights = fog_clip(shared_data, tmp_path / "clip.mp4", 4), tmp_path / "net.pt"
    clip.write_bytes(clip.read_bytes()[:clip.stat().st_size // 2])
    shutil.copy(Path(__file__).resolve().parents[1] / "dgdehaze_core" / "weights" / "dgdehaze_lite.pt", weights)
    opened.clear()
    assert main(["dehaze", str(clip), "--method", str(weights), "--out", str(tmp_path / "o")]) == 2
    assert f"{clip} is not a readable video" in capsys.readouterr().err
    assert "net.pt" not in opened and not (tmp_path / "o").exists()


@pytest.mark.parametrize("out", ["dehazed.mp4", "result.PNG"])
def test_an_out_named_as_a_video_or_an_image_is_refused_not_made_a_folder(shared_data: Path, tmp_path: Path, out: str,
                                                                          capsys: pytest.CaptureFixture) -> None:
    """`dehaze drive.mp4 --out dehazed.mp4`, the output file a user asks for, made a folder named dehazed.mp4 that
    held drive_dehazed.mp4 and drive_depth.mp4; a folder of that name already there is taken."""
    clip = fog_clip(shared_data, tmp_path / "drive.mp4", 2)
    assert main(["dehaze", str(clip), "--method", "dcp", "--out", str(tmp_path / out)]) == 2
    assert (f"--out {tmp_path / out} is named as a file, but it is the folder the outputs are written into "
            "(NAME_dehazed.mp4 and NAME_depth.mp4): give a folder") in capsys.readouterr().err
    assert not (tmp_path / out).exists()
    (tmp_path / out).mkdir()
    assert main(["dehaze", str(clip), "--method", "dcp", "--out", str(tmp_path / out)]) == 0
    assert (tmp_path / out / "drive_dehazed.mp4").is_file()


def test_one_image_that_does_not_read_is_the_error_itself(tmp_path: Path, capsys: pytest.CaptureFixture):
    """A single unreadable file was logged as skipped, then "no image in FILE could be read" (a folder's words)."""
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert main(["dehaze", str(broken), "--method", "dcp", "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert f"{broken} is not a readable image" in error
    assert "skipped" not in error and "no image in" not in error
    assert not (tmp_path / "o").exists()


def test_half_with_engines_alone_runs_them_on_cuda_as_an_engine_needs(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture):
    """`--half` with an .engine was refused as fp16 on the CPU ("add --device cuda"), though an engine runs on CUDA
    alone; with another network beside it (eval), that network still needs the device said."""
    import torch

    engine = tmp_path / "lite.engine"
    engine.write_bytes(b"")  # never read here: the device is settled first
    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), np.full((16, 16, 3), 128, np.uint8))
    assert main(["dehaze", str(photo), "--method", str(engine), "--half", "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert "add --device cuda" not in error
    if not torch.cuda.is_available():  # it said "device 'cuda' was requested", which no one had asked for
        assert "TensorRT engines run on CUDA only, and this machine has no CUDA device" in error
        assert "give the .pt or .onnx weights" in error
    assert main(["eval", "--dataset", str(tmp_path), "--measure", "haze", "--method", f"lite,trt={engine}",
                 "--half"]) == 2
    assert "add --device cuda" in capsys.readouterr().err


def test_a_folder_of_folders_or_videos_names_them(tmp_path: Path, capsys: pytest.CaptureFixture):
    """A data set's root (DAWN/ with Fog/ and Rain/) or a folder of videos holds no image itself: the error says
    what it does hold, which dehaze takes one by one."""
    for kind in ("Fog", "Rain"):
        (tmp_path / "DAWN" / kind).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "DAWN" / kind / "a.jpg"), np.full((8, 8, 3), 200, np.uint8))
    assert main(["dehaze", str(tmp_path / "DAWN"), "--method", "dcp", "--out", str(tmp_path / "o")]) == 2
    assert "no images in" in (error := capsys.readouterr().err) and "Fog/, Rain/: name one" in error
    assert not (tmp_path / "o").exists()
    videos = tmp_path / "drives"  # a folder of dashcam clips: only 'no images in drives' was said
    videos.mkdir()
    for name in ("a.mp4", "b.MOV"):
        (videos / name).write_bytes(b"")
    assert main(["dehaze", str(videos), "--method", "dcp", "--out", str(tmp_path / "o")]) == 2
    assert "it holds a.mp4, b.MOV: name one" in capsys.readouterr().err


def test_the_videos_beside_a_folder_s_images_are_named_not_left_out_without_a_word(shared_data: Path,
                                                                                    tmp_path: Path, caplog) -> None:
    """A folder run dehazes the images in it: a drive's videos beside them were left out, the run saying only
    'wrote 1 dehazed images', exit 0."""
    source = tmp_path / "drive"
    source.mkdir()
    cv2.imwrite(str(source / "cover.png"), np.full((24, 32, 3), 150, np.uint8))
    fog_clip(shared_data, source / "front.MP4", frames=2)
    (source / "._front.MP4").write_bytes(b"\x00\x05\x16\x07 AppleDouble sidecar")
    with caplog.at_level("WARNING"):
        assert main(["dehaze", str(source), "--method", "dcp", "--out", str(tmp_path / "out")]) == 0
    assert f"{source} holds 1 video(s) that a folder's run does not dehaze (front.MP4): name each" in caplog.text
    assert [p.name for p in (tmp_path / "out").glob("*.mp4")] == []


def test_one_pixel_image_is_dehazed(tmp_path: Path):
    path = tmp_path / "dot.png"
    cv2.imwrite(str(path), np.full((1, 1, 3), 200, np.uint8))
    assert main(["dehaze", str(path), "--out", str(tmp_path / "o")]) == 0
    assert read_image(tmp_path / "o" / "dot_dehazed.png").shape == (1, 1, 3)


@pytest.mark.parametrize("target", ["out", "out/inside"])
def test_an_unwritable_output_gives_one_line_and_exit_2(read_only_folder: Path, tmp_path: Path, target: str):
    image = tmp_path / "dot.png"
    cv2.imwrite(str(image), np.full((8, 8, 3), 200, np.uint8))
    run = subprocess.run([sys.executable, "-m", "dgdehaze_core.cli", "dehaze", str(image), "--method", "dcp",
                          "--out", str(read_only_folder / target)], capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    errors = [line for line in run.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Read-only file system" in errors[0]
    assert not any(read_only_folder.iterdir())


def test_an_out_folder_that_takes_no_file_is_named_before_the_model_is_loaded(read_only_folder: Path, tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture[str]):
    """An existing read-only --out was named only by a write's temporary lock file ('[Errno 30] Read-only file
    system: .../.a_dehazed.png~....lock'), and any unwritable --out only after the model was loaded."""
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.full((8, 8, 3), 200, np.uint8))
    for out in (read_only_folder, read_only_folder / "new"):
        assert main(["dehaze", str(image), "--method", str(tmp_path / "absent.pt"), "--out", str(out)]) == 2
        assert f"--out {out} cannot be written: Read-only file system in {read_only_folder}" in capsys.readouterr().err
    assert main(["dehaze", str(image), "--out", str(image / "out")]) == 2
    assert f"--out {image / 'out'} lies under {image}, a file: give a folder" in capsys.readouterr().err


def test_inputs_whose_names_differ_in_case_or_build_another_s_output_name_each_keep_their_outputs(tmp_path: Path):
    source = tmp_path / "in"
    source.mkdir()
    names = ("frame.png", "frame.PNG", "a.png", "a.jpg", "a_png.png")
    for index, name in enumerate(names):
        cv2.imwrite(str(source / name), np.full((24, 32, 3), 40 + 30 * index, np.uint8))
    out = tmp_path / "out"
    assert main(["dehaze", str(source), "--method", "dcp", "--out", str(out)]) == 0
    dehazed = sorted(out.glob("*_dehazed.png"))
    assert len(dehazed) == len(names) and len({p.name.lower() for p in dehazed}) == len(names), dehazed
    assert len({int(read_image(p)[0, 0, 0]) for p in dehazed}) == len(names), "each input has its own output"


def test_a_file_opencv_refuses_or_with_a_name_that_is_no_utf8_is_one_input_of_the_batch(tmp_path: Path):
    source = tmp_path / "in"
    source.mkdir()
    frame = np.full((24, 32, 3), 150, np.uint8)
    cv2.imwrite(str(source / "a.png"), frame)
    latin1 = Path(os.fsdecode(bytes(source) + b"/caf\xe9.png"))  # a Latin-1 name from an old camera
    latin1.write_bytes(cv2.imencode(".png", frame)[1].tobytes())
    (source / "b.png").write_bytes(b"P7\nWIDTH 60000\nHEIGHT 60000\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n"
                                   + bytes(64))  # a PAM header, which OpenCV refuses from its own pixel limit
    out = tmp_path / "out"
    assert main(["dehaze", str(source), "--method", "dcp", "--out", str(out)]) == 1
    assert sorted(os.fsencode(p.name) for p in out.glob("*_dehazed.png")) == [b"a_dehazed.png",
                                                                              b"caf\xe9_dehazed.png"]


def test_an_output_that_is_a_folder_a_name_too_long_or_an_out_that_is_a_file_is_refused_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in"
    source.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(source / name), np.full((24, 32, 3), 150, np.uint8))
    out = tmp_path / "out"
    (out / "b_depth.png").mkdir(parents=True)
    assert main(["dehaze", str(source), "--method", "dcp", "--out", str(out)]) == 2
    assert "b_depth.png, is a folder" in capsys.readouterr().err and [p.name for p in out.iterdir()] == ["b_depth.png"]
    (out / "b_depth.png").rmdir()
    cv2.imwrite(str(source / ("x" * 246 + ".png")), np.full((24, 32, 3), 150, np.uint8))
    assert main(["dehaze", str(source), "--method", "dcp", "--out", str(out)]) == 2
    assert "longer than a file name may be" in capsys.readouterr().err and list(out.iterdir()) == []
    (source / ("x" * 246 + ".png")).unlink()
    (out / "a_file").write_text("kept")
    assert main(["dehaze", str(source), "--method", "dcp", "--out", str(out / "a_file")]) == 2
    assert "is a file: give a folder" in capsys.readouterr().err and (out / "a_file").read_text() == "kept"


def test_dehaze_runs_the_network_on_the_backend_asked_for_and_refuses_fp16_off_a_gpu(shared_data: Path,
                                                                                   tmp_path: Path, capsys):
    photo = sorted((shared_data / "hazy-real" / "urhi").iterdir())[0]
    images = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / backend
        assert main(["dehaze", str(photo), "--method", "lite", "--backend", backend, "--out", str(out)]) == 0
        images[backend] = read_image(out / f"{photo.stem}_dehazed.png").astype(np.int16)
    assert np.abs(images["onnxruntime"] - images["torch"]).max() <= 2, "one network on two runtimes"
    assert main(["dehaze", str(photo), "--method", "lite", "--half", "--out", str(tmp_path / "half")]) == 2
    assert "--half runs the networks in fp16 on a GPU" in capsys.readouterr().err
    assert not (tmp_path / "half").exists()
    assert main(["dehaze", str(photo), "--method", "dcp", "--backend", "auto", "--out", str(tmp_path / "d")]) == 2
    assert "dcp has none" in capsys.readouterr().err  # it named --device, which was not given


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_a_phone_photo_is_dehazed_upright_as_viewers_show_it(shared_data: Path, tmp_path: Path, orientation: int):
    from PIL import Image, ImageOps

    exif = Image.Exif()
    exif[0x0112] = orientation  # a phone's photo, stored turned: viewers turn it upright
    turn = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}[orientation]
    photo = tmp_path / "phone.jpg"
    Image.open(shared_data / "detection" / "dawn-fog" / "foggy-001.jpg").transpose(turn).save(photo, quality=95,
                                                                                              exif=exif)
    upright = tmp_path / "upright.png"
    ImageOps.exif_transpose(Image.open(photo)).save(upright)  # the same photo as viewers show it, untagged
    for source, out in ((photo, tmp_path / "out"), (upright, tmp_path / "reference")):
        assert main(["dehaze", str(source), "--method", "lite", "--out", str(out)]) == 0
    for kind in ("dehazed", "depth"):
        output = Image.open(tmp_path / "out" / f"phone_{kind}.png")
        assert output.getexif().get(0x0112) is None and output.size == (640, 338)  # shown as written: upright
        reference = np.asarray(Image.open(tmp_path / "reference" / f"upright_{kind}.png"), dtype=float)
        # the network read the photo with its sky on top, as it learnt scenes, not sideways or upside down
        assert np.abs(np.asarray(output, dtype=float) - reference).mean() < 1, kind


def test_a_12_bit_camera_s_16_bit_pngs_are_dehazed_as_their_8_bit_photos_with_input_bits_12(shared_data: Path,
                                                                                          tmp_path: Path, caplog):
    """Frames of a 12-bit camera exported to 16-bit PNGs (samples 0..4095): with --input-bits 12 their outputs are
    those of the photos as 8 bits; without it a warning, once for the folder, says to give it."""
    eight, twelve = tmp_path / "eight", tmp_path / "twelve"
    eight.mkdir()
    twelve.mkdir()
    for name in ("foggy-001.jpg", "foggy-004.jpg"):
        photo = read_image(shared_data / "detection" / "dawn-fog" / name)
        cv2.imwrite(str(eight / f"{Path(name).stem}.png"), photo)
        cv2.imwrite(str(twelve / f"{Path(name).stem}.png"), ((photo.astype(np.uint32) * 4095 + 127) // 255)
                    .astype(np.uint16))
    with caplog.at_level("WARNING", logger="dgdehaze_core.io.images"):
        assert main(["dehaze", str(eight), "--out", str(tmp_path / "out8")]) == 0
        assert main(["dehaze", str(twelve), "--input-bits", "12", "--out", str(tmp_path / "out12")]) == 0
        assert not caplog.records
        assert main(["dehaze", str(twelve), "--out", str(tmp_path / "out16")]) == 0
    assert len(caplog.records) == 1 and "give --input-bits 12" in caplog.text
    for name in ("foggy-001_dehazed.png", "foggy-004_dehazed.png"):
        expected = read_image(tmp_path / "out8" / name).astype(int)
        assert np.abs(read_image(tmp_path / "out12" / name).astype(int) - expected).max() <= 1
        assert read_image(tmp_path / "out16" / name).mean() < expected.mean() / 2  # black in, dark out


def test_input_bits_outside_8_to_16_or_with_a_video_is_refused_before_any_output(shared_data: Path, tmp_path: Path,
                                                                               capsys: pytest.CaptureFixture[str]):
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((8, 8, 3), 1000, np.uint16))
    clip = fog_clip(shared_data, tmp_path / "clip.mp4", frames=1)
    for bits in ("7", "17"):  # refused as the arguments are parsed
        with pytest.raises(SystemExit) as stopped:
            main(["dehaze", str(photo), "--input-bits", bits, "--out", str(tmp_path / "out")])
        assert stopped.value.code == 2 and "argument --input-bits:" in capsys.readouterr().err
    assert main(["dehaze", str(clip), "--input-bits", "12", "--out", str(tmp_path / "out")]) == 2
    assert "video" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_resume_reads_its_weights_once(tmp_path: Path, foggy_road: np.ndarray, opened: list[str]) -> None:
    """--resume read the checkpoint to check the folder's run record, then again to build the pipeline: the
    pipeline is built from the read that was checked."""
    source, out, weights = tmp_path / "in", tmp_path / "out", tmp_path / "net.pt"
    source.mkdir()
    shutil.copy(Path(__file__).resolve().parents[1] / "dgdehaze_core" / "weights" / "dgdehaze_lite.pt", weights)
    for index in range(2):
        cv2.imwrite(str(source / f"frame_{index}.png"), cv2.resize(foggy_road, (64, 48), interpolation=cv2.INTER_AREA))
    assert main(["dehaze", str(source), "--method", str(weights), "--out", str(out)]) == 0
    (out / "frame_1_dehazed.png").unlink()
    opened.clear()
    assert main(["dehaze", str(source), "--method", str(weights), "--out", str(out), "--resume"]) == 0
    assert opened.count("net.pt") == 1, opened
    assert (out / "frame_1_dehazed.png").is_file()


def test_a_named_pipe_given_as_an_image_weights_or_recipe_is_named_as_such(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture):
    """A named pipe (a camera tool's FIFO, say) was 'empty (0 bytes)' as an image or a video and 'no such
    checkpoint' (or ONNX file, or recipe) as weights or a recipe, though it is there."""
    pipes = {name: tmp_path / name for name in ("frame.png", "clip.mp4", "w.pt", "w.onnx", "recipe.yaml")}
    for pipe in pipes.values():
        os.mkfifo(pipe)
    image = tmp_path / "image.png"
    cv2.imwrite(str(image), np.full((16, 16, 3), 90, np.uint8))
    out = tmp_path / "out"
    for argv, pipe, what in ((["dehaze", str(pipes["frame.png"]), "--method", "dcp"], "frame.png", "file"),
                             (["dehaze", str(pipes["clip.mp4"]), "--method", "dcp"], "clip.mp4", "file"),
                             (["dehaze", str(image), "--method", str(pipes["w.pt"])], "w.pt", "checkpoint"),
                             (["dehaze", str(image), "--method", str(pipes["w.onnx"])], "w.onnx", "ONNX file"),
                             (["train", "--config", str(pipes["recipe.yaml"])], "recipe.yaml", "recipe")):
        assert main([*argv, "--out", str(out)]) == 2
        assert capsys.readouterr().err.splitlines()[-1].endswith(
            f"error: {pipes[pipe]} is no file but a named pipe, a socket or a device: no {what} to read")
    assert not out.exists()


def test_an_out_that_is_a_link_to_no_folder_is_named_as_such(tmp_path: Path, capsys: pytest.CaptureFixture):
    """--out a link to a folder that is not there (a drive not mounted) or a loop of links was 'is not a folder:
    give a folder', which it was given."""
    image = tmp_path / "image.png"
    cv2.imwrite(str(image), np.full((16, 16, 3), 90, np.uint8))
    unmounted = tmp_path / "unmounted"
    unmounted.symlink_to(tmp_path / "drive" / "frames")
    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    for out, target in ((unmounted, tmp_path / "drive" / "frames"), (loop, "loop")):
        assert main(["dehaze", str(image), "--method", "dcp", "--out", str(out)]) == 2
        assert capsys.readouterr().err.strip().endswith(
            f"error: --out {out} is a link to {target}, which leads to no folder (missing, or a loop of links)")
    assert not (tmp_path / "drive").exists()



def test_resume_help_names_every_setting_a_resume_must_keep() -> None:
    """`dehaze --help` says which options a resumed run must repeat: each setting of the run record (COMPARED) by its
    option, so that a user does not learn of one (--max-detail-gain) only from a refused resume."""
    commands = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    resume = next(action.help for action in commands.choices["dehaze"]._actions if action.dest == "resume")
    for key in COMPARED:
        assert f"--{key.replace('_', '-')}" in resume, (key, resume)


def test_a_video_sharing_another_s_stem_is_refused_its_outputs_not_replaced(shared_data: Path, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    """a.mp4 and then a.avi dehazed into one --out: both name their outputs a_dehazed.mp4 and a_depth.mp4, and the
    second run replaced the first's without a word. The folder's run record says which input wrote them; the same
    command again, with another input between (whose run's record is the folder's last), still writes."""
    clips, out = tmp_path / "clips", tmp_path / "out"
    clips.mkdir()
    fog_clip(shared_data, clips / "a.mp4", frames=2)
    fog_clip(shared_data, clips / "b.mp4", frames=2)
    shutil.copy(clips / "a.mp4", clips / "a.avi")  # another container of the same name: OpenCV reads it by its data
    dehaze = ["dehaze", "--method", "dcp", "--no-progress", "--out", str(out)]
    for name in ("a.mp4", "a.mp4", "b.mp4", "a.mp4", "b.mp4"):  # the same command again, another input between
        assert main([*dehaze, str(clips / name)]) == 0, capsys.readouterr().err
    first = {p.name: p.read_bytes() for p in out.iterdir() if p.name.startswith("a_")}
    assert sorted(first) == ["a_dehazed.mp4", "a_depth.mp4"]
    capsys.readouterr()
    assert main([*dehaze, str(clips / "a.avi")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{out / 'a_dehazed.mp4'} (and 1 more) is an output of {(clips / 'a.mp4').resolve()}" in error, error
    assert error.endswith("give another --out, or remove it"), error
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name.startswith("a_")} == first
    assert json.loads((out / "dehaze_run.json").read_text())["input"] == str((clips / "b.mp4").resolve())


def test_an_image_sharing_another_input_s_name_is_refused_its_outputs_not_replaced(
        tmp_path: Path, foggy_road: np.ndarray, capsys: pytest.CaptureFixture, caplog) -> None:
    """`dehaze A/ --out D` and then `dehaze B/ --out D` (or `dehaze A/x.png` and then `dehaze B/x.png`), B holding
    a photo named as one of A's: the second run replaced the first's outputs of it without a word. Outputs made from
    the same file are replaced, whichever input named it."""
    first, second, out, one = tmp_path / "A", tmp_path / "B", tmp_path / "out", tmp_path / "one"
    photo = cv2.resize(foggy_road, (64, 48), interpolation=cv2.INTER_AREA)
    for folder, names in ((first, ("x.png", "y.png")), (second, ("x.png", "z.png"))):
        folder.mkdir()
        for index, name in enumerate(names):
            cv2.imwrite(str(folder / name), cv2.add(photo, index * 40))
    dehaze = ["dehaze", "--method", "dcp", "--no-progress", "--out"]
    for source, target in ((first, out), (first, out), (first / "y.png", out), (first / "x.png", one)):
        assert main([*dehaze, str(target), str(source)]) == 0, capsys.readouterr().err  # its own outputs
    capsys.readouterr()
    record = json.loads((one / "dehaze_run.json").read_text())
    del record["made_from"]  # as written before records held it: its outputs, written after it, are its input's
    (one / "dehaze_run.json").write_text(json.dumps(record))
    os.utime(one / "dehaze_run.json", ns=(0, 0))
    for source, target in ((second, out), (second / "x.png", one)):
        written = {p.name: p.read_bytes() for p in target.iterdir()}
        assert main([*dehaze, str(target), str(source)]) == 2
        error = capsys.readouterr().err
        assert f"{target / 'x_dehazed.png'} (and 1 more) is an output of {(first / 'x.png').resolve()}" in error, error
        assert {p.name: p.read_bytes() for p in target.iterdir()} == written, "a refused run wrote nothing"
    for kind in ("dehazed", "depth"):
        (out / f"x_{kind}.png").unlink()
    assert main([*dehaze, str(out), str(second)]) == 0, "outputs that are not there are replaced by none"
    (out / "dehaze_run.json").unlink()  # a folder written before records were: whose its outputs are is unknown
    with caplog.at_level("WARNING", logger="dgdehaze_core.commands"):
        assert main([*dehaze, str(out), str(first)]) == 0
    assert f"no {out / 'dehaze_run.json'} says which input wrote them" in caplog.text


def test_a_resume_is_refused_an_output_of_another_file_that_an_image_added_since_would_replace(
        tmp_path: Path, foggy_road: np.ndarray, capsys: pytest.CaptureFixture) -> None:
    """`dehaze A/ --out D`, `dehaze B/ --out D`, then B/x.png added and `dehaze B/ --out D --resume` (to dehaze what
    is new): the resume skipped the check of what each output was made from, replaced A/x.png's outputs with
    B/x.png's without a word, and left the record saying they were A's, so that B's next run was refused them."""
    first, second, out = tmp_path / "A", tmp_path / "B", tmp_path / "out"
    photo = cv2.resize(foggy_road, (64, 48), interpolation=cv2.INTER_AREA)
    for folder, names in ((first, ("x.png", "y.png")), (second, ("z.png",))):
        folder.mkdir()
        for index, name in enumerate(names):
            cv2.imwrite(str(folder / name), cv2.add(photo, index * 40))
    dehaze = ["dehaze", "--method", "dcp", "--no-progress", "--out", str(out)]
    for source in (first, second):
        assert main([*dehaze, str(source)]) == 0, capsys.readouterr().err
    cv2.imwrite(str(second / "x.png"), cv2.subtract(photo, 40))
    written = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main([*dehaze, str(second), "--resume"]) == 2
    error = capsys.readouterr().err
    assert f"{out / 'x_dehazed.png'} (and 1 more) is an output of {(first / 'x.png').resolve()}" in error, error
    assert {p.name: p.read_bytes() for p in out.iterdir()} == written, "a refused resume wrote nothing"
    (second / "x.png").unlink()
    cv2.imwrite(str(second / "w.png"), photo)
    assert main([*dehaze, str(second), "--resume"]) == 0, "an image added of a new name is dehazed"
    assert (out / "w_dehazed.png").is_file()


def test_a_folder_written_before_records_held_made_from_takes_its_videos_and_linked_images_again(
        shared_data: Path, tmp_path: Path, foggy_road: np.ndarray, capsys: pytest.CaptureFixture) -> None:
    """In a folder whose record is from before records held made_from, the outputs written after it were all taken
    for the record's input's: a video's, which such a version wrote without a record, was called the image folder's,
    and the same video's command again was refused them; and an image of that folder that is a link (a folder of links
    into a data set) was called another file's, its folder's same command refused too."""
    linked, pool, out = tmp_path / "linked", tmp_path / "pool", tmp_path / "out"
    linked.mkdir()
    pool.mkdir()
    cv2.imwrite(str(pool / "0001.png"), cv2.resize(foggy_road, (64, 48), interpolation=cv2.INTER_AREA))
    (linked / "x.png").symlink_to(pool / "0001.png")
    clip = fog_clip(shared_data, tmp_path / "clip.mp4", frames=2)
    dehaze = ["dehaze", "--method", "dcp", "--no-progress", "--out", str(out)]
    assert main([*dehaze, str(linked)]) == 0, capsys.readouterr().err
    record = json.loads((out / "dehaze_run.json").read_text())
    del record["made_from"]
    (out / "dehaze_run.json").write_text(json.dumps(record))
    os.utime(out / "dehaze_run.json", ns=(0, 0))  # written before the outputs: they are its input's
    for kind in ("dehazed", "depth"):  # a video's outputs, by a version whose video runs wrote no record
        shutil.copy(clip, out / f"clip_{kind}.mp4")
    for source in (clip, linked):
        assert main([*dehaze, str(source)]) == 0, capsys.readouterr().err
