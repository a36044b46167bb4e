"""DiMSUM: a flow-matching denoiser whose blocks mix tokens with a spatial Mamba and a wavelet-domain
Mamba fused by cross-attention (Phung et al., NeurIPS 2024), laid out as the released code
(``VinAIResearch/DiMSUM``, ``dimsum/models_dim.py`` with ``--block-type combined``) so its checkpoints
load by name.

    x (B, C, H, W) -> p x p patch embed + learnable sin-cos position embedding -> tokens (B, L, D)
    c = t_embedder(t in [0, 1], 1 = data) + y_embedder(class, or the null class)
    residual = None
    for i, block in enumerate(blocks):
        x, residual = block(x, residual, c)       # DiMSUMBlock with layer i's scan orders
        if (i + 1) % attention_every == 0:
            x = attn_block(x, c)                   # ONE DiT block, the same weights at every call
    velocity = unpatchify(final_layer(x, c))       # the fp32 residual stream is not added back

    DiMSUMBlock(x, residual, c):
        residual = residual + drop_path(x); h = RMSNorm(residual)        fused add + norm, fp32 stream
        h1, h2 = h.chunk(2)                                               channel split
        h1 = h1 + g1 * Mamba(modulate(h1))                                spatial branch, layer's sweep
        w = wavelet_tokens(h2)                                            2-level Haar packet, code's layout
        h2 = inverse(w + g2 * Mamba(modulate(w)))                         4x4-window scan, row/column-first
        h = h + fusion(h1, h2)                                            swapped cross-attention, no gate
        h = h + g3 * GatedMLP(modulate(RMSNorm_2(h)))
        return h, residual

Each branch has its own adaLN (shift, scale, gate) from c; the scan orders are in
:mod:`ssmgen.models.dimsum_scans`. The official "conditional Mamba" adds a ``cond_proj`` whose output
the shipped CUDA kernel never reads, so the mixers here are plain Mamba and those weights are dropped
when a checkpoint is converted. Initialisation as released: DiT's embedding / adaLN-Zero / zero output
init without DiT's xavier pass, then Mamba's (zero Linear biases except dt, Mamba ``out_proj`` and any
``fc2`` rescaled by 1 / sqrt(depth)).
"""

import argparse
import math
import re

import pywt
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ssmgen.kernels import ScanOrder
from ssmgen.layers.attention import CrossAttentionFusion
from ssmgen.layers.dit_block import DiTBlock, FinalLayer
from ssmgen.layers.embeddings import LabelEmbedder, TimestepEmbedder, get_2d_sincos_pos_embed
from ssmgen.layers.mamba import Mamba
from ssmgen.layers.mlp import GatedMLP, Mlp, tanh_gelu
from ssmgen.layers.norms import RMSNorm, add_and_norm, apply_gate, modulate
from ssmgen.layers.wavelet import wavelet_tokens, wavelet_tokens_inverse

from .conditioning import broadcast_timesteps, check_sample
from .dimsum_scans import PATH_FAMILIES, check_scan_type, is_bidirectional, layer_scan_orders

# The official DiM configs (models_dim.py); L/2 is the released size for every dataset.
PRESETS = {
    "B/2": dict(depth=12, hidden_size=768, patch_size=2),
    "L/2": dict(depth=16, hidden_size=1024, patch_size=2),
    "L/2-v1": dict(depth=20, hidden_size=1024, patch_size=2),
    "XL/2": dict(depth=24, hidden_size=1152, patch_size=2),
    "L/4": dict(depth=16, hidden_size=1024, patch_size=4),
    "L/4-v1": dict(depth=20, hidden_size=1024, patch_size=4),
    "tiny": dict(
        depth=4,
        hidden_size=32,
        patch_size=1,
        sample_size=8,
        attention_heads=2,
        fusion_heads=2,
        d_state=4,
        num_classes=10,
    ),
}


