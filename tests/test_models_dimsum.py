"""DiMSUMModel: sizes, scan plans, shapes, save/load, determinism, checkpointing, conversion."""

import argparse
import math

import pytest
import torch
from model_cases import image_inputs, randomize_
from safetensors.torch import save_file

from ssmgen.layers.embeddings import get_2d_sincos_pos_embed
from ssmgen.models import DiMSUMModel
from ssmgen.models.dimsum import ModulatedMamba, stochastic_depth
from ssmgen.models.dimsum_scans import layer_scan_orders

CPU = torch.device("cpu")


def tiny(**overrides) -> DiMSUMModel:
    torch.manual_seed(0)
    return DiMSUMModel.from_preset("tiny", **overrides)


def inputs(batch=2, channels=4, size=8):
    return image_inputs([0.25, 0.9], batch, channels, size)


# --- sizes -------------------------------------------------------------------------------------------


def official_parameter_count(depth, hidden, patch=2, grid=16, channels=4, classes=1000, dead_cond_proj=True):
    """DiM (block_type combined) counted in closed form from the official code's layer shapes."""

    def linear(i, o, bias=True):
        return i * o + (o if bias else 0)

    def mamba(d, n=16, conv=4):
        inner, rank = 2 * d, math.ceil(d / 16)
        return (
            linear(d, 2 * inner, False)  # in_proj
            + inner * conv + inner  # conv1d
            + linear(inner, rank + 2 * n, False)  # x_proj
            + linear(rank, inner)  # dt_proj
            + inner * n + inner  # A_log, D
            + linear(inner, d, False)  # out_proj
            + (linear(hidden, inner) if dead_cond_proj else 0)  # CondMamba.cond_proj
        )  # fmt: skip

    half = hidden // 2
    branch = mamba(half) + linear(hidden, 3 * half)
    fusion = 2 * linear(half, 3 * half) + linear(hidden, hidden)
    gated_mlp = linear(hidden, 8 * hidden) + linear(4 * hidden, hidden)
    block = 2 * hidden + 2 * branch + fusion + linear(hidden, 3 * hidden) + gated_mlp
    dit_block = linear(hidden, 3 * hidden) + linear(hidden, hidden) + gated_mlp + linear(hidden, 6 * hidden)
    embeddings = (
        channels * hidden * patch * patch + hidden  # patch embed
        + grid * grid * hidden  # pos_embed
        + linear(256, hidden) + linear(hidden, hidden)  # t_embedder
        + (classes + 1) * hidden  # y_embedder with the null row
    )  # fmt: skip
    final = linear(hidden, 2 * hidden) + linear(hidden, patch * patch * channels)
    return embeddings + depth * block + dit_block + final


@pytest.mark.parametrize("preset, depth, hidden", [("L/2", 16, 1024), ("B/2", 12, 768), ("XL/2", 24, 1152)])
def test_presets_have_the_official_size_without_the_dead_weights(preset, depth, hidden):
    with torch.device("meta"):
        model = DiMSUMModel.from_preset(preset)
    count = sum(p.numel() for p in model.parameters())
    assert count == official_parameter_count(depth, hidden, dead_cond_proj=False)
    assert not any("cond_proj" in name for name, _ in model.named_parameters())
    with_dead = official_parameter_count(depth, hidden)
    if preset == "L/2":  # the released size: 460M in the README, ~426M once cond_proj is gone
        assert round(with_dead / 1e6, 1) == 459.9 and round(count / 1e6, 1) == 426.3
    if preset == "B/2":
        assert round(with_dead / 1e6, 1) == 198.5


def test_l4_and_v1_presets():
    with torch.device("meta"):
        l4, v1 = DiMSUMModel.from_preset("L/4"), DiMSUMModel.from_preset("DiM-L/2-v1")  # official name
    assert l4.x_embedder.proj.kernel_size == (4, 4) and l4.pos_embed.shape == (1, 64, 1024)
    assert len(v1.blocks) == 20 and v1.pos_embed.shape == (1, 256, 1024)


