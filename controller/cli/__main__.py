"""`python -m controller.cli`: the same as the `buildit` console script."""

import sys

from controller.cli import main

sys.exit(main())
