r"""Pan & Rajan FSE'20 with KMNIST: KMNIST rows and MNIST ← KMNIST inter-dataset replacement.

    nice -n 10 python -m experiments.panrajan kmnist --config \
        experiments/panrajan/configs/kmnist_cpu.py --data-dir ../shared/datasets \
        --workdir runs/panrajan_kmnist --results benchmarks/results/panrajan_kmnist_cpu.md

Only the KMNIST *test* split (10k images) is on disk, so the KMNIST parents are trained on its
first `kmnist_train` images (5,000, seeded permutation) and evaluated on the others; the paper
trains on the 60k training split. MNIST-4 is trained on the full MNIST training split. Recipe as
`fse20`: Keras-equivalent Adam 1e-3, batch 32, parity inputs (/255/255), `epochs` for the KMNIST
parents and `mnist_epochs` for MNIST-4 (CPU time). Decomposition: TI-SNE + CM-RIE, the reference
code's sample rule (`allow_fewer`).

- KMNIST-1..4 rows: model accuracy, composed accuracy and value-based JI (paper rules) beside
  the published Table 1 row.
- Inter replacement (METHODS §7.6, Table 5): in MNIST-4's composition, module k is replaced by
  KMNIST-4's module k (relabelled k); accuracy on MNIST test images of the other classes plus
  the held-out KMNIST images of class k, against the MNIST-4 composition on the same images.
Writes the markdown `--results` and WORKDIR/results.json (`--stage report` rewrites the markdown
from it); trained models are reused from WORKDIR/models.
"""

import json
import pathlib
import time

import jax
import numpy as np

from experiments.panrajan import fse20_train
from experiments.panrajan import keras as pk
from experiments.panrajan.common import composed_acc, mean_ji
from modjax import data, decompose
from modjax.modules import atomic

KEYS = ("datasets", "epochs", "mnist_epochs", "kmnist_split", "kmnist_train", "fallback_confidence")
PUBLISHED = {  # METHODS §13.4: model acc, CM-RIE composed acc / JI, CM-RIE NonZero
    "KMNIST-1": (76.02, 76.03, 0.48, 0.601),
    "KMNIST-2": (83.29, 83.29, 0.70, 0.793),
    "KMNIST-3": (83.02, 82.97, 0.47, 0.596),
    "KMNIST-4": (83.63, 83.63, 0.54, 0.653),
}
PUBLISHED_INTER = "MNIST←KMNIST: −5.44% average (median −5.40%) vs the prior MA (Table 5)"


def kmnist_split(dataset: str, split: str, count: int, data_dir=None):
    """`(train, test)` of one split (KMNIST: "test"): a seeded `count` images and the rest."""
    x, y = data.load(dataset, split, data_dir=data_dir)
    x, y = pk.preprocess(x, parity=True), np.asarray(y)
    idx = np.random.default_rng(0).permutation(len(y))
    tr, te = idx[:count], idx[count:]
    return (x[tr], y[tr]), (x[te], y[te])


