"""Skeletons of the HumanML3D (t2m, 22 joints) and KIT-ML (21 joints) datasets and their kinematics.

A :class:`Skeleton` holds what HumanML3D's ``paramUtil.py`` and ``motion_representation.ipynb`` spread
over globals: the kinematic chains, the *raw offsets* (unit bone directions that inverse kinematics
measures rotations against), the *reference offsets* every motion is retargeted to, and the joint indices
used for facing, leg length and foot contacts.

Inverse kinematics follows HumanML3D's ``Skeleton.inverse_kinematics_np`` step for step, quirks included:

- the body's forward direction is ``up x across`` with ``across = (l_hip - r_hip) + (r_shoulder -
  l_shoulder)``: the hip term has the opposite sign of the one used to face the motion to +Z (the
  peer unpacks ``face_joint_indx = [r_hip, l_hip, ...]`` as ``l_hip, r_hip, ...``);
- with ``smooth_forward`` the forward directions are Gaussian-smoothed over time (sigma 20 frames,
  ``scipy.ndimage.gaussian_filter1d`` with mode "nearest");
- the root rotation of frame 0 is forced to the identity (``root_quat[0] = [1, 0, 0, 0]``, active in
  the published scripts);
- each bone's rotation is the shortest arc from its raw offset to its direction, made local to the
  rotation of the previous bone *in its chain*; the arm chains start at the spine (joint 9 for t2m)
  but their first rotation is local to the root, not to the spine.
"""

import dataclasses
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F

from .rotations import quat_between, quat_identity, quat_inverse, quat_mul, quat_rotate

__all__ = [
    "KIT_SKELETON",
    "T2M_SKELETON",
    "Skeleton",
    "bone_offsets",
    "check_joints",
    "forward_direction",
    "forward_kinematics",
    "gaussian_smooth",
    "get_skeleton",
    "inverse_kinematics",
]

UP = (0.0, 1.0, 0.0)
FORWARD = (0.0, 0.0, 1.0)


@dataclass(frozen=True, eq=False)
class Skeleton:
    """A dataset skeleton: topology, reference bone offsets and the joints the feature pipeline uses.

    Attributes:
        name: short name ("t2m", "kit").
        joint_names: one name per joint; joint 0 is the root.
        kinematic_chains: chains of joint indices, each starting at a joint of an earlier chain (or 0).
        raw_offsets: (J, 3) unit bone directions that inverse kinematics measures rotations against.
        reference_offsets: (J, 3) bone offsets of the target skeleton every motion is retargeted to.
        face_joints: (right hip, left hip, right shoulder, left shoulder), used to find the facing.
        leg_joints: the two bones whose summed length sets the root scale when retargeting.
        left_foot, right_foot: (ankle, toe) joints for the foot-contact labels.
        foot_contact_threshold: a foot is in contact when its squared displacement between two frames
            is below this (HumanML3D 0.002 m^2; KIT-ML 0.05 in its millimetre units).
        fps: frame rate of the dataset.
        mirror_joints: the joint each joint becomes under a left/right mirror (a permutation).
    """

    name: str
    joint_names: tuple[str, ...]
    kinematic_chains: tuple[tuple[int, ...], ...]
    raw_offsets: np.ndarray
    reference_offsets: np.ndarray
    face_joints: tuple[int, int, int, int]
    leg_joints: tuple[int, int]
    left_foot: tuple[int, int]
    right_foot: tuple[int, int]
    foot_contact_threshold: float
    fps: float
    mirror_joints: tuple[int, ...]

    def __post_init__(self) -> None:
        j = len(self.joint_names)
        for field in ("raw_offsets", "reference_offsets"):
            value = np.asarray(getattr(self, field), dtype=np.float64)
            if value.shape != (j, 3) or not np.isfinite(value).all():
                raise ValueError(f"{field} must be a finite ({j}, 3) array, got shape {value.shape}")
            value.setflags(write=False)
            object.__setattr__(self, field, value)
        children = [c for chain in self.kinematic_chains for c in chain[1:]]
        if sorted(children) != list(range(1, j)):
            raise ValueError(f"kinematic_chains must reach every joint 1..{j - 1} exactly once, got {children}")
        if sorted(self.mirror_joints) != list(range(j)):
            raise ValueError(f"mirror_joints must be a permutation of range({j}), got {self.mirror_joints}")
        lengths = np.linalg.norm(self.reference_offsets[1:], axis=-1)
        if (lengths <= 0).any():
            raise ValueError("reference_offsets must give every bone a positive length")

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @cached_property
    def parents(self) -> tuple[int, ...]:
        """Parent index of every joint (-1 for the root)."""
        parents = [-1] * self.num_joints
        for chain in self.kinematic_chains:
            for parent, child in zip(chain[:-1], chain[1:], strict=True):
                parents[child] = parent
        return tuple(parents)

    @property
    def bone_lengths(self) -> np.ndarray:
        """(J,) lengths of the reference bones (0 for the root)."""
        return np.linalg.norm(self.reference_offsets, axis=-1)

    @property
    def feature_dim(self) -> int:
        """Size of the HumanML3D feature vector: 12 J - 1 (263 for 22 joints, 251 for 21)."""
        return 12 * self.num_joints - 1

    def with_reference_from_joints(self, frame: np.ndarray) -> "Skeleton":
        """A copy whose reference offsets are measured on one frame (J, 3) of joint positions.

        HumanML3D takes its target from frame 0 of clip ``000021`` and KIT-ML from ``03950``; a frame of
        any processed ``new_joints/*.npy`` file has the same bone lengths.
        """
        return dataclasses.replace(self, reference_offsets=bone_offsets(self, frame))


