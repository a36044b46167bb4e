"""The T2M evaluator loads a checkpoint with the original finest.tar layout and computes what the original does.

The layout below is written from the original code (text-to-motion ``networks/modules.py``, MLD
``t2m_textenc.py`` / ``t2m_motionenc.py``), independently of ssmgen's modules. The numerical oracle runs
each sample alone through plain GRUs (no packing, no padding) with the checkpoint's tensors.
"""

import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssmgen.eval.assets import MissingAssetError
from ssmgen.eval.t2m_evaluator import GloVeVectorizer, T2MEvaluator, load_plain_pickle


def gru_keys(prefix, input_size, hidden):
    shapes = {}
    for suffix in ("", "_reverse"):
        shapes[f"{prefix}.weight_ih_l0{suffix}"] = (3 * hidden, input_size)
        shapes[f"{prefix}.weight_hh_l0{suffix}"] = (3 * hidden, hidden)
        shapes[f"{prefix}.bias_ih_l0{suffix}"] = (3 * hidden,)
        shapes[f"{prefix}.bias_hh_l0{suffix}"] = (3 * hidden,)
    return shapes


def head_keys(hidden, output):
    return {
        "output_net.0.weight": (hidden, 2 * hidden),
        "output_net.0.bias": (hidden,),
        "output_net.1.weight": (hidden,),  # LayerNorm
        "output_net.1.bias": (hidden,),
        "output_net.3.weight": (output, hidden),
        "output_net.3.bias": (output,),
    }


