"""The project's entry point: `python -m experiments.compare ARGS` is `modjax compare ARGS`.

Run: python -m experiments.compare --config experiments/compare/configs/mlp_mnist.py \
         --data-dir ../shared/datasets --seeds 3
The comparison itself is `modjax.runs.compare` (`modjax compare --help`); this project holds its
configs (`experiments/compare/configs/`).
"""

import sys

from modjax.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
