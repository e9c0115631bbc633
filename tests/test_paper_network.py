"""The paper's released network (`paper`): the official state_dict layout loads, and a file in that layout gives
through `dgdehaze dehaze --output decoder` the image the authors' own code saves.

tests/data/paper/official_output_seed0.png was made once by the authors' code (DongLiangSXU/Depth-Guidance-dehazing
at 946dae3, timm 1.0.31, torch 2.14.1, CPU), read as documentation and run outside this repository: its
`multi_Net` in nn.DataParallel loaded `released_layout_weights()` strictly and ran on hazy_96x64.png (RGB from
ToTensor), and `torchvision.utils.save_image` wrote its output. The key digest below is of that network's
state_dict keys, in order.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dgdehaze_core.cli import main
from dgdehaze_core.inference.backends import PHYSICS_OUTPUTS
from dgdehaze_core.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
from dgdehaze_core.inference.export.to_onnx import export_onnx
from dgdehaze_core.inference.pipeline import load_pipeline
from dgdehaze_core.io.images import read_image
from dgdehaze_core.models import build_model, checkpoint_state, load_model
from dgdehaze_core.models.paper_net import OFFICIAL_PARAMETERS, OFFICIAL_TENSORS, PaperNet, _attend

DATA = Path(__file__).parent / "data" / "paper"
OFFICIAL_KEYS_SHA256 = "a31363fbaf95d4fda7c7aae6975cf3fcbbc5b941a53a383f6b115b9e6242263b"


@functools.cache
def released_layout_network() -> PaperNet:
    """The seed-0 network with the depth branch's last layer and the image head scaled so that the depth and the
    image vary over the frame (freshly initialised, both are nearly constant and would test little): built once
    (45 M parameters), for the tests to read, not to change."""
    torch.manual_seed(0)
    model = PaperNet()
    with torch.no_grad():
        model.depth_finetune.depth_es.finalconv.bias.fill_(2.0)
        model.depth_finetune.depth_es.finalconv.weight.mul_(400.0)
        model.Tfuse_second.output1[2].weight.mul_(40.0)
        model.Tfuse_second.output1[2].bias.fill_(0.5)
    return model


def released_layout_weights() -> dict[str, torch.Tensor]:
    """`released_layout_network()`'s weights in the released file's layout (nn.DataParallel's `module.` keys): a
    dict of its own for each caller to change, whose tensors are the network's (replace them, never in place)."""
    return {f"module.{key}": value for key, value in released_layout_network().state_dict().items()}


@pytest.fixture(scope="module")
def released_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("paper") / "model_Roadmap.pth"
    torch.save(released_layout_weights(), path)
    return path


def test_the_state_dict_has_the_released_layout_and_size() -> None:
    model = released_layout_network()  # its scaled weights keep the layout and the size of any PaperNet's
    keys = [f"module.{key}" for key in model.state_dict()]
    assert len(keys) == OFFICIAL_TENSORS
    assert hashlib.sha256("\n".join(keys).encode()).hexdigest() == OFFICIAL_KEYS_SHA256
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMETERS  # 45.02 M, as published


def test_dehaze_with_the_decoder_output_gives_the_image_the_official_code_saves(released_file: Path,
                                                                                tmp_path: Path) -> None:
    assert main(["dehaze", str(DATA / "hazy_96x64.png"), "--method", str(released_file), "--output", "decoder",
                 "--out", str(tmp_path)]) == 0
    ours = read_image(tmp_path / "hazy_96x64_dehazed.png").astype(int)
    official = read_image(DATA / "official_output_seed0.png").astype(int)
    assert ours.shape == official.shape and official.std() > 20  # a varied image, not a constant
    assert np.abs(ours - official).max() <= 1


def test_a_physics_setting_for_the_released_network_is_refused_not_ignored(
        released_file: Path, sots_pairs: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
        caplog: pytest.LogCaptureFixture) -> None:
    """The released network has no transmission head: a floor or a detail gain given for it changed nothing and was
    recorded as if it had. dehaze refuses them; eval, whose other methods may use them, says so."""
    for option in (["--radiance-floor", "0.1"], ["--max-detail-gain", "0"]):
        assert main(["dehaze", str(DATA / "hazy_96x64.png"), "--method", str(released_file), "--out",
                     str(tmp_path / "out"), *option]) == 2
        assert "gives no transmission (its image is its decoder's" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with caplog.at_level("WARNING", logger="dgdehaze_core.commands.evaluate"):  # eval's other methods may use them
        assert main(["eval", "--dataset", str(sots_pairs), "--measure", "quality", "--limit", "1", "--working-size",
                     "64x48", "--method", f"dcp,paper={released_file}", "--max-detail-gain", "0"]) == 0
    assert "paper give no transmission" in caplog.text


def test_in_the_pipeline_depth_is_the_networks_and_the_scattering_is_the_dark_channel_priors(
        released_file: Path) -> None:
    frame = read_image(DATA / "hazy_96x64.png")
    pipeline = load_pipeline(str(released_file))
    result = pipeline(frame)  # auto: the decoder, this network's only image
    dcp = load_pipeline("dcp")(frame)
    np.testing.assert_array_equal(result.transmission, dcp.transmission)
    assert result.transmission_floor == dcp.transmission_floor == 0.1, "the fog measurement needs DCP's own floor"
    np.testing.assert_allclose(result.airlight, dcp.airlight, atol=1e-6)
    assert np.isfinite(result.depth).all() and result.depth.min() >= 1.0 and result.depth.std() > 0.1
    odd = read_image(DATA / "hazy_96x64.png")[:50, :70]  # not a multiple of 32: padded and cropped back
    assert pipeline(odd).image.shape == odd.shape


def test_what_this_network_cannot_do_is_refused_with_the_reason(released_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no transmission or airlight"):
        load_pipeline(str(released_file), output="physics")
    with pytest.raises(FileNotFoundError, match="model_Roadmap.pth"):
        load_model("paper")
    damaged = {key: value for key, value in released_layout_weights().items() if "mix1" not in key}
    torch.save(damaged, tmp_path / "damaged.pth")
    with pytest.raises(ValueError, match="1 tensors missing"):
        load_model(tmp_path / "damaged.pth")
    misshaped = released_layout_weights()
    misshaped["module.Tfuse_second.output1.2.weight"] = torch.zeros(3, 64, 3, 3)
    torch.save(misshaped, tmp_path / "misshaped.pth")
    with pytest.raises(ValueError, match="1 of another shape .first: 'Tfuse_second.output1.2.weight'") as error:
        load_model(tmp_path / "misshaped.pth")
    assert "\n" not in str(error.value)


@pytest.fixture(scope="module")
def released_model(released_file: Path) -> PaperNet:
    """The released-layout file as `load_model` reads it, loaded once (read-only: export_onnx exports a copy)."""
    return load_model(released_file)


@pytest.fixture(scope="module")
def paper_onnx(released_model: PaperNet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The released-layout file exported by `export_onnx` with its default outputs, at a fixed 32x64."""
    return export_onnx(released_model, tmp_path_factory.mktemp("paper_onnx") / "paper.onnx", dynamic=False,
                       example_size=(32, 64))


@pytest.mark.slow
def test_export_onnx_writes_the_paper_network_with_its_own_outputs(released_model: PaperNet, paper_onnx: Path,
                                                                   tmp_path: Path) -> None:
    """`export_onnx(model, path)` asked every network for transmission and airlight by default: the paper's, which
    has neither, failed after tracing with a KeyError 'transmission'. Its own outputs are now the default, and
    outputs it does not give are refused before any tracing."""
    model = released_model
    with pytest.raises(ValueError, match="the paper network gives clear, depth: it cannot export transmission"):
        export_onnx(model, tmp_path / "physics.onnx", outputs=PHYSICS_OUTPUTS)
    backend = OnnxRuntimeBackend(paper_onnx, threads=1)
    hazy = torch.from_numpy(cv2.imread(str(DATA / "hazy_96x64.png"))[:32, :64, ::-1].copy()).permute(2, 0, 1)
    batch = (hazy[None].float() / 255.0).numpy()
    with torch.no_grad():
        expected = model(torch.from_numpy(batch))
    actual = backend.run(batch)
    assert set(actual) == {"clear", "depth"}
    for name in ("clear", "depth"):
        np.testing.assert_allclose(actual[name], expected[name].numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_the_paper_network_s_int8_keeps_its_image_reading_and_output_convolutions_float(paper_onnx: Path,
                                                                                        tmp_path: Path) -> None:
    """int8 keeps float the convolutions that read the image and those that give the outputs (quantize's policy),
    named `stem.` and `head.` in our networks: none of the paper network's is, so every one of its convolutions
    was quantised."""
    import onnx

    from dgdehaze_core.inference.export.quantize import PAPER_FLOAT_WEIGHTS, module_paths, quantize_onnx

    int8 = onnx.load(str(quantize_onnx(paper_onnx, DATA, tmp_path / "paper_int8.onnx")))
    dequantized = {node.output[0] for node in int8.graph.node if node.op_type == "DequantizeLinear"}
    weights = {init.name for init in int8.graph.initializer}
    float_convs = sorted(" ".join(module_paths(node, weights)) for node in int8.graph.node
                         if node.op_type == "Conv" and node.input[1] not in dequantized)
    assert len(float_convs) == 4 and all(any(part in name for part in PAPER_FLOAT_WEIGHTS) for name in float_convs)
    assert all(any(part in name for name in float_convs) for part in PAPER_FLOAT_WEIGHTS), float_convs


def test_a_weights_file_with_a_key_or_a_value_of_another_type_is_refused_naming_it(tmp_path: Path) -> None:
    """A file whose dict had a key that is not a string crashed the check for the released layout (TypeError from
    re.match, a traceback); one in the released layout holding a value that is no tensor failed in torch's loader
    with a message of several lines that did not name the file."""
    int_key = tmp_path / "int_key.pth"
    torch.save({1: torch.zeros(1)}, int_key)
    with pytest.raises(ValueError, match="is not a dgdehaze checkpoint"):
        load_model(int_key)
    not_a_tensor = released_layout_weights()
    not_a_tensor["module.mix1.w"] = [0.5]
    torch.save(not_a_tensor, tmp_path / "list.pth")
    with pytest.raises(ValueError, match=f"^{tmp_path / 'list.pth'}: its state_dict is not a mapping of names to "
                                         "tensors$"):
        load_model(tmp_path / "list.pth")


def test_a_released_layout_file_whose_copies_of_a_tensor_disagree_is_refused_naming_them(tmp_path: Path) -> None:
    """A file holding a tensor both with and without the `module.` prefix, or a DenseNet tensor whose two names
    (the features' and the alias the released code registers) held different values, loaded with one of the two
    values dropped without a word."""
    twice = released_layout_weights()
    twice["mix1.w"] = torch.tensor([3.0])
    torch.save(twice, tmp_path / "twice.pth")
    with pytest.raises(ValueError, match="1 tensors are held both with and without the 'module.' prefix "
                                         r"\(first: 'mix1.w'\)"):
        load_model(tmp_path / "twice.pth")
    aliases = released_layout_weights()
    alias = "module.depth_finetune.depth_es.conv0.weight"
    aliases[alias] = torch.zeros_like(aliases[alias])
    torch.save(aliases, tmp_path / "aliases.pth")
    with pytest.raises(ValueError, match="1 tensors held under two names differ between them "
                                         r"\(first: 'depth_finetune.depth_es.model.features.conv0.weight' and "
                                         "'depth_finetune.depth_es.conv0.weight'"):
        load_model(tmp_path / "aliases.pth")


def test_a_paper_checkpoint_without_depth_guidance_is_refused_not_run_depth_guided(tmp_path: Path) -> None:
    """The paper network has no configuration without depth guidance; a checkpoint saying `depth_guidance: false`
    loaded and ran depth-guided, so an "ablation" of it would have measured the network itself."""
    state = checkpoint_state(released_layout_network())
    torch.save({**state, "depth_guidance": False}, tmp_path / "paper_no_depth.pt")
    with pytest.raises(ValueError, match="paper_no_depth.pt names the paper network without depth guidance"):
        load_model(tmp_path / "paper_no_depth.pt")
    with pytest.raises(ValueError, match="always depth-guided"):
        build_model("paper", depth_guidance=False)
    torch.save(state, tmp_path / "paper.pt")
    assert isinstance(load_model(tmp_path / "paper.pt"), PaperNet)


def test_attention_in_fp16_stays_finite_where_the_unscaled_product_would_pass_fp16s_range() -> None:
    """The official code scales q·kᵀ after the product: in fp16 (TensorRT, --half) a product past 65504 became inf
    and the softmax NaN; scaling q first gives the same weights within fp16's range."""
    heads, dim = 1, 64
    q = torch.full((1, 4, dim), 40.0)
    kv = torch.cat([torch.full((1, 4, dim), 40.0), torch.randn(1, 4, dim)], dim=-1)
    assert torch.isinf((q.half() @ q.half().transpose(-2, -1))).all()  # the official order overflows
    half = _attend(q.half(), kv.half(), heads, dim ** -0.5)
    assert torch.isfinite(half).all()
    torch.testing.assert_close(half.float(), _attend(q, kv, heads, dim ** -0.5), atol=1e-2, rtol=1e-2)


@pytest.mark.slow
def test_a_dynamic_export_holds_the_depth_floor(released_model: PaperNet, tmp_path: Path) -> None:
    """torch's TorchScript exporter (export_onnx's default) took aten::threshold only as a ReLU: the network's
    nn.Threshold(1, 1) floor on depth failed the export."""
    model = released_model
    backend = OnnxRuntimeBackend(export_onnx(model, tmp_path / "paper.onnx"), threads=1)
    hazy = torch.from_numpy(cv2.imread(str(DATA / "hazy_96x64.png"))[:, :, ::-1].copy()).permute(2, 0, 1)
    for batch in ((hazy[None].float() / 255.0).numpy(), (hazy[None, :, :32, :64].float() / 255.0).numpy()):
        with torch.no_grad():
            expected = model(torch.from_numpy(batch))
        assert (expected["depth"] == 1.0).any() and (expected["depth"] > 1.0).any(), "both sides of the floor"
        actual = backend.run(batch)
        for name in ("clear", "depth"):
            np.testing.assert_allclose(actual[name], expected[name].numpy(), rtol=1e-4, atol=1e-4)
