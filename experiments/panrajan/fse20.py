r"""Pan & Rajan FSE'20 at paper scale on the CPU: Table 1, reuse and replacement (METHODS §7, §13.4).

    nice -n 10 python -m experiments.panrajan fse20 --config \
        experiments/panrajan/configs/fse20_cpu.py --data-dir ../shared/datasets \
        --workdir runs/panrajan_fse20 --results benchmarks/results/panrajan_fse20_cpu

Stages: `train` (`fse20_train`: the parents and baselines, ~1 h on a shared 2-core CPU),
`evaluate` (decompose and evaluate in a few minutes), `all` (both, the default). Resumable:
trained models live in `WORKDIR/models`, per-model results in `WORKDIR/results`; existing files
are reused. Inputs use the reference's double /255 scaling (parity inputs, needed for the
published accuracies). Each technique is decomposed twice: `paper` (modjax default: the paper's
CI order, CM-RIE criterion and bias mean) and `code` (parity=True). Writes `<results>.md` and
`.csv`.
"""

import json
import pathlib
import time

import numpy as np

from experiments.panrajan import fse20_report, fse20_train
from experiments.panrajan.common import composed_acc, mean_ji
from modjax import decompose, loop, metrics
from modjax.modules import atomic

KEYS = (
    "datasets",
    "depths",
    "epochs",
    "faulty",
    "baseline_epochs",
    "intra_pairs",
    "inter_pairs",
    "chunk",
    "inter_chunk",
    "confidence",
)


def decompose_model(params, x, y, ti, cm, parity, parent, confidence=0.9):
    """The reference code's sample rule: up to P confident positives (`digit[0:1000]`)."""
    t0 = time.time()
    mods = decompose.decompose_dense(
        params, x, y, ti=ti, cm=cm, parity=parity, allow_fewer=True, parent=parent,
        confidence=confidence,
    )  # fmt: skip
    short = min(m.metrics["num_confident"] for m in mods)
    return mods, time.time() - t0, short


def evaluate_model(name, workdir, train, test, confidence=0.9):
    """Every technique, both rule sets, on one parent (cached in `results/<name>.json`)."""
    path = workdir / "results" / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    ds, depth = name.split("-")[0], int(name.split("-")[1])
    params = fse20_train.load_params(workdir / "models" / name)
    meta = json.loads((workdir / "models" / f"{name}.json").read_text())
    out = {"name": name, "model_acc": meta["acc"], "train_seconds": meta["seconds"], "rows": {}}
    for col, (ti, cm) in fse20_report.TECHNIQUES.items():
        for mode, parity in (("paper", False), ("code", True)):
            parent = {"name": name, "dataset": ds, "depth": depth}
            mods, secs, fewest = decompose_model(params, *train, ti, cm, parity, parent, confidence)
            out["rows"][f"{col}/{mode}"] = {
                "acc": composed_acc(mods, *test),
                "ji_value": mean_ji(mods, metrics.value_jaccard),
                "ji_edge": mean_ji(mods, metrics.edge_jaccard),
                "edge_rate": float(np.mean([m.metrics["edge_rate"] for m in mods])),
                "node_rate": float(np.mean([m.metrics["node_rate"] for m in mods])),
                "mac_rate": float(np.mean([m.metrics["mac_rate"] for m in mods])),
                "seconds": secs,
                "fewest_confident": fewest,
            }
        print(f"{name} {col}: {out['rows'][col + '/paper']['acc']:.4f}", flush=True)
    atomic.write_json(path, out)
    return out


def modules_of(name, workdir, train, confidence=0.9):
    """TI-SNE + CM-RIE modules of a trained parent, the paper's rules."""
    params = fse20_train.load_params(workdir / "models" / name)
    mods, _, _ = decompose_model(params, *train, "sne", "rie", False, {"name": name}, confidence)
    return mods


