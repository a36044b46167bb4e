"""The HumanML3D motion representation: joint positions <-> 263-d (22 joints) / 251-d (21 joints) features.

``extract_features`` reproduces HumanML3D's ``process_file`` (``motion_representation.ipynb``) step for step:

1. retarget to the skeleton's reference offsets: inverse kinematics, then forward kinematics with the
   reference offsets; the root trajectory is scaled by the ratio of the two leg bones' lengths;
2. floor: subtract the lowest y over all frames and joints;
3. origin: subtract frame 0's root x and z;
4. face +Z: rotate every frame by the yaw that turns frame 0's forward direction to +Z
   (``across = (r_hip - l_hip) + (r_shoulder - l_shoulder)``); these are the *canonical joints*;
5. foot contacts: 1 where the squared displacement of an ankle/toe to the next frame is below the
   skeleton's threshold;
6. inverse kinematics with a smoothed forward direction gives continuous 6-D bone rotations and the root
   rotation ``r`` (the yaw that turns the body to face +Z, identity at frame 0, see ``skeleton``);
7. root-relative positions ("ric"): subtract the root's x and z per frame, then rotate by ``r``.

Layout of a frame for J joints (263 = 4 + 63 + 126 + 66 + 4 for J = 22; 251 for J = 21):

======================  ==========  ===============================================================
slice                   size        content
======================  ==========  ===============================================================
root_rot_velocity       1           ``arcsin(y)`` of the quaternion ``r[t+1] r[t]^-1``: *half* the
                                    yaw change to the next frame
root_linear_velocity    2           x, z of ``root[t+1] - root[t]`` rotated by ``r[t+1]`` (next frame)
root_height             1           y of the root
ric_positions           (J-1)*3     joints 1..J-1 relative to the root's x, z, rotated by ``r[t]``
rot_6d                  (J-1)*6     continuous 6-D local rotations of joints 1..J-1
local_velocity          J*3         ``joints[t+1] - joints[t]`` rotated by ``r[t]`` (this frame)
foot_contact            4           left ankle, left toe, right ankle, right toe
======================  ==========  ===============================================================

A motion of T frames gives T-1 feature frames: the last frame is dropped because velocities and
contacts look one frame ahead. ``recover_from_ric`` integrates the root and returns exactly the
canonical joints of frames 0..T-2, provided the facing never passes through -Z: the arcsin in
``root_rot_velocity`` assumes the relative quaternion has w >= 0, which fails at that crossing, and the
recovered heading is then off by the wrapped step from that frame on. The quirk is in the published data,
so it is kept by default; ``extract_features(..., fix_heading_wrap=True)`` avoids it.
"""

import numpy as np
import torch

from ssmgen.runtime import single_threaded

from .rotations import quat_between, quat_inverse, quat_mul, quat_rotate, quat_to_cont6d
from .skeleton import FORWARD, Skeleton, check_joints, forward_direction, forward_kinematics, inverse_kinematics

__all__ = [
    "FEATURE_GROUPS",
    "canonicalize_joints",
    "extract_features",
    "feature_dim",
    "feature_slices",
    "num_joints_from_feature_dim",
    "recover_from_ric",
    "recover_root_rot_pos",
]

FEATURE_GROUPS = (
    "root_rot_velocity",
    "root_linear_velocity",
    "root_height",
    "ric_positions",
    "rot_6d",
    "local_velocity",
    "foot_contact",
)


def feature_dim(num_joints: int) -> int:
    """Feature size for a skeleton of ``num_joints`` joints: 12 J - 1."""
    return 12 * num_joints - 1


def num_joints_from_feature_dim(dim: int) -> int:
    """The joint count J with ``12 J - 1 == dim`` (22 for 263, 21 for 251)."""
    if dim < 23 or (dim + 1) % 12:
        raise ValueError(f"a HumanML3D-style feature size is 12 * joints - 1 (263, 251, ...), got {dim}")
    return (dim + 1) // 12


def feature_slices(num_joints: int) -> dict[str, slice]:
    """The slice of every feature group (see ``FEATURE_GROUPS``) for ``num_joints`` joints."""
    sizes = (1, 2, 1, (num_joints - 1) * 3, (num_joints - 1) * 6, num_joints * 3, 4)
    bounds = np.cumsum((0, *sizes))
    return {name: slice(int(a), int(b)) for name, a, b in zip(FEATURE_GROUPS, bounds[:-1], bounds[1:], strict=True)}


