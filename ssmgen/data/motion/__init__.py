"""Motion data: skeletons, the HumanML3D / KIT-ML feature representation, datasets, synthetic motions.

- ``skeleton``: the t2m (HumanML3D, 22 joints) and KIT-ML (21 joints) skeletons, inverse/forward kinematics.
- ``features``: joints <-> 263/251-d features (``extract_features``, ``recover_from_ric``).
- ``mirror``: left/right mirroring of joints, features and captions.
- ``normalization``: ``Mean.npy`` / ``Std.npy`` with group-averaged std.
- ``dataset``: the HumanML3D folder layout with MLD's sampling rules.
- ``synthetic``: a procedural text-motion dataset written in the same layout.
"""

from .dataset import (
    Caption,
    Text2MotionDataset,
    collate_motion_batch,
    format_caption_line,
    pad_tokens,
    parse_caption_line,
    read_captions,
    read_split,
)
from .features import (
    FEATURE_GROUPS,
    canonicalize_joints,
    extract_features,
    feature_dim,
    feature_slices,
    num_joints_from_feature_dim,
    recover_from_ric,
    recover_root_rot_pos,
)
from .mirror import mirror_caption, mirror_features, mirror_joints
from .normalization import compute_mean_std, denormalize, load_mean_std, normalize, save_mean_std
from .skeleton import KIT_SKELETON, T2M_SKELETON, Skeleton, get_skeleton
from .synthetic import ACTIONS, SyntheticMotion, build_synthetic_dataset, generate_motion

__all__ = [
    "ACTIONS",
    "FEATURE_GROUPS",
    "KIT_SKELETON",
    "T2M_SKELETON",
    "Caption",
    "Skeleton",
    "SyntheticMotion",
    "Text2MotionDataset",
    "build_synthetic_dataset",
    "canonicalize_joints",
    "collate_motion_batch",
    "compute_mean_std",
    "denormalize",
    "extract_features",
    "feature_dim",
    "feature_slices",
    "format_caption_line",
    "generate_motion",
    "get_skeleton",
    "load_mean_std",
    "mirror_caption",
    "mirror_features",
    "mirror_joints",
    "normalize",
    "num_joints_from_feature_dim",
    "pad_tokens",
    "parse_caption_line",
    "read_captions",
    "read_split",
    "recover_from_ric",
    "recover_root_rot_pos",
    "save_mean_std",
]
