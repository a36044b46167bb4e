"""LaMamba-Diff: a U-Net of blocks that mix globally with multi-direction Mamba and locally with
shifted-window attention (Fu et al., arXiv 2408.02615), laid out as the released code
(``yunxiangfu2001/LaMamba-Diff``, ``model/lamamba.py``) so its checkpoints load by name.

    x (B, C, H, W) -> 1x1 patch embed + LayerNorm + learnable sin-cos position embedding
    encoder: 4 stages (dims e, 2e, 4e, 4e); PatchMerging after the first two; each stage's output
             before downsampling is a skip
    bottleneck: x = x + blocks(x)   (an outer residual around residual blocks, as released)
    decoder: 4 stages with one block more each (SD-UNet design); PatchExpanding before the last
             two; the matching skip is added before the blocks
    head: FinalPatchExpanding + LayerNorm -> LayerNorm (no affine) -> adaLN(shift, scale) -> Linear
          to 2 x in_channels (epsilon and the learned variance range)

Every block is adaLN-Zero with 9 chunks around three residual branches: SS2D over LaMamba's four
continuous snake scans (d_state 1), Swin window attention (8x8, shifted on odd blocks), and an
MLP. The conditioning is c = t_embed(DDPM step) + label_embed(class or the null class).
Released quirks kept: affine LayerNorms (eps 1e-5), decoder blocks always project c, the
bottleneck's outer residual, additive skips, and a final linear that is xavier- (not zero-)
initialised because the official zero-init never reached it.
"""

import argparse
import re

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ssmgen.kernels import LAMAMBA_SNAKE_SPECS
from ssmgen.layers.embeddings import LabelEmbedder, TimestepEmbedder, get_2d_sincos_pos_embed
from ssmgen.layers.mlp import Mlp
from ssmgen.layers.norms import apply_gate, modulate
from ssmgen.layers.ss2d import SS2D
from ssmgen.layers.window_attention import ShiftedWindowAttention

from .conditioning import broadcast_timesteps, check_sample

# Sizes: XL is the released config. S/B/L follow a third-party port's embed dims and heads; the
# paper's table was not available, so treat them as unverified guesses.
PRESETS = {
    "XL": dict(embed_dim=320, num_heads=16),
    "L": dict(embed_dim=256, num_heads=16),
    "B": dict(embed_dim=192, num_heads=8),
    "S": dict(embed_dim=128, num_heads=4),
    "tiny": dict(
        embed_dim=16,
        num_heads=2,
        depths=(1, 1, 1, 1),
        bottleneck_depth=1,
        window_size=4,
        sample_size=8,
        num_classes=10,
    ),
}


