"""Training through accelerate: one loop shared by every model.

``accelerate launch -m ssmgen.train --config train/configs/digits_unet2d.yaml`` (or
``python -m ssmgen.train``);
:func:`train` runs a :class:`TrainConfig` from Python; :func:`register_family` adds a model family.
"""

from . import motion  # noqa: F401, E402  (registers the motion families)
from .config import TrainConfig, load_config
from .loop import NonFiniteLossError, TrainResult, train
from .registry import FAMILIES, ModelFamily, register_family

__all__ = [
    "FAMILIES",
    "ModelFamily",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "load_config",
    "register_family",
    "train",
]
