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

try:  # hypothesis is a test dependency; the profiles load before test modules build settings
    from hypothesis import Phase, settings
except ImportError:  # pragma: no cover
    settings = None
if settings is not None:
    # every run draws the same examples (CI's and a new user's alike); RFMAP_FUZZ_RANDOM=1
    # draws new ones, to look for more
    explore = os.environ.get("RFMAP_FUZZ_RANDOM", "") not in ("", "0")
    no_shrink = bool(os.environ.get("RFMAP_TESTS_NO_SHRINK"))  # tools/mutants.py: one failure is enough
    phases = (Phase.explicit, Phase.reuse, Phase.generate) if no_shrink else tuple(Phase)
    settings.register_profile("rfmap", derandomize=not explore, database=None, phases=phases)
    settings.load_profile("rfmap")


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
