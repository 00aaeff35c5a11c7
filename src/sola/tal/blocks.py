"""Building blocks of the TAL head, all on `(B, T, C)` tensors with a `(B, T)` bool mask.

Padded positions (mask False) are kept at exactly zero after every block, so a padded batch gives
the same outputs on its valid positions as each video alone (up to the receptive field of convs,
which read zeros beyond the end exactly as for an unpadded video).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class MaskedConv1d(nn.Module):
    """`Conv1d` with 'same' padding on `(B, T, C)`; outputs at padded positions are zero."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size, padding=kernel_size // 2, bias=bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, C_in), (B, T) -> (B, T, C_out)."""
        out = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, T, C_out)
        return out * mask.unsqueeze(-1).to(out.dtype)


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per sample with probability `p` in training."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) -> (B, ...), rescaled by 1 / (1 - p) where kept."""
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


def sinusoid_encoding(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Fixed sinusoidal position encoding of shape (length, dim)."""
    position = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


def local_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                    half_window: int) -> torch.Tensor:
    """Softmax attention where query t sees keys t-half_window..t+half_window that are valid.

    q, k, v: (B, H, T, D); mask: (B, T) bool. Returns (B, H, T, D); rows of padded queries are 0.
    Computed in chunks of `2 * half_window` queries, each against its chunk plus `half_window` keys
    on each side, so memory grows with T * window, not T^2.
    """
    batch, heads, length, dim = q.shape
    chunk = max(2 * half_window, 1)
    num_chunks = -(-length // chunk)
    padded = num_chunks * chunk
    span = chunk + 2 * half_window
    scale = dim ** -0.5
    q = F.pad(q, (0, 0, 0, padded - length)).view(batch, heads, num_chunks, chunk, dim)
    # keys: padded with half_window before and after, then windows of `span` every `chunk`
    k = F.pad(k, (0, 0, half_window, padded - length + half_window))
    v = F.pad(v, (0, 0, half_window, padded - length + half_window))
    k = k.unfold(2, span, chunk).transpose(-1, -2)  # (B, H, N, span, D)
    v = v.unfold(2, span, chunk).transpose(-1, -2)  # (B, H, N, span, D)
    key_valid = F.pad(mask.to(torch.uint8), (half_window, padded - length + half_window)).bool()
    key_valid = key_valid.unfold(1, span, chunk)  # (B, N, span)
    offset = torch.arange(span, device=q.device)[None, :] - half_window - torch.arange(chunk, device=q.device)[:, None]
    in_band = offset.abs() <= half_window  # (chunk, span)
    allowed = in_band[None, None] & key_valid[:, :, None, :]  # (B, N, chunk, span)
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale  # (B, H, N, chunk, span)
    scores = scores.masked_fill(~allowed[:, None], torch.finfo(scores.dtype).min)
    weights = scores.softmax(dim=-1) * allowed[:, None].to(scores.dtype)
    out = torch.matmul(weights, v).reshape(batch, heads, padded, dim)[:, :, :length]  # (B, H, T, D)
    return out * mask[:, None, :, None].to(out.dtype)


def global_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax attention over all valid keys. q, k, v: (B, H, T, D); mask: (B, T). Returns (B, H, T, D)."""
    key_mask = mask[:, None, None, :]  # (B, 1, 1, T)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
    return torch.nan_to_num(out) * mask[:, None, :, None].to(out.dtype)


class MaskedSelfAttention(nn.Module):
    """Multi-head self-attention, local (window > 1) or global (window <= 1), on `(B, T, C)`."""

    def __init__(self, dim: int, n_head: int, window: int, dropout: float) -> None:
        super().__init__()
        self.n_head, self.window = n_head, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, C), (B, T) -> (B, T, C)."""
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_head, dim // self.n_head).permute(2, 0, 3, 1, 4)
        if self.window > 1 and self.window < length:
            out = local_attention(q, k, v, mask, self.window // 2)
        else:
            out = global_attention(q, k, v, mask)
        out = out.transpose(1, 2).reshape(batch, length, dim)  # (B, T, C)
        return self.drop(self.proj(out)) * mask.unsqueeze(-1).to(x.dtype)


class TransformerLayer(nn.Module):
    """Pre-LN transformer layer; with `downsample` it first halves the length by max-pooling (k=3, s=2).

    x <- x + drop_path(scale_attn * attn(LN(x))), then x <- x + drop_path(scale_mlp * mlp(LN(x))).
    `layer_scale_init > 0` gives the learnable per-channel scales `scale_attn`, `scale_mlp` (shape (C,),
    initialised to that value: ActionFormer's AffineDropPath); otherwise there are none (scale 1, no parameter).

    Departures from ActionFormer's TransformerBlock: q, k and v are linear projections of LN(x) (ActionFormer
    first applies a depthwise Conv1d k=3 and a LayerNorm to each), and a downsampling layer max-pools its input
    and then runs at half length (ActionFormer normalises the full-length input and downsamples inside the
    attention, with its depthwise q/k/v convs at stride 2; its skip path is the same max-pool).
    """

    def __init__(self, dim: int, n_head: int, window: int, mlp_ratio: int, dropout: float,
                 drop_path: float, downsample: bool = False, layer_scale_init: float = 0.0) -> None:
        super().__init__()
        self.downsample = downsample
        self.norm_attn = nn.LayerNorm(dim)
        self.attn = MaskedSelfAttention(dim, n_head, window, dropout)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(mlp_ratio * dim, dim), nn.Dropout(dropout),
        )
        self.drop_path = DropPath(drop_path)
        if layer_scale_init > 0:
            self.scale_attn = nn.Parameter(torch.full((dim,), float(layer_scale_init)))
            self.scale_mlp = nn.Parameter(torch.full((dim,), float(layer_scale_init)))
        else:
            self.register_parameter("scale_attn", None)
            self.register_parameter("scale_mlp", None)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, C), (B, T) -> (B, T', C), (B, T') with T' = ceil(T / 2) when downsampling, else T."""
        if self.downsample:
            # -inf at padding so that a padded zero never wins the max of a valid window
            filled = x.masked_fill(~mask.unsqueeze(-1), float("-inf")).transpose(1, 2)
            pooled = F.max_pool1d(filled, kernel_size=3, stride=2, padding=1).transpose(1, 2)
            mask = mask[:, ::2]
            x = pooled.masked_fill(~mask.unsqueeze(-1), 0.0)
        valid = mask.unsqueeze(-1).to(x.dtype)
        attn = self.attn(self.norm_attn(x), mask)
        x = x + self.drop_path(attn if self.scale_attn is None else attn * self.scale_attn)
        mlp = self.mlp(self.norm_mlp(x)) * valid
        x = x + self.drop_path(mlp if self.scale_mlp is None else mlp * self.scale_mlp)
        return x, mask


class Scale(nn.Module):
    """A learnable scalar multiplier (one per pyramid level for the regression head)."""

    def __init__(self, init: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x -> scale * x, any shape."""
        return x * self.scale
