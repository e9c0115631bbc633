"""The network pipeline: any frame size and type in, full-size dehazed frame, depth and transmission out."""
from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dgdehaze_core.inference import pipeline as pipeline_module
from dgdehaze_core.inference.backends import OUTPUT_NAMES, PHYSICS_OUTPUTS
from dgdehaze_core.inference.dehaze_result import DehazeResult
from dgdehaze_core.inference.backends.torch_backend import TorchBackend
from dgdehaze_core.inference.pipeline import (MAX_DERIVED_ASPECT, PADDING_BUDGET, SHRUNK_SIZES, NetworkPipeline,
                                              is_gray, load_pipeline, network_batch, pad_to_stride, pipeline_from_model,
                                              padding_overrun, refine_transmission, resolve_working_size,
                                              within_max_size, within_padding_budget)
from dgdehaze_core.io.images import ImageError, bgr_to_rgb_float, read_image, rgb_float_to_bgr
from dgdehaze_core.models import build_model, load_model_and_record, save_checkpoint, shipped_weights_path
from dgdehaze_core.physics.dark_channel import DarkChannelDehazer
from dgdehaze_core.physics.scattering import T_MIN, invert_scattering, synthesize_haze


@pytest.fixture(scope="module")
def lite_model():
    torch.manual_seed(0)
    model = build_model("lite").eval()
    torch.nn.init.normal_(model.dehazer.clear_head.weight, std=0.1)  # a trained model's scale, not identity
    return model


@pytest.fixture(scope="module")
def hazy_frame(shared_data: Path) -> np.ndarray:
    """A real hazy photo (URHI, 608x448) resized to the odd size 641x479."""
    image = read_image(shared_data / "hazy-real" / "urhi" / "YST_Bing_667.png")
    return cv2.resize(image, (641, 479), interpolation=cv2.INTER_LINEAR)


def check_result(result: DehazeResult, height: int, width: int) -> None:
    assert result.image.shape == (height, width, 3) and result.image.dtype == np.uint8
    assert result.depth.shape == (height, width) and result.depth.dtype == np.float32
    assert result.transmission.shape == (height, width) and result.transmission.dtype == np.float32
    assert result.airlight.shape == (3,)
    assert np.isfinite(result.depth).all() and (result.depth > 0).all()
    assert (result.transmission > 0).all() and (result.transmission <= 1).all()
    assert 0.0 <= result.haze_density <= 1.0


def test_odd_size_frame_gives_full_size_outputs_equal_to_the_network_on_the_padded_frame(
        lite_model, hazy_frame: np.ndarray) -> None:
    pipeline = pipeline_from_model(lite_model, output="decoder")
    result = pipeline(hazy_frame)
    check_result(result, 479, 641)
    padded = pad_to_stride(bgr_to_rgb_float(hazy_frame)[None], lite_model.stride)
    assert padded.shape[1:3] == (480, 672)
    with torch.no_grad():
        outputs = lite_model(torch.from_numpy(padded).permute(0, 3, 1, 2).contiguous())
    decoder = outputs["clear"][0, :, :479, :641].permute(1, 2, 0).numpy()[:, :, ::-1]
    assert np.abs(result.image.astype(np.float32) / 255.0 - decoder).max() <= 0.5 / 255.0 + 1e-6
    np.testing.assert_allclose(result.depth, outputs["depth"][0, 0, :479, :641].numpy(), rtol=1e-6)
    np.testing.assert_allclose(result.airlight, outputs["airlight"][0, :, 0, 0].numpy()[::-1], rtol=1e-6)