ORIGINAL_LAYOUT = {  # HumanML3D: dim_pose 263, word 300, POS 15, text hidden 512, motion hidden 1024, co-embedding 512
    "text_encoder": {
        "pos_emb.weight": (300, 15),
        "pos_emb.bias": (300,),
        "input_emb.weight": (512, 300),
        "input_emb.bias": (512,),
        **gru_keys("gru", 512, 512),
        **head_keys(512, 512),
        "hidden": (2, 1, 512),
    },
    "movement_encoder": {
        "main.0.weight": (512, 259, 4),
        "main.0.bias": (512,),
        "main.3.weight": (512, 512, 4),
        "main.3.bias": (512,),
        "out_net.weight": (512, 512),
        "out_net.bias": (512,),
    },
    "motion_encoder": {
        "input_emb.weight": (1024, 512),
        "input_emb.bias": (1024,),
        **gru_keys("gru", 1024, 1024),
        **head_keys(1024, 512),
        "hidden": (2, 1, 1024),
    },
}
WORDS = ["unk", "sos", "eos", "a", "person", "walk", "left", "slowly", "and"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("t2m")
    generator = torch.Generator().manual_seed(0)
    checkpoint = {
        name: {key: torch.randn(shape, generator=generator) * 0.05 for key, shape in layout.items()}
        for name, layout in ORIGINAL_LAYOUT.items()
    }
    for key in ("output_net.1.weight",):  # LayerNorm gains around 1
        for name in ("text_encoder", "motion_encoder"):
            checkpoint[name][key] += 1.0
    checkpoint.update(epoch=17, iter=1234, opt_text_encoder={"state": {}, "param_groups": [{"lr": 1e-4}]})
    torch.save(checkpoint, root / "finest.tar")
    rng = np.random.default_rng(1)
    np.save(root / "mean.npy", rng.normal(size=263).astype(np.float32))
    np.save(root / "std.npy", rng.uniform(0.5, 2.0, size=263).astype(np.float32))
    glove = root / "glove"
    glove.mkdir()
    np.save(glove / "our_vab_data.npy", rng.normal(size=(len(WORDS), 300)).astype(np.float32))
    with open(glove / "our_vab_words.pkl", "wb") as handle:
        pickle.dump(WORDS, handle)
    with open(glove / "our_vab_idx.pkl", "wb") as handle:
        pickle.dump({w: i for i, w in enumerate(WORDS)}, handle)
    return root, checkpoint


def load(root):
    return T2MEvaluator.from_files(root / "finest.tar", root / "mean.npy", root / "std.npy", root / "glove")


def reference_bigru(sd, inputs, steps):
    """Final states of the checkpoint's BiGRU for one unpadded sequence (1, steps, H_in)."""
    hidden = sd["hidden"].shape[-1]
    gru = torch.nn.GRU(inputs.shape[-1], hidden, batch_first=True, bidirectional=True)
    gru.load_state_dict({k[4:]: v for k, v in sd.items() if k.startswith("gru.")})
    _, last = gru(inputs[:, :steps], sd["hidden"])
    return torch.cat([last[0], last[1]], dim=-1)


def reference_head(sd, x):
    x = F.linear(x, sd["output_net.0.weight"], sd["output_net.0.bias"])
    x = F.layer_norm(x, x.shape[-1:], sd["output_net.1.weight"], sd["output_net.1.bias"])
    return F.linear(F.leaky_relu(x, 0.2), sd["output_net.3.weight"], sd["output_net.3.bias"])


def test_checkpoint_with_the_original_layout_loads_and_motion_embeddings_match(assets):
    root, checkpoint = assets
    evaluator = load(root)
    motions = torch.randn(3, 40, 263, generator=torch.Generator().manual_seed(2)) * 2 + 1
    lengths = torch.tensor([17, 40, 28])  # unsorted, as a dataset gives them
    embeddings = evaluator.encode_motion(motions, lengths)

    mean, std = (torch.from_numpy(np.load(root / f"{n}.npy")) for n in ("mean", "std"))
    movement, motion_sd = checkpoint["movement_encoder"], checkpoint["motion_encoder"]
    for i in range(3):
        x = ((motions[i : i + 1] - mean) / std)[..., :-4].transpose(1, 2)  # drop the 4 foot contacts
        x = F.leaky_relu(F.conv1d(x, movement["main.0.weight"], movement["main.0.bias"], stride=2, padding=1), 0.2)
        x = F.leaky_relu(F.conv1d(x, movement["main.3.weight"], movement["main.3.bias"], stride=2, padding=1), 0.2)
        x = F.linear(x.transpose(1, 2), movement["out_net.weight"], movement["out_net.bias"])
        x = F.linear(x, motion_sd["input_emb.weight"], motion_sd["input_emb.bias"])
        expected = reference_head(motion_sd, reference_bigru(motion_sd, x, int(lengths[i]) // 4))
        torch.testing.assert_close(embeddings[i : i + 1], expected, rtol=1e-4, atol=1e-5)


def test_text_embeddings_match_the_original_computation(assets):
    root, checkpoint = assets
    evaluator = load(root)
    tokens = [["a/DET", "person/NOUN", "walk/VERB", "left/ADV"], ["a/DET", "person/NOUN", "walk/VERB", "slowly/ADV"]]
    embeddings = evaluator.encode_text(["a person walks left", "a person walks slowly"], tokens)
    words, tags, lengths = evaluator.vectorizer.encode(tokens)
    text_sd = checkpoint["text_encoder"]
    for i in range(2):
        x = words[i : i + 1] + F.linear(tags[i : i + 1], text_sd["pos_emb.weight"], text_sd["pos_emb.bias"])
        x = F.linear(x, text_sd["input_emb.weight"], text_sd["input_emb.bias"])
        expected = reference_head(text_sd, reference_bigru(text_sd, x, int(lengths[i])))
        torch.testing.assert_close(embeddings[i : i + 1], expected, rtol=1e-4, atol=1e-5)


def test_vectorizer_follows_the_original_tokens_pos_and_padding(assets):
    root, _ = assets
    vectorizer = GloVeVectorizer.from_dir(root / "glove")
    vectors = np.load(root / "glove" / "our_vab_data.npy")
    words, tags, lengths = vectorizer.encode([["a/DET", "walk/NOUN", "left/ADV", "xyzzy/NOUN"], ["and/CCONJ"] * 25])
    assert words.shape == (2, 22, 300) and tags.shape == (2, 22, 15)
    assert lengths.tolist() == [6, 22]  # sos + words (at most 20) + eos
    np.testing.assert_array_equal(words[0, 0], vectors[WORDS.index("sos")])
    np.testing.assert_array_equal(words[0, 4], vectors[WORDS.index("unk")])  # unknown word
    np.testing.assert_array_equal(words[0, 6:], np.repeat(vectors[None, 0], 16, axis=0))  # unk padding
    tag_names = ["VERB", "NOUN", "DET", "ADP", "NUM", "AUX", "PRON", "ADJ", "ADV"]
    tag_names += ["Loc_VIP", "Body_VIP", "Obj_VIP", "Act_VIP", "Desc_VIP", "OTHER"]
    assert [tag_names[j] for j in tags[0, :6].argmax(-1)] == ["OTHER", "DET", "Act_VIP", "Loc_VIP", "OTHER", "OTHER"]
    assert tag_names[int(tags[1, 1].argmax())] == "OTHER"  # a tag the original does not know
    # tokens already framed and padded by Text2MotionDataset encode the same
    framed = ["sos/OTHER", "a/DET", "walk/NOUN", "left/ADV", "xyzzy/NOUN", "eos/OTHER"] + ["unk/OTHER"] * 16
    again = vectorizer.encode([framed])
    torch.testing.assert_close(again[0][0], words[0]) and torch.testing.assert_close(again[1][0], tags[0])
    assert again[2].tolist() == [6]


class _Exploit:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_restricted_unpickler_loads_plain_data_and_refuses_anything_else(tmp_path):
    for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
        path = tmp_path / f"plain{protocol}.pkl"
        data = {"words": ["a", "b"], "index": {"a": 1}, "pair": (1, 2.5), "set": {3}}
        path.write_bytes(pickle.dumps(data, protocol=protocol))
        assert load_plain_pickle(path) == data
    target = tmp_path / "created_by_pickle"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(_Exploit(str(target))))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_plain_pickle(tmp_path / "evil.pkl")
    assert not os.path.exists(target)


def test_missing_assets_and_bad_inputs_are_clear_errors(assets, tmp_path):
    root, _ = assets
    with pytest.raises(MissingAssetError, match="finest.tar"):
        T2MEvaluator.from_files(tmp_path / "finest.tar", root / "mean.npy", root / "std.npy", root / "glove")
    with pytest.raises(MissingAssetError, match="our_vab_data.npy"):
        GloVeVectorizer.from_dir(tmp_path)
    evaluator = load(root)
    with pytest.raises(ValueError, match="tokens"):
        evaluator.encode_text(["a person walks"])
    with pytest.raises(ValueError, match=r"\(B, T, 263\)"):
        evaluator.encode_motion(torch.zeros(1, 40, 251), torch.tensor([40]))
    with pytest.raises(ValueError, match="lengths"):
        evaluator.encode_motion(torch.zeros(1, 40, 263), torch.tensor([41]))
