"""The layout algebra (digits of spatial axes across tensor dims) and the group rule, on
their own: reshapes and permutes as Swin, TResNet and patch merging write them, and the
per-axis rule against its definition."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from rfmap.core.axis import Window
from rfmap.core.periodic import Boxes
from rfmap.core.regroup import Grouped, Regroup, gather, partition
from rfmap.rules.call import LayoutError
from rfmap.rules.layout_algebra import Factor, Layout, drop_digits, mix_labels


def channels_last(h: int, w: int, c: int = 96) -> Layout:
    return Layout.from_dims((1, 2), (1, h, w, c), (h, w))


def swin_windows(h: int, w: int, ws: int, c: int = 96) -> Layout:
    x = channels_last(h, w, c).reshape((1, h // ws, ws, w // ws, ws, c)).permute((0, 1, 3, 2, 4, 5))
    n = (h // ws) * (w // ws)
    return x.reshape((n, ws, ws, c)).reshape((n, ws * ws, c))


def test_plain_layouts_round_trip():
    lay = Layout.from_dims((2, 3), (1, 8, 14, 20), (14, 20))
    assert lay.simple() == (2, 3)
    tokens = lay.reshape((1, 8, 280))
    assert tokens.simple() == (2, 2)  # flattened row-major, H outer
    assert tokens.reshape((1, 8, 14, 20)).simple() == (2, 3)
    assert lay.permute((0, 2, 3, 1)).simple() == (1, 2)


def test_swin_window_partition_and_reverse():
    win = swin_windows(56, 63, 7)
    assert win.simple() is None
    assert win.dims[0] == (Factor(0, 8, 7), Factor(1, 9, 7))  # the batch dim holds the window index
    assert win.dims[1] == (Factor(0, 7, 1), Factor(1, 7, 1))  # the token dim holds the cells inside
    back = win.reshape((72, 7, 7, 96)).reshape((1, 8, 9, 7, 7, 96)).permute((0, 1, 3, 2, 4, 5)).reshape((1, 56, 63, 96))
    assert back == channels_last(56, 63)
    assert back.simple() == (1, 2)


def test_space_to_depth_and_patch_merging_layouts():
    s2d = Layout.from_dims((2, 3), (1, 3, 64, 48), (64, 48))
    s2d = s2d.reshape((1, 3, 16, 4, 12, 4)).permute((0, 3, 5, 1, 2, 4)).reshape((1, 48, 16, 12))
    assert s2d.dims[1] == (Factor(0, 4, 1), Factor(1, 4, 1), Factor(None, 3))
    assert s2d.dims[2] == (Factor(0, 16, 4),) and s2d.dims[3] == (Factor(1, 12, 4),)
    merged = channels_last(28, 30, 8).reshape((1, 14, 2, 15, 2, 8)).permute((0, 1, 3, 4, 2, 5)).reshape((1, 14, 15, 32))
    assert merged.dims[3] == (Factor(1, 2, 1), Factor(0, 2, 1), Factor(None, 8))


def test_a_reshape_that_mixes_positions_says_why():
    lay = channels_last(8, 8)
    with pytest.raises(LayoutError, match="splits 8 cells of spatial axis 0 across a dim boundary"):
        lay.reshape((1, 6, 1024))
    with pytest.raises(LayoutError, match="reshapes"):
        lay.reshape((1, 7, 7))


def test_rolls_are_offsets_of_the_cells():
    lay = channels_last(12, 10).roll({0: -3})
    assert lay.offsets == (9, 0) and lay.simple() is None
    assert lay.roll({0: 3}).simple() == (1, 2)
    assert np.array_equal(lay.positions(0), (np.arange(12) + 9) % 12)


def test_mixing_inner_digits_gives_windows_outer_digits_a_grid():
    lay = Layout.from_dims((1,), (1, 12), (12,)).reshape((1, 3, 4))  # 12 = 3 (outer) x 4 (inner)
    windows = mix_labels(lay, 0, [2])
    grid = mix_labels(lay, 0, [1])
    assert [np.flatnonzero(windows == windows[c]).tolist() for c in (0, 5)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [np.flatnonzero(grid == grid[c]).tolist() for c in (0, 5)] == [[0, 4, 8], [1, 5, 9]]
    owner, n, kept = drop_digits(lay, 0, [2])
    assert n == 3 and owner.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and kept == [(1, Factor(0, 3, 1))]


def test_partition_of_windows_is_periodic_with_the_window():
    rule = partition(np.arange(56) // 7)
    assert (rule.period, rule.shift, rule.stride) == (7, 7, Fraction(1))
    lo, hi = rule.window(np.array([-1, 0, 6, 7, 60]))
    assert lo.tolist() == [-7, 0, 0, 7, 56] and hi.tolist() == [-1, 6, 6, 13, 62]
    grid = partition(np.arange(12) % 4)
    assert grid.period == 12  # a strided grid repeats with the whole axis
    assert np.flatnonzero(grid.support(np.eye(12, dtype=bool)[5])).tolist() == [1, 5, 9]


def test_gather_of_blocks_is_a_pixel_unshuffle():
    rule = gather(np.arange(12) // 4, 3)
    window = Window(12, 3, 4, 4, 1, 0)
    assert (rule.period, rule.shift) == (1, 4)
    o = np.arange(-2, 5)
    assert all(np.array_equal(a, b) for a, b in zip(rule.window(o), window.window(o)))
    boxes = Boxes(1, Fraction(2), np.array([-1]), np.array([3]))
    a, b = boxes.through(rule), boxes.through(window)
    assert (a.period, a.jump, a.lo.tolist(), a.hi.tolist()) == (b.period, b.jump, b.lo.tolist(), b.hi.tolist())


def test_grouped_support_matches_its_taps():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=23)
    rule = partition(labels)
    for _ in range(20):
        mask = rng.random(23) < 0.2
        idx, valid = rule.taps(np.flatnonzero(mask))
        want = np.zeros(23, dtype=bool)
        want[idx[valid]] = True
        assert np.array_equal(rule.support(mask), want)


def test_regroup_layer_checks_its_sizes():
    layer = Regroup(((tuple(range(4)), (0, 0, 1, 1)), None), op="test")
    maps = layer.axis_maps((4, 9))
    assert isinstance(maps[0], Grouped) and maps[0].n_out == 4 and maps[1].n_out == 9
    with pytest.raises(Exception, match="cells"):
        layer.axis_maps((5, 9))