def test_reduced_working_size_uses_the_physics_path_at_full_resolution(lite_model, hazy_frame: np.ndarray) -> None:
    pipeline = pipeline_from_model(lite_model, working_size=(320, 240), radiance_floor=None)  # the lift alone
    result = pipeline(hazy_frame)
    check_result(result, 479, 641)
    airlight_rgb = result.airlight[::-1]
    expected = invert_scattering(bgr_to_rgb_float(hazy_frame), result.transmission[:, :, None], airlight_rgb)
    assert np.abs(result.image.astype(np.float32) / 255.0 - expected[:, :, ::-1]).max() <= 0.5 / 255.0 + 1e-5
    # the guided filter lifts t along the full-resolution edges: not a plain bilinear upscale
    with torch.no_grad():
        small = pad_to_stride(cv2.resize(bgr_to_rgb_float(hazy_frame), (320, 240), interpolation=cv2.INTER_AREA)[None],
                              lite_model.stride)
        outputs = lite_model(torch.from_numpy(small).permute(0, 3, 1, 2).contiguous())
    t_small = outputs["transmission"][0, 0]
    depth_small = outputs["depth"][0, 0, :240, :320].numpy()
    np.testing.assert_allclose(result.depth, cv2.resize(depth_small, (641, 479), interpolation=cv2.INTER_LINEAR),
                               rtol=1e-5, err_msg="depth lifted bilinearly")
    bilinear = cv2.resize(t_small.numpy()[:240, :320], (641, 479), interpolation=cv2.INTER_LINEAR)
    assert np.abs(result.transmission - bilinear).mean() < 0.05
    assert not np.allclose(result.transmission, bilinear, atol=1e-4)


