"""`python -m modjax` is the `modjax` command."""

import sys

from modjax.cli import main

sys.exit(main())
