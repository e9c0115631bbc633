"""The networks: shapes and ranges, determinism, gradients, fp16, the depth guidance, checkpoints and cost."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dgdehaze_core.io.images import bgr_to_rgb_float, read_image
from dgdehaze_core.models import MODEL_CONFIGS, build_model, load_model, save_checkpoint, shipped_weights_path
from dgdehaze_core.models.complexity import count_macs, count_parameters
from dgdehaze_core.models.depth_guided_attention import pool_tokens

CONFIGS = tuple(MODEL_CONFIGS)


def fresh(config: str, seed: int = 0, **kwargs: object):
    torch.manual_seed(seed)
    return build_model(config, **kwargs).eval()


def real_batch(shared_data: Path, height: int, width: int) -> torch.Tensor:
    """Two real hazy images (SOTS indoor, URHI), centre-cropped to HxW, as a (2, 3, H, W) RGB tensor."""
    paths = [shared_data / "paired" / "sots-indoor" / "hazy" / "1400_7.png",
             shared_data / "hazy-real" / "urhi" / "YST_Bing_667.png"]
    crops = []
    for path in paths:
        image = bgr_to_rgb_float(read_image(path))
        top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
        crops.append(image[top:top + height, left:left + width])
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()


@pytest.mark.parametrize("config", CONFIGS)
def test_outputs_have_the_promised_shapes_and_ranges_on_real_images(config: str, shared_data: Path) -> None:
    model = fresh(config)
    stride = model.stride
    height, width = 3 * stride, 5 * stride
    with torch.no_grad():
        outputs = model(real_batch(shared_data, height, width))
    assert outputs["clear"].shape == (2, 3, height, width)
    assert outputs["transmission"].shape == (2, 1, height, width)
    assert outputs["airlight"].shape == (2, 3, 1, 1)
    assert outputs["depth"].shape == (2, 1, height, width)
    for name, tensor in outputs.items():
        assert torch.isfinite(tensor).all(), name
    assert outputs["clear"].min() >= 0 and outputs["clear"].max() <= 1
    assert outputs["transmission"].min() > 0 and outputs["transmission"].max() <= 1
    assert outputs["airlight"].min() >= 0 and outputs["airlight"].max() <= 1
    assert outputs["depth"].min() > 0
    with torch.no_grad():
        physics = model(real_batch(shared_data, height, width), with_clear=False)
    assert sorted(physics) == ["airlight", "depth", "transmission"]
    for name, tensor in physics.items():
        assert torch.equal(tensor, outputs[name]), f"{name} does not depend on computing the decoder's image"


def test_eval_mode_is_deterministic_and_batch_independent(shared_data: Path) -> None:
    model = fresh("lite")
    batch = real_batch(shared_data, 64, 96)
    with torch.no_grad():
        first, second = model(batch), model(batch)
        alone = model(batch[1:])
    for name in first:
        assert torch.equal(first[name], second[name]), name
        torch.testing.assert_close(first[name][1:], alone[name], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("config", CONFIGS)
def test_gradients_reach_every_parameter(config: str) -> None:
    torch.manual_seed(1)
    model = build_model(config).train()
    hazy = torch.rand(2, 3, 32, 64)
    outputs = model(hazy)
    loss = sum(tensor.square().mean() for tensor in outputs.values())
    loss.backward()
    missing = [name for name, parameter in model.named_parameters()
               if parameter.grad is None or not torch.isfinite(parameter.grad).all()
               or parameter.grad.abs().sum() == 0]
    assert not missing, f"no gradient reaches {missing}"


@pytest.mark.parametrize("config", CONFIGS)
def test_fp16_is_close_to_fp32(config: str, shared_data: Path) -> None:
    model = fresh(config)
    batch = real_batch(shared_data, 64, 96)
    with torch.no_grad():
        reference = model(batch)
        half = model.half()(batch.half())
    for name in reference:
        assert half[name].dtype == torch.float16
        error = (half[name].float() - reference[name]).abs().max().item()
        scale = reference[name].abs().max().item()
        assert error < 0.01 * max(scale, 1.0), f"{name}: fp16 differs by {error}"


def test_cross_attention_reads_the_depth(shared_data: Path) -> None:
    model = fresh("lite")
    # an untrained clear head starts near the identity (std 1e-3); give it a trained model's scale
    torch.nn.init.normal_(model.dehazer.clear_head.weight, std=0.1)
    hazy = real_batch(shared_data, 64, 96)[:1]
    rows = torch.linspace(1.0, 20.0, 64).view(1, 1, 64, 1).expand(1, 1, 64, 96)
    with torch.no_grad():
        near_far = model.dehazer(hazy, rows)
        far_near = model.dehazer(hazy, rows.flip(2))
        block = model.dehazer.stage1[0]
        guided = model.dehazer.guided_embed(model.dehazer.depth_guided_input(hazy, rows))[1]
        tokens = guided.flatten(2).transpose(1, 2)
        hazy_tokens = model.dehazer.hazy_embed(hazy)[1].flatten(2).transpose(1, 2)
        height, width = guided.shape[2:]
        cross = block.cross_attention(tokens, hazy_tokens, height, width)
        guided_flip = model.dehazer.guided_embed(model.dehazer.depth_guided_input(hazy, rows.flip(2)))[1]
        cross_flip = block.cross_attention(guided_flip.flatten(2).transpose(1, 2), hazy_tokens, height, width)
    # flipping the depth changes (beyond float rounding) most pixels of both image outputs
    assert ((near_far["clear"] - far_near["clear"]).abs() > 1e-6).float().mean() > 0.5
    assert ((near_far["transmission"] - far_near["transmission"]).abs() > 1e-6).float().mean() > 0.5
    # the cross-attention itself: same keys/values (hazy), different depth-guided queries, different output
    assert (cross - cross_flip).abs().mean() > 1e-3 * cross.abs().mean()


def test_without_depth_guidance_the_dehazer_ignores_the_depth_network(shared_data: Path) -> None:
    hazy = real_batch(shared_data, 64, 64)
    for guidance, should_change in ((True, True), (False, False)):
        model = fresh("lite", depth_guidance=guidance)
        with torch.no_grad():
            before = model(hazy)["clear"]
            for parameter in model.depth_net.head.parameters():
                parameter.add_(torch.randn_like(parameter))
            after = model(hazy)["clear"]
        assert (not torch.equal(before, after)) is should_change, f"depth_guidance={guidance}"


def test_a_detached_guide_keeps_the_dehazing_losses_out_of_the_depth_network(shared_data: Path) -> None:
    hazy = real_batch(shared_data, 64, 64)
    for guide_trains_depth in (True, False):
        model = fresh("lite")
        model.guide_trains_depth = guide_trains_depth
        outputs = model(hazy)
        (outputs["clear"].mean() + outputs["transmission"].mean()).backward()
        depth_grads = [p.grad for p in model.depth_net.parameters()]
        reached = any(g is not None and g.abs().sum() > 0 for g in depth_grads)
        assert reached is guide_trains_depth, f"guide_trains_depth={guide_trains_depth}"
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.dehazer.guided_embed.parameters())
        model.zero_grad()
        model(hazy)["depth"].mean().backward()
        assert all(p.grad is not None for p in model.depth_net.parameters()), "the depth's own losses still train it"


@pytest.mark.parametrize("height,width", [(2, 3), (5, 5), (9, 17), (60, 80)])
def test_token_pooling_equals_adaptive_average_pooling(height: int, width: int) -> None:
    torch.manual_seed(0)
    grid_map = torch.randn(2, 6, height, width)
    tokens = grid_map.flatten(2).transpose(1, 2)
    expected = F.adaptive_avg_pool2d(grid_map, 4).flatten(2).transpose(1, 2)
    torch.testing.assert_close(pool_tokens(tokens, height, width, 4), expected, atol=1e-5, rtol=1e-5)


def test_token_pooling_kept_from_inference_serves_training_and_each_size_and_dtype_its_own() -> None:
    torch.manual_seed(0)
    grid_map = torch.randn(2, 6, 13, 21)
    tokens = grid_map.flatten(2).transpose(1, 2)
    with torch.inference_mode():  # the node's first frame: what is kept must not be an inference tensor
        first = pool_tokens(tokens, 13, 21, 4)
    trained = tokens.clone().requires_grad_(True)
    pool_tokens(trained, 13, 21, 4).square().sum().backward()  # inference tensors cannot be saved for backward
    assert trained.grad is not None and trained.grad.abs().sum() > 0
    torch.testing.assert_close(pool_tokens(tokens, 13, 21, 4), first)
    wide = pool_tokens(tokens.double(), 13, 21, 4)
    assert wide.dtype == torch.float64
    torch.testing.assert_close(wide.float(), first, atol=1e-6, rtol=1e-6)
    other = torch.randn(1, 6, 9, 21)
    expected = F.adaptive_avg_pool2d(other, 4).flatten(2).transpose(1, 2)
    torch.testing.assert_close(pool_tokens(other.flatten(2).transpose(1, 2), 9, 21, 4), expected, atol=1e-5,
                               rtol=1e-5)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = fresh("lite", seed=3, depth_guidance=False)
    path = save_checkpoint(model, tmp_path / "nested" / "lite.pt", meta={"recipe": "test"})
    loaded = load_model(path)
    assert loaded.config_name == "lite" and loaded.depth_guidance is False and not loaded.training
    hazy = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected, actual = model(hazy), loaded(hazy)
    for name in expected:
        assert torch.equal(expected[name], actual[name])
    assert torch.load(path, weights_only=True)["meta"] == {"recipe": "test"}
    assert [p.name for p in path.parent.iterdir()] == ["lite.pt"], "no temporary file may be left behind"


def test_bad_checkpoints_and_missing_weights_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown model configuration"):
        build_model("huge")
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_model(tmp_path / "absent.pt")
    truncated = tmp_path / "truncated.pt"
    save_checkpoint(fresh("lite"), truncated)
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with pytest.raises(ValueError, match="not a readable dgdehaze checkpoint"):
        load_model(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(ValueError, match="not a dgdehaze checkpoint"):
        load_model(foreign)
    good = torch.load(shipped_weights_path("lite"), map_location="cpu", weights_only=True)
    for change, message in (({"state_dict": [torch.zeros(1)]}, "its state_dict is not a mapping of names to tensors"),
                            ({"state_dict": None}, "its state_dict is not a mapping"),
                            ({"config": "huge"}, "names the model configuration 'huge', which this version does not"),
                            ({"depth_guidance": "False"}, "its depth_guidance is 'False', not true or false")):
        odd = tmp_path / "odd.pt"
        torch.save({**good, **change}, odd)
        with pytest.raises(ValueError, match=f"^{odd}: {message}|^{odd} {message}"):
            load_model(odd)
    if not shipped_weights_path("base").exists():
        with pytest.raises(FileNotFoundError, match="dgdehaze_base.pt"):
            load_model("base")
    diverged = fresh("lite")
    with torch.no_grad():
        diverged.dehazer.clear_head.weight[0, 0, 0, 0] = float("nan")
    save_checkpoint(diverged, tmp_path / "diverged.pt")
    with pytest.raises(ValueError, match="not finite .* first in 'dehazer.clear_head.weight'"):
        load_model(tmp_path / "diverged.pt")
    relabelled = torch.load(save_checkpoint(fresh("lite"), tmp_path / "lite.pt"), weights_only=True)
    relabelled["config"] = "base"
    torch.save(relabelled, tmp_path / "relabelled.pt")
    with pytest.raises(ValueError, match=r"does not fit the 'base' network it names: \d+ tensors missing") as error:
        load_model(tmp_path / "relabelled.pt")
    assert "\n" not in str(error.value)
    for kind in (torch.int32, torch.complex64):  # torch cast them: rounded weights, or without their imaginary part
        recast = torch.load(tmp_path / "lite.pt", weights_only=True)
        recast["state_dict"] = {name: tensor.to(kind) if tensor.is_floating_point() else tensor
                                for name, tensor in recast["state_dict"].items()}
        torch.save(recast, tmp_path / "recast.pt")
        with pytest.raises(ValueError, match=r"does not fit the 'lite' network it names: 0 tensors missing, 0 "
                                             r"unexpected, 0 of another shape, \d+ of another kind of number"):
            load_model(tmp_path / "recast.pt")


def test_lite_stays_within_its_real_time_budget_and_base_is_larger() -> None:
    lite, base = fresh("lite"), fresh("base")
    lite_macs = count_macs(lite, 480, 640)
    assert lite_macs < 1.5e9, f"lite costs {lite_macs / 1e9:.2f} GMACs at 640x480"
    assert count_macs(base, 480, 640) > 3 * lite_macs
    assert count_parameters(base) > 3 * count_parameters(lite)


def test_a_folder_given_as_weights_is_named_a_folder_not_a_missing_file(shared_data: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A folder where a weights file is wanted (`mkdir lite.pt`, a run folder named like its checkpoint) was 'no such
    checkpoint', 'no such depth checkpoint' or 'no such weights file': the user looked for a file that was there."""
    from dgdehaze_core.cli import main
    from dgdehaze_core.datasets.paths import REPO_DIR

    folder = tmp_path / "lite.pt"
    folder.mkdir()
    image = next((shared_data / "clear" / "bdd").iterdir())
    smoke = ["train", "--config", str(REPO_DIR / "training" / "smoke.yaml"), "--out", str(tmp_path / "run")]
    for argv, message in (
            (["dehaze", str(image), "--method", str(folder), "--out", str(tmp_path / "out")],
             f"{folder} is a folder, not a checkpoint"),
            ([*smoke, "--set", f"init_weights={folder}"], f"init_weights: {folder} is a folder, not a weights file"),
            ([*smoke, "--set", f"clear_depth={folder}"], f"{folder} is a folder, not a depth checkpoint")):
        assert main(argv) == 2
        assert message in capsys.readouterr().err, argv
    assert sorted(path.name for path in tmp_path.iterdir()) == ["lite.pt"]
    with pytest.raises(FileNotFoundError, match="no such checkpoint: "):
        load_model(tmp_path / "absent.pt")


