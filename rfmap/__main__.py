"""``python -m rfmap``: the same as the ``rfmap`` command (see :mod:`rfmap.cli`)."""

import sys

from rfmap.cli import main

sys.exit(main())
