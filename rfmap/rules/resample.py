"""Resampling: interpolation (``F.interpolate``, ``nn.Upsample``, ONNX ``Resize``), pixel
shuffle and unshuffle (ONNX ``DepthToSpace``/``SpaceToDepth``).

Layers: :class:`~rfmap.core.layers.Upsample`, :class:`~rfmap.core.resize.Resize`, :class:`~rfmap.core.layers.PixelShuffle`,
:class:`~rfmap.core.layers.PixelUnshuffle`, :class:`~rfmap.core.layers.AdaptivePool` (area).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rfmap.core.layers import AdaptivePool, PixelShuffle, PixelUnshuffle, Upsample
from rfmap.core.registry import OpDef
from rfmap.core.resize import ASPECT_POLICIES, COORDINATE_MODES, NEAREST_MODES, RESIZE_MODES, Resize
from rfmap.errors import RFMapError
from rfmap.rules.call import Call, LayoutError, as_ints
from rfmap.rules.common import REALIZE, onnx_rules, torch_rules
from rfmap.rules.erf_moments import window_moments
from rfmap.rules.onnx_attrs import attr_flag, attr_float, attr_int, attr_ints, attr_str, check_axes, const

# -- PyTorch ------------------------------------------------------------------------------


def interpolate(call: Call, size, scale, mode, align_corners, recompute=None, antialias=False):
    call.standard()
    n = call.rank
    ins = call.sizes()
    outs = call.out_sizes(call.standard_dims(call.out.dim()))
    mode = str(mode)
    if mode == "area":
        return AdaptivePool(outs, op="area")
    if antialias and mode in ("bilinear", "bicubic", "linear", "trilinear") and any(o < i for o, i in zip(outs, ins)):
        raise LayoutError("antialiased downsampling has a wider kernel than rfmap models")
    align = bool(align_corners) if mode not in ("nearest", "nearest-exact") else False
    if scale is not None and not recompute:
        scales = as_ints(scale, n) if isinstance(scale, (list, tuple)) else (scale,) * n
        if any(s is None for s in scales):
            return Upsample(size=outs, mode=mode, align_corners=align)
        return Upsample(scale_factor=tuple(float(s) for s in scales), mode=mode, align_corners=align)
    return Upsample(size=outs, mode=mode, align_corners=align)


def interpolate_fn(call: Call):
    # F.interpolate(input, size, scale_factor, mode='nearest', align_corners, recompute_scale_factor, antialias)
    return interpolate(
        call, call.arg(1, "size"), call.arg(2, "scale_factor"), call.arg(3, "mode", "nearest"), call.arg(4, "align_corners"),
        call.arg(5, "recompute_scale_factor"), call.arg(6, "antialias", False),
    )


def upsample_fn(call: Call):
    # F.upsample(input, size, scale_factor, mode, align_corners); upsample_nearest(input, size, scale_factor)
    return interpolate(call, call.arg(1, "size"), call.arg(2, "scale_factor"), call.arg(3, "mode", "nearest"),
                       call.arg(4, "align_corners"))


def upsample_bilinear_fn(call: Call):
    return interpolate(call, call.arg(1, "size"), call.arg(2, "scale_factor"), "bilinear", True)


def upsample_module(call: Call):
    m = call.module
    return interpolate(call, m.size, m.scale_factor, m.mode, m.align_corners, getattr(m, "recompute_scale_factor", None))


def aten_upsample(mode: str, has_align: bool):
    def rule(call: Call):
        # aten.upsample_*.vec(input, output_size, [align_corners,] scale_factors)
        scales = call.arg(3 if has_align else 2, "scale_factors")
        align = call.arg(2, "align_corners", False) if has_align else False
        out_size = call.arg(1, "output_size")
        return interpolate(call, out_size, None if out_size is not None else scales, mode, align)

    return rule


def pixel_shuffle(call: Call):
    call.standard()
    if call.kind == "onnx":
        return PixelShuffle(_blocksize(call))
    r = call.module.upscale_factor if call.module is not None else call.arg(1, "upscale_factor")
    return PixelShuffle(int(r))


def pixel_unshuffle(call: Call):
    call.standard()
    if call.kind == "onnx":
        return PixelUnshuffle(_blocksize(call))
    r = call.module.downscale_factor if call.module is not None else call.arg(1, "downscale_factor")
    return PixelUnshuffle(int(r))


# -- ONNX ---------------------------------------------------------------------------------


def _blocksize(call: Call) -> int:
    r = attr_int(call, "blocksize")
    if r is None or r < 1:
        raise RFMapError(f"attribute blocksize must be a positive int, got {r!r}")
    attr_str(call, "mode", "DCR", ("DCR", "CRD"))
    return r


def _resize_input(call: Call, index: int, what: str):
    """A constant input of Resize (``None`` when absent or empty); computed at run time raises."""
    if index >= len(call.args) or call.args[index] is None:
        return None
    value = const(call, index)
    if value is None:
        raise LayoutError(f"Resize with {what} computed at run time")
    value = np.asarray(value).ravel()
    return value if value.size else None


def _resize_attrs(call: Call) -> dict:
    """The node's attributes, checked against the values onnxruntime knows (Resize-10 and
    Upsample: asymmetric coordinates and their own nearest rounding, ``simple``)."""
    legacy = call.target != "Resize" or (call.opset is not None and call.opset < 11)
    mode = attr_str(call, "mode", "nearest", RESIZE_MODES)
    if legacy:
        ctm, nearest = "asymmetric", "simple"
    else:
        ctm = attr_str(call, "coordinate_transformation_mode", "half_pixel", COORDINATE_MODES + ("tf_crop_and_resize",))
        if ctm == "tf_crop_and_resize":
            raise RFMapError("coordinate_transformation_mode tf_crop_and_resize (a crop given by the roi input, "
                             "extrapolated outside it) is not supported")
        nearest = attr_str(call, "nearest_mode", "round_prefer_floor", NEAREST_MODES[:4])
    exclude = attr_flag(call, "exclude_outside")
    if exclude and mode != "cubic":
        raise RFMapError(f"attribute exclude_outside=1 applies to cubic mode only, not {mode}")
    if attr_flag(call, "antialias"):
        if mode == "nearest":
            raise RFMapError("attribute antialias=1 applies to linear and cubic modes only")
        raise LayoutError("antialiased resizing has a wider kernel than rfmap models")
    return dict(mode=mode, coordinate_transformation_mode=ctm, nearest_mode=nearest,
                cubic_coeff_a=attr_float(call, "cubic_coeff_a", -0.75), exclude_outside=exclude,
                keep_aspect_ratio_policy=attr_str(call, "keep_aspect_ratio_policy", "stretch", ASPECT_POLICIES))


def _per_dim(call: Call, values, axes, what: str) -> dict[int, Any]:
    rank = call.ndim
    if axes is None:
        if len(values) != rank:
            raise RFMapError(f"{what} has {len(values)} entries for a rank-{rank} tensor")
        return dict(enumerate(values))
    if len(values) != len(axes):
        raise RFMapError(f"{what} has {len(values)} entries for {len(axes)} axes")
    return dict(zip(axes, values))


def onnx_resize(call: Call):
    """ONNX ``Resize`` (opsets 10 to 19+) and ``Upsample``, as onnxruntime computes them:
    every ``coordinate_transformation_mode`` but ``tf_crop_and_resize``, every
    ``nearest_mode``, modes nearest/linear/cubic (``cubic_coeff_a``, ``exclude_outside``),
    ``scales`` or ``sizes`` (with ``axes`` and ``keep_aspect_ratio_policy``), on whichever
    dims hold the spatial axes (NCHW or NHWC).  Unknown attribute values raise."""
    attrs = _resize_attrs(call)
    rank, b = call.ndim, call.bind
    axes = attr_ints(call, "axes")
    if axes is not None and attrs["keep_aspect_ratio_policy"] != "stretch" and min(axes) < 0:
        raise RFMapError("keep_aspect_ratio_policy with negative axes: onnxruntime then resizes no dim at all; "
                         "write the axes as non-negative dims")
    if axes is not None:
        axes = check_axes(call, axes, "attribute axes")
    if call.target != "Resize":
        scales = _resize_input(call, 1, "scales")
        if scales is None and call.kwargs.get("scales") is not None:
            scales = np.asarray(call.kwargs["scales"], dtype=np.float32).ravel()
        sizes = None
    else:
        old = call.opset is not None and call.opset < 11
        scales = _resize_input(call, 1 if old else 2, "scales")
        sizes = None if old else _resize_input(call, 3, "sizes")
    if (scales is None) == (sizes is None):
        raise RFMapError("Resize needs exactly one of scales and sizes")
    shape = [int(v) for v in call.x.shape]
    if any(sum(1 for d in b.dims if d == e) > 1 for e in range(rank)):
        raise LayoutError("it resizes a dim that holds several spatial axes")
    spatial = {d: a for a, d in enumerate(b.dims) if d is not None}
    f32 = np.float32
    if sizes is not None:
        wanted = _per_dim(call, [int(v) for v in sizes], axes, "sizes")
        if any(v < 1 for v in wanted.values()):
            raise RFMapError(f"sizes {list(sizes)} must be positive")
        ratios = {d: float(f32(v) / f32(shape[d])) for d, v in wanted.items()}
        other = tuple(r for d, r in ratios.items() if d not in spatial)
        policy = attrs["keep_aspect_ratio_policy"]
        if policy != "stretch":
            p = (min if policy == "not_larger" else max)(ratios.values())
            moved = any(int(np.floor(float(f32(p) * f32(shape[d])) + 0.5)) != shape[d] for d in wanted if d not in spatial)
        else:
            moved = any(v != shape[d] for d, v in wanted.items() if d not in spatial)
        per_axis_sizes = tuple(wanted.get(d) if d is not None else None for d in b.dims)
        return Resize(sizes=per_axis_sizes, policy_ratios=other if policy != "stretch" else (),
                      copy_unchanged=not moved, **attrs)
    values = [float(v) for v in scales]
    if any(not v > 0 for v in values):
        raise RFMapError(f"scales {values} must be positive")
    given = _per_dim(call, values, axes, "scales")
    moved = any(int(f32(v) * f32(shape[d])) != shape[d] for d, v in given.items() if d not in spatial)
    per_axis_scales = tuple(given.get(d, 1.0) if d is not None else 1.0 for d in b.dims)
    return Resize(scales=per_axis_scales, copy_unchanged=not moved, **attrs)


OPS = [
    OpDef(
        "upsample", Upsample, aliases=("interpolate", "resize"), layer=Upsample,
        torch=torch_rules(["nn.Upsample", "nn.UpsamplingNearest2d", "nn.UpsamplingBilinear2d"], upsample_module)
        + torch_rules(["F.interpolate"], interpolate_fn)
        + torch_rules(["F.upsample", "F.upsample_nearest"], upsample_fn)
        + torch_rules(["F.upsample_bilinear"], upsample_bilinear_fn)
        + torch_rules(["aten.upsample_nearest1d", "aten.upsample_nearest2d", "aten.upsample_nearest3d"],
                      aten_upsample("nearest", False))
        + torch_rules(["aten._upsample_nearest_exact1d", "aten._upsample_nearest_exact2d", "aten._upsample_nearest_exact3d"],
                      aten_upsample("nearest-exact", False))
        + torch_rules(["aten.upsample_linear1d", "aten.upsample_bilinear2d", "aten.upsample_trilinear3d"],
                      aten_upsample("bilinear", True))
        + torch_rules(["aten.upsample_bicubic2d"], aten_upsample("bicubic", True)),
        onnx=onnx_rules(["Resize", "Upsample"], onnx_resize),
        realize=f"{REALIZE}:upsample",
        description="interpolation: scale_factor or size, mode (nearest, nearest-exact, linear, cubic), align_corners",
    ),
    OpDef(
        "onnx_resize", Resize, layer=Resize, realize=f"{REALIZE}:resize",
        description="ONNX Resize as onnxruntime computes it: scales or sizes, mode, coordinate_transformation_mode, "
        "nearest_mode, cubic_coeff_a, exclude_outside, keep_aspect_ratio_policy",
    ),
    OpDef(
        "pixel_shuffle", PixelShuffle, layer=PixelShuffle,
        torch=torch_rules(["nn.PixelShuffle", "F.pixel_shuffle", "torch.pixel_shuffle", "aten.pixel_shuffle"], pixel_shuffle),
        onnx=onnx_rules(["DepthToSpace"], pixel_shuffle),
        realize=f"{REALIZE}:pixel_shuffle",
        description="depth to space by factor",
    ),
    OpDef(
        "pixel_unshuffle", PixelUnshuffle, layer=PixelUnshuffle,
        torch=torch_rules(["nn.PixelUnshuffle", "F.pixel_unshuffle", "torch.pixel_unshuffle", "aten.pixel_unshuffle"],
                          pixel_unshuffle),
        onnx=onnx_rules(["SpaceToDepth"], pixel_unshuffle),
        realize=f"{REALIZE}:pixel_unshuffle", erf=window_moments,
        description="space to depth by factor",
    ),
]

