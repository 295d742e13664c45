"""The 3D U-Net of Ferrante et al. (2025), built from small named blocks.

Layout (default 96³ input, 32 channels at every level, ~0.49 M parameters)::

    x (B,1,96,96,96) ─ projection 3³ conv ─ (B,32,96³) ─────────────────────────── skip ─┐
      level 0: Residual ─────────────────────────────────────────────────────── skip ─┐  │
      Downsample (stride-2 3³ conv) → 48³ ───────────────────────────────────── skip  │  │
      level 1: Residual → skip; Downsample → 24³ → skip                               │  │
      level 2: Residual → skip; Downsample → 12³ → skip                               │  │
      level 3: Residual + Attention → skip                                            │  │
      middle:  Residual(full conv) → Attention → Residual(full conv)    (B,32,12³)    │  │
      level 3: 2 × [cat skip → Residual + Attention]; Upsample (transposed 4³) → 24³  │  │
      level 2: 2 × [cat skip → Residual]; Upsample → 48³                              │  │
      level 1: 2 × [cat skip → Residual]; Upsample → 96³                              │  │
      level 0: 2 × [cat skip → Residual]  ←────────────────────────────────────────────┴──┘
      GroupNorm(8) → Swish → 3³ conv → sigmoid → (B,1,96,96,96) in (0, 1)

Residual blocks use depthwise-separable convolutions (depthwise 3³ + pointwise 1³) with
GroupNorm(4) and Swish; the bottleneck uses full convolutions (as the authors' notebooks).

>>> net = TSPOUNet()
>>> 470_000 < count_parameters(net) < 530_000
True
>>> net(torch.zeros(1, 1, 32, 32, 32)).shape
torch.Size([1, 1, 32, 32, 32])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .depthwise import DepthwiseConv3d

PRIOR_EPS = 1e-4  # a prior is clamped to [eps, 1 - eps] before its logit


@dataclass(frozen=True)
class UNetConfig:
    """Architecture hyper-parameters (recorded in model.json)."""

    in_channels: int = 1
    out_channels: int = 1
    channels: int = 32
    multipliers: tuple[int, ...] = (1, 1, 1, 1)
    attention: tuple[bool, ...] = (False, False, False, True)
    n_blocks: int = 1
    separable: bool = True
    use_attention: bool = True
    heads: int = 1
    groups: int = 4
    out_groups: int = 8
    # --learn-deviation: the last input channel is a prior (the fold's population map, in
    # (0, 1)) added to the output in logit space; the network learns the deviation from it
    prior: bool = False

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "UNetConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class SeparableConv3d(nn.Module):
    """Depthwise 3³ conv per channel, then pointwise 1³ mixing: (B,Cin,D,H,W) -> (B,Cout,D,H,W)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = DepthwiseConv3d(cin)
        self.pointwise = nn.Conv3d(cin, cout, 1)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


def _conv(cin: int, cout: int, separable: bool) -> nn.Module:
    return SeparableConv3d(cin, cout) if separable else nn.Conv3d(cin, cout, 3, padding=1)


