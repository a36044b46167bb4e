"""Rotation math on torch tensors: unit quaternions, rotation matrices, continuous 6-D, Euler angles.

Conventions (the same as HumanML3D's ``common/quaternion.py``):

- a quaternion is ``(w, x, y, z)`` with the real part first, shape ``(..., 4)``;
- ``quat_rotate(q, v)`` is the active rotation of ``v`` by ``q``, and ``quat_mul(q, r)`` applies ``r`` first;
- the continuous 6-D representation is the first two columns of the rotation matrix, concatenated:
  ``(R[0, 0], R[1, 0], R[2, 0], R[0, 1], R[1, 1], R[2, 1])``, and Gram-Schmidt maps it back.

Every function broadcasts over leading dimensions, works on any device and dtype, and is differentiable.
"""

import numpy as np
import torch

__all__ = [
    "axis_angle_to_matrix",
    "cont6d_to_matrix",
    "euler_to_matrix",
    "matrix_to_cont6d",
    "matrix_to_euler_zyx",
    "quat_between",
    "quat_identity",
    "quat_inverse",
    "quat_mul",
    "quat_rotate",
    "quat_to_cont6d",
    "quat_to_matrix",
]


def quat_identity(shape: tuple[int, ...], dtype=torch.float64, device=None) -> torch.Tensor:
    """Identity quaternions of shape ``(*shape, 4)``."""
    q = torch.zeros(*shape, 4, dtype=dtype, device=device)
    q[..., 0] = 1.0
    return q