def trained(workdir, name, depth, train, test, epochs):
    """A Keras-recipe MLP of `depth` hidden layers (cached in `workdir/models`)."""
    path = workdir / "models" / name
    if path.with_suffix(".json").exists():
        return fse20_train.load_params(path), json.loads(path.with_suffix(".json").read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    params = pk.train(*train, depth=depth, epochs=epochs, seed=depth)
    meta = {"acc": pk.accuracy(depth, params, *test), "seconds": time.time() - t0}
    fse20_train.save_params(path, params, meta)
    print(f"{name}: acc {meta['acc']:.4f} in {meta['seconds']:.0f}s", flush=True)
    return params, meta


def modules_of(params, train, fallback_confidence):
    """TI-SNE + CM-RIE; a class with no positive at p > 0.9 lowers the bar (reported)."""
    for confidence in (0.9, fallback_confidence):
        try:
            mods = decompose.decompose_dense(
                params, *train, ti="sne", cm="rie", allow_fewer=True, confidence=confidence
            )
        except ValueError as err:
            print(f"confidence {confidence}: {err}", flush=True)
            continue
        return mods, confidence
    raise ValueError(f"no confident positives for some class even at p > {fallback_confidence}")


def measure(workdir: pathlib.Path, settings: dict, data_dir) -> dict:
    """Trains (or loads) the parents, decomposes them and replaces; writes results.json."""
    datasets, fallback = settings["datasets"], settings["fallback_confidence"]
    ktrain, ktest = kmnist_split(
        datasets["KMNIST"], settings["kmnist_split"], settings["kmnist_train"], data_dir
    )
    rows = {}
    kmods = None
    for depth in (1, 2, 3, 4):
        name = f"KMNIST-{depth}"
        params, meta = trained(workdir, name, depth, ktrain, ktest, settings["epochs"])
        t0 = time.time()
        mods, confidence = modules_of(params, ktrain, fallback)
        rows[name] = {
            "model_acc": meta["acc"],
            "composed_acc": composed_acc(mods, *ktest),
            "ji": mean_ji(mods),
            "edge_rate": float(np.mean([m.metrics["edge_rate"] for m in mods])),
            "fewest_confident": min(m.metrics["num_confident"] for m in mods),
            "decompose_s": time.time() - t0,
            "confidence": confidence,
        }
        print(name, rows[name], flush=True)
        if depth == 4:
            kmods = mods
    mtrain = fse20_train.load(datasets["MNIST"], "train", data_dir=data_dir)
    mtest = fse20_train.load(datasets["MNIST"], "test", data_dir=data_dir)
    mparams, mmeta = trained(workdir, "MNIST-4", 4, mtrain, mtest, settings["mnist_epochs"])
    mmods, _ = modules_of(mparams, mtrain, fallback)
    (xm, ym), (xk, yk) = mtest, ktest
    inter = []
    for k in range(10):
        x = np.concatenate([xm[ym != k], xk[yk == k]])
        y = np.concatenate([ym[ym != k], yk[yk == k]])
        swapped = [kmods[k] if m.class_id == k else m for m in mmods]
        inter.append({
            "k": k, "prior": composed_acc(mmods, x, y),
            "replaced": composed_acc(swapped, x, y, labels=list(range(10))),
        })  # fmt: skip
    result = {
        "rows": rows, "mnist4": {"model_acc": mmeta["acc"],
                                  "composed_acc": composed_acc(mmods, *mtest)},
        "inter": inter, "epochs": settings["epochs"], "mnist_epochs": settings["mnist_epochs"],
        "jax": jax.__version__,
    }  # fmt: skip
    atomic.write_json(workdir / "results.json", result)
    return result


def _pct(v):
    return f"{100 * v:.2f}"


def write_report(r, path: pathlib.Path) -> None:
    """The markdown of a `results.json`, beside the published rows."""
    lines = [
        "# Pan & Rajan FSE'20: KMNIST rows and MNIST ← KMNIST replacement (CPU)",
        "",
        "Generated by `python -m experiments.panrajan kmnist`. **Only the KMNIST test split exists "
        "here**: the KMNIST parents are trained on 5,000 of its images (seeded) and evaluated "
        "on the other 5,000; the paper trains on 60k. Keras-recipe Adam 1e-3, batch 32, parity "
        f"inputs, {r['epochs']} epochs (MNIST-4: {r['mnist_epochs']}; the paper: 50). TI-SNE + "
        "CM-RIE with the paper's rules "
        "(modjax default); JI is value-based over the 45 module pairs.",
        "",
        "| Model | model acc ours / pub | CM-RIE composed ours / pub | JI ours / pub | NonZero "
        "ours / pub | fewest confident positives (bar) |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in r["rows"].items():
        acc, comp, ji, nz = PUBLISHED[name]
        lines.append(
            f"| {name} | {_pct(row['model_acc'])} / {acc:.2f} | {_pct(row['composed_acc'])} / "
            f"{comp:.2f} | {row['ji']:.2f} / {ji:.2f} | {row['edge_rate']:.3f} / {nz:.3f} | "
            f"{row['fewest_confident']} (p > {row['confidence']}) |"
        )
    m = r["mnist4"]
    deltas = [100 * (e["replaced"] - e["prior"]) for e in r["inter"]]
    lines += [
        "",
        "## Inter-dataset replacement: MNIST-4 module k ← KMNIST-4 module k",
        "",
        f"MNIST-4 (full MNIST training split): model {_pct(m['model_acc'])}%, composed "
        f"{_pct(m['composed_acc'])}% on the MNIST test split. Each scenario is evaluated on the "
        "MNIST test images of the nine other classes plus the 5,000 held-out KMNIST images of "
        "class k (labelled k); prior = the unmodified MNIST-4 composition on the same images.",
        "",
        "| k | prior MA (%) | after replacement (%) | change (points) |",
        "|---|---|---|---|",
    ]
    for e, d in zip(r["inter"], deltas):
        lines.append(f"| {e['k']} | {_pct(e['prior'])} | {_pct(e['replaced'])} | {d:+.2f} |")
    lines += [
        "",
        f"Mean change {np.mean(deltas):+.2f} points (median {np.median(deltas):+.2f}). "
        f"Published: {PUBLISHED_INTER}.",
        "",
        "The sign differs because the protocols differ: here the test images of class k are "
        "KMNIST images, which the prior MNIST module k never saw, so the KMNIST module gains; "
        "the paper does not spell out its evaluation set (METHODS §7.6), and a replaced module "
        "that must recognise MNIST digits k would lose instead. The KMNIST parents are also "
        "weaker than published (72–75% vs 76–84%) as they see 5k instead of 60k images.",
    ]
    atomic.write_text(path, "\n".join(lines) + "\n")


def add_arguments(parser) -> None:
    parser.add_argument(
        "--config",
        required=True,
        help="a file of experiments/panrajan/configs (kmnist_*.py) (run as Python: use only files you trust)",
    )
    parser.add_argument(
        "--workdir",
        default="runs/panrajan_kmnist",
        help="models/ and results.json (default: %(default)s)",
    )
    parser.add_argument("--data-dir", help="dataset directory (default: $MODJAX_DATA_DIR)")
    parser.add_argument(
        "--stage",
        choices=("all", "report"),
        default="all",
        help="all: train (or load), decompose, replace, report; report: rewrite the markdown "
        "from WORKDIR/results.json (default: all)",
    )
    parser.add_argument(
        "--results",
        default="benchmarks/results/panrajan_kmnist_cpu.md",
        help="markdown results file (default: %(default)s)",
    )


def run(args, settings) -> int:
    """The `kmnist` command."""
    workdir, out = pathlib.Path(args.workdir), pathlib.Path(args.results)
    if args.stage == "report":
        result = json.loads((workdir / "results.json").read_text())
    else:
        result = measure(workdir, settings, args.data_dir)
    write_report(result, out)
    print(f"wrote {out}")
    return 0


__all__ = ["add_arguments", "measure", "run", "write_report"]
