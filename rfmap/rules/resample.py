"""Resampling: interpolation (``F.interpolate``, ``nn.Upsample``, ONNX ``Resize``), pixel
shuffle and unshuffle (ONNX ``DepthToSpace``/``SpaceToDepth``).

Layers: :class:`~rfmap.core.layers.Upsample`, :class:`~rfmap.core.layers.PixelShuffle`,
:class:`~rfmap.core.layers.PixelUnshuffle`, :class:`~rfmap.core.layers.AdaptivePool` (area).
"""

from __future__ import annotations

from rfmap.core.layers import AdaptivePool, PixelShuffle, PixelUnshuffle, Upsample
from rfmap.core.registry import OpDef
from rfmap.errors import RFMapError
from rfmap.rules.call import Call, LayoutError, as_ints
from rfmap.rules.common import REALIZE, nd, onnx_rules, torch_rules
from rfmap.rules.erf_moments import window_moments
from rfmap.rules.onnx_attrs import attr_int, attr_str, const

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

COORDINATE_MODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn",
                    "tf_crop_and_resize", "half_pixel_symmetric")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _blocksize(call: Call) -> int:
    r = attr_int(call, "blocksize")
    if r is None or r < 1:
        raise RFMapError(f"attribute blocksize must be a positive int, got {r!r}")
    attr_str(call, "mode", "DCR", ("DCR", "CRD"))
    return r


def onnx_resize(call: Call):
    """ONNX ``Resize``/``Upsample`` with the ``coordinate_transformation_mode`` and
    ``nearest_mode`` that PyTorch's interpolation shares; the other combinations raise."""
    call.standard()
    resize = call.target == "Resize"
    mode = attr_str(call, "mode", "nearest", ("nearest", "linear", "cubic", "bilinear", "trilinear"))
    ctm = attr_str(call, "coordinate_transformation_mode", "half_pixel" if resize else "asymmetric", COORDINATE_MODES)
    nearest = attr_str(call, "nearest_mode", "round_prefer_floor", NEAREST_MODES)
    if attr_int(call, "antialias", 0):
        raise LayoutError("antialiased resizing has a wider kernel than rfmap models")
    if mode == "nearest":
        if (ctm, nearest) == ("asymmetric", "floor"):
            rf_mode = "nearest"
        elif (ctm, nearest) in (("half_pixel", "round_prefer_ceil"), ("pytorch_half_pixel", "round_prefer_ceil"),
                                ("tf_half_pixel_for_nn", "floor")):
            rf_mode = "nearest-exact"
        else:
            raise RFMapError(f"nearest resizing with coordinate_transformation_mode {ctm} and nearest_mode {nearest} "
                             "is not supported (PyTorch's nearest modes are asymmetric/floor and half_pixel/round_prefer_ceil)")
        align = False
    else:
        if ctm not in ("half_pixel", "pytorch_half_pixel", "align_corners"):
            raise RFMapError(f"{mode} resizing with coordinate_transformation_mode {ctm} is not supported")
        rf_mode, align = mode, ctm == "align_corners"
    ndim = call.rank
    if resize:
        scales, sizes = const(call, 2), const(call, 3)
    else:
        scales, sizes = const(call, 1), None
        if scales is None and call.kwargs.get("scales") is not None:
            scales = call.kwargs["scales"]
    if sizes is not None and len(sizes):
        values = [int(v) for v in list(sizes)]
        if len(values) != ndim + 2:
            raise RFMapError(f"sizes has {len(values)} entries for a rank-{ndim + 2} tensor")
        return Upsample(size=tuple(values[2:]), mode=rf_mode, align_corners=align)
    if scales is None or not len(scales):
        raise RFMapError("Resize without constant scales or sizes")
    values = [float(v) for v in list(scales)]
    if len(values) != ndim + 2 or values[0] != 1 or values[1] != 1:
        raise RFMapError(f"scales {values} must have {ndim + 2} entries and scale neither batch nor channels")
    return Upsample(scale_factor=tuple(values[2:]), mode=rf_mode, align_corners=align)


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

