"""``python -m scorer.accesslog``: the same as ``scorer import-access-log``."""

import sys

from scorer.accesslog import main

if __name__ == "__main__":
    sys.exit(main())
