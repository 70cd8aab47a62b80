"""Experiment projects, each a package run as `python -m experiments.<project>` from the
repository root, with its own `configs/` (`get_config()` files whose docstrings start with their
command and runtime). `experiments/configs/` holds the shared `modjax train` configs."""