def test_a_folder_given_as_an_export_is_named_a_folder_not_a_missing_file(shared_data: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`mkdir dir.onnx; dgdehaze dehaze IMG --method dir.onnx` said "no such ONNX file: dir.onnx" (and a prebuilt
    engine's check "no such engine file"), of a path that is there: it is a folder."""
    from dgdehaze_core.cli import main
    from dgdehaze_core.inference.backends.tensorrt_backend import prebuilt_engine

    image = next((shared_data / "clear" / "bdd").iterdir())
    (tmp_path / "dir.onnx").mkdir()
    (tmp_path / "dir.engine").mkdir()
    assert main(["dehaze", str(image), "--method", str(tmp_path / "dir.onnx"), "--out", str(tmp_path / "out")]) == 2
    assert f"{tmp_path / 'dir.onnx'} is a folder, not an ONNX file" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="dir.engine is a folder, not an engine file"):
        prebuilt_engine(tmp_path / "dir.engine", "tensorrt-10.3.0", "NVIDIA H100")
    assert not (tmp_path / "out").exists()


def test_an_upper_case_suffix_is_one_rule_for_writing_and_reading(shared_data: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`dehaze --method W.PT` read the weights (the pipeline lower-cased the suffix), but `train --export W.PT` and
    `export --out X.ONNX` were refused as names no such file is read from, and a clear-depth network named D.PT was
    taken for no clear-depth checkpoint: one rule (`file_paths.file_suffix`) now serves reading and writing."""
    import shutil

    from dgdehaze_core.cli import main
    from dgdehaze_core.datasets.paths import REPO_DIR, WEIGHTS_DIR
    from dgdehaze_core.models.clear_depth import is_clear_depth_checkpoint

    image = next((shared_data / "clear" / "bdd").iterdir())
    weights, export = tmp_path / "W.PT", tmp_path / "X.ONNX"
    assert main(["train", "--config", str(REPO_DIR / "training" / "smoke.yaml"), "--iterations", "2", "--out",
                 str(tmp_path / "run"), "--export", str(weights), "--no-progress"]) == 0
    assert main(["export", "--config", "lite", "--weights", str(weights), "--height", "64", "--width", "64",
                 "--out", str(export)]) == 0
    for method in (weights, export):
        out = tmp_path / f"dehazed-{method.suffix[1:]}"
        assert main(["dehaze", str(image), "--method", str(method), "--out", str(out), "--no-progress"]) == 0, \
            capsys.readouterr().err
        assert len(list(out.glob("*_dehazed.*"))) == 1
    depth = shutil.copy(WEIGHTS_DIR / "clear_depth_kitti.pt", tmp_path / "D.PT")
    assert is_clear_depth_checkpoint(depth)