def _retarget(joints: torch.Tensor, skeleton: Skeleton) -> torch.Tensor:
    """Step 1: joints on the skeleton's reference offsets, root trajectory scaled by the leg ratio."""
    parents = torch.tensor(skeleton.parents[1:])
    source_lengths = torch.linalg.vector_norm(joints[0, 1:] - joints[0, parents], dim=-1)
    source_offsets = torch.tensor(skeleton.raw_offsets[1:]) * source_lengths[:, None]
    target_offsets = torch.tensor(skeleton.reference_offsets[1:])
    legs = [j - 1 for j in skeleton.leg_joints]
    scale = target_offsets[legs].abs().amax(-1).sum() / source_offsets[legs].abs().amax(-1).sum()
    rotations = inverse_kinematics(joints, skeleton)
    return forward_kinematics(rotations, joints[:, 0] * scale, skeleton.reference_offsets, skeleton)


def _canonicalize(joints: torch.Tensor, skeleton: Skeleton) -> torch.Tensor:
    """Steps 1-4 on a validated float64 tensor (T, J, 3)."""
    positions = _retarget(joints, skeleton)
    floor = positions[..., 1].min()
    positions = positions - positions.new_tensor([0.0, 1.0, 0.0]) * floor
    positions = positions - positions[0, 0] * positions.new_tensor([1.0, 0.0, 1.0])
    forward = forward_direction(positions[:1], skeleton)
    to_front = quat_between(forward, forward.new_tensor(FORWARD))  # (1, 4)
    return quat_rotate(to_front, positions)


def _check_motion(joints, skeleton: Skeleton) -> torch.Tensor:
    if getattr(joints, "ndim", 0) == 3 and joints.shape[1] > skeleton.num_joints:
        raise ValueError(
            f"joints must have {skeleton.num_joints} joints for this skeleton, got {joints.shape[1]}; HumanML3D "
            f"keeps the first {skeleton.num_joints} (SMPL order), so pass joints[:, :{skeleton.num_joints}]"
        )
    joints = check_joints(joints, skeleton.num_joints, min_frames=2)
    parents = torch.tensor(skeleton.parents[1:])
    bone_lengths = torch.linalg.vector_norm(joints[:, 1:] - joints[:, parents], dim=-1)
    if (bone_lengths <= 1e-9).any():
        frame, bone = (bone_lengths <= 1e-9).nonzero()[0].tolist()
        name = skeleton.joint_names[bone + 1]
        raise ValueError(f"joints: bone ending at joint {bone + 1} ({name}) has zero length in frame {frame}")
    return joints


def canonicalize_joints(joints, skeleton: Skeleton) -> np.ndarray:
    """Canonical joints (T, J, 3) float32: retargeted, on the floor, at the origin, facing +Z.

    Args:
        joints: (T, J, 3) joint positions, Y up, in the skeleton's unit (metres for HumanML3D).
        skeleton: the dataset skeleton (``T2M_SKELETON`` or ``KIT_SKELETON``).
    """
    with single_threaded():
        return _canonicalize(_check_motion(joints, skeleton), skeleton).to(torch.float32).numpy()


def extract_features(joints, skeleton: Skeleton, fix_heading_wrap: bool = False) -> np.ndarray:
    """HumanML3D features (T-1, 12 J - 1) float32 of joint positions (T, J, 3), Y up (see module docs).

    Args:
        joints: (T, J, 3) joint positions in the skeleton's unit (metres for HumanML3D), T >= 2.
        skeleton: the dataset skeleton (``T2M_SKELETON`` or ``KIT_SKELETON``).
        fix_heading_wrap: False reproduces HumanML3D bit for bit, including the wrong sign of
            ``root_rot_velocity`` when the facing passes through -Z; True takes the relative
            quaternion with w >= 0 first, so ``recover_from_ric`` is exact for any turn.
    """
    with single_threaded():
        return _extract_features(_check_motion(joints, skeleton), skeleton, fix_heading_wrap)


