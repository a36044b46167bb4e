"""Feature extraction, recovery and mirroring, checked against closed forms.

Test motions come from an independent forward kinematics (scipy rotations, hard-coded SMPL parents) so the
expected canonical joints can be written down without the code under test.
"""

import dataclasses

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from ssmgen.data.motion import (
    KIT_SKELETON,
    T2M_SKELETON,
    canonicalize_joints,
    extract_features,
    feature_dim,
    feature_slices,
    mirror_caption,
    mirror_features,
    mirror_joints,
    num_joints_from_feature_dim,
    recover_from_ric,
    recover_root_rot_pos,
)

T2M_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19]
KIT_PARENTS = [-1, 0, 1, 2, 3, 3, 5, 6, 3, 8, 9, 0, 11, 12, 13, 14, 0, 16, 17, 18, 19]
# SMPL-like rest directions (Y up, facing +Z, left = +X), deliberately not the axis-aligned raw offsets.
T2M_REST = np.array(
    [
        [0, 0, 0], [0.5, -0.85, 0], [-0.5, -0.85, 0], [0, 1, -0.1], [0, -1, 0.05], [0, -1, 0.05], [0, 1, 0.1],
        [0, -1, -0.05], [0, -1, -0.05], [0, 1, 0], [0, -0.4, 1], [0, -0.4, 1], [0, 1, -0.1], [0.6, 0.8, 0],
        [-0.6, 0.8, 0], [0, 1, 0.2], [1, -0.1, 0], [-1, -0.1, 0], [0.1, -1, 0], [-0.1, -1, 0], [0, -1, 0.1],
        [0, -1, 0.1],
    ],
    dtype=np.float64,
)  # fmt: skip
T2M_REST[1:] /= np.linalg.norm(T2M_REST[1:], axis=-1, keepdims=True)
HUMANML3D_LAYOUT = {
    "root_rot_velocity": (0, 1),
    "root_linear_velocity": (1, 3),
    "root_height": (3, 4),
    "ric_positions": (4, 67),
    "rot_6d": (67, 193),
    "local_velocity": (193, 259),
    "foot_contact": (259, 263),
}


def forward_kinematics(local_rotvecs, root_positions, rest_offsets, parents):
    """Joints (T, J, 3): world[j] = world[parent] * local[j]; joint = parent joint + world[parent] offset."""
    world = [Rotation.from_rotvec(local_rotvecs[:, 0])]
    joints = [root_positions]
    for joint in range(1, len(parents)):
        parent = parents[joint]
        joints.append(joints[parent] + world[parent].apply(rest_offsets[joint]))
        world.append(world[parent] * Rotation.from_rotvec(local_rotvecs[:, joint]))
    return np.stack(joints, axis=1)


def smooth_noise(rng, frames, shape, scale):
    steps = rng.normal(size=(frames, *shape))
    kernel = np.hanning(15) / np.hanning(15).sum()
    return scale * np.apply_along_axis(lambda x: np.convolve(x, kernel, mode="same"), 0, np.cumsum(steps, 0) / 4)


def random_motion(seed=0, frames=60, parents=T2M_PARENTS, rest=T2M_REST, lengths=None, yaw_scale=0.4):
    """A smooth random motion on a skeleton: small joint rotations, a wandering root and heading."""
    rng = np.random.default_rng(seed)
    lengths = T2M_SKELETON.bone_lengths if lengths is None else lengths
    local = smooth_noise(rng, frames, (len(parents), 3), 0.25)
    local[:, 0] = smooth_noise(rng, frames, (3,), 0.05)
    local[:, 0, 1] = 0.7 + smooth_noise(rng, frames, (), yaw_scale)  # heading (yaw about +Y)
    root = np.stack([smooth_noise(rng, frames, (), 0.3), 0.9 + smooth_noise(rng, frames, (), 0.02),
                     smooth_noise(rng, frames, (), 0.3)], axis=-1)  # fmt: skip
    return forward_kinematics(local, root + [1.0, 0.3, -2.0], rest * lengths[:, None], parents)


