"""Experiment projects, each a package run as `python -m experiments.<project>` from the
repository root, with its own `configs/` (`get_config()` files whose docstrings start with their
command and runtime). `experiments/configs/` holds the shared `modjax train` configs."""

import os
import sys
from collections.abc import Callable


def run(main: Callable[[], int], prog: str) -> int:
    """Runs an experiment's `main()` under the CLI's error rule: a bad input (a `ValueError`,
    an `OSError` such as a missing config file, a `FloatingPointError`, a `RuntimeError`) is one
    line `prog: error: ...` and exit status 2, never a traceback. `MODJAX_TRACEBACK=1` shows
    the traceback instead, as `modjax --verbose` does."""
    try:
        return main()
    except (ValueError, OSError, FloatingPointError, RuntimeError) as err:
        if os.environ.get("MODJAX_TRACEBACK"):
            raise
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
