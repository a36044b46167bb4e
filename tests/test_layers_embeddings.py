"""Timestep / label embedders and the 2-D sin-cos table, against direct formulas."""

import math

import pytest
import torch

from ssmgen.layers.embeddings import (
    LabelEmbedder,
    TimestepEmbedder,
    get_2d_sincos_pos_embed,
    timestep_embedding,
)


def test_timestep_embedding_matches_direct_formula_for_integer_and_continuous_times():
    dim, half = 10, 5
    for t in (torch.tensor([0, 17, 999]), torch.tensor([0.0, 0.25, 1.0])):
        features = timestep_embedding(t, dim)
        assert features.shape == (3, dim) and features.dtype == torch.float32
        for n, time in enumerate(t.tolist()):
            for i in range(half):
                frequency = math.exp(-math.log(10000) * i / half)
                assert features[n, i].item() == pytest.approx(math.cos(time * frequency), abs=1e-5)
                assert features[n, half + i].item() == pytest.approx(math.sin(time * frequency), abs=1e-5)
    torch.testing.assert_close(
        timestep_embedding(torch.tensor([3, 7]), dim), timestep_embedding(torch.tensor([3.0, 7.0]), dim)
    )


def test_timestep_embedding_odd_dim_pads_a_zero_and_rejects_non_vectors():
    features = timestep_embedding(torch.tensor([0.5, 0.7]), 7)
    assert features.shape == (2, 7)
    assert torch.all(features[:, -1] == 0)
    with pytest.raises(ValueError, match="1-D"):
        timestep_embedding(torch.zeros(2, 1), 8)


def test_timestep_embedder_separates_nearby_flow_times_and_has_official_names():
    torch.manual_seed(0)
    embedder = TimestepEmbedder(16, frequency_embedding_size=32)
    assert set(embedder.state_dict()) == {"mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"}
    out = embedder(torch.tensor([0.0, 0.01, 1.0]))
    assert out.shape == (3, 16)
    assert not torch.allclose(out[0], out[1])  # unscaled t in [0, 1] still moves the features
    assert embedder.to(torch.float64)(torch.tensor([0.5])).dtype == torch.float64


def test_label_embedder_table_and_forced_drop_use_the_null_row():
    embedder = LabelEmbedder(num_classes=5, hidden_size=4, dropout_prob=0.1)
    assert embedder.embedding_table.num_embeddings == 6 and embedder.null_class_id == 5
    labels = torch.tensor([0, 3, 4, 1])
    out = embedder(labels, train=False, force_drop_ids=torch.tensor([1, 0, 1, 0]))
    table = embedder.embedding_table.weight
    torch.testing.assert_close(out, table[torch.tensor([5, 3, 5, 1])])
    torch.testing.assert_close(embedder(torch.tensor([5])), table[5:6])  # the null id is a valid label


def test_label_embedder_training_dropout_rate_and_eval_mode():
    embedder = LabelEmbedder(num_classes=3, hidden_size=2, dropout_prob=0.5)
    labels = torch.zeros(4000, dtype=torch.long)
    dropped = embedder.token_drop(labels, generator=torch.Generator().manual_seed(0))
    assert set(dropped.unique().tolist()) == {0, 3}
    assert abs((dropped == 3).float().mean().item() - 0.5) < 0.05
    embedder.eval()
    torch.testing.assert_close(embedder(labels[:5]), embedder.embedding_table.weight[[0] * 5])
    always = LabelEmbedder(num_classes=3, hidden_size=2, dropout_prob=1.0)
    torch.testing.assert_close(always(torch.tensor([0, 1, 2]), train=True), always.embedding_table.weight[[3, 3, 3]])


def test_label_embedder_unconditional_setups():
    dimsum = LabelEmbedder(num_classes=1, hidden_size=3, dropout_prob=0.0)  # one learned constant, id 0
    assert dimsum.embedding_table.num_embeddings == 1 and dimsum.null_class_id is None
    lamamba = LabelEmbedder(num_classes=0, hidden_size=3, dropout_prob=1.0)  # only the null row
    assert lamamba.embedding_table.num_embeddings == 1 and lamamba.null_class_id == 0
    out = lamamba(torch.zeros(2, dtype=torch.long), train=True)
    torch.testing.assert_close(out, lamamba.embedding_table.weight.expand(2, -1))


def test_label_embedder_rejects_bad_input():
    embedder = LabelEmbedder(num_classes=3, hidden_size=2, dropout_prob=0.0)
    with pytest.raises(ValueError, match="labels must lie"):
        embedder(torch.tensor([3]))
    with pytest.raises(ValueError, match="labels must lie"):
        embedder(torch.tensor([-1]))
    with pytest.raises(ValueError, match="null class"):
        embedder(torch.tensor([0]), force_drop_ids=torch.tensor([1]))
    with pytest.raises(ValueError, match="integer"):
        embedder(torch.tensor([0.0]))
    with pytest.raises(ValueError, match="dropout_prob"):
        LabelEmbedder(3, 2, dropout_prob=1.5)
    with pytest.raises(ValueError, match="no rows"):
        LabelEmbedder(0, 2, dropout_prob=0.0)


def test_2d_sincos_matches_direct_formula_on_a_rectangle():
    dim, grid_h, grid_w = 16, 3, 5
    table = get_2d_sincos_pos_embed(dim, grid_h, grid_w)
    assert table.shape == (grid_h * grid_w, dim)
    quarter = dim // 4
    for row in range(grid_h):
        for col in range(grid_w):
            token = table[row * grid_w + col]
            for k in range(quarter):
                omega = 10000 ** (-k / quarter)
                # first half: column (MAE's "w goes first"), second half: row; each [sin..., cos...]
                assert token[k].item() == pytest.approx(math.sin(col * omega), abs=1e-6)
                assert token[quarter + k].item() == pytest.approx(math.cos(col * omega), abs=1e-6)
                assert token[2 * quarter + k].item() == pytest.approx(math.sin(row * omega), abs=1e-6)
                assert token[3 * quarter + k].item() == pytest.approx(math.cos(row * omega), abs=1e-6)


def test_2d_sincos_rejects_bad_sizes():
    with pytest.raises(ValueError, match="multiple of 4"):
        get_2d_sincos_pos_embed(6, 2, 2)
    with pytest.raises(ValueError, match="grid_h"):
        get_2d_sincos_pos_embed(8, 0, 2)
