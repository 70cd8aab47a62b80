"""DeepArc protocol (METHODS §8): train a CIFAR ResNet-v1, then CKA, modules, shrink and repair.

Run: nice -n 10 python experiments/deeparc.py --config experiments/configs/deeparc_cpu.py \
         --data-dir ../shared/datasets --workdir runs/deeparc_cpu [--results FILE.md]
Stages: `train` (a normal `modjax train` workdir under <workdir>/train, checkpointed and resumed
by rerunning), `analyze` (block-level CKA, modules and modularity over θ, compression search,
repair; <workdir>/analysis/results.json and the markdown table). Default: both.
"""

import argparse
import logging
import pathlib

from modjax.runs import config as config_lib
from modjax.runs import training


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="experiment config (get_config())")
    parser.add_argument("--workdir", required=True, help="output directory")
    parser.add_argument("--data-dir", help="dataset directory (default: $MODJAX_DATA_DIR)")
    parser.add_argument("--stage", choices=("train", "analyze", "all"), default="all")
    parser.add_argument("--results", help="markdown results file (default: <workdir>/results.md)")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    values = config_lib.load_config_file(args.config)
    if args.data_dir:
        values["data_dir"] = args.data_dir
    config = config_lib.from_dict(values, source=args.config)
    workdir = pathlib.Path(args.workdir)
    if args.stage in ("train", "all"):
        training.train_and_evaluate(config, workdir / "train", progress=args.progress)


if __name__ == "__main__":
    main()
