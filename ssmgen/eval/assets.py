"""Pretrained evaluation assets (Inception weights, the T2M evaluator, GloVe files) are never downloaded.

A missing file is a :class:`MissingAssetError` that names the file, where to get it and where to put it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch


class MissingAssetError(FileNotFoundError):
    """A pretrained asset the user must fetch by hand is not where it was looked for."""


def require_asset(path: str | os.PathLike | None, *, what: str, how_to_get: str) -> Path:
    """Return ``path`` as a ``Path`` if it is an existing file, else raise ``MissingAssetError``.

    ``what`` names the asset ("the FID Inception weights"); ``how_to_get`` says where to download it
    and how to point ssmgen at it.
    """
    if path is None:
        raise MissingAssetError(f"No path was given for {what}.\n{how_to_get}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingAssetError(f"{what} not found at {path}.\n{how_to_get}")
    return path


def weights_fingerprint(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over the floating-point tensors of a state dict (names, shapes and values).

    It identifies the weights independently of the file they came from (pytorch-fid's and
    torch-fidelity's files hold the same tensors in different containers) and ignores integer
    bookkeeping buffers such as BatchNorm's ``num_batches_tracked``.
    """
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name]
        if not torch.is_floating_point(tensor):
            continue
        tensor = tensor.detach().to("cpu", torch.float32).contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()
