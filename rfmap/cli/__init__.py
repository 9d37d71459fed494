"""The ``rfmap`` command line: one module per subcommand.

::

    rfmap summary vgg16                        # the per-layer table
    rfmap summary net.yaml --input 224,320 --layers 'conv5*,pool5' --format json
    rfmap cell vgg16 conv5_3 --at 3,4          # the input box of one cell
    rfmap zoo                                  # the networks rfmap knows by name

``SOURCE`` is a zoo name, a spec file (``.yaml``, ``.toml``, ``.json``), an ONNX file or a
PyTorch factory ``pkg.module:factory``.  See :mod:`rfmap.cli.app` for the error contract and
the table of subcommands; nothing in the library imports this package.
"""

from __future__ import annotations

from rfmap.cli.app import COMMANDS, main, subcommand
from rfmap.cli.common import parse_input_size

__all__ = ["COMMANDS", "main", "parse_input_size", "subcommand"]
