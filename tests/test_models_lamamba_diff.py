"""LaMambaDiffModel: structure, save/load, determinism, shapes, checkpointing, conversion."""

import argparse

import pytest
import torch
from model_cases import image_inputs, randomize_

from ssmgen.models import LaMambaDiffModel
from ssmgen.models.lamamba_diff import LaMambaBlock


def tiny(**overrides) -> LaMambaDiffModel:
    torch.manual_seed(0)
    return LaMambaDiffModel.from_preset("tiny", **overrides)


def inputs(batch=2, channels=4, size=8):
    return image_inputs([3, 990], batch, channels, size)


def test_xl_preset_has_the_released_size():
    with torch.device("meta"):
        model = LaMambaDiffModel.from_preset("XL")
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - 652.5e6) / 652.5e6 < 0.02
    assert [len(s.blocks) for s in model.layers] == [2, 2, 2, 2]
    assert [len(s.blocks) for s in model.layers_up] == [3, 3, 3, 3]
    assert len(model.mid_layer.blocks) == 2
    assert model.layers[0].blocks[0].op.A_logs.shape == (4 * 640, 1)  # 4 snake directions, d_state 1


@pytest.mark.parametrize("channels, size", [(4, 8), (3, 8), (4, 13), (1, 10)])
def test_output_shapes_pixel_latent_and_odd_sizes(channels, size):
    model = tiny(in_channels=channels)
    x, t, y = inputs(channels=channels, size=size)
    out = model(x, t, y).sample
    assert out.shape == (2, 2 * channels, size, size)
    assert torch.isfinite(out).all()
    assert model(x, t, y, return_dict=False)[0].shape == out.shape


def test_freshly_initialised_blocks_are_the_identity():
    model = tiny()
    block = next(m for m in model.modules() if isinstance(m, LaMambaBlock))
    x = torch.randn(2, 8, 8, block.norm.normalized_shape[0])
    c = torch.randn(2, model.t_embedder.mlp[0].out_features)
    assert torch.equal(block(x, c), x)


def test_deterministic_and_save_load_round_trip(tmp_path):
    model = randomize_(tiny()).eval()
    x, t, y = inputs()
    first = model(x, t, y).sample
    assert torch.equal(model(x, t, y).sample, first)
    model.save_pretrained(tmp_path)
    loaded = LaMambaDiffModel.from_pretrained(tmp_path).eval()
    assert torch.equal(loaded(x, t, y).sample, first)
    assert tuple(loaded.config.scan_directions) == tuple(model.config.scan_directions)


def test_gradient_checkpointing_gives_the_same_gradients():
    model = randomize_(tiny())
    x, t, y = inputs()
    grads = []
    for checkpointing in (False, True):
        model.zero_grad()
        if checkpointing:
            model.enable_gradient_checkpointing()
        model.train()
        model.y_embedder.dropout_prob = 0.0  # keep the labels fixed in train mode
        model(x, t, y).sample.square().mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_conditioning_null_class_and_unconditional_mode():
    model = randomize_(tiny()).eval()
    x, t, _ = inputs()
    a = model(x, t, torch.tensor([1, 1])).sample
    b = model(x, t, torch.tensor([2, 2])).sample
    null = model(x, t, torch.tensor([10, 10])).sample  # the null id num_classes is valid input
    assert not torch.allclose(a, b) and not torch.allclose(a, null)
    uncond = randomize_(tiny(num_classes=0)).eval()
    assert uncond(x, t).sample.shape == (2, 8, 8, 8)
    with pytest.raises(ValueError, match="class_labels"):
        model(x, t)


def test_bad_inputs():
    model = tiny()
    x, t, y = inputs()
    with pytest.raises(ValueError, match="sample"):
        model(x[:, :3], t, y)
    with pytest.raises(ValueError, match="timestep"):
        model(x, torch.tensor([1, 2, 3]), y)
    with pytest.raises(ValueError, match="labels"):
        model(x, t, torch.tensor([0, 11]))
    with pytest.raises(ValueError, match="preset"):
        LaMambaDiffModel.from_preset("XXL")
    with pytest.raises(ValueError, match="num_heads"):
        LaMambaDiffModel.from_preset("tiny", num_heads=3)


# Parameter names of the official model (model/lamamba.py, model/vmamba.py), read from its code.
OFFICIAL_KEYS = [
    "pos_embed",
    "patch_embed.proj.weight",
    "patch_embed.norm.weight",
    "t_embedder.mlp.0.weight",
    "y_embedder.embedding_table.weight",
    "layers.0.blocks.0.adaLN_modulation.1.weight",
    "layers.0.blocks.0.condition_projection.weight",
    "layers.0.blocks.0.op.x_proj_weight",
    "layers.0.blocks.0.op.dt_projs_bias",
    "layers.0.blocks.0.op.A_logs",
    "layers.0.blocks.0.op.out_norm.weight",
    "layers.0.blocks.0.attn.relative_position_bias_table",
    "layers.0.blocks.0.norm_swin.weight",
    "layers.0.blocks.0.mlp.fc2.weight",
    "layers.0.downsample.reduction.weight",
    "layers.1.downsample.norm.weight",
    "mid_layer.blocks.0.op.in_proj.weight",
    "layers_up.0.blocks.0.condition_projection.weight",
    "layers_up.2.upsample.expand.weight",
    "layers_up.3.upsample.norm.weight",
    "final_up.expand.weight",
    "final_up.norm.weight",
    "final_condition_projection.weight",
    "final_adaLN_modulation.1.weight",
    "final_linear.weight",
]


def test_parameter_names_follow_the_official_code():
    state = tiny().state_dict()
    assert [k for k in OFFICIAL_KEYS if k not in state] == []
    # the encoder's full-width stages (and the bottleneck) take c unprojected, as released
    assert "layers.2.blocks.0.condition_projection.weight" not in state
    assert "mid_layer.blocks.0.condition_projection.weight" not in state


def test_convert_original_checkpoint(tmp_path):
    """A training-script checkpoint ({"model", "ema", "opt", "args"}, with the attn_mask buffers and the
    DDP ``module.`` prefix the official code can leave) converts and loads strictly."""
    source = randomize_(tiny(depths=(2, 1, 1, 2), num_heads=(2, 2, 4, 4)))
    ema = {f"module.{k}": v for k, v in source.state_dict().items()}
    ema["module.layers.0.blocks.1.attn_mask"] = torch.zeros(4, 16, 16)
    raw = {k: torch.zeros_like(v) for k, v in source.state_dict().items()}
    path = tmp_path / "0050000.pt"
    torch.save({"model": raw, "ema": ema, "opt": {}, "args": argparse.Namespace(model="LaMamba-XL")}, path)
    converted = LaMambaDiffModel.convert_original_checkpoint(str(path)).eval()
    assert converted.config.depths == (2, 1, 1, 2)
    assert converted.config.num_heads == (2, 2, 4, 4)
    x, t, y = inputs()
    torch.testing.assert_close(converted(x, t, y).sample, source.eval()(x, t, y).sample)