def stochastic_depth(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero whole samples of x (B, ...) with probability ``rate``, scale the rest by
    1 / (1 - rate). Identity when not training or ``rate == 0``."""
    if rate == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - rate)
    return x * keep / (1 - rate)


class ModulatedMamba(nn.Module):
    """One branch: ``x + gate * mixer(modulate(x, shift, scale))`` with (shift, scale, gate) from c.

    x (B, L, dim), c (B, condition_dim) -> (B, L, dim); the mixer scans in ``scan_order``.
    Parameters ``mixer`` (Mamba) and ``adaLN_modulation`` (SiLU, Linear(condition_dim -> 3 dim)).
    """

    def __init__(self, dim: int, condition_dim: int, mamba_options: dict):
        super().__init__()
        self.mixer = Mamba(dim, **mamba_options)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(condition_dim, 3 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor, scan_order: ScanOrder) -> torch.Tensor:
        shift, scale, gate = self.adaLN_modulation(c).chunk(3, dim=-1)
        return x + apply_gate(self.mixer(modulate(x, shift, scale), scan_order=scan_order), gate)


class DiMSUMBlock(nn.Module):
    """The spatial-frequency block (official ``DiMBlockCombined``): see the module docstring.

    ``forward(x, residual, c, grid)``: x (B, L, dim) with L = grid**2, residual (B, L, dim) float32 or
    None for the first block, c (B, dim) -> (hidden (B, L, dim), residual (B, L, dim)).
    """

    def __init__(
        self,
        dim: int,
        layer: int,
        scan_type: str,
        mamba_options: dict,
        wavelet: str,
        wavelet_levels: int,
        fusion_heads: int,
        mlp_ratio: float,
        gated_mlp: bool,
        drop_path_rate: float,
    ):
        super().__init__()
        self.layer, self.scan_type = layer, scan_type
        self.wavelet, self.wavelet_levels = wavelet, wavelet_levels
        self.drop_path_rate = drop_path_rate
        self.norm = RMSNorm(dim)
        self.spatial_mamba = ModulatedMamba(dim // 2, dim, mamba_options)
        self.freq_mamba = ModulatedMamba(dim // 2, dim, mamba_options)
        self.proj = CrossAttentionFusion(dim, num_heads=fusion_heads, qkv_bias=True)
        self.norm_2 = RMSNorm(dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))
        mlp_cls = GatedMLP if gated_mlp else Mlp
        self.mlp = mlp_cls(dim, int(dim * mlp_ratio), act_layer=tanh_gelu)

    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None, c: torch.Tensor, grid: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if residual is not None:
            x = stochastic_depth(x, self.drop_path_rate, self.training)
        h, residual = add_and_norm(x, residual, self.norm, residual_in_fp32=True)
        spatial_order, wavelet_order = layer_scan_orders(
            self.scan_type, self.layer, grid, self.wavelet_levels, h.device
        )
        spatial, frequency = h.chunk(2, dim=-1)
        spatial = self.spatial_mamba(spatial, c, spatial_order)
        frequency = self._wavelet_branch(frequency, c, grid, wavelet_order)
        h = h + self.proj(spatial, frequency)
        shift, scale, gate = self.adaLN_modulation(c).chunk(3, dim=-1)
        h = h + apply_gate(self.mlp(modulate(self.norm_2(h), shift, scale)), gate)
        return h, residual

    def _wavelet_branch(self, x: torch.Tensor, c: torch.Tensor, grid: int, scan_order: ScanOrder) -> torch.Tensor:
        """x (B, L, dim / 2) -> wavelet tokens w -> inverse(w + gate * Mamba(modulate(w))) (B, L, dim / 2)."""
        grid_map = x.transpose(1, 2).unflatten(2, (grid, grid))  # (B, dim / 2, grid, grid)
        coefficients = self.freq_mamba(wavelet_tokens(grid_map, self.wavelet_levels, self.wavelet), c, scan_order)
        grid_map = wavelet_tokens_inverse(coefficients, grid, grid, self.wavelet_levels, self.wavelet)
        return grid_map.flatten(2).transpose(1, 2)


class DiMSUMModel(ModelMixin, ConfigMixin):
    """The DiMSUM denoiser: (sample (B, C, H, W), flow time t in [0, 1], class labels) -> velocity.

    Args:
        sample_size: side of the training latent (32 for 256px with the SD VAE). Other square sizes whose
            token grid is divisible by 2**wavelet_levels work (the position embedding is interpolated).
        patch_size, in_channels, hidden_size, depth: as the official DiM-*/p configs.
        attention_every: call the shared DiT block after every k-th block (0: no shared block).
        attention_heads: heads of the shared DiT block (16 as released); fusion_heads: heads of each
            cross-attention of the fusion (8 as released).
        mlp_ratio, gated_mlp: the block MLPs (GatedMLP with tanh-GELU as released, or DiT's Mlp).
        wavelet, wavelet_levels: the wavelet-branch transform (Haar, 2 levels as released; any pywavelets
            discrete wavelet with even filters and any level count work).
        d_state, d_conv, expand: the Mamba mixers of both branches (each on hidden_size / 2 channels).
        scan_type: ``"alternating"`` (released), ``"bidirectional"``, ``"sweep_k"``, ``"zigzag_k"``,
            ``"jpeg_k"`` (see :mod:`ssmgen.models.dimsum_scans`). scan_backend: selective-scan backend.
        drop_path: stochastic depth of the last block (linear from 0; 0.1 as released).
        num_classes: class count, 0 for an unconditional model (one learned constant in the table).
        class_dropout_prob: label dropout for classifier-free guidance (0.15 on ImageNet as released); the
            null class id is ``num_classes``.
        learn_sigma: output 2C channels instead of C (off as released: the model predicts velocity).
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        sample_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1024,
        depth: int = 16,
        attention_every: int = 4,
        attention_heads: int = 16,
        fusion_heads: int = 8,
        mlp_ratio: float = 4.0,
        gated_mlp: bool = True,
        wavelet: str = "haar",
        wavelet_levels: int = 2,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        scan_type: str = "alternating",
        scan_backend: str = "auto",
        drop_path: float = 0.1,
        num_classes: int = 1000,
        class_dropout_prob: float = 0.15,
        learn_sigma: bool = False,
    ):
        super().__init__()
        check_scan_type(scan_type)
        if hidden_size % 4:
            raise ValueError(f"hidden_size must be a multiple of 4 (two halves, sin-cos table), got {hidden_size}")
        if depth < 1 or attention_every < 0:
            raise ValueError(f"depth must be >= 1 and attention_every >= 0, got {depth} and {attention_every}")
        grid = sample_size // patch_size
        if sample_size % patch_size or grid % 2**wavelet_levels:
            raise ValueError(
                f"sample_size ({sample_size}) must be a multiple of patch_size * 2**wavelet_levels "
                f"({patch_size * 2**wavelet_levels})"
            )
        if wavelet not in pywt.wavelist(kind="discrete"):
            raise ValueError(
                f"wavelet must be a discrete pywavelets wavelet (pywt.wavelist(kind='discrete')), got {wavelet!r}"
            )
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {drop_path}")
        if num_classes == 0:
            class_dropout_prob = 1.0  # unconditional: every label is the null class (one learned row)
        self.out_channels = 2 * in_channels if learn_sigma else in_channels

        self.x_embedder = nn.Module()
        self.x_embedder.proj = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid, hidden_size))
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)

        mamba_options = dict(
            d_state=d_state,
            d_conv=d_conv,
            expand=expand,
            bidirectional=is_bidirectional(scan_type),
            backend=scan_backend,
        )
        rates = [0.0] + torch.linspace(0, drop_path, depth, device="cpu").tolist()  # block i uses rates[i], as released
        self.blocks = nn.ModuleList(
            DiMSUMBlock(
                hidden_size,
                i,
                scan_type,
                mamba_options,
                wavelet,
                wavelet_levels,
                fusion_heads,
                mlp_ratio,
                gated_mlp,
                rates[i],
            )
            for i in range(depth)
        )
        if attention_every:
            self.attn_block = DiTBlock(hidden_size, attention_heads, mlp_ratio, gated_mlp=gated_mlp)
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.gradient_checkpointing = False
        self._initialize_weights()

    def _initialize_weights(self) -> None:
        """The released initialisation (``DiM.initialize_weights``); see the module docstring."""
        grid = math.isqrt(self.pos_embed.shape[1])
        self.pos_embed.data.copy_(get_2d_sincos_pos_embed(self.pos_embed.shape[-1], grid, grid)[None])
        proj = self.x_embedder.proj
        nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1))
        nn.init.zeros_(proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:  # adaLN-Zero on the outer blocks only, not the branches or attn_block
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        self.final_layer.zero_init()
        # Mamba's pass (GPT-2 scheme): zero Linear biases but the dt projections' (their init is the
        # point), and rescale every residual output projection by 1 / sqrt(depth).
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear) and module.bias is not None:
                if not name.endswith(("dt_proj", "dt_proj_b")):
                    nn.init.zeros_(module.bias)
        for name, parameter in self.named_parameters():
            if name.endswith(("out_proj.weight", "fc2.weight")):
                nn.init.kaiming_uniform_(parameter, a=math.sqrt(5))
                with torch.no_grad():
                    parameter.div_(math.sqrt(len(self.blocks)))

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "DiMSUMModel":
        """``B/2``, ``L/2`` (released), ``L/2-v1``, ``XL/2``, ``L/4``, ``L/4-v1`` and ``tiny``; the official
        names (``DiM-L/2``...) are accepted too.

        At 256px (32x32x4 latents, 1000 classes): B/2 184.4M, L/2 426.3M, L/2-v1 526.0M, XL/2 791.1M
        parameters; the official models carry 14.2M / 33.6M / 42.0M / 63.8M more in dead ``cond_proj``
        weights (B/2 198.5M, L/2 459.9M, XL/2 854.8M).
        """
        key = name.removeprefix("DiM-") if isinstance(name, str) else name
        if key not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)} (optionally prefixed 'DiM-'), got {name!r}")
        return cls(**(PRESETS[key] | overrides))

    def _position_embedding(self, grid: int) -> torch.Tensor:
        """The learned (1, grid**2, D) embedding, bicubically interpolated when the grid differs."""
        trained = math.isqrt(self.pos_embed.shape[1])
        if grid == trained:
            return self.pos_embed
        table = self.pos_embed.view(1, trained, trained, -1).permute(0, 3, 1, 2)
        table = F.interpolate(table, size=(grid, grid), mode="bicubic", align_corners=False)
        return table.flatten(2).transpose(1, 2)

    def _check_grid(self, height: int, width: int) -> int:
        multiple = self.config.patch_size * 2**self.config.wavelet_levels
        if height != width or height % multiple:
            raise ValueError(
                f"sample must be square with a side divisible by patch_size * 2**wavelet_levels = {multiple}, "
                f"got {height}x{width}"
            )
        return height // self.config.patch_size

    def unpatchify(self, x: torch.Tensor, grid: int) -> torch.Tensor:
        """(B, grid**2, p * p * C) -> (B, C, grid * p, grid * p)."""
        p, channels = self.config.patch_size, self.out_channels
        x = x.view(x.shape[0], grid, grid, p, p, channels)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], channels, grid * p, grid * p)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        class_labels: torch.Tensor | None = None,
        return_dict: bool = True,
    ):
        """sample (B, C, H, W) noisy latent x_t; timestep: flow time t in [0, 1] (0 = noise, 1 = data),
        scalar or (B,), fed unscaled (adaptive ODE solvers may step slightly past 1); class_labels (B,)
        int (the null id ``num_classes`` is the unconditional branch; None only for unconditional
        models). Returns the velocity (B, out_channels, H, W) as
        ``Transformer2DModelOutput`` (or a 1-tuple)."""
        check_sample(sample, self.config.in_channels)
        batch, _, height, width = sample.shape
        grid = self._check_grid(height, width)
        if class_labels is None:
            if self.config.num_classes > 0:
                raise ValueError("class_labels are required by a class-conditional model (use the null id for none)")
            class_labels = torch.zeros(batch, dtype=torch.long, device=sample.device)
        t = broadcast_timesteps(timestep, batch, sample.device)
        c = self.t_embedder(t) + self.y_embedder(class_labels)

        x = self.x_embedder.proj(sample).flatten(2).transpose(1, 2)  # (B, L, D)
        x = x + self._position_embedding(grid).to(x.dtype)
        residual = None
        every = self.config.attention_every
        for i, block in enumerate(self.blocks):
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                x, residual = self._gradient_checkpointing_func(block, x, residual, c, grid)
            else:
                x, residual = block(x, residual, c, grid)
            if every and (i + 1) % every == 0:
                if torch.is_grad_enabled() and self.gradient_checkpointing:
                    x = self._gradient_checkpointing_func(self.attn_block, x, c)
                else:
                    x = self.attn_block(x, c)
        out = self.unpatchify(self.final_layer(x, c), grid)
        return Transformer2DModelOutput(sample=out) if return_dict else (out,)

    @classmethod
    def convert_original_checkpoint(cls, path: str, use_ema: bool = True, **config_overrides) -> "DiMSUMModel":
        """Load an official checkpoint: a training-script ``.pt`` (``{"model", "ema", "opt", "args", ...}``),
        a bare state dict, or the Hub's ``model.safetensors`` (``haopt/dimsum-L2-imagenet256``).

        The configuration is read off the tensor shapes (and ``args`` where present); a label table of
        R > 1 rows is read as R - 1 classes plus the null row (ImageNet: 1001), one row as unconditional
        (override ``num_classes``/``class_dropout_prob`` for a table without a null row). Head counts are not
        in the shapes: the official 16 (shared block) and 8 (fusion) are assumed. Dropped: the dead
        ``cond_proj`` weights, the DWT/IDWT filter buffers and the scan-path buffers (all rebuilt here;
        the stored paths are checked against ssmgen's tables). Loading is strict and safe.
        """
        if str(path).endswith(".safetensors"):
            from safetensors.torch import load_file

            checkpoint = load_file(path)
        else:
            with torch.serialization.safe_globals([argparse.Namespace]):
                checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        args = None
        if isinstance(checkpoint, dict) and "model" in checkpoint:
            args = checkpoint.get("args")
            state = checkpoint["ema" if use_ema and "ema" in checkpoint else "model"]
        else:
            state = checkpoint
        state = {k.removeprefix("module."): v for k, v in state.items()}
        config = _config_from_state_dict(state, args)
        state = {k: v for k, v in state.items() if not _DROPPED_KEYS.search(k)}
        model = cls(**(config | config_overrides))
        model.load_state_dict(state, strict=True)
        return model