def check_joints(joints, num_joints: int | None = None, name: str = "joints", min_frames: int = 1) -> torch.Tensor:
    """Validate joint positions (T, J, 3) and return them as a float64 tensor (a copy)."""
    if not isinstance(joints, torch.Tensor | np.ndarray):
        raise ValueError(f"{name} must be a numpy array or torch tensor of shape (T, J, 3), got {type(joints)}")
    tensor = torch.as_tensor(joints).detach().to("cpu", torch.float64).clone()
    if tensor.ndim != 3 or tensor.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (frames, joints, 3), got {tuple(tensor.shape)}")
    if num_joints is not None and tensor.shape[1] != num_joints:
        raise ValueError(f"{name} must have {num_joints} joints for this skeleton, got {tensor.shape[1]}")
    if tensor.shape[0] < min_frames:
        raise ValueError(f"{name} must have at least {min_frames} frames, got {tensor.shape[0]}")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return tensor


def get_skeleton(name: str) -> Skeleton:
    """The built-in skeleton called ``name``: "t2m" / "humanml3d" (22 joints) or "kit" / "kit-ml" (21)."""
    key = name.lower().replace("_", "-")
    if key in ("t2m", "humanml3d", "humanml"):
        return T2M_SKELETON
    if key in ("kit", "kit-ml", "kitml"):
        return KIT_SKELETON
    raise ValueError(f"unknown skeleton {name!r}; expected 't2m' (HumanML3D) or 'kit' (KIT-ML)")


def bone_offsets(skeleton: Skeleton, frame) -> np.ndarray:
    """Bone offsets (J, 3) of one frame (J, 3): each raw offset scaled by the measured bone length."""
    frame = check_joints(np.asarray(frame)[None], skeleton.num_joints, name="frame")[0].numpy()
    parents = np.array(skeleton.parents)
    lengths = np.zeros(skeleton.num_joints)
    lengths[1:] = np.linalg.norm(frame[1:] - frame[parents[1:]], axis=-1)
    return skeleton.raw_offsets * lengths[:, None]


