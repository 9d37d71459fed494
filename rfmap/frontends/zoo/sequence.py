"""1-D dilated causal stacks for sequences: WaveNet and keras-tcn.

One spatial axis (``L``, time steps in the pixel-index convention: step ``t`` is the point
``t``).  A causal convolution of kernel ``k`` and dilation ``d`` pads ``(k - 1) * d`` steps on
the left only, so output step ``t`` sees steps ``t - (k - 1) * d .. t``: a stack of them has
receptive field ``1 + sum((k - 1) * d)`` and every RF ends at its own step.

* :func:`wavenet` (van den Oord et al. 2016): residual layers of a dilated causal conv pair
  (``layers.i.filter`` and ``layers.i.gate``, kernel 2, multiplied in ``layers.i.gated``),
  a 1x1 ``layers.i.residual`` added to the layer input (``layers.i``) and a 1x1
  ``layers.i.skip``; the skips are summed (``skips``) and followed by two 1x1 convs
  (``out_conv1``, ``out_conv2``; ReLUs and the softmax are left out).  Dilations
  1, 2, ..., 512 make a block of receptive field 1024; the paper repeats the block.  The
  paper's initial causal conv is optional (``initial_kernel``; its width is not stated).
* :func:`keras_tcn` (philipperemy/keras-tcn, ``TCN`` layer; Bai et al. 2018): residual
  blocks ``residual_block_j`` of two dilated causal convs (``.conv1D_0``, ``.conv1D_1``), a
  1x1 ``.matching_conv1D`` on the first block's shortcut (input channels differ from
  ``nb_filters``) and the add; with ``use_skip_connections`` the blocks' conv outputs are
  summed (``Add_Skip_Connections``), and without ``return_sequences`` the last step is
  kept (``Slice_Output``).  Receptive field ``1 + 2 * (k - 1) * nb_stacks * sum(d)``.

The zoo holds one default instance of each (``wavenet``: one block, 16000 steps; ``tcn``:
keras-tcn's defaults, 1000 steps); call the builders for others.
"""

from __future__ import annotations

from collections.abc import Sequence

from rfmap.core.graph import Graph, GraphBuilder
from rfmap.core.layers import Conv, Crop, Merge, Pointwise, conv
from rfmap.errors import RFMapError
from rfmap.frontends.zoo._registry import register, with_outputs

WAVENET_DILATIONS = tuple(2**i for i in range(10))  # 1, 2, ..., 512
TCN_DILATIONS = (1, 2, 4, 8, 16, 32)  # keras-tcn's default


def causal_conv(kernel: int, dilation: int = 1) -> Conv:
    """A 1-D causal convolution: ``(kernel - 1) * dilation`` steps of padding on the left."""
    return conv(kernel, 1, [((kernel - 1) * dilation, 0)], dilation=dilation)


def _check(kernel: int, dilations: Sequence[int], repeats: int, what: str) -> tuple[int, ...]:
    dilations = tuple(int(d) for d in dilations)
    if kernel < 1 or repeats < 1 or not dilations or min(dilations) < 1:
        raise RFMapError(f"{what}: kernel, repeats and dilations must be positive, got {kernel}, {repeats}, {dilations}")
    return dilations


def wavenet(
    name: str = "wavenet",
    input_size: int = 16000,
    *,
    dilations: Sequence[int] = WAVENET_DILATIONS,
    blocks: int = 1,
    kernel: int = 2,
    initial_kernel: int | None = None,
) -> Graph:
    """WaveNet's residual stack: ``blocks`` repeats of ``dilations`` (see the module docstring).

    Receptive field ``1 + blocks * (kernel - 1) * sum(dilations)``, plus ``initial_kernel - 1``
    with the initial causal conv.
    """
    dilations = _check(kernel, dilations, blocks, "wavenet")
    b = GraphBuilder(name, (int(input_size),))
    x = b.input
    if initial_kernel is not None:
        x = b.add("causal_conv", causal_conv(initial_kernel), x)
    skips = []
    for i, d in enumerate(dilations * blocks):
        p = f"layers.{i}"
        f = b.add(f"{p}.filter", causal_conv(kernel, d), x)
        g = b.add(f"{p}.gate", causal_conv(kernel, d), x)
        z = b.add(f"{p}.gated", Merge("mul"), f, g)
        skips.append(b.add(f"{p}.skip", conv(1), z))
        r = b.add(f"{p}.residual", conv(1), z)
        x = b.add(p, Merge("add"), x, r)
    s = b.add("skips", Merge("add") if len(skips) > 1 else Pointwise(op="identity"), *skips)
    s = b.add("out_conv1", conv(1), s)
    out = b.add("out_conv2", conv(1), s)
    return with_outputs(b.build(), [out])


def keras_tcn(
    name: str = "tcn",
    input_size: int = 1000,
    *,
    kernel_size: int = 3,
    dilations: Sequence[int] = TCN_DILATIONS,
    nb_stacks: int = 1,
    use_skip_connections: bool = True,
    return_sequences: bool = False,
) -> Graph:
    """keras-tcn's ``TCN`` layer with causal padding (see the module docstring)."""
    dilations = _check(kernel_size, dilations, nb_stacks, "keras_tcn")
    b = GraphBuilder(name, (int(input_size),))
    x = b.input
    skips = []
    for j, d in enumerate(dilations * nb_stacks):
        p = f"residual_block_{j}"
        y = b.add(f"{p}.conv1D_0", causal_conv(kernel_size, d), x)
        y = b.add(f"{p}.conv1D_1", causal_conv(kernel_size, d), y)
        short = b.add(f"{p}.matching_conv1D", conv(1), x) if j == 0 else x
        skips.append(y)
        x = b.add(p, Merge("add"), short, y)
    if use_skip_connections and len(skips) > 1:
        x = b.add("Add_Skip_Connections", Merge("add"), *skips)
    elif use_skip_connections:
        x = skips[0]
    if not return_sequences:
        x = b.add("Slice_Output", Crop(start=-1), x)  # the last step: causal, it sees the most
    return with_outputs(b.build(), [x])


register(
    "wavenet",
    "WaveNet residual block (van den Oord et al. 2016): gated causal convs, kernel 2, dilations 1..512, RF 1024",
    (16000,),
    lambda name, size: wavenet(name, size[0]),
)
register(
    "tcn",
    "keras-tcn TCN, defaults: two causal convs per block, kernel 3, dilations 1..32, skips, last step (RF 253)",
    (1000,),
    lambda name, size: keras_tcn(name, size[0]),
)
