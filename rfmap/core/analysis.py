"""The geometry engine: one forward pass over a :class:`~rfmap.core.graph.Graph`.

Coordinates follow the pixel-index convention (see :mod:`rfmap.core.result`): input pixel ``i``
is the point ``i``; boxes are inclusive, starts first, axes in (H, W) order.

Cost: O(layers + edges) times the period of each map (1 for plain convolutional nets,
the upsampling factor after upsampling), independent of the input size; where periods
would multiply past the map size (pooling, then resizing back to an odd size), a map's
boxes are kept explicitly for the cells that can be asked about, so the cost never exceeds
O((layers + edges) x map size).  Per-cell queries are exact: :meth:`Analysis.rf_box` in
O(1), :meth:`Analysis.support` by propagating index sets back through the real maps.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

if TYPE_CHECKING:  # annotations only
    import numpy.typing as npt

from rfmap.core.axis import AxisMap
from rfmap.core.box import AXES, Box
from rfmap.core.budget import check_cells
from rfmap.core.graph import Graph, Node
from rfmap.core.layers import Pointwise
from rfmap.core.periodic import Boxes, Family, Range, combine, hull_at
from rfmap.core.plan import axis_orders, needed_ranges, normalize_size, plan
from rfmap.core.result import LayerGeometry, axis_names, fmt_number, json_number
from rfmap.core.steps import NodeState, cell0, fraction, geometries, in_order, keeps_boxes, merged, through
from rfmap.core.support import support_sets
from rfmap.errors import RFMapError, RFMapWarning, at_layer


class Analysis:
    """Receptive-field geometry of every layer of a network, and exact per-cell queries.

    Build it with :func:`rfmap.analyze` (which also warns about what :attr:`messages` says).
    Immutable: ``layers`` holds one :class:`~rfmap.core.result.LayerGeometry` per layer, the
    network's output last; ``messages`` what a user should know (misaligned paths), as data.
    """

    __slots__ = ("graph", "input_size", "strict", "exclude_global", "_index", "_aliases", "_states", "layers",
                 "messages", "_frozen")
    graph: Graph
    input_size: tuple[int, ...]
    strict: bool
    exclude_global: bool
    _index: dict[str, int]
    _aliases: dict[str, str]
    _states: tuple[NodeState, ...]
    layers: tuple[LayerGeometry, ...]
    messages: tuple[str, ...]
    _frozen: bool

    def __init__(self, graph: Graph, input_size: Any, *, strict: bool = False, exclude_global: bool = False):
        set_ = object.__setattr__
        set_(self, "_frozen", False)
        set_(self, "graph", graph)
        set_(self, "input_size", normalize_size(input_size))
        set_(self, "strict", strict)
        set_(self, "exclude_global", exclude_global)
        set_(self, "_index", {node.name: i for i, node in enumerate(graph.nodes)})
        set_(self, "_aliases", dict(graph.aliases))
        messages: list[str] = []
        states, layers = self._run(messages)
        set_(self, "_states", states)
        set_(self, "layers", layers)
        set_(self, "messages", tuple(messages))
        set_(self, "_frozen", True)

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError(f"Analysis is immutable: cannot set '{name}'")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"Analysis is immutable: cannot delete '{name}'")

    def __copy__(self) -> Analysis:
        return self

    def __deepcopy__(self, memo: Any) -> Analysis:
        return self

    def __reduce__(self) -> tuple[Callable[..., Analysis], tuple[Graph, tuple[int, ...], bool, bool]]:
        return (_rebuild, (self.graph, self.input_size, self.strict, self.exclude_global))

    def warn(self, stacklevel: int = 2) -> Analysis:
        """Issue :attr:`messages` as :class:`~rfmap.errors.RFMapWarning` s; returns ``self``."""
        for msg in self.messages:
            warnings.warn(msg, RFMapWarning, stacklevel=stacklevel + 1)
        return self

    # -- the forward pass -------------------------------------------------------------

    def _run(self, messages: list[str]) -> tuple[tuple[NodeState, ...], tuple[LayerGeometry, ...]]:
        ndim = len(self.input_size)
        plans = plan(self.graph, self._index, self.input_size)
        orders = axis_orders(self.graph, self._index, plans, ndim)
        need: Sequence[Sequence[Range | None]]
        if any(m.period != 1 for _, maps in plans if maps is not None for m in maps):
            need = needed_ranges(self.graph, self._index, plans)
        else:  # every period is 1: no layout can outgrow the cells asked about
            need = [[None] * ndim for _ in plans]
        states: list[NodeState] = []
        rows: list[LayerGeometry] = []
        aligned_of: list[bool] = []
        for k, node in enumerate(self.graph.nodes):
            sizes, maps = plans[k]
            order = None if orders is None or orders[k] == tuple(range(ndim)) else orders[k]
            global_context = False
            aligned = True
            families: tuple[tuple[Family, ...], ...]
            if node.layer is None:
                identity: tuple[Family, ...] = (Boxes.identity(),)
                families = (identity,) * ndim  # one object: equal axes share their work
                anchors = families
                is_global = False
            elif maps is None:  # a merge (see plan)
                families, anchors, is_global, global_context, aligned = self._merge(
                    k, sizes, need[k], orders, states, rows, aligned_of, messages)
            elif keeps_boxes(node.layer, maps):  # activations, norms over channels: the parent's geometry
                parent = self._index[node.inputs[0]]
                families, anchors = states[parent].families, states[parent].anchors
                is_global = states[parent].is_global
                states.append(NodeState(sizes, maps, families, is_global, anchors, order))
                aligned_of.append(aligned_of[parent])
                up = rows[parent]
                rows.append(LayerGeometry(node.name, node.op, node.inputs, up.axes, up.aligned, up.global_context, order))
                continue
            elif node.layer.permutation is not None:  # the parent's cells, indexed along other axes
                parent = self._index[node.inputs[0]]
                src, perm = states[parent], node.layer.permutation
                families = tuple(src.families[a] for a in perm)
                anchors = families if src.anchors is src.families else tuple(src.anchors[a] for a in perm)
                is_global, global_context, aligned = src.is_global, rows[parent].global_context, aligned_of[parent]
            else:
                parent = self._index[node.inputs[0]]
                try:
                    families = through(maps, states[parent].families, need[k])
                except RFMapError as exc:
                    raise at_layer(node.name, node.op, f"{exc} (input size {list(states[parent].sizes)})") from None
                is_global = states[parent].is_global or node.layer.global_context
                global_context = rows[parent].global_context or node.layer.global_context
                aligned = aligned_of[parent]
                anchors = self._anchors(states[parent], node, maps, families, need[k])
            states.append(NodeState(sizes, maps, families, is_global, anchors, order))
            aligned_of.append(aligned)
            rows.append(
                LayerGeometry(
                    node.name,
                    node.op,
                    node.inputs,
                    geometries(sizes, families),
                    aligned,
                    global_context,
                    order,
                )
            )
        return tuple(states), tuple(rows)

    def _merge(self, k: int, sizes: tuple[int, ...], need: Sequence[Range | None], orders: Sequence[tuple[int, ...]] | None,
               states: Sequence[NodeState], rows: Sequence[LayerGeometry], aligned_of: Sequence[bool],
               messages: list[str]) -> tuple[tuple[tuple[Family, ...], ...], tuple[tuple[Family, ...], ...], bool, bool, bool]:
        """One merge: its families and anchors, whether it is global, sees global context and
        is aligned (a misalignment is a message, or raises under ``strict``)."""
        node = self.graph.nodes[k]
        parents = [self._index[p] for p in node.inputs]
        used = parents
        if self.exclude_global and not all(states[p].is_global for p in parents):
            used = [p for p in parents if not states[p].is_global]
        view: Sequence[NodeState] = states
        if orders is not None and any(orders[p] != orders[k] for p in parents):
            view = in_order(states, parents, orders, k)  # 1-cell inputs, as the others
        try:
            families = merged(view, used, sizes, need, anchors=False)
        except RFMapError as exc:
            raise at_layer(node.name, node.op, str(exc)) from None
        anchors = families
        if any(view[p].anchors is not view[p].families for p in used):
            anchors = merged(view, used, sizes, need, anchors=True)
        aligned = all(aligned_of[p] for p in parents)
        msg = self._alignment(node, used, view, axis_names(len(sizes)))
        if msg:
            aligned = False
            if self.strict:
                raise RFMapError(msg)
            messages.append(msg)
        return (families, anchors, all(states[p].is_global for p in parents),
                any(rows[p].global_context for p in parents), aligned)

    @staticmethod
    def _anchors(parent: NodeState, node: Node, maps: tuple[AxisMap, ...], families: tuple[tuple[Family, ...], ...],
                 need: Sequence[Range | None]) -> tuple[tuple[Family, ...], ...]:
        """The families alignment compares: a context layer (mixing within windows) passes
        its input's on; others carry them through like the families themselves."""
        if getattr(node.layer, "context", False):
            return parent.anchors
        if parent.anchors is parent.families:
            return families
        return tuple(tuple(combine([f.through(m, need[a]) for f in fams], need[a]))
                     for a, (m, fams) in enumerate(zip(maps, parent.anchors)))

    def _alignment(self, node: Node, parents: Sequence[int], states: Sequence[NodeState],
                   names: Sequence[str]) -> str | None:
        """Paths meeting at a merge are aligned iff, per axis, their local path families
        (global ones, of stride 0, excepted; context mixing within windows left out) agree
        in stride and cell-0 center."""
        nodes = self.graph.nodes
        for axis, axis_name in enumerate(names):
            seen: list[tuple[int, Fraction | int, Fraction]] = []
            for p in parents:
                local = [f for f in states[p].anchors[axis] if f.jump != 0]
                if not local:
                    continue
                lo, hi = cell0(local)
                seen.append((p, max(f.jump for f in local), fraction(lo + hi, 2)))
            for p, jump, center in seen[1:]:
                q, jump0, center0 = seen[0]
                parts = []
                if jump != jump0:
                    parts.append(f"stride {fmt_number(jump0)} vs {fmt_number(jump)}")
                if center != center0:
                    parts.append(f"center of cell 0 {fmt_number(center0)} vs {fmt_number(center)}")
                if parts:
                    others = [
                        n for n in names
                        if n != axis_name and self._axis_differs(states, q, p, names.index(n))
                    ]
                    where = f"axis {axis_name}" if not others else "axes " + " and ".join([axis_name, *others])
                    return (
                        f"layer '{node.name}' ({node.op}): paths '{nodes[q].name}' and '{nodes[p].name}' "
                        f"are misaligned on {where}: {axis_name} " + ", ".join(parts)
                    )
        return None

    @staticmethod
    def _axis_differs(states: Sequence[NodeState], q: int, p: int, axis: int) -> bool:
        def key(k: int) -> tuple[Fraction | int, int] | None:
            local = [f for f in states[k].anchors[axis] if f.jump != 0]
            if not local:
                return None
            lo, hi = cell0(local)
            return max(f.jump for f in local), lo + hi

        a, b = key(q), key(p)
        return a is not None and b is not None and a != b

    # -- lookup -----------------------------------------------------------------------

    @property
    def ndim(self) -> int:
        return len(self.input_size)

    @property
    def output(self) -> LayerGeometry:
        """The network's (first) output."""
        return self.layers[self._index[self.graph.output_nodes[0]]]

    @property
    def outputs(self) -> tuple[str, ...]:
        """The network's outputs as the model names them, in its return order."""
        return self.graph.output_names

    def output_rows(self) -> tuple[LayerGeometry, ...]:
        """The rows of :attr:`outputs`, in the same order."""
        return tuple(self.layers[self._index[n]] for n in self.graph.output_nodes)

    def layer(self, name: str | int) -> LayerGeometry:
        return self.layers[self._resolve(name)]

    def _resolve(self, name: str | int) -> int:
        if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
            if not -len(self.layers) <= name < len(self.layers):
                raise RFMapError(f"layer index {name} is out of range (0..{len(self.layers) - 1})")
            return int(name) % len(self.layers)
        if not isinstance(name, str):
            raise RFMapError(f"a layer is given by its name or index, got {type(name).__name__}")
        # names first (torchvision's FPN names its levels '0'..'3'), then aliases, then an
        # index in the table written as a number ("3", "-1")
        if name in self._index:
            return self._index[name]
        if name in self._aliases:
            return self._index[self._aliases[name]]
        if isinstance(name, str) and re.fullmatch(r"-?\d+", name.strip()):
            return self._resolve(int(name))
        raise RFMapError(f"no layer named '{name}'")

    def _cell(self, k: int, index: Any) -> tuple[int, ...]:
        sizes = self._states[k].sizes
        idx = (index,) * 1 if isinstance(index, (int, np.integer)) else tuple(index)
        if len(idx) == 1 and len(sizes) > 1 and isinstance(index, (int, np.integer)):
            raise RFMapError(f"cell index {index!r} needs {len(sizes)} entries for layer '{self.layers[k].name}'")
        if len(idx) != len(sizes):
            raise RFMapError(f"cell index {list(idx)} has {len(idx)} entries, layer '{self.layers[k].name}' has {len(sizes)} axes")
        out = []
        for i, n in zip(idx, sizes):
            if isinstance(i, bool) or int(i) != i or not 0 <= int(i) < n:
                raise RFMapError(
                    f"cell {list(idx)} is outside layer '{self.layers[k].name}' of size {list(sizes)}"
                )
            out.append(int(i))
        return tuple(out)

    # -- per-cell queries -------------------------------------------------------------

    def rf_box(self, layer: str | int, index: Any) -> Box:
        """Theoretical RF box of a cell, unclipped (it may reach into padding): a :class:`Box`
        ``(y0, x0, y1, x1)`` (inclusive pixel indices; ``order`` names the axes)."""
        k = self._resolve(layer)
        cell = self._cell(k, index)
        starts, ends = [0] * len(cell), [0] * len(cell)
        for a, (fams, i) in zip(self._input_axes(k), zip(self._states[k].families, cell)):
            lo, hi = hull_at(list(fams), np.array([i], dtype=np.int64))
            starts[a], ends[a] = int(lo[0]), int(hi[0])
        return Box(starts + ends, AXES[len(starts)])

    def _input_axes(self, k: int) -> range | tuple[int, ...]:
        """Per axis of node ``k``, the input axis it runs along."""
        order = self._states[k].order
        return range(self.ndim) if order is None else order

    def rf_boxes(self, layer: str | int, cells: npt.ArrayLike) -> np.ndarray:
        """Theoretical RF boxes of many cells at once: ``cells`` ``[N, ndim]`` -> ``[N, 2*ndim]``
        int array, starts then ends (``y0, x0, y1, x1``), exact for every layer (also where the
        RF varies from cell to cell)."""
        k = self._resolve(layer)
        sizes = self._states[k].sizes
        raw = np.asarray(cells)
        integral = raw.dtype.kind in "iu" or (raw.dtype.kind == "f" and bool(np.all(np.floor(raw) == raw)))
        if raw.size and not integral:  # cells are indices: 1.5 is an error here as in rf_box
            raise RFMapError(f"cells must be integer indices, got {raw.dtype} values for layer '{self.layers[k].name}'")
        if raw.size % len(sizes):
            raise RFMapError(f"cells must be [N, {len(sizes)}] for layer '{self.layers[k].name}', got shape {list(raw.shape)}")
        c = raw.astype(np.int64).reshape(-1, len(sizes))
        bad = ((c < 0) | (c >= np.array(sizes))).any(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise RFMapError(f"cell {c[i].tolist()} (row {i}) is outside layer '{self.layers[k].name}' of size {list(sizes)}")
        starts, ends = zip(*(hull_at(list(f), c[:, a]) for a, f in enumerate(self._states[k].families)))
        order = self._states[k].order
        if order is not None:  # boxes in the input's axis order
            back = np.argsort(order)
            starts, ends = tuple(starts[a] for a in back), tuple(ends[a] for a in back)
        return np.stack(starts + ends, axis=1)

    def axis_boxes(self, layer: str | int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
        """Per axis of ``layer``, the theoretical boxes ``(lo, hi)`` (int arrays, inclusive,
        unclipped) of every real cell ``0..n-1``, along the input axis the layer's axis runs
        along (:attr:`LayerGeometry.input_axes`): exact for every layer, in O(cells)."""
        k = self._resolve(layer)
        state = self._states[k]
        return tuple(
            hull_at(list(fams), np.arange(n, dtype=np.int64)) for fams, n in zip(state.families, state.sizes)
        )

    def center(self, layer: str | int, index: Any) -> tuple[Fraction, ...]:
        """Center of the theoretical RF box of a cell, per axis (exact)."""
        box = self.rf_box(layer, index)
        d = len(box) // 2
        return tuple(Fraction(box[a] + box[a + d], 2) for a in range(d))

    def support(self, layer: str | int, index: Any) -> tuple[np.ndarray, ...]:
        """Input pixels that influence a cell, per axis (sorted index arrays).

        Exact: positions in an intermediate map's padding, pixels dropped by a floor in an
        output size and dilation holes are not in it.  It equals the support of the
        input gradient of the cell (with positive weights and average instead of max
        pooling); the per-axis sets are the projections of that 2-D support.
        """
        k = self._resolve(layer)
        cell = self._cell(k, index)
        for n in self._states[k].sizes:
            check_cells(n, f"the support of a cell of layer '{self.layers[k].name}'")
        return support_sets(self.graph, self._index, self._states, k, cell, self.exclude_global)

    def support_box(self, layer: str | int, index: Any) -> Box | None:
        """Bounding box of :meth:`support`, a :class:`Box` ``(y0, x0, y1, x1)`` (inclusive);
        ``None`` when the cell sees only padding."""
        sets = self.support(layer, index)
        if any(s.size == 0 for s in sets):
            return None
        return Box([int(s[0]) for s in sets] + [int(s[-1]) for s in sets], AXES[len(sets)])

    def cells_containing(self, layer: str | int, point: Any) -> tuple[np.ndarray, ...]:
        """Per axis, the sorted indices of the cells whose theoretical RF box contains the
        input pixel ``point`` (contiguous except after interleaving transposed convolutions)."""
        k = self._resolve(layer)
        point = self._point(point)
        out = []
        for fams, n, a in zip(self._states[k].families, self._states[k].sizes, self._input_axes(k)):
            p = point[a]
            check_cells(n, f"cells_containing on layer '{self.layers[k].name}'")
            lo, hi = hull_at(list(fams), np.arange(n, dtype=np.int64))
            out.append(np.flatnonzero((lo <= p) & (p <= hi)))
        return tuple(out)

    def nearest_cell(self, layer: str | int, point: Any) -> tuple[int, ...]:
        """The cell whose RF center is nearest to the input point (ties: the lower index)."""
        k = self._resolve(layer)
        point = self._point(point)
        out = []
        for fams, n, a in zip(self._states[k].families, self._states[k].sizes, self._input_axes(k)):
            p = point[a]
            check_cells(n, f"nearest_cell on layer '{self.layers[k].name}'")
            lo, hi = hull_at(list(fams), np.arange(n, dtype=np.int64))
            out.append(int(np.argmin(np.abs((lo + hi) - 2 * float(p)))))
        return tuple(out)

    def _point(self, point: Any) -> tuple[Any, ...]:
        pt = (point,) if np.isscalar(point) else tuple(point)
        if len(pt) != self.ndim:
            raise RFMapError(f"point {list(pt)} has {len(pt)} coordinates, the input has {self.ndim} axes")
        for v in pt:
            if not np.isfinite(float(v)):
                raise RFMapError(f"point {list(pt)} has a coordinate that is not finite")
        return pt

    def between(self, source: str | int, target: str | int) -> Analysis:
        """The geometry of ``target`` measured on the map of ``source`` (as if it were the input).

        For example the region of a C3 map that a C5 cell sees in an FPN.  Paths into
        ``target`` that do not pass through ``source`` are left out.
        """
        s, t = self._resolve(source), self._resolve(target)
        nodes = self.graph.nodes
        below = {s}
        for k in range(s + 1, t + 1):
            if any(self._index[p] in below for p in nodes[k].inputs):
                below.add(k)
        if t not in below:
            raise RFMapError(f"layer '{nodes[t].name}' does not depend on layer '{nodes[s].name}'")
        above = {t}
        for k in range(t, s, -1):
            if k in above:
                above.update(self._index[p] for p in nodes[k].inputs)
        keep = sorted(below & above)
        sub = [Node(nodes[s].name, None)]
        for k in keep[1:]:
            node = nodes[k]
            inputs = tuple(p for p in node.inputs if self._index[p] in below)
            layer = node.layer
            if layer is not None and layer.merge and len(inputs) == 1:
                layer = Pointwise(op=node.op)
            sub.append(Node(node.name, layer, inputs))
        graph = Graph(tuple(sub), f"{self.graph.name}[{nodes[s].name}->{nodes[t].name}]")
        return Analysis(graph, self._states[s].sizes, strict=self.strict, exclude_global=self.exclude_global)

    # -- serialization ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON contract (see the README)."""
        return {
            "input_size": list(self.input_size),
            "layers": [row.to_dict() for row in self.layers[1:]],
            "outputs": list(self.outputs),
        }

    def to_json(self, indent: int | None = 2) -> str:
        import json  # here: summaries that print text need no JSON module

        return json.dumps(self.to_dict(), indent=indent)

    def cell_dict(self, layer: str | int, index: Any) -> dict[str, Any]:
        """``{"box", "support", "center"}`` of one cell, as in ``rfmap cell --format json``."""
        return {
            "box": list(self.rf_box(layer, index)),
            "support": None if (b := self.support_box(layer, index)) is None else list(b),
            "center": [json_number(c) for c in self.center(layer, index)],
        }

    def __repr__(self) -> str:
        out = self.output
        return (
            f"<Analysis of '{self.graph.name}' at {list(self.input_size)}: {len(self.layers) - 1} layers, "
            f"output {list(out.output_size)}, rf {list(out.rf)}, stride {[fmt_number(s) for s in out.stride]}>"
        )


def _rebuild(graph: Graph, input_size: Any, strict: bool, exclude_global: bool) -> Analysis:
    return Analysis(graph, input_size, strict=strict, exclude_global=exclude_global)
