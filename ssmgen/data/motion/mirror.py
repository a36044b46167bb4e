"""Left/right mirroring of joints, features and captions (HumanML3D's "M" augmentation).

HumanML3D mirrors raw joints (``swap_left_right``: negate x, swap the left and right joints) and swaps the
words "left" and "right" in the captions. ``mirror_features`` does the same directly on features, in
closed form: for the reflection M = diag(-1, 1, 1) every rotation R becomes M R M, so

- ``root_rot_velocity`` changes sign, ``root_linear_velocity`` x changes sign;
- positions and velocities have x negated and their joints swapped;
- 6-D rotations ``(a, b)`` (the first two matrix columns) become ``(a0, -a1, -a2, -b0, b1, b2)``, swapped;
- the (left ankle, left toe) and (right ankle, right toe) contacts trade places.

It equals ``extract_features(mirror_joints(joints))`` exactly when the reference skeleton and the source
skeleton are left/right symmetric (retargeting otherwise gives left bones right lengths); HumanML3D's
own mirrored files come from mirroring raw joints first, so they differ from ``mirror_features`` by the
bone-length asymmetry of its reference skeleton.
"""

import re

import numpy as np
import torch

from .features import feature_slices, num_joints_from_feature_dim
from .skeleton import KIT_SKELETON, T2M_SKELETON, Skeleton, check_joints

__all__ = ["mirror_caption", "mirror_features", "mirror_joints"]

_BUILT_IN = {T2M_SKELETON.num_joints: T2M_SKELETON, KIT_SKELETON.num_joints: KIT_SKELETON}
_LEFT_RIGHT = re.compile(r"\b(left|right|Left|Right|LEFT|RIGHT)\b")
_SWAP = {"left": "right", "right": "left", "Left": "Right", "Right": "Left", "LEFT": "RIGHT", "RIGHT": "LEFT"}


def mirror_joints(joints, skeleton: Skeleton) -> np.ndarray:
    """Mirror joint positions (T, J, 3) across the x = 0 plane and swap left/right joints (float32)."""
    tensor = check_joints(joints, skeleton.num_joints)
    mirrored = tensor[:, list(skeleton.mirror_joints)] * tensor.new_tensor([-1.0, 1.0, 1.0])
    return mirrored.to(torch.float32).numpy()


def _feature_permutation_and_signs(skeleton: Skeleton) -> tuple[np.ndarray, np.ndarray]:
    j = skeleton.num_joints
    groups = feature_slices(j)
    index = np.arange(skeleton.feature_dim)
    sign = np.ones(skeleton.feature_dim)
    sign[groups["root_rot_velocity"]] = -1.0
    sign[groups["root_linear_velocity"].start] = -1.0

    def remap(group: str, joints: np.ndarray, width: int, signs: tuple[float, ...]) -> None:
        start = groups[group].start
        for slot, joint in enumerate(joints):
            source_slot = int(np.nonzero(joints == skeleton.mirror_joints[joint])[0][0])
            index[start + slot * width : start + (slot + 1) * width] = start + source_slot * width + np.arange(width)
            sign[start + slot * width : start + (slot + 1) * width] = signs

    body = np.arange(1, j)
    remap("ric_positions", body, 3, (-1.0, 1.0, 1.0))
    remap("rot_6d", body, 6, (1.0, -1.0, -1.0, -1.0, 1.0, 1.0))
    remap("local_velocity", np.arange(j), 3, (-1.0, 1.0, 1.0))
    contact = groups["foot_contact"].start
    index[contact : contact + 4] = contact + np.array([2, 3, 0, 1])
    return index, sign


def mirror_features(features, skeleton: Skeleton | None = None):
    """Left/right mirror of features (..., T, 12 J - 1); numpy in gives numpy out, tensors stay tensors.

    ``skeleton`` defaults to the built-in skeleton with the joint count the feature size implies.
    Mirroring twice is the identity.
    """
    if not isinstance(features, np.ndarray | torch.Tensor):
        raise ValueError(f"features must be a numpy array or torch tensor (..., T, D), got {type(features)}")
    num_joints = num_joints_from_feature_dim(features.shape[-1])
    if skeleton is None:
        if num_joints not in _BUILT_IN:
            raise ValueError(f"no built-in skeleton has {num_joints} joints; pass skeleton=")
        skeleton = _BUILT_IN[num_joints]
    elif skeleton.num_joints != num_joints:
        raise ValueError(
            f"features of size {features.shape[-1]} need {num_joints} joints, skeleton has {skeleton.num_joints}"
        )
    index, sign = _feature_permutation_and_signs(skeleton)
    if isinstance(features, torch.Tensor):
        index = torch.as_tensor(index, device=features.device)
        sign = torch.as_tensor(sign, dtype=features.dtype, device=features.device)
        return features[..., index] * sign
    return (features[..., index] * sign).astype(features.dtype, copy=False)


def mirror_caption(text: str) -> str:
    """Swap the words "left" and "right" (keeping their case), as HumanML3D does for mirrored clips.

    Works on captions and on token lines such as ``"raise/VERB left/ADJ hand/NOUN"``.
    """
    return _LEFT_RIGHT.sub(lambda match: _SWAP[match.group(0)], text)