def reuse_and_replace(workdir, settings, train, test):
    """Intra/inter reuse vs the baselines, intra and faulty-model replacement (cached)."""
    intra_pairs, inter_tma, inter_pairs = fse20_train.pairs(settings)
    path = workdir / "results" / "reuse_replace.json"
    inter = workdir / "models" / "TMA-inter-MNIST-FMNIST.json"
    inter_all = workdir / "models" / "TMA-inter-MNIST-FMNIST-all.json"
    if path.exists():
        cached = json.loads(path.read_text())
        n = len(cached["inter"]["tma"] or [])
        if (
            n == len(inter_pairs)
            or (n == len(inter_tma) and not inter_all.exists())
            or not inter.exists()
        ):
            return cached
    res = {"intra": {}, "inter": {}, "replace": {}}
    names, bar = fse20_train.NAMES, settings["confidence"]
    mods4 = {ds: modules_of(f"{ds}-4", workdir, train[ds], bar) for ds in names}
    for ds in names:
        tma = json.loads((workdir / "models" / f"TMA-intra-{ds}.json").read_text())["acc"]
        xt, yt = test[ds]
        ma = []
        for a, b in intra_pairs:
            xp, yp = fse20_train.pair_task(xt, yt, a, xt, yt, b)
            ma.append(composed_acc([mods4[ds][a], mods4[ds][b]], xp, yp, labels=[0, 1]))
        res["intra"][ds] = {"ma": ma, "tma": tma}
    (tm, tym), (tf, tyf) = test["MNIST"], test["FMNIST"]
    ma = []
    for a, b in inter_pairs:
        xp, yp = fse20_train.pair_task(tm, tym, a, tf, tyf, b)
        ma.append(composed_acc([mods4["MNIST"][a], mods4["FMNIST"][b]], xp, yp, labels=[0, 1]))
    tma = json.loads(inter.read_text())["acc"] if inter.exists() else None
    res["inter"] = {"ma": ma, "tma": tma, "tma_pairs": inter_tma}
    if inter_all.exists():
        res["inter"].update(tma=json.loads(inter_all.read_text())["acc"], tma_pairs=inter_pairs)
    for ds in names:
        mods1 = modules_of(f"{ds}-1", workdir, train[ds], bar)
        prior = composed_acc(mods1, *test[ds])
        rm = []
        for k in range(10):
            swapped = decompose.replace(mods1, [mods4[ds][k]])  # X-1 <- module k of X-4
            rm.append(composed_acc(swapped, *test[ds]))
        res["replace"][ds] = {"prior": prior, "rm": rm}
    faulty = modules_of("MNIST-1-faulty5", workdir, train["MNIST"], bar)
    meta = json.loads((workdir / "models" / "MNIST-1-faulty5.json").read_text())
    digit = settings["faulty"]["digit"]
    swapped = decompose.replace(faulty, [mods4["MNIST"][digit]])
    xt, yt = test["MNIST"]
    five = yt == digit
    params = fse20_train.load_params(workdir / "models" / "MNIST-1-faulty5")
    res["faulty"] = {
        "model": meta["acc"],
        "prior": composed_acc(faulty, xt, yt),
        "after": composed_acc(swapped, xt, yt),
        "model_5": loop.evaluate_predict(
            _dense_logits, xt[five], yt[five], num_classes=10, variables=params
        )["accuracy"],
        "prior_5": composed_acc(faulty, xt[five], yt[five]),
        "after_5": composed_acc(swapped, xt[five], yt[five]),
    }
    atomic.write_json(path, res)
    return res


def add_arguments(parser) -> None:
    parser.add_argument(
        "--config",
        required=True,
        help="a file of experiments/panrajan/configs (fse20_*.py) (run as Python: use only files you trust)",
    )
    parser.add_argument(
        "--workdir",
        default="runs/panrajan_fse20",
        help="models/ and results/ (default: runs/panrajan_fse20)",
    )
    parser.add_argument("--data-dir", help="dataset directory (default: $MODJAX_DATA_DIR)")
    parser.add_argument(
        "--stage",
        choices=("train", "evaluate", "all"),
        default="all",
        help="train the parents and baselines, evaluate (decompose, reuse, replace, report), "
        "or all (default)",
    )
    parser.add_argument(
        "--results",
        default="benchmarks/results/panrajan_fse20_cpu",
        help="results file stem, .md and .csv (default: %(default)s)",
    )


def _dense_logits(params, x):
    return decompose.forward(decompose.dense_layers(params), x)


def run(args, settings) -> int:
    """The `fse20` command: train stage, then decomposition, reuse, replacement and report."""
    workdir, names = pathlib.Path(args.workdir), fse20_train.NAMES
    datasets = settings["datasets"]
    train = {n: fse20_train.load(datasets[n], "train", data_dir=args.data_dir) for n in names}
    test = {n: fse20_train.load(datasets[n], "test", data_dir=args.data_dir) for n in names}
    if args.stage in ("train", "all"):
        fse20_train.train_all(workdir, settings, train, test)
    if args.stage == "train":
        return 0
    results = []
    for name in fse20_report.PUBLISHED:
        if (workdir / "models" / f"{name}.json").exists():
            ds = name.split("-")[0]
            bar = settings["confidence"]
            results.append(evaluate_model(name, workdir, train[ds], test[ds], bar))
    needed = ["MNIST-1", "FMNIST-1", "MNIST-4", "FMNIST-4", "MNIST-1-faulty5"]
    needed += [f"TMA-intra-{ds}" for ds in names]
    rr = None
    if all((workdir / "models" / f"{n}.json").exists() for n in needed):
        rr = reuse_and_replace(workdir, settings, train, test)
    if results:
        out = pathlib.Path(args.results)
        fse20_report.write_report(results, rr, out, settings=settings)
        print(out.with_suffix(".md").read_text())
    return 0


__all__ = ["add_arguments", "evaluate_model", "reuse_and_replace", "run"]
