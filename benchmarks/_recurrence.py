"""The peer "Distill recurrence": the bare forward recurrence of receptive-field arithmetic
(Araujo et al., "Computing Receptive Fields of Convolutional Neural Networks", Distill 2019;
``j *= s; r += (k-1)*j; start += ...`` in a Python loop), which computes the table of a plain
chain and nothing else -- the floor any per-layer Python tool pays."""

from __future__ import annotations


def distill_recurrence(layers, n):
    """(size, jump, rf, start) per layer of ``[[k, s, p], ...]`` on one axis of ``n`` pixels."""
    j, r, start, rows = 1, 1, 0.5, []
    for k, s, p in layers:
        n = (n - k + 2 * p) // s + 1
        start = start + ((k - 1) / 2 - p) * j
        r = r + (k - 1) * j
        j = j * s
        rows.append((n, j, r, start))
    return rows