def _extract_features(joints: torch.Tensor, skeleton: Skeleton, fix_heading_wrap: bool) -> np.ndarray:
    positions = _canonicalize(joints, skeleton)

    displacement = (positions[1:] - positions[:-1]).pow(2).sum(-1)
    contact = (displacement < skeleton.foot_contact_threshold).to(positions.dtype)
    foot_contact = contact[:, [*skeleton.left_foot, *skeleton.right_foot]]

    rotations = inverse_kinematics(positions, skeleton, smooth_forward=True)
    rot_6d = quat_to_cont6d(rotations[:, 1:])
    heading = rotations[:, 0]  # r: turns the body to face +Z

    root_velocity = quat_rotate(heading[1:], positions[1:, 0] - positions[:-1, 0])
    heading_step = quat_mul(heading[1:], quat_inverse(heading[:-1]))
    if fix_heading_wrap:
        heading_step = torch.where(heading_step[:, :1] < 0, -heading_step, heading_step)
    root_rot_velocity = torch.asin(heading_step[:, 2].clamp(-1.0, 1.0))

    ric = positions - positions[:, :1] * positions.new_tensor([1.0, 0.0, 1.0])
    ric = quat_rotate(heading[:, None], ric)
    local_velocity = quat_rotate(heading[:-1, None], positions[1:] - positions[:-1])

    frames = positions.shape[0] - 1
    features = torch.cat(
        (
            root_rot_velocity[:, None],
            root_velocity[:, [0, 2]],
            ric[:-1, 0, 1:2],
            ric[:-1, 1:].reshape(frames, -1),
            rot_6d[:-1].reshape(frames, -1),
            local_velocity.reshape(frames, -1),
            foot_contact,
        ),
        dim=-1,
    )
    return features.to(torch.float32).numpy()


def _as_feature_tensor(features) -> tuple[torch.Tensor, bool]:
    is_numpy = isinstance(features, np.ndarray)
    if not (is_numpy or isinstance(features, torch.Tensor)):
        raise ValueError(f"features must be a numpy array or torch tensor (..., T, D), got {type(features)}")
    tensor = torch.from_numpy(features) if is_numpy else features
    if tensor.ndim < 2:
        raise ValueError(f"features must have shape (..., frames, dim), got {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float32)
    return tensor, is_numpy


def _recover_root(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Heading angle (a half angle, like the feature) accumulated over the previous frames; frame 0 faces +Z.
    half_angle = torch.cat((torch.zeros_like(features[..., :1, 0]), features[..., :-1, 0]), dim=-1).cumsum(-1)
    zero = torch.zeros_like(half_angle)
    heading = torch.stack((torch.cos(half_angle), zero, torch.sin(half_angle), zero), dim=-1)
    step = torch.stack((features[..., :-1, 1], zero[..., 1:], features[..., :-1, 2]), dim=-1)
    step = torch.cat((torch.zeros_like(step[..., :1, :]), step), dim=-2)
    xz = quat_rotate(quat_inverse(heading), step).cumsum(-2)
    root = torch.stack((xz[..., 0], features[..., 3], xz[..., 2]), dim=-1)
    return heading, root


def recover_root_rot_pos(features):
    """Root heading quaternions (..., T, 4) and root positions (..., T, 3) from features (..., T, D).

    The heading at frame t accumulates ``root_rot_velocity`` of frames < t; the root x, z accumulate
    ``root_linear_velocity`` rotated back to the world frame; y is ``root_height``. Differentiable; numpy
    in gives numpy out.
    """
    tensor, is_numpy = _as_feature_tensor(features)
    num_joints_from_feature_dim(tensor.shape[-1])
    heading, root = _recover_root(tensor)
    return (heading.numpy(), root.numpy()) if is_numpy else (heading, root)


def recover_from_ric(features, num_joints: int | None = None):
    """Joint positions (..., T, J, 3) from features (..., T, 12 J - 1), HumanML3D's ``recover_from_ric``.

    Un-normalise the features first. ``num_joints`` defaults to the one the feature size implies and,
    when given, must agree with it. Differentiable; numpy in gives numpy out.
    """
    tensor, is_numpy = _as_feature_tensor(features)
    implied = num_joints_from_feature_dim(tensor.shape[-1])
    if num_joints is not None and num_joints != implied:
        raise ValueError(f"num_joints={num_joints} does not match feature size {tensor.shape[-1]} ({implied} joints)")
    heading, root = _recover_root(tensor)
    ric = tensor[..., feature_slices(implied)["ric_positions"]]
    ric = ric.reshape(ric.shape[:-1] + (implied - 1, 3))
    joints = quat_rotate(quat_inverse(heading)[..., None, :], ric)
    joints = joints + (root * root.new_tensor([1.0, 0.0, 1.0]))[..., None, :]
    joints = torch.cat((root[..., None, :], joints), dim=-2)
    return joints.numpy() if is_numpy else joints