def gaussian_smooth(x: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Gaussian filter along dim 0 of x (T, ...) with edge replication.

    The same as ``scipy.ndimage.gaussian_filter1d(x, sigma, axis=0, mode="nearest", truncate=truncate)``.
    """
    radius = int(truncate * sigma + 0.5)
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    flat = x.reshape(x.shape[0], -1).T[:, None]  # (C, 1, T)
    flat = F.pad(flat, (radius, radius), mode="replicate")
    return F.conv1d(flat, kernel[None, None]).squeeze(1).T.reshape(x.shape)


def forward_direction(
    joints: torch.Tensor, skeleton: Skeleton, hip_sign: float = 1.0, smooth_sigma: float | None = None
) -> torch.Tensor:
    """Unit horizontal facing directions (T, 3) of joints (T, J, 3).

    ``across = hip_sign * (r_hip - l_hip) + (r_shoulder - l_shoulder)`` is normalised, the forward
    direction is ``up x across``, optionally Gaussian-smoothed over time, then normalised. HumanML3D
    faces a motion to +Z with ``hip_sign=1`` and its inverse kinematics uses ``hip_sign=-1`` and
    ``smooth_sigma=20`` (see the module docstring).
    """
    r_hip, l_hip, r_shoulder, l_shoulder = skeleton.face_joints
    across = hip_sign * (joints[:, r_hip] - joints[:, l_hip]) + joints[:, r_shoulder] - joints[:, l_shoulder]
    across = across / torch.linalg.vector_norm(across, dim=-1, keepdim=True)
    forward = torch.linalg.cross(joints.new_tensor(UP).expand_as(across), across, dim=-1)
    if smooth_sigma is not None:
        forward = gaussian_smooth(forward, smooth_sigma)
    return forward / torch.linalg.vector_norm(forward, dim=-1, keepdim=True)


def inverse_kinematics(joints: torch.Tensor, skeleton: Skeleton, smooth_forward: bool = False) -> torch.Tensor:
    """Joint rotations (T, J, 4) that reproduce joints (T, J, 3) from the raw offsets (HumanML3D IK).

    Entry 0 is the root rotation, the one that turns the body's forward direction to +Z (identity at
    frame 0); entry j is bone j's rotation local to the previous bone of its chain (see the module
    docstring). ``forward_kinematics`` with any offsets along the raw directions inverts it.
    """
    forward = forward_direction(joints, skeleton, hip_sign=-1.0, smooth_sigma=20.0 if smooth_forward else None)
    root = quat_between(forward, forward.new_tensor(FORWARD))
    root = torch.cat((quat_identity((1,), joints.dtype, joints.device), root[1:]))
    raw = torch.tensor(skeleton.raw_offsets[1:], dtype=joints.dtype, device=joints.device)
    bones = joints[:, 1:] - joints[:, list(skeleton.parents[1:])]
    bone_rotations = torch.cat((root[:, None], quat_between(raw, bones)), dim=1)  # (T, J, 4) world frame
    local = quat_mul(quat_inverse(bone_rotations[:, list(_chain_previous(skeleton))]), bone_rotations)
    return torch.cat((root[:, None], local[:, 1:]), dim=1)


def forward_kinematics(
    rotations: torch.Tensor, root_positions: torch.Tensor, offsets, skeleton: Skeleton
) -> torch.Tensor:
    """Joint positions (T, J, 3) from rotations (T, J, 4) as ``inverse_kinematics`` defines them.

    Args:
        rotations: (T, J, 4) root rotation and per-chain local bone rotations.
        root_positions: (T, 3) positions of the root joint.
        offsets: (J, 3) bone offsets (e.g. ``skeleton.reference_offsets``).
    """
    offsets = torch.tensor(np.asarray(offsets), dtype=rotations.dtype, device=rotations.device)
    previous = _chain_previous(skeleton)
    world = [rotations[:, 0]] + [None] * (skeleton.num_joints - 1)
    for level in _levels(previous):  # compose along the chains, one depth level at a time
        composed = quat_mul(torch.stack([world[previous[j]] for j in level], 1), rotations[:, level])
        for k, joint in enumerate(level):
            world[joint] = composed[:, k]
    bones = quat_rotate(torch.stack(world[1:], dim=1), offsets[1:])  # (T, J-1, 3)
    ancestors = torch.as_tensor(_ancestor_matrix(skeleton), dtype=bones.dtype, device=bones.device)
    return root_positions[:, None] + torch.einsum("jk,tkc->tjc", ancestors, bones)


def _chain_previous(skeleton: Skeleton) -> tuple[int, ...]:
    """For every joint, the joint whose bone rotation its local rotation is relative to: the previous
    joint of its chain, or the root (index 0) for a chain's first bone and for the root itself."""
    previous = [0] * skeleton.num_joints
    for chain in skeleton.kinematic_chains:
        for prev, joint in zip(chain[1:-1], chain[2:], strict=True):
            previous[joint] = prev
    return tuple(previous)


def _levels(previous: tuple[int, ...]) -> list[list[int]]:
    """Joints 1..J-1 grouped by their depth along ``previous`` links, shallowest first."""
    depth = [0] * len(previous)
    for joint in range(1, len(previous)):
        walker = joint
        while walker != 0:
            depth[joint] += 1
            walker = previous[walker]
    return [[j for j in range(1, len(previous)) if depth[j] == d] for d in range(1, max(depth) + 1)]


def _ancestor_matrix(skeleton: Skeleton) -> np.ndarray:
    """(J, J-1) matrix with entry (j, k-1) = 1 when bone k lies on the path from the root to joint j."""
    matrix = np.zeros((skeleton.num_joints, skeleton.num_joints - 1))
    for joint in range(1, skeleton.num_joints):
        walker = joint
        while walker != 0:
            matrix[joint, walker - 1] = 1.0
            walker = skeleton.parents[walker]
    return matrix


