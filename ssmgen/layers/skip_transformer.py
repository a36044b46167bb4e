"""MLD's U-shaped transformer stacks (``SkipTransformerEncoder`` / ``SkipTransformerDecoder`` of
``mld/models/operator/cross_attention.py``), shared by the motion VAE and the MLD denoiser.

``num_layers = 2 n + 1`` post-norm transformer layers (GELU, dropout): n input blocks whose outputs are
kept, one middle block, then n output blocks; output block j first fuses the mirrored input block's
output, ``x = Linear(cat(x, skip))`` (2d -> d), then runs. A final LayerNorm closes the stack. Every
weight matrix starts xavier-uniform, as MLD's ``_reset_parameters``.

The encoder stack runs self-attention layers; the decoder stack runs decoder layers (self-attention,
cross-attention to a memory, feed-forward).
"""

import torch
from torch import nn


class SkipTransformer(nn.Module):
    """A skip-connected stack of ``num_layers`` (odd) transformer layers over (batch, L, width) tokens.

    Args:
        width, num_heads, ff_size, dropout: the layers' sizes (MLD: 256, 4, 1024, 0.1).
        num_layers: 2 n + 1 (MLD: 9 = 4 input + 1 middle + 4 output blocks).
        decoder: use decoder layers, which cross-attend to a ``memory`` (the VAE decoder's latent).
    """

    def __init__(
        self,
        width: int,
        num_heads: int,
        ff_size: int,
        num_layers: int,
        dropout: float = 0.1,
        decoder: bool = False,
    ):
        super().__init__()
        if num_layers < 1 or num_layers % 2 == 0:
            raise ValueError(f"num_layers must be odd (n input + 1 middle + n output blocks), got {num_layers}")
        if width % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide the width ({width})")
        self.decoder = decoder
        layer_class = nn.TransformerDecoderLayer if decoder else nn.TransformerEncoderLayer

        def layer() -> nn.Module:
            return layer_class(width, num_heads, ff_size, dropout, activation="gelu", batch_first=True)

        half = num_layers // 2
        self.input_blocks = nn.ModuleList(layer() for _ in range(half))
        self.middle_block = layer()
        self.output_blocks = nn.ModuleList(layer() for _ in range(half))
        self.linear_blocks = nn.ModuleList(nn.Linear(2 * width, width) for _ in range(half))
        self.norm = nn.LayerNorm(width)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def _layer(self, block: nn.Module, x, memory, padding_mask) -> torch.Tensor:
        if self.decoder:
            return block(x, memory, tgt_key_padding_mask=padding_mask)
        return block(x, src_key_padding_mask=padding_mask)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor | None = None, padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (batch, L, width); memory (batch, M, width) for a decoder stack; padding_mask (batch, L) bool,
        True on tokens to ignore as keys. Returns (batch, L, width)."""
        if self.decoder != (memory is not None):
            raise ValueError("memory must be given to a decoder stack and only to one")
        skips = []
        for block in self.input_blocks:
            x = self._layer(block, x, memory, padding_mask)
            skips.append(x)
        x = self._layer(self.middle_block, x, memory, padding_mask)
        for block, linear in zip(self.output_blocks, self.linear_blocks, strict=True):
            x = linear(torch.cat([x, skips.pop()], dim=-1))
            x = self._layer(block, x, memory, padding_mask)
        return self.norm(x)