# Official tensors with no counterpart here: the dead conditional-Mamba projection, the wavelet filter
# buffers and the scan-path tables.
_DROPPED_KEYS = re.compile(
    r"(\.mixer\.cond_proj\.(weight|bias)|\.dwt\.w_(ll|lh|hl|hh)|\.idwt\.filters|\.mixer\.zigzag_paths(_reverse)?)$"
)


def _scan_type_from_state_dict(state: dict[str, torch.Tensor], depth: int, grid: int) -> str:
    """``bidirectional`` when the Vim-v2 tensors are present, the path family whose tables equal the stored
    ``zigzag_paths`` buffer, else ``alternating``."""
    if "blocks.0.spatial_mamba.mixer.A_b_log" in state:
        return "bidirectional"
    paths = state.get("blocks.0.spatial_mamba.mixer.zigzag_paths")
    if paths is None:
        return "alternating"
    count = paths.shape[0] // depth
    for family in PATH_FAMILIES:
        scan_type = f"{family}_{count}"
        expected = [layer_scan_orders(scan_type, i, grid, 2, torch.device("cpu"))[0].perm for i in range(count)]
        if torch.equal(paths[:count].long(), torch.stack(expected)):
            return scan_type
    raise ValueError(f"checkpoint: its scan paths ({count} per cycle) match none of {PATH_FAMILIES}")


