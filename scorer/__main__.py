"""``python -m scorer``: the same as the ``scorer`` command."""

import sys

from scorer.cli import main

sys.exit(main())
