"""``python -m scorer.cli``: the same as the ``scorer`` command."""

import sys

from scorer.cli import main

if __name__ == "__main__":
    sys.exit(main())
