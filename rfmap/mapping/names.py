"""The vocabulary of mapping (rule and convention names and what each reads), numpy-free so
that the command line can offer them without importing the mapping."""

from __future__ import annotations

RULES = ("spp", "spp-simple", "fast-rcnn", "align", "contain", "cover")

#: What each rule reads of the layer: the stride alone, or the exact per-cell geometry.
RULE_USES = {
    "spp": "per-cell RF centers (nearest center)",
    "spp-simple": "the stride only (cell i centered at i*S)",
    "fast-rcnn": "the stride only (round(x / S))",
    "align": "the stride only (x / S - 0.5, continuous)",
    "contain": "per-cell RF centers (centers inside the box)",
    "cover": "per-cell RF boxes (boxes meeting the box)",
}
#: the rules that read per-cell geometry (the others only the stride)
CENTER_RULES = ("spp", "contain", "cover")

#: crop-offset conventions (see :mod:`rfmap.mapping.crop`)
CONVENTIONS = ("caffe", "rf-center")