def expected_canonical(joints, face_joints=(2, 1, 17, 16)):
    """HumanML3D steps 2-4 written with scipy: floor, origin, yaw so frame 0 faces +Z."""
    canonical = joints.copy()
    canonical[..., 1] -= canonical[..., 1].min()
    canonical -= canonical[0, 0] * [1.0, 0.0, 1.0]
    r_hip, l_hip, r_shoulder, l_shoulder = face_joints
    across = canonical[0, r_hip] - canonical[0, l_hip] + canonical[0, r_shoulder] - canonical[0, l_shoulder]
    forward = np.cross([0.0, 1.0, 0.0], across)
    yaw = np.arctan2(forward[0], forward[2])
    return Rotation.from_rotvec([0.0, -yaw, 0.0]).apply(canonical.reshape(-1, 3)).reshape(canonical.shape)


def test_feature_layout_matches_humanml3d_263_and_kit_251():
    assert feature_dim(22) == T2M_SKELETON.feature_dim == 263
    assert feature_dim(21) == KIT_SKELETON.feature_dim == 251
    assert {k: (s.start, s.stop) for k, s in feature_slices(22).items()} == HUMANML3D_LAYOUT
    kit = feature_slices(21)
    assert [s.stop - s.start for s in kit.values()] == [1, 2, 1, 60, 120, 63, 4]
    assert kit["foot_contact"].stop == 251
    assert num_joints_from_feature_dim(263) == 22 and num_joints_from_feature_dim(251) == 21
    for bad in (262, 264, 11):
        with pytest.raises(ValueError, match="12 \\* joints - 1"):
            num_joints_from_feature_dim(bad)


def test_canonical_joints_are_on_the_floor_at_the_origin_facing_plus_z():
    joints = random_motion(seed=1)
    canonical = canonicalize_joints(joints, T2M_SKELETON)
    np.testing.assert_allclose(canonical, expected_canonical(joints), atol=1e-5)
    assert abs(canonical[..., 1].min()) < 1e-6
    np.testing.assert_allclose(canonical[0, 0, [0, 2]], 0.0, atol=1e-6)


def test_recover_from_ric_restores_the_canonical_joints():
    joints = random_motion(seed=2, frames=80)
    features = extract_features(joints, T2M_SKELETON)
    assert features.shape == (79, 263) and features.dtype == np.float32
    np.testing.assert_allclose(recover_from_ric(features), expected_canonical(joints)[:-1], atol=2e-5)
    contacts = features[:, feature_slices(22)["foot_contact"]]
    assert set(np.unique(contacts)) <= {0.0, 1.0}


def test_retargeting_gives_every_bone_the_reference_length():
    rng = np.random.default_rng(3)
    lengths = T2M_SKELETON.bone_lengths * rng.uniform(0.8, 1.25, size=22)  # a different body
    recovered = recover_from_ric(extract_features(random_motion(seed=3, lengths=lengths), T2M_SKELETON))
    bones = np.linalg.norm(recovered[:, 1:] - recovered[:, T2M_PARENTS[1:]], axis=-1)
    np.testing.assert_allclose(bones, np.broadcast_to(T2M_SKELETON.bone_lengths[1:], bones.shape), atol=2e-5)
    remeasured = T2M_SKELETON.with_reference_from_joints(recovered[5])
    np.testing.assert_allclose(remeasured.reference_offsets, T2M_SKELETON.reference_offsets, atol=2e-5)


def test_features_ignore_where_the_motion_starts_its_heading_and_its_scale():
    joints = random_motion(seed=4)
    turned = Rotation.from_rotvec([0.0, 2.0, 0.0]).apply(joints.reshape(-1, 3)).reshape(joints.shape)
    features = extract_features(joints, T2M_SKELETON)
    np.testing.assert_allclose(extract_features(turned + [5.0, -0.4, 3.0], T2M_SKELETON), features, atol=2e-5)
    np.testing.assert_allclose(extract_features(1.3 * joints, T2M_SKELETON), features, atol=2e-5)


