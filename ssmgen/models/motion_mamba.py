"""Motion Mamba (Zhang et al., ECCV 2024, arXiv 2403.07487): a symmetric U-Net of Mamba blocks that
denoises MLD's motion latent, plus a frame-space mode for motions of any length.

Latent mode (the paper), sample z (B, latent_size, in_channels), e.g. (B, 2, 256):

    c = [time token, text token]                 MLD's condition embedding (see motion_conditioning)
    x = [c, Linear(z)] + learned positions       (B, 2 + latent_size, hidden)
    encoder blocks E_1..E_N (outside in), each output kept as a skip
    attention mixer M                            one pre-norm transformer layer (or several)
    decoder blocks D_1..D_N (inside out), each fusing its mirrored encoder skip first
    eps = Linear(RMSNorm(x))[:, 2:]              the latent tokens -> (B, latent_size, in_channels)

Every block (paper Fig. 2):  h = RMSNorm(x);  u = HTM_k(h);  u = u + BSM(u);  x = x + u * Linear(h).
HTM (``layers.hierarchical_temporal_mamba``) runs k isolated SSMs along the tokens; k = 2(N - i + 1) - 1
at encoder level i from the outside (21, 19, ..., 1 for N = 11) and mirrored in the decoder (1, ..., 21),
the paper's Eq. 4 and figure (Eq. 5/6's S_{2(N-i)-1} is a typo). BSM (``layers.bidirectional_spatial_mamba``)
swaps the axes and scans the channels forward and backward with separate parameters.

Frame mode (beyond the paper): sample = normalised motion features (B, frames, in_channels), e.g. 263-d.
The same U-Net runs with the frames as tokens: c = time + text is added to every frame, HTM scans run
forward over the frames, BSM scans each frame's channels, and the mixer cross-attends from each frame to
[time, text]. Every layer is causal along the frames, so the cost is linear in the length, frames past a
motion's end never change it, and a sequence continues exactly from a prefix's returned HTM states
(``return_state`` / ``state``, the scan kernels' ``initial_state``).

The paper leaves open questions (reference/motion.md §6); each is a configuration entry here:

- "N = 11": ``num_blocks`` is N encoder blocks (and N decoder blocks). Preset ``paper-n11`` reads the
  supplement literally (11 + M + 11, scans 21..1); ``paper-total11`` counts all blocks (5 + M + 5,
  scans 9..1), which fits the odd ablation counts and "a slight increase over MLD's 9 layers".
- HTM aggregation: ``htm_aggregation`` "sum" (the figure's sum, default) or "concat" (unofficial code).
  ``scan_counts`` overrides k per level (the paper's ordering ablation).
- Gate, norms, residuals (unspecified): pre-RMSNorm, a residual around BSM and around the block; the
  figure's Linear branch gates the block output and starts at zero, so every block starts as the identity.
- Mixer: ``mixer`` "self_attention" over all tokens (default) or "cross_attention" to [time, text];
  ``num_mixer_layers`` (default 1).
- Skip fusion: ``skip_fusion`` "concat" (Fig. 2: cat then Linear 2d -> d, as MLD) or "add" (unofficial).
- Conditions come first in the token sequence, so the forward HTM scans read them before the latent;
  the latent positions are learned (the unofficial code's position embedding is a no-op, a bug).
"""

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ssmgen.layers.bidirectional_spatial_mamba import BidirectionalSpatialMamba
from ssmgen.layers.hierarchical_temporal_mamba import HierarchicalTemporalMamba
from ssmgen.layers.mamba import MambaState
from ssmgen.layers.mlp import Mlp
from ssmgen.layers.norms import RMSNorm

from .motion_conditioning import (
    MotionConditionEmbedder,
    MotionDenoiserOutput,
    check_motion_sample,
    condition_tokens,
)

MODES = ("latent", "frame")
MIXERS = ("self_attention", "cross_attention")
SKIP_FUSIONS = ("concat", "add")
NUM_CONDITION_TOKENS = 2

_PAPER = dict(in_channels=256, latent_size=2, hidden_size=256, text_dim=768, mixer_heads=4)
PRESETS = {
    "paper-n11": dict(_PAPER, num_blocks=11),
    "paper-total11": dict(_PAPER, num_blocks=5),
    "frame": dict(
        mode="frame",
        in_channels=263,
        hidden_size=256,
        num_blocks=5,
        text_dim=768,
        mixer="cross_attention",
        mixer_heads=4,
        bsm_expand=8,
    ),
    "tiny": dict(
        in_channels=16,
        latent_size=2,
        hidden_size=32,
        num_blocks=2,
        d_state=4,
        text_dim=16,
        time_embed_dim=32,
        mixer_heads=2,
        bsm_d_state=4,
    ),
}


def hierarchical_scan_counts(num_blocks: int) -> tuple[int, ...]:
    """k per encoder level from the outside in: 2(N - i + 1) - 1 = 2N - 1, 2N - 3, ..., 1 (Eq. 4)."""
    return tuple(2 * (num_blocks - i + 1) - 1 for i in range(1, num_blocks + 1))


