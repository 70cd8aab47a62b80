r"""Repair diagnosis (issue 20): what the BatchNorm statistics of the retrained blocks cost.

    python -m experiments.deeparc.bn_recalibration --workdir runs/deeparc_cpu_r56 \
        --data-dir ../shared/datasets

For every repair in `<workdir>/analysis*/repair.json` (with its network in `network/` or
`repair_network/`), this rebuilds the repair's own sets from the parent (the benign training
images, their PGD images, the test subset and its PGD images: `pipeline.error_images`, the same
seeds as `modjax repair`), recomputes the statistics of the BN layers of the blocks the repair
trained (every block for a full retraining) on the benign repair images
(`repair.recalibrate_bn`, no weight changes; the other blocks keep theirs), and reports the four
accuracies before and after that. For a repair made without recalibration, the result is
exactly what the same repair with `--recalibrate` (the default now) gives. Writes
`<workdir>/repair_recalibrated.json` (merged into an existing one; `--only` limits the repairs).

(An earlier version of this script recomputed *every* BN layer on 2,560 clean training images;
its numbers are in `benchmarks/results/deeparc_r56_cpu/bn_recalibration.json`.)
"""

import argparse
import json
import pathlib
import re

import numpy as np

from experiments import run
from modjax import data
from modjax.deeparc import network, pipeline, repair
from modjax.deeparc.blocks import block_positions, param_key
from modjax.modules import atomic, directory
from modjax.runs import training


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m experiments.deeparc.bn_recalibration", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--workdir", required=True, help="the DeepArc workdir (train/, analysis*/)")
    p.add_argument("--data-dir")
    p.add_argument("--seed", type=int, default=0, help="the repairs' seed (default: 0)")
    p.add_argument("--only", nargs="+", help="analysis folder names to measure (default: all)")
    args = p.parse_args(argv)
    work = pathlib.Path(args.workdir)
    restored = training.load_run(work / "train", args.data_dir)
    model, parent, pre = restored.model, restored.variables, restored.preprocess
    repairs = sorted(work.glob("analysis*/repair.json"))
    if args.only:
        repairs = [r for r in repairs if r.parent.name in args.only]
    if not repairs:
        raise FileNotFoundError(f"no analysis*/repair.json under {work}")
    keys_of = [param_key(*pos) for pos in block_positions(model)]
    cache: dict[tuple, tuple] = {}
    target = work / "repair_recalibrated.json"
    out = json.loads(target.read_text()) if target.is_file() else {}
    for path in repairs:
        rep = json.loads(path.read_text())
        net_dir = next((path.parent / n for n in ("network", "repair_network")
                        if (path.parent / n).is_dir()), None)  # fmt: skip
        if net_dir is None:
            print(f"{path.parent.name}: no saved network, skipped", flush=True)
            continue
        found = re.search(r"eps=([0-9.]+)/255, (\d+) steps", rep["attack"])
        eps, steps = float(found[1]), int(found[2])
        setting = (rep["examples"], rep["test_examples"], eps, steps)
        if setting not in cache:
            x, y = data.seeded_subset(*restored.train_data, rep["examples"], args.seed)
            tx, ty = data.seeded_subset(*restored.test_data, rep["test_examples"], args.seed)
            attack = {"eps": eps, "step_size": max(eps / 4, 1.0), "steps": steps}
            (adv,), (test_adv,) = pipeline.error_images(
                model, parent, (x, y), (tx, ty), preprocess=pre, attacks=[attack], seed=args.seed
            )
            cache[setting] = (x, y, adv, tx, ty, test_adv)
        x, y, adv, tx, ty, test_adv = cache[setting]
        sets = {
            "mixed": (np.concatenate([x, adv]), np.concatenate([y, y])),
            "error_only": (adv, y),
            "clean_test": (tx, ty),
            "error_test": (test_adv, ty),
        }
        net_model, v = network.load_network(directory.load(net_dir))
        trained = keys_of if rep.get("train_all") else [keys_of[b] for b in rep["selected"]]
        if rep.get("train_all"):
            trained = [*trained, "stem"]
        recal = repair.recalibrate_bn(net_model, v, x, pre, trained)

        def accuracies(variables, m=net_model, sets=sets):
            return {
                name: pipeline.accuracy(m, variables, sx, sy, preprocess=pre,
                                        num_classes=restored.num_classes)
                for name, (sx, sy) in sets.items()
            }  # fmt: skip

        out[path.parent.name] = {
            "bn": rep.get("bn", "frozen"),
            "recalibrated_by_repair": rep.get("bn_recalibrated", False),
            "learning_rate": rep["learning_rate"],
            "trained_share": rep["trained_share"],
            "mse_weight": rep.get("mse_weight", 0.5),
            "recalibrated_blocks": trained,
            "reported": rep["after"],
            "as_saved": accuracies(v),
            "recalibrated": accuracies(recal),
        }
        print(path.parent.name, json.dumps(out[path.parent.name]["recalibrated"]), flush=True)
    atomic.write_json(target, out)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main, "python -m experiments.deeparc.bn_recalibration"))