def test_root_channels_of_a_straight_walk_and_a_steady_turn_in_closed_form():
    frames, speed, turn = 200, 0.05, 0.02  # metres per frame, radians per frame
    rest_pose = np.zeros((frames, 22, 3))
    along = np.arange(frames)[:, None] * [0.0, 0.0, speed]
    features = extract_features(
        forward_kinematics(rest_pose, along + [0, 0.9, 0], T2M_REST * T2M_SKELETON.bone_lengths[:, None], T2M_PARENTS),
        T2M_SKELETON,
    )
    groups = feature_slices(22)
    np.testing.assert_allclose(features[:, groups["root_rot_velocity"]], 0.0, atol=1e-6)
    np.testing.assert_allclose(features[:, groups["root_linear_velocity"]], np.tile([0.0, speed], (199, 1)), atol=1e-6)
    np.testing.assert_allclose(
        features[:, groups["local_velocity"]].reshape(-1, 22, 3),
        np.broadcast_to([0.0, 0.0, speed], (199, 22, 3)),
        atol=1e-6,
    )

    spin = np.zeros((frames, 22, 3))
    spin[:, 0, 1] = turn * np.arange(frames)  # turning left on the spot
    features = extract_features(
        forward_kinematics(
            spin, np.tile([0.0, 0.9, 0.0], (frames, 1)), T2M_REST * T2M_SKELETON.bone_lengths[:, None], T2M_PARENTS
        ),
        T2M_SKELETON,
    )
    interior = slice(81, 118)  # away from the 80-frame reach of the sigma-20 smoothing at both ends
    np.testing.assert_allclose(features[interior, 0], -turn / 2, atol=1e-6)  # half the yaw step, sign of r
    heading, root = recover_root_rot_pos(torch.from_numpy(features))
    np.testing.assert_allclose(root[:, [0, 2]].numpy(), 0.0, atol=1e-5)
    assert heading.shape == (199, 4)


def test_heading_wrap_quirk_and_its_fix():
    frames = 90
    spin = np.zeros((frames, 22, 3))
    spin[:, 0, 1] = 0.1 * np.arange(frames)  # 9 rad: the facing passes through -Z
    joints = forward_kinematics(
        spin, np.tile([0.3, 0.9, 0.0], (frames, 1)), T2M_REST * T2M_SKELETON.bone_lengths[:, None], T2M_PARENTS
    )
    expected = expected_canonical(joints)[:-1]
    faithful = recover_from_ric(extract_features(joints, T2M_SKELETON))
    fixed = recover_from_ric(extract_features(joints, T2M_SKELETON, fix_heading_wrap=True))
    np.testing.assert_allclose(fixed, expected, atol=2e-5)
    errors = np.abs(faithful - expected).max(axis=(1, 2))
    assert errors[:5].max() < 2e-5 and errors.max() > 0.01  # right until the wrap, then off


def test_kit_features_are_251_dimensional_and_round_trip():
    rest = KIT_SKELETON.raw_offsets + 0.2 * np.random.default_rng(5).normal(size=(21, 3)) * [0, 0, 1]
    rest[1:] /= np.linalg.norm(rest[1:], axis=-1, keepdims=True)
    joints = random_motion(seed=5, parents=KIT_PARENTS, rest=rest, lengths=KIT_SKELETON.bone_lengths)
    joints[..., 1] += 1000.0  # KIT-ML is in millimetres
    features = extract_features(joints, KIT_SKELETON)
    assert features.shape == (59, 251)
    np.testing.assert_allclose(recover_from_ric(features), expected_canonical(joints, (11, 16, 5, 8))[:-1], atol=5e-3)


def test_recover_from_ric_is_batched_differentiable_and_keeps_the_array_type():
    features = np.stack([extract_features(random_motion(seed=s, frames=30), T2M_SKELETON) for s in (6, 7)])
    batch = torch.from_numpy(features).requires_grad_(True)
    joints = recover_from_ric(batch)
    assert joints.shape == (2, 29, 22, 3)
    torch.testing.assert_close(joints[1], recover_from_ric(batch[1]))
    joints.square().sum().backward()
    assert torch.isfinite(batch.grad).all() and batch.grad.abs().sum() > 0
    assert isinstance(recover_from_ric(features), np.ndarray)
    assert recover_from_ric(features, num_joints=22).shape == (2, 29, 22, 3)


