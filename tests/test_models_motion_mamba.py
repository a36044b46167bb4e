"""MotionMambaModel: the paper's hierarchical scan counts, presets, latent and frame modes, streaming
continuation, save/load, checkpointing and bad input."""

import pytest
import torch
from model_cases import randomize_

from ssmgen.models import MotionMambaModel
from ssmgen.models.motion_mamba import MotionMambaBlock, hierarchical_scan_counts


def tiny(**overrides) -> MotionMambaModel:
    torch.manual_seed(0)
    return MotionMambaModel.from_preset("tiny", scan_backend="torch", **overrides)


def tiny_frame(**overrides) -> MotionMambaModel:
    return tiny(mode="frame", in_channels=12, mixer="cross_attention", **overrides)


def latent_inputs(batch=2, seed=2):
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, 2, 16, generator=gen),
        torch.tensor([5, 900][:batch]),
        torch.randn(batch, 16, generator=gen),
    )


@pytest.mark.parametrize(
    "preset, encoder_scans",
    [("paper-n11", (21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1)), ("paper-total11", (9, 7, 5, 3, 1))],
)
def test_paper_presets_use_the_hierarchical_scan_counts(preset, encoder_scans):
    with torch.device("meta"):
        model = MotionMambaModel.from_preset(preset)
    encoder = tuple(block.htm.num_scans for block in model.encoder_blocks)
    decoder = tuple(block.htm.num_scans for block in model.decoder_blocks)
    assert encoder == encoder_scans and decoder == encoder_scans[::-1]  # mirrored: 1, 3, ... in the decoder
    for block in model.encoder_blocks:  # k isolated SSMs: k conv filters, k A matrices per channel
        assert block.htm.A_logs.shape == (block.htm.num_scans * 512, 16)
        assert block.htm.conv1d.weight.shape[0] == block.htm.num_scans * 512
    assert len(model.mixers) == 1 and model.config.hidden_size == 256
    assert model.encoder_blocks[0].bsm.mamba.d_model == 4  # BSM features: 2 latent + 2 condition tokens


def test_hierarchical_counts_follow_eq4_and_can_be_overridden():
    assert hierarchical_scan_counts(3) == (5, 3, 1)
    model = tiny(scan_counts=(1, 3))  # the paper's ascending ablation ordering
    assert [b.htm.num_scans for b in model.encoder_blocks] == [1, 3]
    assert [b.htm.num_scans for b in model.decoder_blocks] == [3, 1]
    with pytest.raises(ValueError, match="scan_counts"):
        tiny(scan_counts=(3,))
    with pytest.raises(ValueError, match="preset"):
        MotionMambaModel.from_preset("paper-n9")


def test_fresh_blocks_are_the_identity_and_the_gate_reads_the_block_input():
    model = tiny()
    block = model.encoder_blocks[0]
    x = torch.randn(2, 4, 32)
    out, _ = block(x)
    assert torch.equal(out, x)
    randomize_(block)
    with torch.no_grad():
        block.gate.weight.zero_()
        block.gate.bias.zero_()
    assert torch.equal(block(x)[0], x)  # a zero gate closes the whole HTM/BSM branch


def test_latent_mode_shapes_determinism_and_conditioning():
    model = randomize_(tiny()).eval()
    z, t, text = latent_inputs()
    out = model(z, t, text).sample
    assert out.shape == z.shape and torch.isfinite(out).all()
    assert torch.equal(model(z, t, text.unsqueeze(1)).sample, out)  # MLD's (B, 1, text_dim) layout
    assert torch.equal(model(z, t, text, return_dict=False)[0], out)
    assert not torch.allclose(model(z, t, text + 1).sample, out, atol=1e-4)
    assert not torch.allclose(model(z, t + 7, text).sample, out, atol=1e-4)
    one = model(z[:1], t[:1], text[:1]).sample  # samples do not interact
    torch.testing.assert_close(one, out[:1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("overrides", [{}, {"skip_fusion": "add", "mixer": "cross_attention"}])
def test_save_load_round_trip(tmp_path, overrides):
    model = randomize_(tiny(**overrides)).eval()
    z, t, text = latent_inputs()
    expected = model(z, t, text).sample
    model.save_pretrained(tmp_path)
    loaded = MotionMambaModel.from_pretrained(tmp_path).eval()
    assert torch.equal(loaded(z, t, text).sample, expected)
    assert hasattr(loaded, "skip_fusions") == (overrides.get("skip_fusion", "concat") == "concat")


def test_gradient_checkpointing_gives_the_same_gradients():
    model = randomize_(tiny())
    z, t, text = latent_inputs()
    grads = []
    for checkpointing in (False, True):
        model.zero_grad()
        if checkpointing:
            model.enable_gradient_checkpointing()
        model(z, t, text).sample.square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[1], grads[0])
    assert grads[0].abs().sum() > 0


def test_frame_mode_is_causal_over_frames_and_takes_any_length():
    model = randomize_(tiny_frame()).eval()
    gen = torch.Generator().manual_seed(3)
    frames, text = torch.randn(2, 30, 12, generator=gen), torch.randn(2, 16, generator=gen)
    out = model(frames, 10, text).sample
    assert out.shape == (2, 30, 12)
    changed = frames.clone()
    changed[:, 20] += 1.0
    changed_out = model(changed, 10, text).sample
    torch.testing.assert_close(changed_out[:, :20], out[:, :20], rtol=0, atol=1e-6)
    assert (changed_out[:, 20:] - out[:, 20:]).abs().max() > 1e-4
    assert model(frames[:, :7], 10, text).sample.shape == (2, 7, 12)


def test_frame_mode_continues_exactly_from_a_prefix_state():
    model = randomize_(tiny_frame()).eval()
    gen = torch.Generator().manual_seed(4)
    frames, text, t = (
        torch.randn(2, 25, 12, generator=gen),
        torch.randn(2, 16, generator=gen),
        torch.tensor([3, 400]),
    )
    whole = model(frames, t, text).sample
    prefix = model(frames[:, :9], t, text, return_state=True)
    assert len(prefix.state) == 4  # one HTM state per encoder and decoder block
    rest = model(frames[:, 9:], t, text, state=prefix.state).sample
    torch.testing.assert_close(torch.cat([prefix.sample, rest], dim=1), whole, rtol=1e-4, atol=1e-5)


def test_bad_inputs_are_rejected():
    model = tiny()
    z, t, text = latent_inputs()
    with pytest.raises(ValueError, match="sample"):
        model(torch.randn(2, 3, 16), t, text)
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        model(z, t, torch.randn(2, 8))
    with pytest.raises(ValueError, match="timestep"):
        model(z, torch.tensor([1, 2, 3]), text)
    with pytest.raises(ValueError, match="state"):
        model(z, t, text, return_state=True)
    with pytest.raises(ValueError, match="cross_attention"):
        tiny(mode="frame")
    with pytest.raises(ValueError, match="mode"):
        tiny(mode="frames")
    frame_model = tiny_frame()
    with pytest.raises(ValueError, match="state"):
        frame_model(torch.randn(2, 5, 12), t, text, state=(None,))
    with pytest.raises(ValueError, match="at least one frame"):
        frame_model(torch.randn(2, 0, 12), t, text)


def test_block_type_and_sample_shape():
    model = tiny()
    assert all(isinstance(b, MotionMambaBlock) for b in [*model.encoder_blocks, *model.decoder_blocks])
    assert model.sample_shape(3, 120) == (3, 2, 16)
    assert tiny_frame().sample_shape(3, 120) == (3, 120, 12)
