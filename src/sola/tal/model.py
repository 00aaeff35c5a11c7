"""The TAL head: an anchor-free multi-scale detector of the ActionFormer family.

projection (Conv1d -> LayerNorm -> ReLU, x `embd_layers`) -> stem (pre-LN local-window transformer
layers; with drop path on, each residual branch scaled by a learnable per-channel factor initialised to
`layer_scale_init`, as ActionFormer's AffineDropPath) -> branch (layers that halve the length: a pyramid
of `branch_layers + 1` levels) ->
identity neck (LayerNorm per level) -> classification and regression heads shared across levels
(the regression head has one learnable scale per level). Inputs and outputs are `(B, T, C)`.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from sola.tal.blocks import MaskedConv1d, Scale, TransformerLayer, sinusoid_encoding
from sola.tal.config import TalConfig


class ConvHead(nn.Module):
    """(layers - 1) x (Conv1d -> LayerNorm -> ReLU), then a Conv1d to `out_dim`; shared across levels."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, kernel_size: int, layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * (layers - 1)
        self.convs = nn.ModuleList(MaskedConv1d(a, b, kernel_size, bias=False) for a, b in zip(dims[:-1], dims[1:]))
        self.norms = nn.ModuleList(nn.LayerNorm(b) for b in dims[1:])
        self.out = MaskedConv1d(dims[-1], out_dim, kernel_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, C), (B, T) -> (B, T, out_dim); zero at padded positions."""
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv(x, mask))) * mask.unsqueeze(-1).to(x.dtype)
        return self.out(x, mask)


class TalModel(nn.Module):
    """Projection, transformer pyramid, identity neck and shared heads; see the module docstring.

    `adapter`: an optional `(B, T, C) -> (B, T, C)` module (the SoLa adapter) applied to the input
    features first and trained with the head ("unified training" of the SoLa paper).
    """

    def __init__(self, config: TalConfig, adapter: nn.Module | None = None) -> None:
        super().__init__()
        m, d = config.model, config.data
        self.config = config
        self.adapter = adapter
        self.num_classes = d.num_classes
        self.num_levels = config.num_levels()
        self.use_abs_pe = m.use_abs_pe
        dims = [d.input_dim] + [m.embd_dim] * m.embd_layers
        self.embed = nn.ModuleList(
            MaskedConv1d(a, b, m.embd_kernel_size, bias=False) for a, b in zip(dims[:-1], dims[1:])
        )
        self.embed_norms = nn.ModuleList(nn.LayerNorm(b) for b in dims[1:])
        windows = config.level_windows()
        scale = m.branch_scale_init()  # ActionFormer's AffineDropPath scales, present when drop_path > 0
        self.stem = nn.ModuleList(
            TransformerLayer(m.embd_dim, m.n_head, windows[0], m.mlp_ratio, m.dropout, m.drop_path,
                             layer_scale_init=scale)
            for _ in range(m.stem_layers)
        )
        self.branch = nn.ModuleList(
            TransformerLayer(m.embd_dim, m.n_head, windows[level + 1], m.mlp_ratio, m.dropout, m.drop_path,
                             downsample=True, layer_scale_init=scale)
            for level in range(m.branch_layers)
        )
        self.neck_norms = nn.ModuleList(nn.LayerNorm(m.embd_dim) for _ in range(self.num_levels))
        self.cls_head = ConvHead(m.embd_dim, m.head_dim, d.num_classes, m.head_kernel_size, m.head_layers)
        self.reg_head = ConvHead(m.embd_dim, m.head_dim, 2, m.head_kernel_size, m.head_layers)
        self.scales = nn.ModuleList(Scale() for _ in range(self.num_levels))
        prior = config.train.cls_prior_prob
        nn.init.constant_(self.cls_head.out.conv.bias, -math.log((1 - prior) / prior))

    def pyramid(self, feats: torch.Tensor, mask: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Features of every level after the neck: lists of (B, T_l, C) and (B, T_l) with T_l = ceil(T / 2^l)."""
        valid = mask.unsqueeze(-1).to(feats.dtype)
        x = feats if self.adapter is None else self.adapter(feats) * valid  # (B, T, C_in)
        for conv, norm in zip(self.embed, self.embed_norms):
            x = F.relu(norm(conv(x, mask))) * valid
        if self.use_abs_pe:
            x = x + sinusoid_encoding(x.shape[1], x.shape[2], x.device)[None] * valid
        for layer in self.stem:
            x, mask = layer(x, mask)
        levels, masks = [x], [mask]
        for layer in self.branch:
            x, mask = layer(x, mask)
            levels.append(x)
            masks.append(mask)
        levels = [norm(level) * m.unsqueeze(-1).to(level.dtype) for norm, level, m in zip(self.neck_norms, levels, masks)]
        return levels, masks

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-point class logits and regressed distances, all levels concatenated along time.

        feats (B, T, C_in), mask (B, T) bool with T a multiple of 2**branch_layers. Returns
        `cls_logits` (B, P, K), `offsets` (B, P, 2) distances to start and end in strides of the
        point's level (>= 0), and `mask` (B, P), with P = sum over levels of T / 2^l.
        """
        stride = 2 ** (self.num_levels - 1)
        if feats.shape[1] % stride:
            raise ValueError(f"feature length {feats.shape[1]} must be a multiple of {stride}; pad with `pad_batch`")
        levels, masks = self.pyramid(feats, mask)
        logits, offsets = [], []
        for level, (x, level_mask) in enumerate(zip(levels, masks)):
            logits.append(self.cls_head(x, level_mask))
            offsets.append(F.relu(self.scales[level](self.reg_head(x, level_mask))))
        return {
            "cls_logits": torch.cat(logits, dim=1),
            "offsets": torch.cat(offsets, dim=1),
            "mask": torch.cat(masks, dim=1),
        }


def make_points(length: int, config: TalConfig, device: torch.device | None = None) -> torch.Tensor:
    """Points of every level for an input of `length` snippets: (P, 4) rows (t, range_low, range_high, stride).

    `t` is the point's position in snippets of the input grid (t = i * 2^l on level l); the ranges
    are in snippets of the input grid, as in ActionFormer's point generator.
    """
    rows = []
    for level, (low, high) in enumerate(config.model.regression_range):
        stride = 2 ** level
        t = torch.arange(0, length, stride, dtype=torch.float32, device=device)
        rows.append(torch.stack([t, torch.full_like(t, low), torch.full_like(t, high), torch.full_like(t, stride)], 1))
    return torch.cat(rows, dim=0)
