"""Backbone patterns written as the libraries write them, in plain PyTorch (no timm): layouts
by ``view``/``reshape``/``permute``, windows folded into the batch, shifted windows with their
attention mask, hook-based feature extractors, pooled-and-resized gates, channel gates.

Written after the published architectures (Swin: Liu et al. 2021; TResNet: Ridnik et al.
2021; GhostNetV2: Tang et al. 2022; ECA-Net: Wang et al. 2020; CBAM: Woo et al. 2018;
GCNet: Cao et al. 2019), in the way timm's code arranges the tensors; the numbers come from
running them.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

# -- space-to-depth and channels-last ---------------------------------------------------------


class SpaceToDepthStem(nn.Module):
    """TResNet's stem: space-to-depth by 4 written with view/permute, then a 3x3 conv."""

    def __init__(self, block: int = 4, channels: int = 3):
        super().__init__()
        self.bs = block
        self.conv = nn.Conv2d(channels * block * block, 8, 3, padding=1)

    def forward(self, x):
        n, c, h, w = x.shape
        bs = self.bs
        x = x.view(n, c, h // bs, bs, w // bs, bs).permute(0, 3, 5, 1, 2, 4).contiguous()
        x = x.view(n, c * bs * bs, h // bs, w // bs)
        return self.conv(x)


class DepthToSpaceHead(nn.Module):
    """Depth-to-space by 2 written with view/permute (a pixel shuffle), after a conv."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.out = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        x = self.conv(x)
        n, c, h, w = x.shape
        x = x.view(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, c // 4, h * 2, w * 2)
        return self.out(x)


class PatchMerging(nn.Module):
    """Swin's patch merging: 2x2 neighbours into the channels (channels-last), layer norm and a
    linear layer over them."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x):
        b, h, w, c = x.shape
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        _, h, w, _ = x.shape
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.reduction(self.norm(x))


class ChannelsLastMerge(nn.Module):
    """ConvNeXt-style stem, channels-last blocks, then patch merging and a conv back."""

    def __init__(self, dim: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 4, stride=4)
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, dim)
        self.merge = PatchMerging(dim)
        self.head = nn.Conv2d(2 * dim, 4, 3, padding=1)

    def forward(self, x):
        x = self.stem(x).permute(0, 2, 3, 1)
        x = x + self.fc(self.norm(x))
        x = self.merge(x)
        return self.head(x.permute(0, 3, 1, 2))


# -- Swin ------------------------------------------------------------------------------------


def window_partition(x, ws: int):
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, ws, ws, c)


