"""The built-in synthetic dataset: layout, determinism, captions, and actions that differ measurably."""

import numpy as np
import pytest

from ssmgen.data.motion import (
    ACTIONS,
    T2M_SKELETON,
    Text2MotionDataset,
    build_synthetic_dataset,
    compute_mean_std,
    extract_features,
    feature_slices,
    generate_motion,
    read_captions,
    read_split,
    recover_from_ric,
)

FPS = 20.0


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), num_motions=16, seed=7)


def test_build_writes_the_humanml3d_layout(built):
    splits = {name: read_split(built / f"{name}.txt") for name in ("train", "val", "test", "train_val", "all")}
    assert len(splits["all"]) == 16
    assert sorted(splits["train"] + splits["val"] + splits["test"]) == splits["all"]
    assert sorted(splits["train"] + splits["val"]) == splits["train_val"]
    assert all(len(splits[name]) >= 1 for name in ("train", "val", "test"))
    features = []
    timed = 0
    for motion_id in splits["all"]:
        vecs = np.load(built / "new_joint_vecs" / f"{motion_id}.npy")
        joints = np.load(built / "new_joints" / f"{motion_id}.npy")
        assert vecs.dtype == np.float32 and vecs.shape[1] == 263 and 40 <= len(vecs) <= 196
        np.testing.assert_allclose(joints, recover_from_ric(vecs), atol=1e-6)
        captions = read_captions(built / "texts" / f"{motion_id}.txt")
        assert len(captions) >= 3
        for caption in captions:
            assert caption.tokens and all("/" in token for token in caption.tokens)
            # times refer to the motion's frames, one more than its feature frames
            assert 0.0 <= caption.start <= caption.end <= (len(vecs) + 1) / FPS + 1e-9
        timed += sum(not c.whole_motion for c in captions)
        features.append(vecs)
    mean, std = compute_mean_std(features)
    np.testing.assert_allclose(np.load(built / "Mean.npy"), mean, rtol=1e-6)
    np.testing.assert_allclose(np.load(built / "Std.npy"), std, rtol=1e-6)
    dataset = Text2MotionDataset(built, "train", seed=0)
    assert len(dataset) >= len(splits["train"]) and dataset[0]["motion"].shape[1] == 263
    assert timed > 0  # two-action motions carry per-action captions with start/end times


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path):
    def contents(seed, name):
        root = build_synthetic_dataset(tmp_path / name, num_motions=4, seed=seed)
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    first = contents(11, "a")
    assert first == contents(11, "b")
    other = contents(12, "c")
    assert first.keys() == other.keys() and first != other


def single_action_motions(name, count=6, seed=0):
    rng = np.random.default_rng(seed)
    motions = []
    while len(motions) < count:
        motion = generate_motion(rng, (name,))
        if motion.actions == [name]:
            motions.append(motion)
    return motions


def root_speed(joints):
    return np.linalg.norm(np.diff(joints[:, 0, [0, 2]], axis=0), axis=-1).mean() * FPS


def test_actions_are_measurably_different():
    def median(name, statistic):
        return np.median([statistic(m.joints) for m in single_action_motions(name)])

    def root_height_range(joints):
        return np.ptp(joints[:, 0, 1])

    def lowest_root(joints):
        return (joints[:, 0, 1] - joints[..., 1].min()).min()

    def highest_wrist_over_head(joints):
        return (joints[:, [20, 21], 1].max(1) - joints[:, 15, 1]).max()

    def highest_toe(joints):
        return (joints[:, [10, 11], 1] - joints[..., 1].min()).max()

    def turned(joints):
        features = extract_features(joints, T2M_SKELETON, fix_heading_wrap=True)
        return 2 * np.abs(features[:, feature_slices(22)["root_rot_velocity"]].sum())

    assert median("run", root_speed) > 1.5 * median("walk", root_speed) > 0.5
    assert median("wave", root_speed) < 0.2
    assert median("jump", root_height_range) > 0.25 > median("walk", root_height_range)
    assert median("sit", lowest_root) < 0.7 < median("wave", lowest_root)
    assert median("crouch", lowest_root) < 0.7
    assert median("raise_arms", highest_wrist_over_head) > 0.1 > median("walk", highest_wrist_over_head)
    assert median("kick", highest_toe) > 0.3 > median("punch", highest_toe)
    assert median("turn", turned) > 1.3 > median("punch", turned)


def test_every_action_generates_valid_captioned_motions_of_allowed_length():
    rng = np.random.default_rng(3)
    for name in ACTIONS:
        for _ in range(4):
            motion = generate_motion(rng, (name,))
            assert motion.joints.shape[1:] == (22, 3) and 41 <= len(motion.joints) <= 197
            assert np.isfinite(motion.joints).all()
            assert abs(motion.joints[..., 1].min()) < 0.02  # standing on the floor
            assert all(c.text and c.tokens for c in motion.captions)


def test_bad_arguments_raise(tmp_path):
    with pytest.raises(ValueError, match="num_motions"):
        build_synthetic_dataset(tmp_path, num_motions=2)
    with pytest.raises(ValueError, match="split_fractions"):
        build_synthetic_dataset(tmp_path, num_motions=5, split_fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="actions"):
        generate_motion(np.random.default_rng(0), ("moonwalk",))