class MotionMambaBlock(nn.Module):
    """HTM -> BSM -> gate: x (B, L, d) -> x + (u + BSM(u)) * Linear(h), h = RMSNorm(x), u = HTM(h).

    BSM scans groups of ``bsm_tokens`` consecutive tokens (all tokens in latent mode, one frame in frame
    mode); the HTM state streams along the tokens.
    """

    def __init__(self, hidden_size: int, num_scans: int, bsm_tokens: int, htm_options: dict, bsm_options: dict):
        super().__init__()
        self.bsm_tokens = bsm_tokens
        self.norm = RMSNorm(hidden_size)
        self.htm = HierarchicalTemporalMamba(hidden_size, num_scans, **htm_options)
        self.bsm = BidirectionalSpatialMamba(bsm_tokens, hidden_size, **bsm_options)
        self.gate = nn.Linear(hidden_size, hidden_size)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def forward(self, x: torch.Tensor, state: MambaState | None = None):
        """x (B, L, d) -> (x', the HTM state after the last token)."""
        h = self.norm(x)
        u, state = self.htm(h, state=state, return_state=True)
        u = u + self.bsm(u.reshape(-1, self.bsm_tokens, u.shape[-1])).reshape(u.shape)
        return x + u * self.gate(h), state


class AttentionMixer(nn.Module):
    """The bottleneck's pre-norm transformer layer: x + Attn(LN x, keys); x + MLP(LN x).

    Keys and values are the tokens themselves (self-attention) or the condition tokens (cross-attention).
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, cross_attention: bool):
        super().__init__()
        self.cross_attention = cross_attention
        self.norm1 = nn.LayerNorm(hidden_size)
        self.attn = nn.MultiheadAttention(hidden_size, num_heads, batch_first=True)
        self.norm2 = nn.LayerNorm(hidden_size)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """x (B, L, d), condition (B, 2, d) -> (B, L, d)."""
        h = self.norm1(x)
        keys = condition if self.cross_attention else h
        x = x + self.attn(h, keys, keys, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class MotionMambaModel(ModelMixin, ConfigMixin):
    """The Motion Mamba denoiser: (sample, DDPM timestep, pooled text) -> predicted noise, sample-shaped.

    Args:
        mode: "latent" (sample (B, latent_size, in_channels), the paper) or "frame" (sample (B, frames,
            in_channels), normalised motion features of any length).
        in_channels: the latent width (256) or the feature size (263 HumanML3D, 251 KIT-ML).
        latent_size: latent tokens (latent mode; Motion Mamba uses 2).
        hidden_size: block width. num_blocks: N encoder blocks (= N decoder blocks).
        scan_counts: k per encoder level from the outside in (default: 2N - 1, ..., 3, 1).
        htm_aggregation: "sum" or "concat". d_state, d_conv, expand, dt_rank: HTM's SSM options.
        bsm_d_state, bsm_expand: BSM's (d_model = tokens per group: 2 + latent_size, or 1 frame).
        mixer: "self_attention" or "cross_attention" (frame mode needs cross-attention: attending over
            all frames would be quadratic and see the future). num_mixer_layers, mixer_heads, mixer_mlp_ratio.
        skip_fusion: "concat" or "add". text_dim: pooled text size (768 CLIP ViT-L/14, 384 MiniLM).
        time_embed_dim: sinusoidal timestep features (MLD: 768). scan_backend: selective-scan backend.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        mode: str = "latent",
        in_channels: int = 256,
        latent_size: int = 2,
        hidden_size: int = 256,
        num_blocks: int = 11,
        scan_counts: tuple[int, ...] | None = None,
        htm_aggregation: str = "sum",
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        bsm_d_state: int = 16,
        bsm_expand: int = 2,
        mixer: str = "self_attention",
        num_mixer_layers: int = 1,
        mixer_heads: int = 4,
        mixer_mlp_ratio: float = 4.0,
        skip_fusion: str = "concat",
        text_dim: int = 768,
        time_embed_dim: int = 768,
        scan_backend: str = "auto",
    ):
        super().__init__()
        for name, value, allowed in (("mode", mode, MODES), ("mixer", mixer, MIXERS),
                                     ("skip_fusion", skip_fusion, SKIP_FUSIONS)):  # fmt: skip
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if mode == "frame" and mixer != "cross_attention":
            raise ValueError(
                "mixer must be 'cross_attention' in frame mode: self-attention over all frames is "
                "quadratic in the length and would see future frames"
            )
        if num_blocks < 1 or num_mixer_layers < 0:
            raise ValueError(f"need num_blocks >= 1 and num_mixer_layers >= 0, got {num_blocks}, {num_mixer_layers}")
        counts = hierarchical_scan_counts(num_blocks) if scan_counts is None else tuple(scan_counts)
        if len(counts) != num_blocks or any(not isinstance(k, int) or k < 1 for k in counts):
            raise ValueError(f"scan_counts must list {num_blocks} positive integers (outside in), got {scan_counts!r}")
        self.frame_mode = mode == "frame"
        self.scan_counts = counts
        bsm_tokens = 1 if self.frame_mode else NUM_CONDITION_TOKENS + latent_size
        htm = dict(d_state=d_state, d_conv=d_conv, expand=expand, dt_rank=dt_rank)
        htm |= dict(aggregation=htm_aggregation, backend=scan_backend)
        bsm = dict(d_state=bsm_d_state, d_conv=d_conv, expand=bsm_expand, backend=scan_backend)

        self.condition = MotionConditionEmbedder(hidden_size, text_dim, time_embed_dim)
        self.proj_in = nn.Linear(in_channels, hidden_size)
        if not self.frame_mode:
            self.pos_embed = nn.Parameter(torch.randn(1, NUM_CONDITION_TOKENS + latent_size, hidden_size) * 0.02)
        self.encoder_blocks = nn.ModuleList(MotionMambaBlock(hidden_size, k, bsm_tokens, htm, bsm) for k in counts)
        self.mixers = nn.ModuleList(
            AttentionMixer(hidden_size, mixer_heads, mixer_mlp_ratio, cross_attention=mixer == "cross_attention")
            for _ in range(num_mixer_layers)
        )
        self.decoder_blocks = nn.ModuleList(
            MotionMambaBlock(hidden_size, k, bsm_tokens, htm, bsm) for k in reversed(counts)
        )
        if skip_fusion == "concat":
            self.skip_fusions = nn.ModuleList(nn.Linear(2 * hidden_size, hidden_size) for _ in counts)
        self.norm_out = RMSNorm(hidden_size)
        self.proj_out = nn.Linear(hidden_size, in_channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)
        self.gradient_checkpointing = False

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "MotionMambaModel":
        """``paper-n11`` (11 + M + 11), ``paper-total11`` (5 + M + 5), ``frame`` (263-d features, 5 + M + 5),
        ``tiny`` (tests and demos)."""
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
        return cls(**(PRESETS[name] | overrides))

    def sample_shape(self, batch_size: int, num_frames: int) -> tuple[int, int, int]:
        """A sample's shape for ``num_frames`` frames: the latent in latent mode, the frames in frame mode."""
        tokens = num_frames if self.frame_mode else self.config.latent_size
        return (batch_size, tokens, self.config.in_channels)

    def _block(self, block: MotionMambaBlock, x: torch.Tensor, state: MambaState | None):
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            return self._gradient_checkpointing_func(block, x, state)
        return block(x, state)

    def _fuse(self, index: int, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.config.skip_fusion == "add":
            return x + skip
        return self.skip_fusions[index](torch.cat([x, skip], dim=-1))

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        encoder_hidden_states: torch.Tensor,
        state: tuple[MambaState, ...] | None = None,
        return_state: bool = False,
        return_dict: bool = True,
    ):
        """Predict the noise of ``sample``.

        Args:
            sample: (B, latent_size, in_channels) in latent mode, (B, frames, in_channels) in frame mode.
            timestep: DDPM step(s), scalar or (B,).
            encoder_hidden_states: pooled text (B, text_dim) or (B, 1, text_dim).
            state: frame mode: the ``state`` a call on the preceding frames returned; this call continues
                that sequence (same conditions expected).
            return_state: frame mode: also return the HTM states after the last frame.
        Returns:
            ``MotionDenoiserOutput(sample, state)`` or a tuple ``(sample,)`` / ``(sample, state)``.
        """
        config = self.config
        if self.frame_mode:
            check_motion_sample(sample, (None, config.in_channels), "frames, in_channels")
            if sample.shape[1] == 0:
                raise ValueError("sample must have at least one frame")
        else:
            check_motion_sample(sample, (config.latent_size, config.in_channels), "latent_size, in_channels")
            if state is not None or return_state:
                raise ValueError("state: only frame mode streams; a latent-mode sample is one whole motion")
        num_layers = 2 * config.num_blocks
        if state is not None and (len(state) != num_layers or not all(isinstance(s, MambaState) for s in state)):
            raise ValueError(f"state must be the {num_layers} MambaStates a previous call returned")
        condition = condition_tokens(self.condition, timestep, encoder_hidden_states, sample)
        x = self.proj_in(sample)
        if self.frame_mode:
            x = x + condition.sum(1, keepdim=True)
        else:
            x = torch.cat([condition, x], dim=1) + self.pos_embed.to(x.dtype)

        states_in = iter(state) if state is not None else iter([None] * num_layers)
        states_out, skips = [], []
        for block in self.encoder_blocks:
            x, block_state = self._block(block, x, next(states_in))
            states_out.append(block_state)
            skips.append(x)
        for mixer in self.mixers:
            x = mixer(x, condition)
        for index, block in enumerate(self.decoder_blocks):
            x, block_state = self._block(block, self._fuse(index, x, skips.pop()), next(states_in))
            states_out.append(block_state)

        out = self.proj_out(self.norm_out(x))
        if not self.frame_mode:
            out = out[:, NUM_CONDITION_TOKENS:]
        new_state = tuple(states_out) if return_state else None
        if not return_dict:
            return (out, new_state) if return_state else (out,)
        return MotionDenoiserOutput(sample=out, state=new_state)