def test_the_network_input_is_the_rgb_frame_resized_without_aliasing_and_padded_by_reflection(
        hazy_frame: np.ndarray) -> None:
    """At a working size the frame (BGR) reaches the network as RGB, averaged over each output pixel's area when it
    shrinks (bilinear sampling aliases), interpolated bilinearly when it grows, and padded at the bottom and right
    by reflection (the edge row is not repeated); at the frame's own size alike."""
    rgb = bgr_to_rgb_float(hazy_frame)
    for size, interpolation in (((320, 240), cv2.INTER_AREA), ((1282, 958), cv2.INTER_LINEAR)):
        width, height = size
        batch = network_batch([hazy_frame], size, 32)
        expected = cv2.resize(rgb, size, interpolation=interpolation)
        assert batch.shape == (1, 3, -(-height // 32) * 32, -(-width // 32) * 32)
        np.testing.assert_allclose(batch[0, :, :height, :width].transpose(1, 2, 0), expected, atol=1e-6)
        rows = batch.shape[2] - height
        np.testing.assert_array_equal(batch[0, :, height:, :width],
                                      batch[0, :, height - 2:height - 2 - rows:-1, :width])
    native = network_batch([hazy_frame], (641, 479), 32)
    np.testing.assert_allclose(native[0, :, :479, :641].transpose(1, 2, 0), rgb, atol=1e-6)
    np.testing.assert_array_equal(native[0, :, 479, :641], native[0, :, 477, :641])
    np.testing.assert_array_equal(native[0, :, :479, 641:], native[0, :, :479, 639:639 - 31:-1])


def test_a_working_size_of_one_side_takes_the_other_from_each_frames_aspect_ratio(lite_model,
                                                                                 hazy_frame: np.ndarray) -> None:
    """The node's `ros2 param set ... working_width 320` alone: a 641x479 frame runs at 320x239, a 16:9 one at
    320x180, each the same result as that size given whole."""
    pipeline = pipeline_from_model(lite_model, working_size=(320, 0))
    widescreen = cv2.resize(hazy_frame, (640, 360), interpolation=cv2.INTER_AREA)
    for frame, whole in ((hazy_frame, (320, 239)), (widescreen, (320, 180))):
        result = pipeline(frame)
        expected = pipeline_from_model(lite_model, working_size=whole)(frame)
        np.testing.assert_array_equal(result.image, expected.image)
        np.testing.assert_array_equal(result.depth, expected.depth)
    # a derived side is the nearest whole pixel, not the one below: 1920x1080 at a width of 426 is 239.6 high
    assert resolve_working_size((426, 0), 1920, 1080) == (426, 240)
    assert resolve_working_size((0, 239), 1920, 1080) == (425, 239), "424.9 wide"
    by_height = pipeline_from_model(lite_model, working_size=(0, 180))(widescreen)
    np.testing.assert_array_equal(by_height.image, pipeline_from_model(lite_model, working_size=(320, 180))(
        widescreen).image)


def test_a_working_size_of_one_side_stays_within_8k_pixels(lite_model) -> None:
    """`working_width: 7680` alone on a 640x540 camera would run 7680x6480 (50 Mpx, gigabytes of activations):
    the derived size shrinks to 8K's pixel count keeping the frame's aspect ratio; a size given whole is kept, and
    one beyond 8K's pixels is refused."""
    assert resolve_working_size((7680, 0), 640, 540) == (6270, 5290)
    assert resolve_working_size((0, 4320), 100, 2000) == (216, 4320), "within 8K's pixels: as derived"
    assert resolve_working_size((7680, 4320), 640, 540) == (7680, 4320)
    assert pipeline_from_model(lite_model, working_size=(7680, 4320)).working_size == (7680, 4320), "8K itself"
    with pytest.raises(ValueError, match="more pixels than 7680x4320"):
        pipeline_from_model(lite_model, working_size=(8000, 4320))


def test_a_working_side_derived_for_a_frame_a_pixel_high_is_at_most_16_times_the_side_given(
        lite_model, hazy_frame: np.ndarray) -> None:
    """`working_height: 240` took a width of 480000 from a 2000x1 frame (a 2 KB mono8 message), which ran the
    network at 8K's pixel count: 13 s and 3 GB more in the node. A derived side is now at most MAX_DERIVED_ASPECT
    times the side given, and the outputs still come back at the frame's size; a wide camera's frames derive as
    before."""
    assert resolve_working_size((0, 240), 2000, 1) == (MAX_DERIVED_ASPECT * 240, 240)
    assert resolve_working_size((320, 0), 1, 5000) == (320, MAX_DERIVED_ASPECT * 320), "a column alike"
    assert resolve_working_size((0, 240), 3840, 1080) == (853, 240), "a 32:9 camera, as derived"
    assert resolve_working_size((0, 240), 1, 5000) == (1, 240), "a derived side is at least a pixel"
    assert resolve_working_size((320, 0), 5000, 1) == (320, 1)
    runtime = _Profiled(TorchBackend(lite_model), (10**6, 10**6))
    strip = np.ascontiguousarray(hazy_frame[240:241])  # 641x1
    check_result(NetworkPipeline(runtime, "lite", working_size=(0, 32))(strip), 1, 641)
    assert runtime.shapes[-1] == (1, 3, 32, MAX_DERIVED_ASPECT * 32), "not 20512x32"


class _Profiled:
    """A network runtime that refuses inputs beyond a largest size, as a TensorRT engine's profile does
    (`TensorRTBackend.run`: "outside the engine's profile"); the network itself runs on torch."""

    def __init__(self, runtime: TorchBackend, max_size: tuple[int, int]) -> None:
        self.runtime, self.max_size = runtime, max_size
        self.name, self.stride, self.outputs = "tensorrt", runtime.stride, runtime.outputs
        self.fixed_size = self.max_batch = None
        self.shapes: list[tuple[int, ...]] = []

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        assert batch.shape[2] <= self.max_size[0] and batch.shape[3] <= self.max_size[1], "outside the profile"
        self.shapes.append(batch.shape)
        return self.runtime.run(batch)


def test_a_frame_larger_than_the_runtimes_largest_input_runs_shrunk_to_fit_and_comes_back_at_its_size(
        lite_model, hazy_frame: np.ndarray, caplog: pytest.LogCaptureFixture) -> None:
    """Without a working size, a TensorRT engine is built for VGA and takes at most 1920x1088: each frame of a
    1920x1200 or 4K camera failed ("outside the engine's profile") where torch and ONNX Runtime ran it. Such a frame
    now runs at the largest size that fits, its aspect ratio kept, said once; a frame that fits runs as it is."""
    runtime = _Profiled(TorchBackend(lite_model), (160, 224))
    pipeline = NetworkPipeline(runtime, "lite")
    large = cv2.resize(hazy_frame, (400, 300), interpolation=cv2.INTER_AREA)
    for _ in range(2):
        check_result(pipeline(large), 300, 400)
    assert runtime.shapes[-1] == (1, 3, 160, 224), "213x160 (4:3 within 224x160) padded to the stride"
    assert within_max_size((400, 300), (160, 224), 32) == (213, 160)
    np.testing.assert_array_equal(pipeline(large).image, pipeline_from_model(lite_model, working_size=(213, 160))(
        large).image)
    assert caplog.text.count("400x300 frames run at 213x160, the most this tensorrt network takes") == 1
    check_result(pipeline(hazy_frame[:150, :200]), 150, 200)
    assert runtime.shapes[-1] == (1, 3, 160, 224), "a frame that fits, padded as always"
    assert within_max_size((200, 150), (160, 224), 32) == (200, 150) and within_max_size((5, 3), None, 32) == (5, 3)


def test_a_frame_one_pixel_high_runs_the_network_at_a_few_times_its_pixels_not_a_full_stride_of_rows(
        lite_model, hazy_frame: np.ndarray, caplog: pytest.LogCaptureFixture) -> None:
    """A frame a few pixels high is padded to a full stride (32) of rows: a 1x600000 message (0.6 MB as mono8) ran
    lite at 32x600000 in the node, 4 s and 2 GB more, and one of 8K's pixel count would have needed over 100 GB. Its
    long side now shrinks so that the padded input holds at most PADDING_BUDGET times its pixels, said once; the
    outputs come back at the frame's size, and a camera's frame runs as always."""
    runtime = _Profiled(TorchBackend(lite_model), (10**6, 10**6))
    pipeline = NetworkPipeline(runtime, "lite")
    strip = np.ascontiguousarray(np.tile(hazy_frame[240:241], (1, 30, 1)))  # one row, 19230 pixels
    for _ in range(2):
        check_result(pipeline(strip), 1, 19230)
    _, _, padded_h, padded_w = runtime.shapes[-1]
    assert padded_h * padded_w <= PADDING_BUDGET * 19230, f"ran at {padded_w}x{padded_h}"
    assert caplog.text.count("19230x1 frames run at 2400x1") == 1
    check_result(pipeline(hazy_frame), 479, 641)
    assert runtime.shapes[-1] == (1, 3, 480, 672), "a camera's frame, padded as always"
    assert within_padding_budget((641, 479), 32) == (641, 479) and within_padding_budget((1, 1), 32) == (1, 1)
    assert within_padding_budget((3, 7000), 32) == (3, 2624), "a column: its height shrinks"
    assert within_padding_budget((7681, 4319), 32) == (7680, 4319), "padded, 7712x4320 would exceed 8K's pixels"
    assert padding_overrun((7681, 4319), 32).endswith("7681x4319 would exceed 8K's pixel count (33177600)"), \
        "said so, not 'over 4 times its pixels' (1.004 times)"
    assert padding_overrun((641, 1), 32).endswith("641x1 would hold over 4 times its pixels")


def test_a_thin_frame_beyond_the_runtimes_largest_input_is_said_at_the_size_it_runs(
        lite_model, hazy_frame: np.ndarray, caplog: pytest.LogCaptureFixture) -> None:
    """A frame a pixel high and wider than an engine's profile is shrunk to fit the profile, then for its padding:
    the warning said the first size (3000x2 frames 'run at 1920x1, the most this network takes') while the network
    ran at 224x1, and the padding's warning, for the same size, was never said."""
    runtime = _Profiled(TorchBackend(lite_model), (1088, 1920))
    row = np.ascontiguousarray(np.tile(hazy_frame[240:242], (1, 5, 1))[:, :3000])  # 3000x2
    check_result(NetworkPipeline(runtime, "lite")(row), 2, 3000)
    assert runtime.shapes[-1] == (1, 3, 32, 224)
    said = [record.getMessage() for record in caplog.records if "frames run at" in record.getMessage()]
    assert said == ["3000x2 frames run at 224x1: the most this tensorrt network takes is 1920x1088 (its engine's "
                    "profile), and padded to the network's stride of 32, 1920x1 would hold over 4 times its pixels; "
                    "the outputs are restored at the frame's size"], said


def test_frames_each_of_a_size_of_their_own_run_shrunk_are_not_said_a_warning_a_frame(
        lite_model, hazy_frame: np.ndarray, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream of frames a pixel high whose width changes with every frame (a corrupt camera's, a fuzzer's) had
    each frame's size said once, so a warning a frame, and the sizes kept for good; past SHRUNK_SIZES sizes a new
    one is said at most every SHRUNK_SAID_EVERY_S (an hour here: on a loaded host the 80 frames can take over the
    10 s it is), and a size already said is not said again."""
    monkeypatch.setattr(pipeline_module, "SHRUNK_SAID_EVERY_S", 3600.0)
    pipeline = pipeline_from_model(lite_model)
    row = np.ascontiguousarray(hazy_frame[240:241])  # 641x1: run at 128x1
    for width in range(500, 500 + SHRUNK_SIZES + 16):
        check_result(pipeline(row[:, :width]), 1, width)
    check_result(pipeline(row[:, :500]), 1, 500)
    said = [record.getMessage() for record in caplog.records if "frames run at" in record.getMessage()]
    assert len(said) == SHRUNK_SIZES + 1, len(said)
    assert said[-1].startswith(f"{500 + SHRUNK_SIZES}x1 frames run at 128x1") and said[-1].endswith(
        f"(over {SHRUNK_SIZES} frame sizes run shrunk: a new one said at most every 3600 s)")


def test_process_batch_equals_frame_by_frame(shared_data: Path) -> None:
    """The shipped network: each frame of a batch keeps its own airlight, depth and image."""
    paths = sorted((shared_data / "paired" / "sots-indoor" / "hazy").glob("*.png"))[:2]
    frames = [read_image(path) for path in paths]
    frames[1] = frames[1][:, ::-1] // 2  # same size, another scene and light
    frames.append(cv2.resize(frames[0], (333, 250)))
    pipeline = pipeline_from_model(load_model_and_record("lite")[0])
    batched = pipeline.process_batch(frames)
    assert pipeline.process_batch([]) == []
    for frame, result in zip(frames, batched):
        single = pipeline(frame)
        assert result.image.shape == frame.shape
        assert np.abs(result.image.astype(int) - single.image.astype(int)).max() <= 1
        np.testing.assert_allclose(result.depth, single.depth, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(result.airlight, single.airlight, rtol=1e-4)
    assert np.abs(batched[0].airlight - batched[1].airlight).max() > 0.05, "two lights, two airlights"


def test_fp16_pipeline_is_close_to_fp32(lite_model, hazy_frame: np.ndarray) -> None:
    """The network in fp16 (torch's; what CUDA runs: `create_backend` runs fp32 on the CPU, where half is slower,
    so the runtime is built here directly) gives outputs that the pipeline reads as float32, close to fp32's."""
    model32 = build_model("lite")
    model32.load_state_dict(lite_model.state_dict())
    model16 = build_model("lite")
    model16.load_state_dict(lite_model.state_dict())
    full = pipeline_from_model(model32)(hazy_frame)
    half = NetworkPipeline(TorchBackend(model16, half=True, outputs=PHYSICS_OUTPUTS), "lite")(hazy_frame)
    check_result(half, 479, 641)
    assert not np.array_equal(full.depth, half.depth), "fp16 rounds: the network ran at half precision"
    assert np.abs(full.image.astype(int) - half.image.astype(int)).mean() < 1.0
    assert np.abs(full.transmission - half.transmission).max() < 0.01
    assert np.nanmax(np.abs(full.depth - half.depth) / full.depth) < 0.01


@pytest.mark.parametrize("frame,shape", [
    (np.full((1, 1, 3), 200, np.uint8), (1, 1)),
    (np.full((7, 2), 120, np.uint8), (7, 2)),
    (np.full((30, 50, 3), 40000, np.uint16), (30, 50)),
    (np.full((20, 33, 4), 90, np.uint8), (20, 33)),
])
def test_unusual_frames_give_a_correct_result(lite_model, frame: np.ndarray, shape: tuple[int, int]) -> None:
    check_result(pipeline_from_model(lite_model)(frame), *shape)


@pytest.mark.parametrize("frame", [
    np.zeros((0, 10, 3), np.uint8),
    np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (4400, 7700, 3)),
    np.zeros((10, 10, 2), np.uint8),
    np.full((10, 10, 3), np.nan, np.float32),
])
def test_bad_frames_raise_image_error(lite_model, frame: np.ndarray) -> None:
    with pytest.raises(ImageError):
        pipeline_from_model(lite_model)(frame)


def test_a_pipeline_names_the_weights_it_loaded_not_a_file_put_in_their_place(tmp_path: Path) -> None:
    """The node's /diagnostics, bag-eval's report and the export on the way to ONNX Runtime or TensorRT each read
    the weights file again apart from the read that loaded the model (a `.pt` was read two or three times per
    load): a file replaced in between was named for weights that never ran. The pipeline keeps the record of the one
    read that loaded its weights."""
    mine = tmp_path / "mine.pt"
    torch.manual_seed(3)
    save_checkpoint(build_model("lite"), mine, {"iterations": 7, "recipe": "mine", "commit": "abc1234"})
    loaded_bytes = mine.read_bytes()
    pipeline = load_pipeline(str(mine), backend="torch")
    model, record = load_model_and_record(mine)
    loaded_state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    save_checkpoint(build_model("lite"), mine, {"iterations": 9, "recipe": "other", "commit": "def5678"})  # an update
    sha256 = hashlib.sha256(loaded_bytes).hexdigest()[:12]
    assert hashlib.sha256(mine.read_bytes()).hexdigest()[:12] != sha256
    expected = {"path": "mine.pt", "sha256": sha256, "iterations": 7, "recipe": "mine", "commit": "abc1234"}
    assert pipeline.weights == record == expected
    assert pipeline.weights_summary == f"mine.pt (sha256 {sha256}, 7 training iterations of recipe mine at commit " \
                                       "`abc1234`)"
    replaced, _ = load_model_and_record(mine)
    assert any(not torch.equal(loaded_state[name], tensor) for name, tensor in replaced.state_dict().items())
    assert all(torch.equal(loaded_state[name], tensor) for name, tensor in model.state_dict().items()), \
        "the record names the bytes the model was loaded from"
    assert load_pipeline("dcp").weights is None and load_pipeline("dcp").weights_summary == ""
    shipped = load_pipeline("lite")
    assert shipped.weights["path"] == "dgdehaze_lite.pt" and shipped.weights_summary.startswith(
        f"dgdehaze_lite.pt (sha256 {hashlib.sha256(shipped_weights_path('lite').read_bytes()).hexdigest()[:12]}, ")


def test_load_pipeline_reads_checkpoints_and_rejects_bad_options(lite_model, tmp_path: Path,
                                                                hazy_frame: np.ndarray) -> None:
    path = save_checkpoint(lite_model, tmp_path / "lite.pt")
    pipeline = load_pipeline(str(path), working_size=(320, 240), output="decoder")
    assert pipeline.method == str(path) and pipeline.backend == "torch"
    check_result(pipeline(hazy_frame), 479, 641)
    with pytest.raises(ValueError, match="unknown dehazing method"):
        load_pipeline("nonsense")
    with pytest.raises(ValueError, match="output must be one of"):
        load_pipeline(str(path), output="sharpest")
    for bad in ((0, 0), (-1, 240), (240, -1), (320,)):
        with pytest.raises(ValueError, match="working_size"):
            load_pipeline(str(path), working_size=bad)
    with pytest.raises(ValueError, match="the dcp method takes no options"):
        load_pipeline("dcp", working_size=(320, 240))
    with pytest.raises(ValueError, match="unknown pipeline options"):
        load_pipeline(str(path), colour="red")
    with pytest.raises(ValueError, match="unknown backend"):
        load_pipeline(str(path), backend="tensorflow")
    if not torch.cuda.is_available():
        for device in ("cuda", "0"):  # "0": the node's and Ultralytics' short form of cuda:0
            with pytest.raises(RuntimeError, match="CUDA is not available"):
                load_pipeline(str(path), device=device)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_pipeline(str(tmp_path / "missing.pt"))
    shipped = load_pipeline("lite")
    assert shipped.method == "lite" and shipped_weights_path("lite").is_file()


def test_transmission_refinement_removes_pixel_noise_and_lifts_a_small_transmission(middlebury_scene) -> None:
    """Haze synthesized from Middlebury's true depth; a transmission with pixel-scale noise (as a network's) and a
    quarter-size one (a reduced working size) are refined on the hazy frame and compared with the true one."""
    clear, depth = middlebury_scene
    valid = np.isfinite(depth)
    relative = np.where(valid, depth, np.nanmax(depth)) / np.nanmax(depth)
    true_t = np.exp(-1.6 * relative).astype(np.float32)
    hazy_rgb = synthesize_haze(bgr_to_rgb_float(clear), relative[:, :, None], 1.6, np.ones(3, np.float32))
    hazy = np.clip(np.rint(hazy_rgb[:, :, ::-1] * 255.0), 0, 255).astype(np.uint8)
    noisy = np.clip(true_t + np.random.default_rng(0).normal(0.0, 0.08, true_t.shape), 0.05, 1.0).astype(np.float32)
    refined = refine_transmission(hazy, noisy)
    assert refined.shape == true_t.shape and refined.dtype == np.float32
    noisy_error = np.abs(noisy - true_t)[valid].mean()
    assert np.abs(refined - true_t)[valid].mean() < 0.5 * noisy_error
    height, width = true_t.shape
    quarter = cv2.resize(true_t, (width // 4, height // 4), interpolation=cv2.INTER_AREA)
    lifted = refine_transmission(hazy, quarter)
    assert lifted.shape == true_t.shape
    assert np.abs(lifted - true_t)[valid].mean() < 0.03


def test_a_transmission_value_the_network_did_not_give_stays_local(foggy_road: np.ndarray) -> None:
    """One NaN in the network's transmission (an fp16 overflow) was carried by the guided filter's running box sums
    over three quarters of the frame, which the physics path then turned black."""
    model, _ = load_model_and_record("lite")
    backend = TorchBackend(model, outputs=("transmission", "airlight", "depth"))
    height, width = foggy_road.shape[:2]
    transmission = backend.run(network_batch([foggy_road], (width, height), model.stride))["transmission"][0, 0]
    transmission = np.ascontiguousarray(transmission[:height, :width])
    clean = refine_transmission(foggy_road, transmission)
    transmission[100, 200] = np.nan
    refined = refine_transmission(foggy_road, transmission)
    assert np.isfinite(refined).all()
    assert (np.abs(refined - clean) > 0.01).mean() < 0.05, "only the pixel's surroundings may change"


def test_a_nan_transmission_alone_is_said_once_and_left_as_the_camera_saw_it(foggy_road: np.ndarray, caplog) -> None:
    """The warning hangs on the transmission's own check where the airlight is finite."""
    model, _ = load_model_and_record("lite")
    with torch.no_grad():
        model.dehazer.transmission_head.bias.fill_(float("nan"))
    pipeline = pipeline_from_model(model)
    with caplog.at_level("WARNING", logger="dgdehaze_core.inference.pipeline"):
        results = [pipeline(foggy_road), pipeline(foggy_road)]
    for result in results:
        np.testing.assert_allclose(result.transmission, 1.0, atol=1e-4)
        assert np.isfinite(result.airlight).all()
    assert sum("NaN or infinite" in record.getMessage() for record in caplog.records) == 1


def test_a_decoder_pixel_the_network_gives_as_nan_is_left_as_the_camera_saw_it(foggy_road: np.ndarray,
                                                                                 caplog) -> None:
    """A NaN in the decoder's image (fp16 overflow) became a black pixel; it is the frame's, said once."""
    model, _ = load_model_and_record("lite")
    clean = pipeline_from_model(model, output="decoder")(foggy_road).image
    with torch.no_grad():
        model.dehazer.clear_head.bias[0] = float("nan")  # red at every even row and column (pixel shuffle)
    pipeline = pipeline_from_model(model, output="decoder")
    with caplog.at_level("WARNING", logger="dgdehaze_core.inference.pipeline"):
        results = [pipeline(foggy_road), pipeline(foggy_road)]
    for result in results:
        assert (result.image[0::2, 0::2] == foggy_road[0::2, 0::2]).all()
        assert (result.image[1::2] == clean[1::2]).all() and (result.image[:, 1::2] == clean[:, 1::2]).all()
    assert sum("decoder gives NaN" in record.getMessage() for record in caplog.records) == 1


def test_a_network_that_gives_nan_scattering_returns_a_finite_result(foggy_road: np.ndarray, caplog) -> None:
    """NaN transmission and airlight (a network whose fp16 activations overflowed) gave a NaN transmission and a
    black image; the pixels are now left as the camera saw them, the airlight is the dark channel prior's, and
    the warning is said once."""
    model, _ = load_model_and_record("lite")
    with torch.no_grad():
        model.dehazer.transmission_head.bias.fill_(float("nan"))
        model.dehazer.airlight_head[-1].bias.fill_(float("nan"))
    pipeline = pipeline_from_model(model)
    frame = foggy_road.copy()
    with caplog.at_level("WARNING", logger="dgdehaze_core.inference.pipeline"):
        results = [pipeline(frame), pipeline(frame)]
    dark = DarkChannelDehazer()
    for result in results:
        assert np.isfinite(result.transmission).all()
        np.testing.assert_allclose(result.transmission, 1.0, atol=1e-4)
        np.testing.assert_allclose(result.airlight, dark.scattering(foggy_road)[1], rtol=1e-6)
        assert np.abs(result.image.astype(int) - foggy_road).max() <= 1
    assert (frame == foggy_road).all()
    assert sum("NaN or infinite" in record.getMessage() for record in caplog.records) == 1


def test_a_transmission_beyond_the_networks_range_is_held_within_t_min_and_one(hazy_frame: np.ndarray) -> None:
    """Fog denser than the inversion can undo (a transmission head saturated low) and none (saturated high): the
    transmission the physics path divides by stays within [T_MIN, 1], so the image stays finite and bounded."""
    for bias, bound in ((-12.0, T_MIN), (12.0, 1.0)):
        model, _ = load_model_and_record("lite")
        with torch.no_grad():
            model.dehazer.transmission_head.bias.fill_(bias)
        result = pipeline_from_model(model, radiance_floor=None)(hazy_frame)  # the network's alone
        assert result.transmission.min() >= T_MIN and result.transmission.max() <= 1.0
        assert np.abs(result.transmission - bound).max() < 1e-3


def test_the_physics_path_runs_the_network_without_its_decoder_image(lite_model) -> None:
    """The physics path does not read the decoder's image: the network runs without that branch (a third of lite's
    time at 640x480); the decoder output runs all of it."""
    for output, outputs in (("auto", PHYSICS_OUTPUTS), ("physics", PHYSICS_OUTPUTS), ("decoder", OUTPUT_NAMES)):
        assert pipeline_from_model(lite_model, output=output).runtime.outputs == outputs, output


def test_a_gray_frame_comes_out_gray_in_every_output_mode(shared_data: Path) -> None:
    """A mono camera's frame (or a gray image file) came out of lite tinted: the network's airlight differs by up to
    0.01 between channels, which the inversion spread to 5 levels between them on a gray URHI photo (the decoder's
    image to 19). A gray frame's airlight is gray (the mean of the network's) and its image gray, whatever the
    output mode; a colour frame keeps the network's airlight and decoder image."""
    colour = cv2.resize(read_image(shared_data / "hazy-real" / "urhi" / "YST_Bing_667.png"), (304, 224),
                        interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)
    model, _ = load_model_and_record("lite")
    for pipeline in (pipeline_from_model(model), pipeline_from_model(model, output="decoder")):
        for frame in (gray, cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)):
            result = pipeline(frame)
            assert (result.image == result.image[:, :, :1]).all(), pipeline.output
            assert (result.airlight == result.airlight[0]).all()
        network = pipeline.runtime.run(pipeline_module.network_batch([frame], (304, 224), pipeline.stride))
        np.testing.assert_allclose(result.airlight[0], network["airlight"][0, :, 0, 0].mean(), rtol=1e-6,
                                   err_msg="the gray frame's airlight is the mean of the network's three")
        network = pipeline.runtime.run(pipeline_module.network_batch([colour], (304, 224), pipeline.stride))
        coloured = pipeline(colour)
        np.testing.assert_array_equal(coloured.airlight, network["airlight"][0, ::-1, 0, 0])
        if pipeline.output == "decoder":  # the decoder's image as it gave it
            decoded = rgb_float_to_bgr(network["clear"][0, :, :224, :304].transpose(1, 2, 0))
            np.testing.assert_array_equal(coloured.image, decoded)


def test_is_gray_takes_a_frame_whose_three_channels_are_equal_everywhere_and_nothing_else(shared_data: Path) -> None:
    """`is_gray` looks at the middle row first: a frame gray there but not elsewhere, in any one channel, is colour."""
    colour = read_image(shared_data / "hazy-real" / "urhi" / "YST_Bing_667.png")
    gray = cv2.cvtColor(cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    assert is_gray(gray) and not is_gray(colour)
    for channel in range(3):
        tinted = gray.copy()
        tinted[: gray.shape[0] // 2, :, channel] = colour[: gray.shape[0] // 2, :, channel]  # the middle row gray
        assert not is_gray(tinted), channel