def window_reverse(windows, ws: int, h: int, w: int):
    c = windows.shape[-1]
    x = windows.view(-1, h // ws, w // ws, ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, h, w, c)


def relative_position_index(ws: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    return rel[:, :, 0] * (2 * ws - 1) + rel[:, :, 1]


def shifted_window_mask(h: int, w: int, ws: int, shift: int, fill: float = -100.0) -> torch.Tensor:
    """Swin's mask of the shifted windows: pairs from different regions get ``fill``."""
    img = torch.zeros(1, h, w, 1)
    cnt = 0
    for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
        for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            img[:, hs, wsl, :] = cnt
            cnt += 1
    mw = window_partition(img, ws).view(-1, ws * ws)
    mask = mw.unsqueeze(1) - mw.unsqueeze(2)
    return mask.masked_fill(mask != 0, fill).masked_fill(mask == 0, 0.0)


class WindowAttention(nn.Module):
    """Multi-head attention inside windows, with a relative position bias (timm's layout)."""

    def __init__(self, dim: int, ws: int, heads: int, fused: bool = False):
        super().__init__()
        self.heads, self.ws, self.fused = heads, ws, fused
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(ws), persistent=False)
        self.softmax = nn.Softmax(dim=-1)

    def _bias(self):
        n = self.ws * self.ws
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        return bias.permute(2, 0, 1).contiguous().unsqueeze(0)

    def forward(self, x, mask=None):
        b_, n, c = x.shape
        qkv = self.qkv(x).reshape(b_, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.fused:
            bias = self._bias()
            if mask is not None:
                nw = mask.shape[0]
                bias = bias + mask.view(1, nw, 1, n, n).expand(b_ // nw, -1, self.heads, -1, -1).reshape(-1, self.heads, n, n)
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            attn = attn + self._bias()
            if mask is not None:
                nw = mask.shape[0]
                attn = attn.view(-1, nw, self.heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
                attn = attn.view(-1, self.heads, n, n)
            x = self.softmax(attn) @ v
        return self.proj(x.transpose(1, 2).reshape(b_, n, -1))


class SwinBlock(nn.Module):
    """A Swin block on a channels-last map: (shifted) window attention and an MLP."""

    def __init__(self, dim: int, res: tuple[int, int], ws: int = 7, shift: int = 0, heads: int = 2, fused: bool = False,
                 fill: float = -100.0):
        super().__init__()
        self.ws, self.shift = ws, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, ws, heads, fused)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        h, w = res
        hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
        mask = shifted_window_mask(hp, wp, ws, shift, fill) if shift else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x):
        b, h, w, c = x.shape
        shortcut = x
        x = self.norm1(x)
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        pad_h, pad_w = (self.ws - h % self.ws) % self.ws, (self.ws - w % self.ws) % self.ws
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        _, hp, wp, _ = x.shape
        windows = window_partition(x, self.ws).view(-1, self.ws * self.ws, c)
        windows = self.attn(windows, mask=self.attn_mask)
        x = window_reverse(windows.view(-1, self.ws, self.ws, c), self.ws, hp, wp)[:, :h, :w, :].contiguous()
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        x = shortcut + x
        x = x.reshape(b, -1, c)
        x = x + self.mlp(self.norm2(x))
        return x.reshape(b, h, w, c)


class SwinStage(nn.Module):
    """Patch embedding (4x4, stride 4), then Swin blocks alternating regular and shifted
    windows, optionally followed by patch merging; returns a channels-first map."""

    def __init__(self, size: tuple[int, int], dim: int = 8, ws: int = 7, depth: int = 2, merge: bool = False,
                 fused: bool = False, fill: float = -100.0):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, 4, stride=4)
        self.norm = nn.LayerNorm(dim)
        res = (size[0] // 4, size[1] // 4)
        self.blocks = nn.Sequential(*[
            SwinBlock(dim, res, ws, shift=0 if i % 2 == 0 else ws // 2, fused=fused, fill=fill) for i in range(depth)
        ])
        self.merge = PatchMerging(dim) if merge else None

    def forward(self, x):
        x = self.norm(self.embed(x).permute(0, 2, 3, 1))
        x = self.blocks(x)
        if self.merge is not None:
            x = self.merge(x)
        return x.permute(0, 3, 1, 2)


class TokenAttention(nn.Module):
    """Multi-head self-attention over dim -2 of ``(batch, tokens, channels)``."""

    def __init__(self, dim: int, heads: int = 2):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class BlockGridStage(nn.Module):
    """MaxViT's pair of attentions: inside 4x4 blocks, then across a 4x4 grid of strided
    positions (the grid index folded into the tokens, the position inside into the batch)."""

    def __init__(self, dim: int = 8, p: int = 4):
        super().__init__()
        self.p = p
        self.embed = nn.Conv2d(3, dim, 2, stride=2)
        self.block = TokenAttention(dim)
        self.grid = TokenAttention(dim)

    def forward(self, x):
        x = self.embed(x).permute(0, 2, 3, 1)
        b, h, w, c = x.shape
        p = self.p
        blocks = window_partition(x, p).view(-1, p * p, c)
        x = x + window_reverse(self.block(blocks).view(-1, p, p, c), p, h, w)
        grid = x.view(b, p, h // p, p, w // p, c).permute(0, 2, 4, 1, 3, 5).reshape(-1, p * p, c)
        y = self.grid(grid).view(b, h // p, w // p, p, p, c).permute(0, 3, 1, 4, 2, 5).reshape(b, h, w, c)
        return (x + y).permute(0, 3, 1, 2)


class SeparableAttentionBlock(nn.Module):
    """MobileViT v2: the map unfolded into (pixels of a patch, patches), 1x1 convs, a
    softmax over the patches into one context vector per patch pixel, broadcast back
    (with ``k = 1`` each cell sees the strided grid of its pixel in every patch)."""

    def __init__(self, ch: int = 8, patch: int = 2, k: int = 1):
        super().__init__()
        self.patch, self.ch = patch, ch
        self.local = nn.Conv2d(3, ch, k, padding=k // 2)
        self.qkv = nn.Conv2d(ch, 1 + 2 * ch, 1)
        self.out = nn.Conv2d(ch, ch, 1)
        self.head = nn.Conv2d(ch, 4, k, padding=k // 2)

    def forward(self, x):
        x = self.local(x)
        b, c, h, w = x.shape
        p = self.patch
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4).reshape(b, c, p * p, -1)
        q, k, v = self.qkv(x).split([1, c, c], dim=1)
        context = (k * F.softmax(q, dim=-1)).sum(dim=-1, keepdim=True)
        x = self.out(F.relu(v) * context.expand_as(v))
        x = x.reshape(b, c, p, p, h // p, w // p).permute(0, 1, 4, 2, 5, 3).reshape(b, c, h, w)
        return self.head(x)


# -- hook-based feature extractors -------------------------------------------------------------


class _Hooks:
    """Stores the outputs of hooked modules by device, as timm's FeatureHooks does."""

    def __init__(self, model: nn.Module, names):
        self.names = list(names)
        self.out: dict = {}
        modules = dict(model.named_modules())
        for name in self.names:
            modules[name].register_forward_hook(partial(self._hook, name))

    def _hook(self, name, module, args, output):
        self.out.setdefault(output.device, OrderedDict())[name] = output

    def get(self, device):
        out = self.out.get(device, OrderedDict())
        self.out[device] = OrderedDict()
        return OrderedDict((k, out[k]) for k in self.names if k in out)


class HookFeatures(nn.Module):
    """A body run for its side effects; features come from forward hooks (FeatureHookNet)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(4, 4, 3, stride=2, padding=1),
        )
        self.hooks = _Hooks(self, ["body.1", "body.4"])

    def forward(self, x):
        x = self.body(x)
        return list(self.hooks.get(x.device).values())


# -- pooled and resized gates; channel gates --------------------------------------------------


class DFCStack(nn.Module):
    """GhostNetV2's DFC gate, ``blocks`` times: pool by 2, convolve, resize back to the map's
    (odd) size with nearest, multiply into the main path."""

    def __init__(self, blocks: int = 10, ch: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(3, ch, 3, padding=1)
        self.main = nn.ModuleList(nn.Conv2d(ch, ch, 3, padding=1) for _ in range(blocks))
        self.gate = nn.ModuleList(nn.Conv2d(ch, ch, (1, 5), padding=(0, 2)) for _ in range(blocks))

    def forward(self, x):
        x = self.stem(x)
        for main, gate in zip(self.main, self.gate):
            g = torch.sigmoid(gate(F.avg_pool2d(x, 2)))
            x = main(x) * F.interpolate(g, size=x.shape[-2:], mode="nearest")
        return x


class _Gated(nn.Module):
    """``hold_gates = True`` detaches what globally pooled features compute (the gate held
    constant): the ground truth of ``exclude_global``."""

    hold_gates = False

    def held(self, g):
        return g.detach() if self.hold_gates else g


class ECABlock(_Gated):
    """ECA: a 1-D conv across the globally pooled channels gates the block's conv path."""

    def __init__(self, ch: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)
        self.eca = nn.Conv1d(1, 1, 3, padding=1, bias=False)

    def gate(self, x):
        n, c = x.shape[:2]
        return self.held(torch.sigmoid(self.eca(x.mean((2, 3)).view(n, 1, c))).view(n, c, 1, 1))

    def forward(self, x):
        y = self.conv(x)
        return x + y * self.gate(y)


class ECANet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.Sequential(ECABlock(), ECABlock())

    def forward(self, x):
        return self.blocks(self.stem(x))


class CBAMBlock(_Gated):
    """CBAM: a channel gate from avg- and max-pooled features through a shared MLP, then a
    spatial gate from a 7x7 conv over channel statistics."""

    def __init__(self, ch: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)
        self.mlp = nn.Sequential(nn.Linear(ch, 4), nn.ReLU(), nn.Linear(4, ch))
        self.spatial = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x):
        y = self.conv(x)
        gate = self.held(torch.sigmoid(self.mlp(y.mean((2, 3))) + self.mlp(y.amax((2, 3)))))
        y = y * gate[:, :, None, None]
        s = torch.cat([y.mean(1, keepdim=True), y.amax(1, keepdim=True)], 1)
        return x + y * torch.sigmoid(self.spatial(s))


class GCBlock(_Gated):
    """GCNet: attention pooling (softmax over positions) into a context vector, transformed
    and added to every position."""

    def __init__(self, ch: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)
        self.key = nn.Conv2d(ch, 1, 1)
        self.transform = nn.Sequential(nn.Conv2d(ch, 4, 1), nn.ReLU(), nn.Conv2d(4, ch, 1))

    def forward(self, x):
        y = self.conv(x)
        n, c, h, w = y.shape
        weights = torch.softmax(self.key(y).view(n, 1, h * w), dim=-1)
        context = torch.bmm(y.view(n, c, h * w), weights.transpose(1, 2)).view(n, c, 1, 1)
        return x + y + self.held(self.transform(context))


class GateNet(nn.Module):
    """A stem and one block (ECA, CBAM or GC) and a conv: ``gate`` names the block."""

    def __init__(self, gate: str):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = {"eca": ECABlock, "cbam": CBAMBlock, "gc": GCBlock}[gate]()
        self.head = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        return self.head(self.block(self.stem(x)))


class MergeOutput(nn.Module):
    """Channels-last stem and patch merging as the model's output (B, H/8, W/8, 2C)."""

    def __init__(self, dim: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 4, stride=4)
        self.merge = PatchMerging(dim)

    def forward(self, x):
        return self.merge.norm(self._merged(x))

    def _merged(self, x):
        x = self.stem(x).permute(0, 2, 3, 1)
        b, h, w, c = x.shape
        return x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).flatten(3)