class PatchMerging2D(nn.Module):
    """2x2 neighbours concatenated -> LayerNorm(4C) -> Linear(4C -> out): (B, H, W, C) -> (B, H/2, W/2, out)."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class PatchExpanding2D(nn.Module):
    """Linear(C -> scale^2 out), pixel shuffle by ``scale``, LayerNorm: (B, H, W, C) -> (B, sH, sW, out)."""

    def __init__(self, dim: int, scale: int, out_dim: int):
        super().__init__()
        self.scale, self.out_dim = scale, out_dim
        self.expand = nn.Linear(dim, scale * scale * out_dim, bias=False)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = x.shape
        s = self.scale
        x = self.expand(x).view(batch, height, width, s, s, self.out_dim)
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(batch, height * s, width * s, self.out_dim)
        return self.norm(x)


class LaMambaBlock(nn.Module):
    """adaLN-Zero block (9 chunks): x += g1 SS2D(.); x += g2 WindowAttention(.); x += g3 MLP(.).

    x (B, H, W, dim), c (B, condition_dim) -> (B, H, W, dim).
    """

    def __init__(
        self,
        dim: int,
        condition_dim: int,
        project_condition: bool,
        num_heads: int,
        window_size: int,
        shift_size: int,
        mlp_ratio: float,
        ssm_options: dict,
    ):
        super().__init__()
        self.condition_projection = nn.Linear(condition_dim, dim) if project_condition else nn.Identity()
        self.norm = nn.LayerNorm(dim)
        self.op = SS2D(dim, **ssm_options)
        self.norm_swin = nn.LayerNorm(dim)
        self.attn = ShiftedWindowAttention(dim, window_size, num_heads, shift_size=shift_size)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 9 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        (shift_ssm, scale_ssm, gate_ssm, shift_attn, scale_attn, gate_attn, shift_mlp, scale_mlp, gate_mlp) = (
            self.adaLN_modulation(self.condition_projection(c)).chunk(9, dim=-1)
        )
        x = x + apply_gate(self.op(modulate(self.norm(x), shift_ssm, scale_ssm)), gate_ssm)
        x = x + apply_gate(self.attn(modulate(self.norm_swin(x), shift_attn, scale_attn)), gate_attn)
        return x + apply_gate(self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp)), gate_mlp)


class _Stage(nn.Module):
    """A stage's blocks with an optional resampling layer (``downsample`` after or ``upsample`` before)."""

    def __init__(self, blocks: list[LaMambaBlock], downsample: nn.Module | None = None, upsample=None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        if downsample is not None:
            self.downsample = downsample
        if upsample is not None:
            self.upsample = upsample


class LaMambaDiffModel(ModelMixin, ConfigMixin):
    """The LaMamba-Diff denoiser: (sample (B, C, H, W), DDPM timestep, class labels) -> (B, 2C, H, W).

    Args:
        sample_size: side of the training grid (latent 32 for 256px with the SD VAE); other sizes
            work (the position embedding is interpolated, inputs are padded to a multiple of
            patch_size * 4 and the output cropped back).
        in_channels: 4 for SD-VAE latents, 3 (or 1) for pixels.
        embed_dim: e, the first stage's width; stages use (e, 2e, 4e, 4e).
        depths: encoder blocks per stage; the decoder has one more per stage.
        bottleneck_depth, num_heads (int or per stage), window_size, mlp_ratio: as released.
        d_state, ssm_ratio, d_conv, conv_bias, scan_directions, scan_backend: SS2D options.
        num_classes: class count (0 for an unconditional model). class_dropout_prob: label dropout
            in training for classifier-free guidance; the null class id is ``num_classes``.
        learn_sigma: output 2C channels (epsilon + variance range) instead of C.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        sample_size: int = 32,
        in_channels: int = 4,
        patch_size: int = 1,
        embed_dim: int = 320,
        depths: tuple[int, ...] = (2, 2, 2, 2),
        bottleneck_depth: int = 2,
        num_heads: int | tuple[int, ...] = 16,
        window_size: int = 8,
        mlp_ratio: float = 4.0,
        d_state: int = 1,
        ssm_ratio: float = 2.0,
        d_conv: int = 3,
        conv_bias: bool = False,
        scan_directions: tuple[str, ...] = LAMAMBA_SNAKE_SPECS,
        scan_backend: str = "auto",
        num_classes: int = 1000,
        class_dropout_prob: float = 0.1,
        learn_sigma: bool = True,
    ):
        super().__init__()
        stages = len(depths)
        if stages < 2:
            raise ValueError(f"depths must list at least 2 stages, got {depths!r}")
        heads = [num_heads] * stages if isinstance(num_heads, int) else list(num_heads)
        if len(heads) != stages:
            raise ValueError(f"num_heads must be an int or one per stage ({stages}), got {num_heads!r}")
        self.downsamples = stages - 2  # only the first stages halve the resolution, as released
        dims = [embed_dim * 2 ** min(i, self.downsamples) for i in range(stages)]
        for dim, h in zip(dims, heads, strict=True):
            if dim % h:
                raise ValueError(f"num_heads={h} must divide the stage width {dim}")
        if num_classes == 0:
            class_dropout_prob = 1.0  # unconditional: every label is the null class
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        condition_dim = dims[-1]
        ssm = dict(
            d_state=d_state,
            ssm_ratio=ssm_ratio,
            d_conv=d_conv,
            conv_bias=conv_bias,
            directions=tuple(scan_directions),
            backend=scan_backend,
        )

        def blocks(dim: int, count: int, project: bool, heads_: int) -> list[LaMambaBlock]:
            return [
                LaMambaBlock(
                    dim,
                    condition_dim,
                    project or dim != condition_dim,
                    heads_,
                    window_size,
                    0 if j % 2 == 0 else window_size // 2,
                    mlp_ratio,
                    ssm,
                )
                for j in range(count)
            ]

        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size)
        self.patch_embed.norm = nn.LayerNorm(embed_dim)
        grid = sample_size // patch_size
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        self.t_embedder = TimestepEmbedder(condition_dim)
        self.y_embedder = LabelEmbedder(num_classes, condition_dim, class_dropout_prob)

        self.layers = nn.ModuleList(
            _Stage(
                blocks(dims[i], depths[i], False, heads[i]),
                downsample=PatchMerging2D(dims[i], dims[i + 1]) if i < self.downsamples else None,
            )
            for i in range(stages)
        )
        self.mid_layer = _Stage(blocks(dims[-1], bottleneck_depth, False, heads[-1]))
        up_dims, up_heads = dims[::-1], heads[::-1]
        self.layers_up = nn.ModuleList(
            _Stage(
                blocks(up_dims[i], depths[::-1][i] + 1, True, up_heads[i]),
                upsample=PatchExpanding2D(up_dims[i - 1], 2, up_dims[i]) if i >= stages - self.downsamples else None,
            )
            for i in range(stages)
        )
        self.final_up = PatchExpanding2D(embed_dim, patch_size, embed_dim)
        self.final_condition_projection = nn.Linear(condition_dim, embed_dim)
        self.norm_final = nn.LayerNorm(embed_dim, elementwise_affine=False, eps=1e-6)
        self.final_adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(embed_dim, 2 * embed_dim))
        self.final_linear = nn.Linear(embed_dim, self.out_channels)
        self.gradient_checkpointing = False
        self._initialize_weights()

    def _initialize_weights(self) -> None:
        """The released initialisation (DiT's, with VMamba's SSM init kept inside SS2D)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        proj = self.patch_embed.proj
        nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1))
        nn.init.zeros_(proj.bias)
        grid = self.pos_embed.shape[1]
        self.pos_embed.data.copy_(get_2d_sincos_pos_embed(self.pos_embed.shape[-1], grid, grid).view_as(self.pos_embed))
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.modules():
            if isinstance(block, LaMambaBlock):  # adaLN-Zero: every block starts as the identity
                nn.init.zeros_(block.adaLN_modulation[-1].weight)
                nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_adaLN_modulation[-1].bias)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "LaMambaDiffModel":
        """``XL`` (released, ~652.5M parameters at 32x32x4), ``L``/``B``/``S`` (unverified sizes), ``tiny``."""
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
        return cls(**(PRESETS[name] | overrides))

    def _run(self, stage: _Stage, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        for block in stage.blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                x = self._gradient_checkpointing_func(block, x, c)
            else:
                x = block(x, c)
        return x

    def _position_embedding(self, height: int, width: int) -> torch.Tensor:
        """The learned (1, h, w, e) embedding, interpolated when the grid differs from training."""
        if self.pos_embed.shape[1:3] == (height, width):
            return self.pos_embed
        grid = self.pos_embed.permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)
        return grid.permute(0, 2, 3, 1)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int | float,
        class_labels: torch.Tensor | None = None,
        return_dict: bool = True,
    ):
        """sample (B, C, H, W); timestep: DDPM step(s), scalar or (B,); class_labels (B,) int
        (the null id ``num_classes`` selects the unconditional branch; None only for
        unconditional models). Returns (B, out_channels, H, W) as ``Transformer2DModelOutput``."""
        check_sample(sample, self.config.in_channels)
        batch, _, height, width = sample.shape
        if class_labels is None:
            if self.config.num_classes > 0:
                raise ValueError("class_labels are required by a class-conditional model (use the null id for none)")
            class_labels = torch.zeros(batch, dtype=torch.long, device=sample.device)
        t = broadcast_timesteps(timestep, batch, sample.device)
        c = self.t_embedder(t) + self.y_embedder(class_labels)

        multiple = self.config.patch_size * 2**self.downsamples
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        x = F.pad(sample, (0, pad_w, 0, pad_h))
        x = self.patch_embed.norm(self.patch_embed.proj(x).permute(0, 2, 3, 1))
        x = x + self._position_embedding(x.shape[1], x.shape[2]).to(x.dtype)

        skips = []
        for stage in self.layers:
            x = self._run(stage, x, c)
            skips.append(x)
            if hasattr(stage, "downsample"):
                x = stage.downsample(x)
        x = x + self._run(self.mid_layer, x, c)
        for stage, skip in zip(self.layers_up, reversed(skips), strict=True):
            if hasattr(stage, "upsample"):
                x = stage.upsample(x)
            x = self._run(stage, x + skip, c)

        shift, scale = self.final_adaLN_modulation(self.final_condition_projection(c)).chunk(2, dim=-1)
        x = self.final_linear(modulate(self.norm_final(self.final_up(x)), shift, scale))
        out = x.permute(0, 3, 1, 2)[:, :, :height, :width]
        return Transformer2DModelOutput(sample=out) if return_dict else (out,)

    @classmethod
    def convert_original_checkpoint(cls, path: str, use_ema: bool = True, **config_overrides) -> "LaMambaDiffModel":
        """Load a checkpoint saved by the official training script (``{"model", "ema", "opt", "args"}``)
        or a bare state dict. The configuration is read off the tensor shapes; ``attn_mask``
        buffers (recomputed here) are dropped. Loading is strict and safe (``weights_only``)."""
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(checkpoint, dict) and "model" in checkpoint:
            state = checkpoint["ema" if use_ema and "ema" in checkpoint else "model"]
        else:
            state = checkpoint
        state = {k.removeprefix("module."): v for k, v in state.items() if not k.endswith("attn_mask")}
        model = cls(**(_config_from_state_dict(state) | config_overrides))
        model.load_state_dict(state, strict=True)
        return model


