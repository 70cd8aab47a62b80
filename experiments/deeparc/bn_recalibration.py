r"""Repair diagnosis (issue 20): do frozen BatchNorm statistics explain the clean-accuracy drop?

    python -m experiments.deeparc.bn_recalibration --workdir runs/deeparc_cpu_r56 \
        --data-dir ../shared/datasets [--images 2560]

DeepArc's repair retrains a few blocks with BN in inference mode, so each BN layer normalises
the retrained convolutions' outputs with the statistics of the *old* weights. For the parent
and every repaired network in `<workdir>/analysis*/repair_network` and
`<workdir>/analysis_*/network`, this recomputes the BN running statistics on clean training
images (no gradient step, weights unchanged) and reports clean test accuracy before and after,
on the repair's 1000-image test subset (seed 0). Writes `<workdir>/bn_recalibration.json`.
"""

import argparse
import json
import pathlib

import jax
import numpy as np

from modjax.deeparc import network, pipeline
from modjax.models import resnet_cifar
from modjax.modules import directory
from modjax.runs import training


def recalibrate(model, variables, images, preprocess, *, batch_size=128):
    """`variables` with every BN's running mean and variance replaced by the average of its
    per-batch statistics over `images` (train-mode forward passes, no gradient step).

    From zero running statistics one train-mode call stores (1 − m)·batch statistic, with m the
    model's BN momentum (`resnet_cifar.KERAS_BN_MOMENTUM`), so dividing by 1 − m recovers it.
    """
    m = resnet_cifar.KERAS_BN_MOMENTUM
    zeros = {**variables, "batch_stats": jax.tree.map(np.zeros_like, variables["batch_stats"])}

    @jax.jit
    def batch_stats(x):
        _, updates = model.apply(zeros, preprocess(x, jax.random.key(0)), train=True,
                                 mutable=["batch_stats"])  # fmt: skip
        return jax.tree.map(lambda t: t / (1 - m), updates["batch_stats"])

    batches = [batch_stats(images[i : i + batch_size])
               for i in range(0, len(images) - batch_size + 1, batch_size)]  # fmt: skip
    mean = jax.tree.map(lambda *t: np.mean(np.stack(t), axis=0), *batches)
    return {**variables, "batch_stats": mean}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--data-dir")
    p.add_argument("--images", type=int, default=2560, help="clean training images for the stats")
    args = p.parse_args(argv)
    work = pathlib.Path(args.workdir)
    restored = training.load_run(work / "train", args.data_dir)
    rng = np.random.default_rng(0)
    tr_x, _ = restored.train_data
    stats_x = tr_x[np.sort(rng.permutation(len(tr_x))[: args.images])]
    te_x, te_y = restored.test_data
    idx = np.sort(np.random.default_rng(0).permutation(len(te_y))[:1000])
    te_x, te_y = te_x[idx], te_y[idx]

    def acc(model, v):
        return pipeline.accuracy(model, v, te_x, te_y, preprocess=restored.preprocess,
                                 num_classes=restored.num_classes)  # fmt: skip

    nets = {"parent": (restored.model, restored.variables)}
    for d in sorted([*work.glob("analysis*/repair_network"), *work.glob("analysis_*/network")]):
        nets[d.parent.name] = network.load_network(directory.load(d))
    out = {}
    for name, (model, v) in nets.items():
        out[name] = {"clean_test": acc(model, v),
                     "clean_test_bn_recalibrated": acc(model, recalibrate(
                         model, v, stats_x, restored.preprocess))}  # fmt: skip
        print(name, out[name], flush=True)
    (work / "bn_recalibration.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
