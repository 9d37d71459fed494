"""Closed-form ERF contributions (Luo et al. 2016): how one axis rule moves the moments of
a cell's unit-gradient mass, for linear networks whose windows weight their taps equally.

A node's state per axis is a pair of polynomials in its cell index ``o`` (coefficients
``c0, c1, c2``, exact ``Fraction`` s): the mean ``m(o)`` and the second moment ``q(o)`` of
the input position of the cell's gradient mass.  A rule's contribution maps the pair of
its input to the pair of its output; ops without one have no closed form.
"""

from __future__ import annotations

from fractions import Fraction

from rfmap.core.axis import AxisMap, Identity, Window

Poly = tuple[Fraction, Fraction, Fraction]


def through_window(poly: Poly, s: int, p: int, d: int, k: int) -> Poly:
    """``avg_t poly(s*o - p + d*t)`` over ``t = 0..k-1``, as a polynomial in ``o``."""
    c0, c1, c2 = poly
    m1 = Fraction(k - 1, 2)
    m2 = Fraction((k - 1) * (2 * k - 1), 6)
    eb = -p + d * m1  # E[b], b = -p + d t
    eb2 = p * p - 2 * p * d * m1 + d * d * m2  # E[b^2]
    return (c0 + c1 * eb + c2 * eb2, c1 * s + 2 * c2 * s * eb, c2 * s * s)


def window_moments(rule: AxisMap, state: tuple[Poly, Poly]) -> tuple[Poly, Poly] | None:
    """Windows (convolution, pooling, padding, cropping) average their taps; the identity
    keeps the state; other rules have no closed form (``None``)."""
    if isinstance(rule, Window):
        mean, second = state
        return (
            through_window(mean, rule.stride_, rule.pad_left, rule.dilation, rule.kernel),
            through_window(second, rule.stride_, rule.pad_left, rule.dilation, rule.kernel),
        )
    if isinstance(rule, Identity):
        return state
    return None
