"""The folder-layout dataset follows MLD's Text2MotionDatasetV2 sampling rules."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ssmgen.data.motion import (
    Caption,
    Text2MotionDataset,
    collate_motion_batch,
    format_caption_line,
    pad_tokens,
    parse_caption_line,
)

WHOLE = "a person walks forward#a/DET person/NOUN walk/VERB forward/ADV#0.0#0.0"


def write_motion(root, motion_id, frames, captions, dim=263):
    """Features whose column 0 is the frame index, so crops can be located."""
    features = np.random.default_rng(frames).normal(size=(frames, dim)).astype(np.float32)
    features[:, 0] = np.arange(frames)
    np.save(root / "new_joint_vecs" / f"{motion_id}.npy", features)
    (root / "texts" / f"{motion_id}.txt").write_text("\n".join(captions) + "\n")


@pytest.fixture
def folder(tmp_path):
    for sub in ("new_joint_vecs", "texts"):
        (tmp_path / sub).mkdir()
    write_motion(tmp_path, "short", 39, [WHOLE])
    write_motion(tmp_path, "min", 40, [WHOLE, "someone strolls#someone/PRON stroll/VERB#0.0#0.0"])
    write_motion(tmp_path, "long", 199, [WHOLE])
    write_motion(tmp_path, "toolong", 200, [WHOLE])
    write_motion(tmp_path, "seg", 120, [WHOLE, "jumps#jump/VERB#1.0#4.0", "waves#wave/VERB#0.5#2.0"])
    write_motion(tmp_path, "segonly", 100, ["kicks#kick/VERB#0.0#3.0"])
    (tmp_path / "train.txt").write_text("short\nmin\nlong\ntoolong\nseg\nsegonly\n")
    (tmp_path / "val.txt").write_text("short\n")
    np.save(tmp_path / "Mean.npy", np.full(263, 2.0, dtype=np.float32))
    np.save(tmp_path / "Std.npy", np.full(263, 0.5, dtype=np.float32))
    return tmp_path


def test_length_filter_and_timed_captions_become_their_own_samples(folder):
    dataset = Text2MotionDataset(folder, "train", seed=0)
    by_name = {s.name: s for s in dataset.samples}
    assert set(by_name) == {"min", "long", "seg", "A_seg", "A_segonly"}  # 39 and 200 frames are out
    assert len(by_name["A_seg"].motion) == 60  # frames int(1.0 * 20):int(4.0 * 20)
    np.testing.assert_array_equal(by_name["A_seg"].motion[:, 0], np.arange(20, 80))
    assert [c.text for c in by_name["A_seg"].captions] == ["jumps"]
    assert [c.text for c in by_name["seg"].captions] == ["a person walks forward"]  # whole-clip captions only
    longer = Text2MotionDataset(folder, "train", max_length=400, seed=0)
    assert "toolong" in {s.name for s in longer.samples}


def test_crops_are_contiguous_unit_multiples_normalised_and_double_one_third_of_the_time(folder):
    dataset = Text2MotionDataset(folder, "train", seed=1)
    index = [s.name for s in dataset.samples].index("long")
    lengths = []
    for _ in range(300):
        item = dataset[index]
        raw = item["motion"].numpy() * 0.5 + 2.0  # undo the folder's Mean/Std
        assert item["motion"].shape == (item["length"], 263)
        np.testing.assert_allclose(np.diff(raw[:, 0]), 1.0, atol=1e-4)  # one contiguous crop
        assert 0 <= raw[0, 0] and raw[-1, 0] <= 198
        lengths.append(item["length"])
    assert set(lengths) == {192, 196}  # 199 // 4 * 4 = 196, or one unit less
    assert 0.25 < lengths.count(192) / 300 < 0.42
    torch.testing.assert_close(dataset.denormalize(dataset[index]["motion"])[:, 0].diff(), torch.ones(lengths[-1] - 1))


def test_items_carry_a_random_caption_and_padded_evaluator_tokens(folder):
    dataset = Text2MotionDataset(folder, "train", seed=2)
    index = [s.name for s in dataset.samples].index("min")
    texts = {dataset[index]["text"] for _ in range(40)}
    assert texts == {"a person walks forward", "someone strolls"}
    item = dataset[index]
    assert len(item["tokens"]) == 22 and item["tokens"][0] == "sos/OTHER"
    assert item["tokens"][item["text_length"] - 1] == "eos/OTHER" and item["tokens"][-1] == "unk/OTHER"
    tokens, length = pad_tokens([f"w{i}/NOUN" for i in range(30)], max_text_len=20)
    assert len(tokens) == 22 and length == 22 and tokens[-1] == "eos/OTHER" and tokens[20] == "w19/NOUN"


def test_same_seed_replays_the_same_samples(folder):
    def draws(seed):
        dataset = Text2MotionDataset(folder, "train", seed=seed)
        return [
            (dataset[i]["length"], dataset[i]["text"], float(dataset[i]["motion"][0, 0])) for i in range(len(dataset))
        ]

    assert draws(3) == draws(3)
    assert draws(3) != draws(4)


def test_collate_sorts_longest_first_and_zero_pads(folder):
    dataset = Text2MotionDataset(folder, "train", seed=5)
    batch = next(iter(DataLoader(dataset, batch_size=5, shuffle=False, collate_fn=collate_motion_batch)))
    lengths = batch["length"].tolist()
    assert lengths == sorted(lengths, reverse=True)
    assert batch["motion"].shape == (5, lengths[0], 263)
    assert batch["mask"].sum(1).tolist() == lengths
    assert torch.all(batch["motion"][~batch["mask"]] == 0)
    assert len(batch["text"]) == len(batch["tokens"]) == len(batch["name"]) == 5


def test_caption_lines_round_trip_and_nan_times_mean_whole_clip():
    caption = Caption("a man jumps", ("a/DET", "man/NOUN", "jump/VERB"), 1.5, 3.25)
    assert parse_caption_line(format_caption_line(caption)) == caption
    assert parse_caption_line("x#x/NOUN#nan#nan").whole_motion


def test_bad_folders_and_arguments_raise(folder):
    (folder / "val.txt").write_text("short\nmissing\n")
    with (
        pytest.warns(UserWarning, match="1 ids of val.txt"),
        pytest.raises(ValueError, match="no motion of split 'val'"),
    ):
        Text2MotionDataset(folder, "val")
    with pytest.raises(ValueError, match="multiple of unit_length"):
        Text2MotionDataset(folder, max_length=198)
    with pytest.raises(ValueError, match="min_length"):
        Text2MotionDataset(folder, min_length=200, max_length=196)
    with pytest.raises(ValueError, match="both mean and std"):
        Text2MotionDataset(folder, mean=np.zeros(263))
    with pytest.raises(ValueError, match="split file"):
        Text2MotionDataset(folder, "nope")
    write_motion(folder, "min", 40, ["no hashes here"])
    with pytest.raises(ValueError, match="min.txt, line 1"):
        Text2MotionDataset(folder)
    write_motion(folder, "min", 40, [WHOLE], dim=251)
    with pytest.raises(ValueError, match="expected features \\(frames, 263\\)"):
        Text2MotionDataset(folder)
    bad = np.zeros((40, 263), dtype=np.float32)
    bad[3, 7] = np.nan
    np.save(folder / "new_joint_vecs" / "min.npy", bad)
    with pytest.raises(ValueError, match="min.npy contains NaN"):
        Text2MotionDataset(folder)
