"""The vocabulary of ERF measurement (names and their meaning), numpy-free so that the
command line can offer them without importing the measurement."""

from __future__ import annotations

#: How ``luo2016`` turns the input gradient ``g`` into a per-pixel contribution (then summed over channels).
AGGREGATES = ("abs", "square", "relu")

#: Weights of the measured network: the model's own, re-drawn per batch, or all equal.
WEIGHTS = ("as-is", "random", "uniform")

#: What each choice does, for the CLI's help and the rendered result.
WEIGHTS_HELP = {
    "as-is": "the module's own weights (trained if the factory loads them); a spec, zoo or ONNX "
    "source has none, so its linear twin gets random positive weights",
    "random": "Kaiming-normal weights re-drawn for every batch, biases 0, batch norms removed "
    "(the map averages over weight draws)",
    "uniform": "every weight 1/fan_in, biases 0, batch norms removed (with a linear network: "
    "the network of the closed form)",
}

#: The named protocols (see :mod:`rfmap.erf.protocols`).
PROTOCOL_NAMES = ("luo2016", "replknet2022", "openerf")
