"""Rotation math against scipy.spatial.transform.Rotation (an independent implementation)."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from ssmgen.data.motion.rotations import (
    axis_angle_to_matrix,
    cont6d_to_matrix,
    euler_to_matrix,
    matrix_to_cont6d,
    matrix_to_euler_zyx,
    quat_between,
    quat_inverse,
    quat_mul,
    quat_rotate,
    quat_to_cont6d,
    quat_to_matrix,
)

RNG = np.random.default_rng(0)
ROTATIONS = Rotation.random(64, random_state=1)


def wxyz(rotation: Rotation) -> torch.Tensor:
    return torch.from_numpy(rotation.as_quat()[:, [3, 0, 1, 2]])


def test_quaternion_matrix_rotate_and_multiply_match_scipy():
    q, r = wxyz(ROTATIONS), wxyz(ROTATIONS[::-1])
    vectors = torch.from_numpy(RNG.normal(size=(64, 3)))
    torch.testing.assert_close(quat_to_matrix(q), torch.from_numpy(ROTATIONS.as_matrix()))
    torch.testing.assert_close(quat_rotate(q, vectors), torch.from_numpy(ROTATIONS.apply(vectors.numpy())))
    product = torch.from_numpy((ROTATIONS * ROTATIONS[::-1]).as_matrix())  # scipy: apply right one first
    torch.testing.assert_close(quat_to_matrix(quat_mul(q, r)), product)
    torch.testing.assert_close(quat_to_matrix(quat_inverse(q)), torch.from_numpy(ROTATIONS.inv().as_matrix()))


def test_quat_rotate_broadcasts_one_rotation_over_many_vectors():
    q = wxyz(ROTATIONS[:1])  # (1, 4)
    vectors = torch.from_numpy(RNG.normal(size=(5, 7, 3)))
    expected = ROTATIONS[0].apply(vectors.numpy().reshape(-1, 3)).reshape(5, 7, 3)
    torch.testing.assert_close(quat_rotate(q, vectors), torch.from_numpy(expected))


def test_cont6d_is_the_first_two_columns_and_gram_schmidt_inverts_it():
    matrices = torch.from_numpy(ROTATIONS.as_matrix())
    d6 = quat_to_cont6d(wxyz(ROTATIONS))
    torch.testing.assert_close(d6, torch.cat((matrices[..., :, 0], matrices[..., :, 1]), dim=-1))
    torch.testing.assert_close(cont6d_to_matrix(d6), matrices)
    # Gram-Schmidt of a perturbed 6-D vector is still a rotation whose first column is the normalised input.
    noisy = d6 * 1.7 + 0.05 * torch.from_numpy(RNG.normal(size=d6.shape))
    recovered = cont6d_to_matrix(noisy)
    torch.testing.assert_close(
        recovered @ recovered.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(64, 3, 3)
    )
    torch.testing.assert_close(torch.linalg.det(recovered), torch.ones(64, dtype=torch.float64))
    torch.testing.assert_close(recovered[..., :, 0], noisy[..., :3] / noisy[..., :3].norm(dim=-1, keepdim=True))
    torch.testing.assert_close(matrix_to_cont6d(matrices), d6)


def test_euler_and_axis_angle_match_scipy_and_zyx_round_trips():
    angles = RNG.uniform(-np.pi, np.pi, size=(64, 3))
    angles[:, 1] /= 2  # y in (-pi/2, pi/2) for a unique ZYX decomposition
    expected = Rotation.from_euler("ZYX", angles).as_matrix()  # upper case: intrinsic, R = Rz Ry Rx
    matrices = euler_to_matrix(torch.from_numpy(angles), "ZYX")
    torch.testing.assert_close(matrices, torch.from_numpy(expected))
    torch.testing.assert_close(matrix_to_euler_zyx(matrices), torch.from_numpy(angles))
    torch.testing.assert_close(
        euler_to_matrix(torch.from_numpy(angles), "YZX"),
        torch.from_numpy(Rotation.from_euler("YZX", angles).as_matrix()),
    )
    rotvec = ROTATIONS.as_rotvec()
    torch.testing.assert_close(axis_angle_to_matrix(torch.from_numpy(rotvec)), torch.from_numpy(ROTATIONS.as_matrix()))


def test_matrix_to_euler_at_gimbal_lock_still_reproduces_the_matrix():
    angles = torch.tensor([[0.3, np.pi / 2, -0.4], [1.0, -np.pi / 2, 0.2]], dtype=torch.float64)
    matrices = euler_to_matrix(angles, "ZYX")
    torch.testing.assert_close(euler_to_matrix(matrix_to_euler_zyx(matrices), "ZYX"), matrices)


def test_euler_to_matrix_rejects_bad_order():
    with pytest.raises(ValueError, match="order"):
        euler_to_matrix(torch.zeros(3), "XYW")


def test_quat_between_maps_u_onto_v_by_the_shortest_arc():
    u = torch.from_numpy(RNG.normal(size=(64, 3)))
    v = torch.from_numpy(RNG.normal(size=(64, 3))) * 3.0
    q = quat_between(u, v)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(64, dtype=torch.float64))
    rotated = quat_rotate(q, u / u.norm(dim=-1, keepdim=True))
    torch.testing.assert_close(rotated, v / v.norm(dim=-1, keepdim=True))
    angle = 2 * torch.atan2(q[:, 1:].norm(dim=-1), q[:, 0])
    expected = torch.arccos(((u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1))).clamp(-1, 1))
    torch.testing.assert_close(angle, expected)  # shortest arc: the angle between u and v


def test_quat_between_opposite_directions_gives_a_half_turn_not_nan():
    u = torch.tensor([[0.0, -1.0, 0.0], [1.0, 2.0, 3.0]], dtype=torch.float64)
    q = quat_between(u, -2.0 * u)
    assert torch.isfinite(q).all()
    torch.testing.assert_close(quat_rotate(q, u), -u)