def _bones(lengths: list[float], raw_offsets: np.ndarray) -> np.ndarray:
    return raw_offsets * np.array([0.0, *lengths])[:, None]


_T2M_RAW_OFFSETS = np.array(
    [
        [0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0], [0, -1, 0],
        [0, -1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1],
        [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0],
    ],
    dtype=np.float64,
)  # fmt: skip

# Bone lengths (metres) of HumanML3D's target skeleton (clip 000021, frame 0), joints 1..21. Measured on
# the published sample new_joints/012314.npy, whose bones all have these lengths to within 2e-6 m.
_T2M_BONE_LENGTHS = [
    0.103074, 0.109883, 0.131568, 0.393623, 0.390188, 0.143190, 0.432433, 0.425643, 0.057365, 0.143382,
    0.149419, 0.219360, 0.137487, 0.143383, 0.103039, 0.131614, 0.122984, 0.256840, 0.263092, 0.266012,
    0.269876,
]  # fmt: skip

T2M_SKELETON = Skeleton(
    name="t2m",
    joint_names=(
        "pelvis",
        "left_hip",
        "right_hip",
        "spine1",
        "left_knee",
        "right_knee",
        "spine2",
        "left_ankle",
        "right_ankle",
        "spine3",
        "left_foot",
        "right_foot",
        "neck",
        "left_collar",
        "right_collar",
        "head",
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
    ),  # fmt: skip
    kinematic_chains=(
        (0, 2, 5, 8, 11),
        (0, 1, 4, 7, 10),
        (0, 3, 6, 9, 12, 15),
        (9, 14, 17, 19, 21),
        (9, 13, 16, 18, 20),
    ),
    raw_offsets=_T2M_RAW_OFFSETS,
    reference_offsets=_bones(_T2M_BONE_LENGTHS, _T2M_RAW_OFFSETS),
    face_joints=(2, 1, 17, 16),
    leg_joints=(5, 8),
    left_foot=(7, 10),
    right_foot=(8, 11),
    foot_contact_threshold=0.002,
    fps=20.0,
    mirror_joints=(0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20),
)

_KIT_RAW_OFFSETS = np.array(
    [
        [0, 0, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0], [1, 0, 0], [0, -1, 0], [0, -1, 0],
        [-1, 0, 0], [0, -1, 0], [0, -1, 0], [1, 0, 0], [0, -1, 0], [0, -1, 0], [0, 0, 1], [0, 0, 1],
        [-1, 0, 0], [0, -1, 0], [0, -1, 0], [0, 0, 1], [0, 0, 1],
    ],
    dtype=np.float64,
)  # fmt: skip

# KIT-ML's target skeleton (clip 03950) is not published. These bone lengths (millimetres, KIT-ML's unit)
# are an approximation from MMM body proportions for a 1.75 m subject, left/right symmetric. For features
# that match KIT-ML exactly, use KIT_SKELETON.with_reference_from_joints(np.load(".../new_joints/03950.npy")[0]).
_KIT_BONE_LENGTHS = [
    175.0, 175.0, 90.0, 150.0, 190.0, 300.0, 250.0, 190.0, 300.0, 250.0,
    90.0, 430.0, 430.0, 120.0, 60.0, 90.0, 430.0, 430.0, 120.0, 60.0,
]  # fmt: skip

KIT_SKELETON = Skeleton(
    name="kit",
    joint_names=(
        "root",
        "torso",
        "lower_neck",
        "upper_neck",
        "head",
        "right_shoulder",
        "right_elbow",
        "right_wrist",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
        "right_hip",
        "right_knee",
        "right_ankle",
        "right_foot",
        "right_toe",
        "left_hip",
        "left_knee",
        "left_ankle",
        "left_foot",
        "left_toe",
    ),  # fmt: skip
    kinematic_chains=((0, 11, 12, 13, 14, 15), (0, 16, 17, 18, 19, 20), (0, 1, 2, 3, 4), (3, 5, 6, 7), (3, 8, 9, 10)),
    raw_offsets=_KIT_RAW_OFFSETS,
    reference_offsets=_bones(_KIT_BONE_LENGTHS, _KIT_RAW_OFFSETS),
    face_joints=(11, 16, 5, 8),
    leg_joints=(17, 18),
    left_foot=(19, 20),
    right_foot=(14, 15),
    foot_contact_threshold=0.05,
    fps=12.5,
    mirror_joints=(0, 1, 2, 3, 4, 8, 9, 10, 5, 6, 7, 16, 17, 18, 19, 20, 11, 12, 13, 14, 15),
)
