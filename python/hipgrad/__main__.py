"""`python -m hipgrad ...`: the same command line as `hipgrad ...` (see hipgrad.cli)."""

import sys

from .cli import main

sys.exit(main())
