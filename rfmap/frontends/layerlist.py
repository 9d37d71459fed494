"""Layer lists as papers tabulate networks: ``[[kernel, stride, padding], ...]``.

Each entry is ``[k, s, p]`` or ``[k, s, p, d]`` (dilation), applied to every axis, or a
mapping ``{"op": "conv", "kernel": 3, ...}`` as in spec files.  Names default to
``layer1``, ``layer2``, ...; pass ``names`` to use the network's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rfmap.core.graph import Graph, GraphBuilder
from rfmap.core.layers import Conv
from rfmap.core.registry import make_layer
from rfmap.errors import RFMapError, at_layer


def from_layer_list(
    layers: Sequence[Any],
    names: Sequence[str] | None = None,
    name: str = "network",
    input_size: Sequence[int] | int | None = None,
) -> Graph:
    if names is not None and len(names) != len(layers):
        raise RFMapError(f"{len(names)} names for {len(layers)} layers")
    b = GraphBuilder(name, input_size)
    x = b.input
    for i, entry in enumerate(layers):
        layer_name = names[i] if names is not None else f"layer{i + 1}"
        x = b.add(layer_name, _layer(entry, i, layer_name), x)
    return b.build()


def _layer(entry: Any, i: int, layer_name: str):
    where = f"layer {i + 1} ('{layer_name}')"
    if isinstance(entry, dict):
        params = dict(entry)
        op = params.pop("op", None)
        params.pop("name", None)
        if op is None:
            raise RFMapError(f"{where}: no 'op'")
        try:
            return make_layer(op, **params)
        except RFMapError as exc:
            raise RFMapError(f"{where}: {exc}") from None
    if not isinstance(entry, (list, tuple)) or not 3 <= len(entry) <= 4:
        raise RFMapError(f"{where}: expected [kernel, stride, padding] or [kernel, stride, padding, dilation], got {entry!r}")
    for v in entry:
        if isinstance(v, bool) or not isinstance(v, int):
            raise RFMapError(f"{where}: entries must be integers, got {entry!r}")
    k, s, p = entry[:3]
    d = entry[3] if len(entry) == 4 else 1
    try:
        return Conv(k, s, p, d)
    except RFMapError as exc:
        raise at_layer(layer_name, "conv", str(exc)) from None