def test_mirroring_features_twice_is_the_identity():
    features = extract_features(random_motion(seed=8), T2M_SKELETON)
    np.testing.assert_array_equal(mirror_features(mirror_features(features)), features)
    tensor = torch.from_numpy(features)
    torch.testing.assert_close(mirror_features(mirror_features(tensor)), tensor, rtol=0, atol=0)
    assert not np.allclose(mirror_features(features), features)
    kit = np.random.default_rng(8).normal(size=(10, 251)).astype(np.float32)
    np.testing.assert_array_equal(mirror_features(mirror_features(kit)), kit)


def test_mirrored_features_equal_features_of_mirrored_joints_on_a_symmetric_skeleton():
    mirror = list(T2M_SKELETON.mirror_joints)
    lengths = (T2M_SKELETON.bone_lengths + T2M_SKELETON.bone_lengths[mirror]) / 2
    symmetric = dataclasses.replace(T2M_SKELETON, reference_offsets=T2M_SKELETON.raw_offsets * lengths[:, None])
    joints = random_motion(seed=9, lengths=lengths)
    mirrored_joints = mirror_joints(joints, symmetric)
    np.testing.assert_allclose(mirror_joints(mirrored_joints, symmetric), joints, atol=1e-6)
    np.testing.assert_allclose(mirrored_joints[:, 1, 0], -joints[:, 2, 0], atol=1e-6)  # left hip <- right hip
    np.testing.assert_allclose(
        mirror_features(extract_features(joints, symmetric), symmetric),
        extract_features(mirrored_joints, symmetric),
        atol=3e-5,
    )


def test_mirror_caption_swaps_left_and_right_words_only():
    assert (
        mirror_caption("a man raises his left hand, then his Right.") == "a man raises his right hand, then his Left."
    )
    assert mirror_caption("raise/VERB left/ADJ hand/NOUN") == "raise/VERB right/ADJ hand/NOUN"
    assert mirror_caption("he leftover rightly") == "he leftover rightly"


def test_bad_inputs_raise_clear_errors():
    joints = random_motion(seed=10, frames=20)
    with pytest.raises(ValueError, match="22 joints"):
        extract_features(joints[:, :21], T2M_SKELETON)
    with pytest.raises(ValueError, match="pass joints\\[:, :22\\]"):
        extract_features(np.concatenate([joints, joints[:, :30]], axis=1), T2M_SKELETON)  # SMPL-H: 52 joints
    with pytest.raises(ValueError, match="NaN"):
        extract_features(np.where(np.arange(20)[:, None, None] == 3, np.nan, joints), T2M_SKELETON)
    with pytest.raises(ValueError, match="at least 2 frames"):
        extract_features(joints[:1], T2M_SKELETON)
    with pytest.raises(ValueError, match="shape"):
        extract_features(joints[..., :2], T2M_SKELETON)
    with pytest.raises(ValueError, match="numpy array or torch tensor"):
        extract_features(joints.tolist(), T2M_SKELETON)
    collapsed = joints.copy()
    collapsed[4, 18] = collapsed[4, 16]
    with pytest.raises(ValueError, match="left_elbow.*zero length in frame 4"):
        extract_features(collapsed, T2M_SKELETON)
    with pytest.raises(ValueError, match="12 \\* joints - 1"):
        recover_from_ric(np.zeros((5, 262), dtype=np.float32))
    with pytest.raises(ValueError, match="num_joints=21"):
        recover_from_ric(np.zeros((5, 263), dtype=np.float32), num_joints=21)
    with pytest.raises(ValueError, match="frames, dim"):
        recover_from_ric(np.zeros(263, dtype=np.float32))
    with pytest.raises(ValueError, match="need 22 joints"):
        mirror_features(np.zeros((5, 263)), KIT_SKELETON)
