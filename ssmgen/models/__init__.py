"""The ssmgen denoisers and the motion VAE (diffusers ModelMixin + ConfigMixin)."""

from .dimsum import DiMSUMModel
from .lamamba_diff import LaMambaDiffModel
from .mld_denoiser import MLDDenoiser
from .motion_mamba import MotionMambaModel
from .motion_vae import MotionVAE

__all__ = ["DiMSUMModel", "LaMambaDiffModel", "MLDDenoiser", "MotionMambaModel", "MotionVAE"]
