"""``python -m rfmap``: the same as the ``rfmap`` command (see :mod:`rfmap.cli`)."""

import sys

from .cli import main

sys.exit(main())