def quat_mul(q: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``q * r`` of quaternions (..., 4): the rotation ``r`` followed by ``q``."""
    w1, x1, y1, z1 = q.unbind(-1)
    w2, x2, y2, z2 = r.unbind(-1)
    return torch.stack(
        (
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ),
        dim=-1,
    )


def quat_inverse(q: torch.Tensor) -> torch.Tensor:
    """Inverse of unit quaternions (..., 4): the conjugate ``(w, -x, -y, -z)``."""
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def quat_rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate vectors v (..., 3) by unit quaternions q (..., 4); the leading dimensions broadcast."""
    shape = np.broadcast_shapes(tuple(q.shape[:-1]), tuple(v.shape[:-1]))  # torch's imports sympy
    q, v = q.expand(*shape, 4), v.expand(*shape, 3)
    q_vec = q[..., 1:]
    uv = torch.linalg.cross(q_vec, v, dim=-1)
    uuv = torch.linalg.cross(q_vec, uv, dim=-1)
    return v + 2.0 * (q[..., :1] * uv + uuv)


def quat_between(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The shortest-arc unit quaternion (..., 4) that rotates direction u (..., 3) onto direction v.

    Neither input needs unit length. For opposite directions, where the shortest arc is not unique, a
    half turn about an axis perpendicular to ``u`` is returned (HumanML3D's formula gives NaN there).
    """
    u, v = torch.broadcast_tensors(u, v)
    scale = torch.linalg.vector_norm(u, dim=-1, keepdim=True) * torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    q = torch.cat((scale + (u * v).sum(-1, keepdim=True), torch.linalg.cross(u, v, dim=-1)), dim=-1)
    norm = torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    opposite = norm <= torch.finfo(q.dtype).eps ** 0.5 * scale
    # A half turn about any axis perpendicular to u: cross u with the basis vector it is least aligned with.
    basis = torch.eye(3, dtype=u.dtype, device=u.device)[u.abs().argmin(-1)]
    axis = torch.linalg.cross(u, basis, dim=-1)
    half_turn = torch.cat((torch.zeros_like(axis[..., :1]), axis), dim=-1)
    half_turn = half_turn / torch.linalg.vector_norm(axis, dim=-1, keepdim=True)
    return torch.where(opposite, half_turn, q / norm.clamp_min(torch.finfo(q.dtype).tiny))


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) of quaternions (..., 4); the quaternions need not be normalised."""
    w, x, y, z = q.unbind(-1)
    two_s = 2.0 / (q * q).sum(-1)
    m = torch.stack(
        (
            1 - two_s * (y * y + z * z),
            two_s * (x * y - z * w),
            two_s * (x * z + y * w),
            two_s * (x * y + z * w),
            1 - two_s * (x * x + z * z),
            two_s * (y * z - x * w),
            two_s * (x * z - y * w),
            two_s * (y * z + x * w),
            1 - two_s * (x * x + y * y),
        ),
        dim=-1,
    )
    return m.reshape(q.shape[:-1] + (3, 3))


def matrix_to_cont6d(m: torch.Tensor) -> torch.Tensor:
    """Continuous 6-D representation (..., 6): the first two columns of m (..., 3, 3)."""
    return torch.cat((m[..., :, 0], m[..., :, 1]), dim=-1)


def quat_to_cont6d(q: torch.Tensor) -> torch.Tensor:
    """Continuous 6-D representation (..., 6) of quaternions (..., 4)."""
    return matrix_to_cont6d(quat_to_matrix(q))


def cont6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) from 6-D vectors (..., 6) by Gram-Schmidt (x = a, z = x cross b)."""
    x = d6[..., 0:3] / torch.linalg.vector_norm(d6[..., 0:3], dim=-1, keepdim=True)
    z = torch.linalg.cross(x, d6[..., 3:6], dim=-1)
    z = z / torch.linalg.vector_norm(z, dim=-1, keepdim=True)
    y = torch.linalg.cross(z, x, dim=-1)
    return torch.stack((x, y, z), dim=-1)


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) from axis-angle vectors (..., 3) (Rodrigues' formula)."""
    angle = torch.linalg.vector_norm(axis_angle, dim=-1, keepdim=True)
    axis = axis_angle / angle.clamp_min(1e-12)
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack((zero, -z, y, z, zero, -x, -y, x, zero), dim=-1).reshape(axis.shape[:-1] + (3, 3))
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device).expand_as(k)
    s, c = torch.sin(angle)[..., None], torch.cos(angle)[..., None]
    return eye + s * k + (1 - c) * (k @ k)


def _axis_matrix(angle: torch.Tensor, axis: str) -> torch.Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    rows = {
        "X": (one, zero, zero, zero, c, -s, zero, s, c),
        "Y": (c, zero, s, zero, one, zero, -s, zero, c),
        "Z": (c, -s, zero, s, c, zero, zero, zero, one),
    }[axis]
    return torch.stack(rows, dim=-1).reshape(angle.shape + (3, 3))


def euler_to_matrix(angles: torch.Tensor, order: str) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) from Euler angles in radians (..., 3).

    ``order`` names the axes of ``angles[..., 0], [..., 1], [..., 2]`` (e.g. ``"ZYX"``), and the matrix is
    the product in that order, ``R = R_0 @ R_1 @ R_2`` (intrinsic rotations, the BVH channel convention).
    """
    if len(order) != 3 or set(order) - {"X", "Y", "Z"}:
        raise ValueError(f"order must be three of 'X', 'Y', 'Z' such as 'ZYX', got {order!r}")
    m = _axis_matrix(angles[..., 0], order[0])
    for i in (1, 2):
        m = m @ _axis_matrix(angles[..., i], order[i])
    return m


def matrix_to_euler_zyx(m: torch.Tensor) -> torch.Tensor:
    """Euler angles (..., 3) in radians, ordered (z, y, x), with ``m = Rz @ Ry @ Rx``.

    The inverse of ``euler_to_matrix(angles, "ZYX")`` with y in [-pi/2, pi/2]. At gimbal lock
    (|y| = pi/2) z is set to 0 and the whole rotation about the vertical goes into x.
    """
    cos_y = torch.sqrt(m[..., 0, 0] ** 2 + m[..., 1, 0] ** 2)
    y = torch.atan2(-m[..., 2, 0], cos_y)
    locked = cos_y < 1e-9
    z = torch.where(locked, torch.zeros_like(y), torch.atan2(m[..., 1, 0], m[..., 0, 0]))
    x = torch.where(locked, torch.atan2(-m[..., 1, 2], m[..., 1, 1]), torch.atan2(m[..., 2, 1], m[..., 2, 2]))
    return torch.stack((z, y, x), dim=-1)