# --- scan plans --------------------------------------------------------------------------------------


def grid_ids(n):
    return torch.arange(n * n).view(n, n)


def windows(n, window, column_first):
    """Token ids window by window, each window's tokens in raster order (transposed for column-first)."""
    blocks = grid_ids(n).view(n // window, window, n // window, window).permute(0, 2, 1, 3)
    if column_first:
        blocks = blocks.permute(1, 0, 3, 2)
    return blocks.reshape(-1)


def test_alternating_plan_sweeps_four_directions_and_alternates_windows():
    n, ids = 8, grid_ids(8)
    spatial = [ids.flatten(), ids.flatten().flip(0), ids.T.flatten(), ids.T.flatten().flip(0)]
    for layer in range(6):
        s, w = layer_scan_orders("alternating", layer, n, 2, CPU)
        assert torch.equal(s.perm, spatial[layer % 4])
        assert torch.equal(w.perm, windows(n, 2, column_first=layer % 2 == 1))  # window = grid / 2**levels
    assert torch.equal(layer_scan_orders("alternating", 0, 8, 1, CPU)[1].perm, windows(8, 4, False))


def sweep_path(n, index):
    """DiMSUM's sweep path ``index``: start corner index // 2, rows first when index is even."""
    ids = grid_ids(n)
    if index // 2 in (2, 3):
        ids = ids.flip(0)
    if index // 2 in (1, 3):
        ids = ids.flip(1)
    return (ids if index % 2 == 0 else ids.T).flatten()


def test_path_plans_cycle_through_the_paths_in_both_branches():
    n = 8
    for layer in range(5):
        s, w = layer_scan_orders("sweep_4", layer, n, 2, CPU)
        path = sweep_path(n, layer % 4)
        assert torch.equal(s.perm, path)
        # the wavelet branch scans the row-major windows in the path's order
        assert torch.equal(w.perm, windows(n, 2, False)[path])
        assert torch.equal(w.perm[w.inverse], torch.arange(n * n))
    s, w = layer_scan_orders("bidirectional", 3, n, 2, CPU)
    assert torch.equal(s.perm, torch.arange(n * n)) and torch.equal(w.perm, windows(n, 2, False))


@pytest.mark.parametrize("layer", range(4))
def test_spatial_branch_is_causal_along_its_layers_scan(layer):
    """Perturbing one token changes only the outputs at or after it in the layer's scan order."""
    torch.manual_seed(0)
    branch = randomize_(ModulatedMamba(8, 16, dict(d_state=4)), scale=0.1).eval()
    order, _ = layer_scan_orders("alternating", layer, 4, 2, CPU)
    x, c = torch.randn(1, 16, 8), torch.randn(1, 16)
    token = 6  # row 1, column 2
    moved = x.clone()
    moved[0, token] += 1.0
    with torch.no_grad():
        changed = (branch(moved, c, order) - branch(x, c, order)).abs().amax(-1)[0] > 1e-6
    ids = grid_ids(4)
    expected_order = [ids.flatten(), ids.flatten().flip(0), ids.T.flatten(), ids.T.flatten().flip(0)][layer]
    position = (expected_order == token).nonzero().item()
    expected = torch.zeros(16, dtype=torch.bool)
    expected[expected_order[position:]] = True
    assert torch.equal(changed, expected)


# --- forward -----------------------------------------------------------------------------------------


def test_other_wavelets_and_levels_run():
    for options in (dict(wavelet="db2"), dict(wavelet_levels=1), dict(wavelet_levels=3)):
        out = randomize_(tiny(**options), scale=0.1).eval()(*inputs()).sample
        assert out.shape == (2, 4, 8, 8) and torch.isfinite(out).all()


@pytest.mark.parametrize("channels, size", [(4, 8), (3, 8), (4, 16)])
def test_output_shapes_and_other_square_sizes(channels, size):
    model = randomize_(tiny(in_channels=channels), scale=0.1).eval()
    x, t, y = inputs(channels=channels, size=size)
    out = model(x, t, y).sample
    assert out.shape == (2, channels, size, size) and torch.isfinite(out).all()
    assert model(x, t, y, return_dict=False)[0].shape == out.shape
    sigma = tiny(in_channels=channels, learn_sigma=True)(x, t, y).sample
    assert sigma.shape == (2, 2 * channels, size, size)


def test_fresh_model_predicts_zero_velocity():
    """DiT's zero-initialised final layer: the untrained model predicts 0 everywhere."""
    x, t, y = inputs()
    assert torch.equal(tiny()(x, t, y).sample, torch.zeros_like(x))


def test_fresh_initialisation_follows_the_release():
    model = tiny(depth=9)  # out_proj is rescaled by 1 / sqrt(depth)
    block = model.blocks[0]
    assert torch.equal(block.adaLN_modulation[-1].weight, torch.zeros_like(block.adaLN_modulation[-1].weight))
    # the branch and shared-attention modulations are not zeroed (only their biases)
    for layer in (block.spatial_mamba.adaLN_modulation[-1], model.attn_block.adaLN_modulation[-1]):
        assert layer.weight.abs().sum() > 0 and torch.equal(layer.bias, torch.zeros_like(layer.bias))
    mixer = block.spatial_mamba.mixer
    assert (torch.nn.functional.softplus(mixer.dt_proj.bias) >= 1e-4).all()  # dt bias kept, not zeroed
    bound = 1 / math.sqrt(mixer.out_proj.in_features) / 3  # kaiming_uniform(a=sqrt 5) / sqrt(9)
    assert mixer.out_proj.weight.abs().max() <= bound and mixer.out_proj.weight.abs().max() > 0.8 * bound
    assert torch.equal(model.pos_embed[0], get_2d_sincos_pos_embed(32, 8, 8))


def test_deterministic_and_save_load_round_trip(tmp_path):
    model = randomize_(tiny(scan_type="zigzag_8"), scale=0.1).eval()
    x, t, y = inputs()
    first = model(x, t, y).sample
    assert torch.equal(model(x, t, y).sample, first)
    model.save_pretrained(tmp_path)
    loaded = DiMSUMModel.from_pretrained(tmp_path).eval()
    assert loaded.config.scan_type == "zigzag_8"
    assert torch.equal(loaded(x, t, y).sample, first)


def test_gradient_checkpointing_gives_the_same_gradients_with_drop_path():
    model = randomize_(tiny(drop_path=0.5), scale=0.1)
    x, t, y = inputs(batch=4)[0], torch.rand(4), torch.tensor([1, 2, 3, 4])
    grads = []
    for checkpointing in (False, True):
        model.zero_grad()
        if checkpointing:
            model.enable_gradient_checkpointing()
        model.train()
        torch.manual_seed(3)  # same label dropout and drop-path masks in both passes
        model(x, t, y).sample.square().mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_stochastic_depth_drops_whole_samples_and_keeps_the_mean():
    x = torch.ones(2000, 3, 2)
    torch.manual_seed(0)
    out = stochastic_depth(x, 0.25, training=True)
    per_sample = out.flatten(1)
    assert torch.isclose(per_sample, torch.tensor(0.0)).logical_or(torch.isclose(per_sample, torch.tensor(4 / 3))).all()
    assert (per_sample == per_sample[:, :1]).all()
    assert abs(out.mean().item() - 1.0) < 0.05
    assert stochastic_depth(x, 0.25, training=False) is x


def test_conditioning_null_class_and_unconditional_mode():
    model = randomize_(tiny(), scale=0.1).eval()
    x, t, _ = inputs()
    a = model(x, t, torch.tensor([1, 1])).sample
    assert not torch.allclose(a, model(x, t, torch.tensor([2, 2])).sample)
    assert not torch.allclose(a, model(x, t, torch.tensor([10, 10])).sample)  # null id num_classes is valid
    assert not torch.allclose(a, model(x, torch.tensor([0.1, 0.1]), torch.tensor([1, 1])).sample)
    uncond = randomize_(tiny(num_classes=0), scale=0.1).eval()
    assert uncond.y_embedder.embedding_table.num_embeddings == 1
    assert torch.equal(uncond(x, t).sample, uncond(x, t, torch.zeros(2, dtype=torch.long)).sample)
    with pytest.raises(ValueError, match="class_labels"):
        model(x, t)


def test_bfloat16_forward_keeps_a_float32_residual_stream():
    model = randomize_(tiny(), scale=0.1).eval().to(torch.bfloat16)
    x, t, y = inputs()
    out = model(x.bfloat16(), t, y).sample
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    _, residual = model.blocks[0](torch.randn(1, 64, 32, dtype=torch.bfloat16), None, torch.randn(1, 32).bfloat16(), 8)
    assert residual.dtype == torch.float32


def test_bad_inputs():
    model = tiny()
    x, t, y = inputs()
    with pytest.raises(ValueError, match="sample"):
        model(x[:, :3], t, y)
    with pytest.raises(ValueError, match="square"):
        model(torch.randn(2, 4, 8, 12), t, y)
    with pytest.raises(ValueError, match="divisible"):
        model(torch.randn(2, 4, 6, 6), t, y)
    with pytest.raises(ValueError, match="timestep"):
        model(x, torch.tensor([0.1, 0.2, 0.3]), y)
    with pytest.raises(ValueError, match="labels"):
        model(x, t, torch.tensor([0, 11]))
    with pytest.raises(ValueError, match="preset"):
        DiMSUMModel.from_preset("XXL/2")
    with pytest.raises(ValueError, match="scan_type"):
        DiMSUMModel.from_preset("tiny", scan_type="zigma_9")
    with pytest.raises(ValueError, match="sample_size"):
        DiMSUMModel.from_preset("tiny", sample_size=6)
    with pytest.raises(ValueError, match="wavelet"):
        DiMSUMModel.from_preset("tiny", wavelet="mexh")  # continuous, not a filter bank


# --- official names and checkpoints ------------------------------------------------------------------

# Parameter names of the official DiM (models_dim.py, attention_fusion.py, mlp.py, mamba_simple.py).
OFFICIAL_KEYS = [
    "pos_embed",
    "x_embedder.proj.weight",
    "t_embedder.mlp.2.weight",
    "y_embedder.embedding_table.weight",
    "blocks.0.norm.weight",
    "blocks.0.spatial_mamba.mixer.in_proj.weight",
    "blocks.0.spatial_mamba.mixer.conv1d.bias",
    "blocks.0.spatial_mamba.mixer.x_proj.weight",
    "blocks.0.spatial_mamba.mixer.dt_proj.bias",
    "blocks.0.spatial_mamba.mixer.A_log",
    "blocks.0.spatial_mamba.mixer.D",
    "blocks.0.spatial_mamba.mixer.out_proj.weight",
    "blocks.0.spatial_mamba.adaLN_modulation.1.weight",
    "blocks.0.freq_mamba.mixer.in_proj.weight",
    "blocks.0.freq_mamba.adaLN_modulation.1.bias",
    "blocks.0.proj.qkv1.weight",
    "blocks.0.proj.qkv2.bias",
    "blocks.0.proj.proj.weight",
    "blocks.0.norm_2.weight",
    "blocks.0.adaLN_modulation.1.weight",
    "blocks.0.mlp.w12.weight",
    "blocks.0.mlp.w3.bias",
    "attn_block.attn.qkv.weight",
    "attn_block.attn.proj.bias",
    "attn_block.mlp.w12.weight",
    "attn_block.adaLN_modulation.1.weight",
    "final_layer.linear.weight",
    "final_layer.adaLN_modulation.1.bias",
]


def test_parameter_names_follow_the_official_code():
    state = tiny().state_dict()
    assert [k for k in OFFICIAL_KEYS if k not in state] == []
    assert not any("cond_proj" in k or "dwt" in k for k in state)


def as_official_state(model: DiMSUMModel, scan_paths: torch.Tensor | None = None) -> dict:
    """The state dict the official code would save for ``model``: DDP prefix, dead cond_proj tensors,
    wavelet filter buffers and, for path scans, the per-layer path tables."""
    state = {}
    for key, value in model.state_dict().items():
        state[f"module.{key}"] = value
        if key.endswith("mixer.in_proj.weight"):
            prefix = f"module.{key.removesuffix('in_proj.weight')}"
            inner = value.shape[0] // 2
            state[prefix + "cond_proj.weight"] = torch.randn(inner, model.config.hidden_size)
            state[prefix + "cond_proj.bias"] = torch.randn(inner)
            if scan_paths is not None:
                state[prefix + "zigzag_paths"] = scan_paths.clone()
                state[prefix + "zigzag_paths_reverse"] = scan_paths.argsort(-1)
        if key.endswith("freq_mamba.adaLN_modulation.1.bias"):
            prefix = f"module.{key.removesuffix('adaLN_modulation.1.bias')}"
            for band in ("ll", "lh", "hl", "hh"):
                state[prefix + f"dwt.w_{band}"] = torch.randn(1, 1, 2, 2)
            state[prefix + "idwt.filters"] = torch.randn(4, 1, 2, 2)
    return state


TINY_HEADS = dict(attention_heads=2, fusion_heads=2)


def test_convert_training_checkpoint(tmp_path):
    source = randomize_(tiny(depth=5, attention_every=2), scale=0.1).eval()
    ema = as_official_state(source)
    raw = {k: torch.zeros_like(v) for k, v in ema.items()}
    args = argparse.Namespace(model="DiM-L/2", use_attn_every_k_layers=2, pe_type="ape", scanning_continuity=False)
    path = tmp_path / "0000225.pt"
    torch.save({"epoch": 226, "model": raw, "ema": ema, "opt": {}, "args": args}, path)
    # head counts are not in the tensor shapes (the official code fixes 16 and 8): the tiny ones are given
    converted = DiMSUMModel.convert_original_checkpoint(str(path), **TINY_HEADS).eval()
    assert (converted.config.depth, converted.config.attention_every, converted.config.num_classes) == (5, 2, 10)
    assert converted.config.scan_type == "alternating" and not converted.config.learn_sigma
    x, t, y = inputs()
    torch.testing.assert_close(converted(x, t, y).sample, source(x, t, y).sample)


def test_convert_hub_safetensors_with_path_scans_and_unconditional_table(tmp_path):
    """A bare state dict (the Hub's model.safetensors) of an unconditional sweep-8 model: the stored path
    tables identify the scan family; one label row is the unconditional constant."""
    source = randomize_(tiny(num_classes=0, scan_type="sweep_8"), scale=0.1).eval()
    paths = torch.stack([sweep_path(8, i % 8) for i in range(8 * 4)])  # official: 8 paths x depth 4
    state = {k.removeprefix("module."): v.contiguous() for k, v in as_official_state(source, paths).items()}
    save_file(state, tmp_path / "model.safetensors")
    converted = DiMSUMModel.convert_original_checkpoint(str(tmp_path / "model.safetensors"), **TINY_HEADS).eval()
    assert converted.config.scan_type == "sweep_8" and converted.config.num_classes == 0
    x, t, _ = inputs()
    torch.testing.assert_close(converted(x, t).sample, source(x, t).sample)


def test_convert_rejects_unsupported_checkpoints(tmp_path):
    state = as_official_state(tiny())
    state["module.norm_f.weight"] = torch.ones(32)
    torch.save(state, tmp_path / "final_norm.pt")
    with pytest.raises(ValueError, match="use-final-norm"):
        DiMSUMModel.convert_original_checkpoint(str(tmp_path / "final_norm.pt"))
    paths = torch.stack([torch.randperm(64) for _ in range(8)])
    torch.save(as_official_state(tiny(), paths), tmp_path / "unknown_paths.pt")
    with pytest.raises(ValueError, match="scan paths"):
        DiMSUMModel.convert_original_checkpoint(str(tmp_path / "unknown_paths.pt"))
