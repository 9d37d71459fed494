"""Fully convolutional networks for segmentation: FCN-32s, FCN-16s, FCN-8s.

As released in Caffe (Long, Shelhamer & Darrell 2015; the ``voc-fcn32s``, ``voc-fcn16s`` and
``voc-fcn8s`` nets of shelhamer/fcn.berkeleyvision.org): VGG-16 with ``conv1_1`` padded by
100, Caffe pools (2x2/2, the output size rounds up), ``fc6`` a 7x7 convolution, ``fc7`` and
``score_fr`` 1x1, score convs ``score_pool4`` / ``score_pool3`` (1x1) on ``pool4`` / ``pool3``,
deconvolutions (``Deconvolution``, no padding: ``upscore`` 64/32, ``upscore2`` and
``upscore_pool4`` 4/2, ``upscore16`` 32/16, ``upscore8`` 16/8) and Caffe ``Crop`` layers.

A Caffe ``Crop`` of ``A`` to ``B`` keeps ``A[offset : offset + size(B)]`` on each spatial
axis, with the offsets the released prototxts hold (computed there by Caffe's
``coord_map``; :mod:`rfmap.mapping.crop` recomputes them from the graph): ``score_pool4c``
5, ``score_pool3c`` 9, and ``score`` 19 (FCN-32s), 27 (FCN-16s), 31 (FCN-8s).  Its output
size is that of ``B``, so these graphs are built for one input size
(``zoo.get("fcn8s", (H, W))``); the default is the deploy prototxt's 500x500.  The
input is also called ``data`` (an alias), as in the prototxts.  ReLUs and dropouts
are left out.
"""

from __future__ import annotations

from rfmap.core.layers import ConvTranspose, Crop, Merge, conv
from rfmap.errors import at_layer
from rfmap.frontends.zoo._registry import SizedBuilder, register, with_outputs
from rfmap.frontends.zoo.classic import caffe_pool, vgg_trunk

#: the crop offsets of the released prototxts (crop_param { axis: 2 offset: N })
FCN_CROPS = {
    "fcn32s": {"score": 19},
    "fcn16s": {"score_pool4c": 5, "score": 27},
    "fcn8s": {"score_pool4c": 5, "score_pool3c": 9, "score": 31},
}


def caffe_crop(b: SizedBuilder, name: str, bottom: str, reference: str, offset: int) -> str:
    """Caffe's ``Crop`` of ``bottom`` to the spatial size of ``reference``, from ``offset``."""
    have, want = b.sizes[bottom], b.sizes[reference]
    for n, m in zip(have, want):
        if offset + m > n:
            raise at_layer(
                name,
                "crop",
                f"cropping '{bottom}' {list(have)} to the size of '{reference}' {list(want)} "
                f"at offset {offset} runs past its end",
            )
    return b.add(name, Crop(start=offset, stop=tuple(offset + m for m in want)), bottom)


def _fcn(stride: int):
    """FCN-``stride``s: 32, 16 or 8."""

    def build(name, size):
        crops = FCN_CROPS[name]
        b = SizedBuilder(name, size)
        vgg_trunk(b, 16, caffe_pool, first_pad=100)
        x = b.add("fc6", conv(7), "pool5")
        x = b.add("fc7", conv(1), x)
        x = b.add("score_fr", conv(1), x)
        if stride == 32:
            x = b.add("upscore", ConvTranspose(64, 32), x)
        else:
            x = b.add("upscore2", ConvTranspose(4, 2), x)
            y = b.add("score_pool4", conv(1), "pool4")
            y = caffe_crop(b, "score_pool4c", y, x, crops["score_pool4c"])
            x = b.add("fuse_pool4", Merge("add"), x, y)
            if stride == 16:
                x = b.add("upscore16", ConvTranspose(32, 16), x)
            else:
                x = b.add("upscore_pool4", ConvTranspose(4, 2), x)
                y = b.add("score_pool3", conv(1), "pool3")
                y = caffe_crop(b, "score_pool3c", y, x, crops["score_pool3c"])
                x = b.add("fuse_pool3", Merge("add"), x, y)
                x = b.add("upscore8", ConvTranspose(16, 8), x)
        caffe_crop(b, "score", x, b.input, crops["score"])
        return with_outputs(b.build(), ["score"], [("data", b.input)])

    return build


for _stride in (32, 16, 8):
    register(
        f"fcn{_stride}s",
        f"FCN-{_stride}s (Long et al. 2015), Caffe voc-fcn{_stride}s: VGG-16 padded by 100, deconvolutions, crops",
        500,
        _fcn(_stride),
        sized=True,
    )
del _stride