def _config_from_state_dict(state: dict[str, torch.Tensor]) -> dict:
    """The LaMambaDiffModel configuration implied by an official state dict's shapes."""

    def count(pattern: str) -> int:
        return len({m.group(1) for k in state if (m := re.match(pattern, k))})

    proj = state["patch_embed.proj.weight"]
    embed_dim, in_channels, patch_size = proj.shape[0], proj.shape[1], proj.shape[-1]
    stages = count(r"layers\.(\d+)\.")
    depths = tuple(count(rf"layers\.{i}\.blocks\.(\d+)\.") for i in range(stages))
    heads = tuple(state[f"layers.{i}.blocks.0.attn.relative_position_bias_table"].shape[1] for i in range(stages))
    table_rows = state["layers.0.blocks.0.attn.relative_position_bias_table"].shape[0]
    op = "layers.0.blocks.0.op."
    label_rows = state["y_embedder.embedding_table.weight"].shape[0]
    return dict(
        sample_size=state["pos_embed"].shape[1] * patch_size,
        in_channels=in_channels,
        patch_size=patch_size,
        embed_dim=embed_dim,
        depths=depths,
        bottleneck_depth=count(r"mid_layer\.blocks\.(\d+)\."),
        num_heads=heads if len(set(heads)) > 1 else heads[0],
        window_size=(round(table_rows**0.5) + 1) // 2,
        mlp_ratio=state["layers.0.blocks.0.mlp.fc1.weight"].shape[0] / embed_dim,
        d_state=state[op + "A_logs"].shape[1],
        ssm_ratio=state[op + "out_norm.weight"].shape[0] / embed_dim,
        d_conv=state[op + "conv2d.weight"].shape[-1],
        conv_bias=op + "conv2d.bias" in state,
        num_classes=label_rows - 1,
        learn_sigma=state["final_linear.weight"].shape[0] == 2 * in_channels,
    )
