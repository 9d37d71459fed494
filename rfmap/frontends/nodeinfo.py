"""Where each node of a converted graph came from (:class:`NodeInfo`), shared by the front
ends that convert a framework's graph (:mod:`rfmap.frontends.convert`) and by their tables."""

from __future__ import annotations

from dataclasses import dataclass

from rfmap.errors import RFMapError


@dataclass(frozen=True)
class NodeInfo:
    """Where an rfmap node came from.

    ``path``: the module path of a module call (``layer3.5.conv2``), or, for a function,
    the module whose ``forward`` called it (``layer3.5``; ``""`` at the top); for ONNX the
    node name.  ``kind``: ``module``, ``function``, ``method``, ``aten`` (torch.export),
    ``onnx``, or ``helper`` for nodes a rule adds.  ``shape``: the full output shape (batch
    1).  ``module_type``: the class name of a module call.  ``first_call``: false for a
    module called again (its parameters are counted once).
    """

    name: str
    path: str
    kind: str
    op: str
    shape: tuple[int, ...] | None
    module_type: str | None = None
    params: int = 0
    first_call: bool = True
    owner: str = ""


class NoSpatialOutput(RFMapError):
    """No output of the captured graph depends on the input's spatial positions (a capture
    that missed tensors stored by forward hooks, or a model that ignores its input)."""
