"""Fixtures shared by the picture and report tests."""

import os
import warnings
from pathlib import Path

import pytest

import rfmap
from rfmap import RFMapWarning
from rfmap.core.graph import Graph
from rfmap.core.layers import conv, maxpool

SPECS = Path(__file__).parent / "golden" / "specs"

if os.environ.get("RFMAP_TESTS_NO_SHRINK"):
    # set by tools/mutants.py: one failing example is all it needs, shrinking only costs time
    # (loaded here, before the test modules build their hypothesis settings)
    from hypothesis import Phase, settings

    settings.register_profile("no-shrink", phases=(Phase.explicit, Phase.reuse, Phase.generate))
    settings.load_profile("no-shrink")


@pytest.fixture(scope="module")
def chain():
    """Unequal H and W, padding on both sides: border cells reach into padding."""
    g = Graph.chain(
        [("c1", conv((5, 3), 2, (2, 1))), ("p1", maxpool(2)), ("c2", conv(3, 1, 1)), ("c3", conv(3, 2, 0))],
        name="chain",
        input_size=(30, 44),
    )
    return rfmap.analyze(g)


@pytest.fixture(scope="module")
def tiny():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RFMapWarning)
        return rfmap.analyze(SPECS / "tiny.yaml")


@pytest.fixture(scope="module")
def one_thread():
    """PyTorch on one intra-op thread for a module's tests: on tiny tensors its threads only
    add overhead (20x on a busy 2-core machine)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