class ResidualBlock(nn.Module):
    """GN → Swish → conv → GN → Swish → conv + (1³ conv) shortcut: (B,Cin,..) -> (B,Cout,..)."""

    def __init__(self, cin: int, cout: int, groups: int = 4, separable: bool = True):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = _conv(cin, cout, separable)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = _conv(cout, cout, separable)
        self.shortcut = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.shortcut(x)


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all voxels, residual: (B,C,D,H,W) -> (B,C,D,H,W)."""

    def __init__(self, channels: int, heads: int = 1, groups: int = 4):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)

    def forward(self, x):
        b, c = x.shape[:2]
        tokens = self.norm(x).flatten(2).transpose(1, 2)                  # (B, N, C)
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        split = lambda t: t.view(b, -1, self.heads, c // self.heads).transpose(1, 2)  # noqa: E731
        h = F.scaled_dot_product_attention(split(q), split(k), split(v))  # (B, heads, N, C/h)
        h = self.out(h.transpose(1, 2).reshape(b, -1, c))
        return x + h.transpose(1, 2).reshape_as(x)


class Downsample(nn.Module):
    """Stride-2 3³ conv: (B,C,D,H,W) -> (B,C,D/2,H/2,W/2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    """Stride-2 transposed 4³ conv: (B,C,D,H,W) -> (B,C,2D,2H,2W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.ConvTranspose3d(channels, channels, 4, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Stage(nn.Module):
    """Residual block followed by optional attention (the paper's Down/UpBlock)."""

    def __init__(self, cin: int, cout: int, attention: bool, cfg: UNetConfig):
        super().__init__()
        self.res = ResidualBlock(cin, cout, cfg.groups, cfg.separable)
        self.attn = AttentionBlock(cout, cfg.heads, cfg.groups) if attention else nn.Identity()

    def forward(self, x):
        return self.attn(self.res(x))


class MiddleBlock(nn.Module):
    """Bottleneck: Residual (full conv) → Attention → Residual (full conv)."""

    def __init__(self, channels: int, cfg: UNetConfig):
        super().__init__()
        self.res1 = ResidualBlock(channels, channels, cfg.groups, separable=False)
        self.attn = (AttentionBlock(channels, cfg.heads, cfg.groups) if cfg.use_attention
                     else nn.Identity())
        self.res2 = ResidualBlock(channels, channels, cfg.groups, separable=False)

    def forward(self, x):
        return self.res2(self.attn(self.res1(x)))


class EncoderLevel(nn.Module):
    """One resolution on the way down: ``n_blocks`` stages, then (above the bottleneck) a
    stride-2 downsampling. Returns the features and the skips it leaves for the decoder."""

    def __init__(self, cin: int, cout: int, attention: bool, cfg: UNetConfig, down: bool):
        super().__init__()
        self.blocks = nn.ModuleList(Stage(cin if i == 0 else cout, cout, attention, cfg)
                                    for i in range(cfg.n_blocks))
        self.down = Downsample(cout) if down else None

    def forward(self, h):
        skips = []
        for block in self.blocks:
            h = block(h)
            skips.append(h)
        if self.down is not None:
            h = self.down(h)
            skips.append(h)
        return h, skips


class DecoderLevel(nn.Module):
    """One resolution on the way up: ``n_blocks + 1`` stages, each on the features
    concatenated with the matching skip, then (below the top) a 2x upsampling."""

    def __init__(self, cin: int, skips: list[int], cout: int, attention: bool, cfg: UNetConfig,
                 up: bool):
        super().__init__()
        widths = [cin] + [cout] * (len(skips) - 1)
        self.blocks = nn.ModuleList(Stage(w + s, cout, attention, cfg)
                                    for w, s in zip(widths, skips))
        self.up = Upsample(cout) if up else None

    def forward(self, h, skips: list):
        for block in self.blocks:
            h = block(torch.cat([h, skips.pop()], dim=1))
        return self.up(h) if self.up is not None else h


class TSPOUNet(nn.Module):
    """T1w (B,1,S,S,S) in [0,1] -> synthetic PET (B,1,S,S,S) in (0,1); S divisible by 8.

    Weights saved by bids_tspo 0.1.0 before the levels were named (flat ``down.<i>`` /
    ``up.<i>`` keys) load unchanged (:func:`level_keys`)."""

    def __init__(self, cfg: UNetConfig | None = None, **overrides):
        super().__init__()
        cfg = cfg or UNetConfig()
        if overrides:
            cfg = UNetConfig(**{**cfg.to_dict(), **overrides})
            cfg = UNetConfig.from_dict(cfg.to_dict())
        self.cfg = cfg
        levels = len(cfg.multipliers)
        attn = [a and cfg.use_attention for a in cfg.attention]
        width = [cfg.channels * m for m in cfg.multipliers]
        self.projection = nn.Conv3d(cfg.in_channels, cfg.channels, 3, padding=1)
        encoder, ch, skips = [], cfg.channels, [cfg.channels]
        for i in range(levels):
            encoder.append(EncoderLevel(ch, width[i], attn[i], cfg, down=i < levels - 1))
            ch = width[i]
            skips += [ch] * (cfg.n_blocks + (i < levels - 1))
        self.encoder = nn.ModuleList(encoder)
        self.middle = MiddleBlock(ch, cfg)
        decoder = []
        for i in reversed(range(levels)):
            taken = [skips.pop() for _ in range(cfg.n_blocks + 1)]
            decoder.append(DecoderLevel(ch, taken, width[i], attn[i], cfg, up=i > 0))
            ch = width[i]
        self.decoder = nn.ModuleList(decoder)
        self.norm = nn.GroupNorm(cfg.out_groups, ch)
        self.final = nn.Conv3d(ch, cfg.out_channels, 3, padding=1)
        if cfg.prior:  # start exactly at the prior: no deviation learnt yet
            nn.init.zeros_(self.final.weight)
            nn.init.zeros_(self.final.bias)
        self._register_load_state_dict_pre_hook(self._named_levels)

    def forward(self, x):
        h = self.projection(x)                      # (B, C, S³)
        skips = [h]
        for level in self.encoder:                  # S³ -> S/2³ -> S/4³ -> S/8³
            h, level_skips = level(h)
            skips += level_skips
        h = self.middle(h)                          # bottleneck at S/8³
        for level in self.decoder:                  # S/8³ -> ... -> S³, consuming the skips
            h = level(h, skips)
        out = self.final(F.silu(self.norm(h)))
        if self.cfg.prior:
            out = out + torch.logit(x[:, -1:].float().clamp(PRIOR_EPS, 1 - PRIOR_EPS))
        return torch.sigmoid(out)

    def _named_levels(self, state, prefix, *args):
        """Rename flat ``down.<i>``/``up.<i>`` keys of older weights in place."""
        old = [k for k in state if k.startswith((prefix + "down.", prefix + "up."))]
        if old:
            mapping = level_keys(self.cfg)
            for key in old:
                side, index, rest = key[len(prefix):].split(".", 2)
                state[prefix + mapping[f"{side}.{index}"] + "." + rest] = state.pop(key)


def level_keys(cfg: UNetConfig) -> dict[str, str]:
    """Flat module names of the original layout -> named levels.

    >>> keys = level_keys(UNetConfig())
    >>> keys["down.1"], keys["down.6"], keys["up.2"], keys["up.3"]
    ('encoder.0.down', 'encoder.3.blocks.0', 'decoder.0.up', 'decoder.1.blocks.0')
    """
    levels, mapping = len(cfg.multipliers), {}
    down = up = 0
    for i in range(levels):
        for b in range(cfg.n_blocks):
            mapping[f"down.{down}"], down = f"encoder.{i}.blocks.{b}", down + 1
        if i < levels - 1:
            mapping[f"down.{down}"], down = f"encoder.{i}.down", down + 1
    for j, i in enumerate(reversed(range(levels))):
        for b in range(cfg.n_blocks + 1):
            mapping[f"up.{up}"], up = f"decoder.{j}.blocks.{b}", up + 1
        if i > 0:
            mapping[f"up.{up}"], up = f"decoder.{j}.up", up + 1
    return mapping
