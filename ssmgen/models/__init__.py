"""The ssmgen denoisers and the motion VAE (diffusers ModelMixin + ConfigMixin)."""

from .lamamba_diff import LaMambaDiffModel

__all__ = ["LaMambaDiffModel"]