def _config_from_state_dict(state: dict[str, torch.Tensor], args: argparse.Namespace | None) -> dict:
    """The DiMSUMModel configuration implied by an official state dict's shapes (and training args)."""
    unsupported = {
        "norm_f.weight": "--use-final-norm",
        "blocks.0.norm.bias": "LayerNorm blocks (no --rms-norm)",
        "attn_block.0.adaLN_modulation.1.weight": "--use-independent-attn",
        "pos_cnn.proj.0.weight": "--pe-type cpe",
    }
    for key, option in unsupported.items():
        if key in state:
            raise ValueError(f"checkpoint: {option} is not supported (only the released DiMSUM options are)")
    if "blocks.0.spatial_mamba.mixer.in_proj.weight" not in state:
        raise ValueError("checkpoint: not a DiMSUM '--block-type combined' state dict (no blocks.0.spatial_mamba)")
    if args is not None and (getattr(args, "pe_type", "ape") != "ape" or getattr(args, "scanning_continuity", False)):
        raise ValueError("checkpoint: --pe-type other than 'ape' and --scanning-continuity are not supported")

    proj = state["x_embedder.proj.weight"]
    hidden_size, in_channels, patch_size = proj.shape[0], proj.shape[1], proj.shape[-1]
    depth = len({m.group(1) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    grid = math.isqrt(state["pos_embed"].shape[1])
    mixer = "blocks.0.spatial_mamba.mixer."
    gated = "blocks.0.mlp.w12.weight" in state
    mlp_hidden = state["blocks.0.mlp.w12.weight"].shape[0] // 2 if gated else state["blocks.0.mlp.fc1.weight"].shape[0]
    label_rows = state["y_embedder.embedding_table.weight"].shape[0]
    attention_every = 0
    if "attn_block.adaLN_modulation.1.weight" in state:
        attention_every = getattr(args, "use_attn_every_k_layers", 4) if args is not None else 4
    return dict(
        sample_size=grid * patch_size,
        patch_size=patch_size,
        in_channels=in_channels,
        hidden_size=hidden_size,
        depth=depth,
        attention_every=attention_every,
        mlp_ratio=mlp_hidden / hidden_size,
        gated_mlp=gated,
        d_state=state[mixer + "A_log"].shape[1],
        d_conv=state[mixer + "conv1d.weight"].shape[-1],
        expand=state[mixer + "in_proj.weight"].shape[0] // hidden_size,
        scan_type=_scan_type_from_state_dict(state, depth, grid),
        num_classes=0 if label_rows == 1 else label_rows - 1,
        learn_sigma=state["final_layer.linear.weight"].shape[0] == 2 * in_channels * patch_size**2,
    )
