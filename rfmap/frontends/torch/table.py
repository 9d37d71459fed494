"""The module table: torchinfo-style rows (module path, class, output shape, parameters)
with the receptive-field columns of the node each module produced."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from rfmap.errors import RFMapError
from rfmap.frontends.nodeinfo import NodeInfo
from rfmap.frontends.torch.capture import trace_module


@dataclass(frozen=True)
class ModuleRow:
    """One row of :func:`module_table`: a module (or a block, or a function call) with its
    output shape, parameter count and the receptive field of the node it produced.

    ``name``: the module path (``layer3.5.conv2``), the block (``layer3`` at ``depth=1``),
    or a function's node name (``add``).  ``path``: the module (for a function, the module
    whose ``forward`` called it; ``""`` at the top).  ``depth``: nesting level as in
    torchinfo (``layer3.5.conv2``: 3; a function called in ``layer3.5``: 3).
    ``node``: the rfmap node whose geometry the row shows (the block's last output node).
    ``geometry``: that node's :class:`~rfmap.core.result.LayerGeometry` (rf, stride,
    padding per axis, pixel-index convention).
    """

    name: str
    type: str
    path: str
    depth: int
    node: str
    output_shape: tuple[int, ...] | None
    params: int
    geometry: Any

    @property
    def rf(self):
        return self.geometry.rf

    @property
    def stride(self):
        return self.geometry.stride

    @property
    def padding(self):
        return self.geometry.padding

    @property
    def output_size(self):
        return self.geometry.output_size

    def to_dict(self) -> dict:
        from rfmap.core.result import json_number

        return {
            "name": self.name,
            "type": self.type,
            "path": self.path,
            "depth": self.depth,
            "node": self.node,
            "output_shape": None if self.output_shape is None else list(self.output_shape),
            "params": self.params,
            "rf": list(self.rf),
            "stride": [json_number(s) for s in self.stride],
            "padding": list(self.padding),
            "global_context": self.geometry.global_context,
        }


def module_table(
    module: nn.Module,
    input_size: int | Sequence[int] | None = None,
    depth: int | None = None,
    *,
    strict: bool = False,
    in_channels: int | None = None,
    exclude_global: bool = False,
) -> list[ModuleRow]:
    """Rows in the spirit of torchinfo: one per module call (module path, class, output
    shape with batch 1, parameters) with the RF columns of the node it produced; function
    calls (``add``, ``cat``) get rows of their own.  ``depth=N`` collapses rows to blocks
    of ``N`` path components (``layer3``), each taking the row of the block's last output
    node and the block's parameter count.  The last row is the model's output.
    """
    from rfmap.core.analysis import Analysis

    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise RFMapError(f"depth must be a positive integer, got {depth!r}")
    traced = trace_module(module, input_size, strict=strict, in_channels=in_channels)
    analysis = Analysis(traced.graph, traced.graph.input_size, exclude_global=exclude_global)
    infos = {i.name: i for i in traced.infos}
    order = {n.name: k for k, n in enumerate(traced.graph.nodes)}
    groups: dict[str, list[str]] = {}
    kinds: dict[str, NodeInfo] = {}
    for node in traced.graph.nodes[1:]:
        info = infos[node.name]
        if info.kind == "helper" and depth is None:
            continue
        if depth is None:
            key = node.name
        else:
            parts = info.path.split(".") if info.path else []
            key = ".".join(parts[:depth]) if parts else (info.owner or node.name)
        groups.setdefault(key, []).append(node.name)
        kinds.setdefault(key, info)
    output = traced.graph.output.name
    rows = []
    for key, names in groups.items():
        last = max(names, key=order.__getitem__)
        if depth is not None and output in names:
            last = output
        info = infos[last]
        first = kinds[key]
        levels = len(info.path.split(".")) if info.path else 0
        if depth is None:
            params = (_module_params(module, info.path) if info.kind == "module" else info.params) if info.first_call else 0
            typ = info.module_type or info.op
            row_depth = levels if info.kind == "module" else levels + 1
            path = info.path
        else:
            is_module = bool(first.path) and key == ".".join(first.path.split(".")[:depth])
            if is_module:
                try:
                    sub = module.get_submodule(key)
                except AttributeError:
                    sub = None
                params = sum(p.numel() for p in sub.parameters()) if sub is not None else 0
                typ = type(sub).__name__ if sub is not None else first.op
                row_depth = len(key.split("."))
                path = key
            else:
                params = sum(_module_params(module, infos[n].path) if infos[n].kind == "module" else infos[n].params
                             for n in names if infos[n].first_call)
                typ = first.module_type or first.op
                row_depth = 1
                path = first.path
        rows.append(ModuleRow(key, typ, path, row_depth, last, info.shape, params, analysis.layer(last)))
    rows.sort(key=lambda r: order[r.node])
    return rows


def _module_params(module: nn.Module, path: str) -> int:
    try:
        return sum(p.numel() for p in module.get_submodule(path).parameters())
    except AttributeError:
        return 0
