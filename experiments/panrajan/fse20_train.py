"""The train stage of `fse20`: every parent and baseline, resumably (one file each).

Writes `WORKDIR/models/<name>.npz` (flattened params) and `<name>.json` (accuracy, seconds) for:
the Table-1 parents (MNIST/FMNIST × `depths` hidden layers, `epochs` epochs), the faulty MNIST-1
(`faulty["keep"]` images of digit `faulty["digit"]`), the two-class baselines per dataset
(MLP-4×49, `baseline_epochs`, vmapped) and the MNIST×FMNIST inter-dataset baselines of the pairs
(i, i), then of all pairs. A file that exists is skipped; the baselines resume chunk by chunk.
The settings are a `configs/fse20_*.py` config; "MNIST" and "FMNIST" name the config's
`datasets` (Fashion-MNIST at paper scale).
"""

import json
import pathlib
import time

import jax
import numpy as np
from flax import traverse_util

from experiments.panrajan import keras as pk
from modjax import data
from modjax.modules import atomic

NAMES = ("MNIST", "FMNIST")


def pairs(settings: dict) -> tuple[list, list, list]:
    """`(intra, inter_tma, inter)` class pairs: intra-dataset pairs, the inter pairs trained
    first (i, i), and every inter pair; the config's counts cut them (None: all)."""
    intra = [(a, b) for a in range(10) for b in range(a + 1, 10)][: settings["intra_pairs"]]
    inter = [(a, b) for a in range(10) for b in range(10)][: settings["inter_pairs"]]
    return intra, [(a, a) for a in range(10) if (a, a) in inter], inter


def save_params(path: pathlib.Path, params, meta: dict) -> None:
    """`path.npz` (params flattened to "a/b" keys) and `path.json` (`meta`), atomically."""
    flat = {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(params).items()}
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **flat)
    tmp.replace(path.with_suffix(".npz"))
    atomic.write_json(path.with_suffix(".json"), meta)


def load_params(path: pathlib.Path):
    """The params `save_params` wrote to `path.npz`."""
    with np.load(path.with_suffix(".npz")) as f:
        return traverse_util.unflatten_dict({tuple(k.split("/")): f[k] for k in f.files})


def load(dataset: str, split: str, *, data_dir=None, parity: bool = True):
    """`(x [N, D] float32, y [N])` of a modjax dataset, flattened with the reference scaling."""
    x, y = data.load(dataset, split, data_dir=data_dir)
    return pk.preprocess(x, parity=parity), np.asarray(y)


def faulty_subset(x, y, digit=5, keep=500):
    """The training set with only the first `keep` images of `digit`."""
    idx = np.flatnonzero(y == digit)[keep:]
    mask = np.ones(y.shape[0], bool)
    mask[idx] = False
    return x[mask], y[mask]


def _stack_tasks(tasks):
    """`[(x, y01)]` → padded `[R, N, D]`, `[R, N]`, sizes."""
    n = max(t[0].shape[0] for t in tasks)
    xs = np.zeros((len(tasks), n, tasks[0][0].shape[1]), np.float32)
    ys = np.zeros((len(tasks), n), np.int32)
    for r, (x, y) in enumerate(tasks):
        xs[r, : x.shape[0]], ys[r, : y.shape[0]] = x, y
    return xs, ys, [t[0].shape[0] for t in tasks]


def pair_task(xa, ya, a, xb, yb, b):
    """Images of class `a` (label 0) from one set and of class `b` (label 1) from another."""
    ia, ib = np.flatnonzero(ya == a), np.flatnonzero(yb == b)
    x = np.concatenate([xa[ia], xb[ib]])
    y = np.concatenate([np.zeros(ia.size, np.int32), np.ones(ib.size, np.int32)])
    return x, y


def train_baselines(out, tasks, tests, *, chunk=15, epochs=20):
    """Two-class MLP-4×49 baselines, `chunk` runs per vmapped call; resumable per chunk."""
    if out.with_suffix(".json").exists():
        return
    part = out.with_suffix(".part.json")
    done = json.loads(part.read_text()) if part.exists() else {"acc": [], "seconds": 0.0}
    accs, t0 = done["acc"], time.time() - done["seconds"]
    for s in range(len(accs), len(tasks), chunk):
        xs, ys, ns = _stack_tasks(tasks[s : s + chunk])
        params = pk.train_many(
            xs, ys, ns, depth=4, num_classes=2, epochs=epochs, seeds=range(s, s + len(ns))
        )
        for r in range(len(ns)):
            p = jax.tree.map(lambda a, r=r: a[r], params)
            accs.append(pk.accuracy(4, p, *tests[s + r], num_classes=2))
        atomic.write_json(part, {"acc": accs, "seconds": time.time() - t0})
        print(f"{out.name}: {len(accs)}/{len(tasks)} {time.time() - t0:.0f}s", flush=True)
    atomic.write_json(out.with_suffix(".json"), {"acc": accs, "seconds": time.time() - t0})
    part.unlink(missing_ok=True)


def train_all(workdir: pathlib.Path, settings: dict, train: dict, test: dict) -> None:
    """Every parent and baseline of `settings` into `workdir/models` (existing files kept)."""
    models_dir = workdir / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(f"{n}-{k}", n, k, False) for k in settings["depths"] for n in NAMES]
    jobs.append(("MNIST-1-faulty5", "MNIST", 1, True))
    for name, ds, depth, faulty in jobs:
        path = models_dir / name
        if path.with_suffix(".json").exists():
            continue
        x, y = faulty_subset(*train[ds], **settings["faulty"]) if faulty else train[ds]
        t0 = time.time()
        params = pk.train(x, y, depth=depth, epochs=settings["epochs"], seed=depth)
        acc = pk.accuracy(depth, params, *test[ds])
        save_params(path, params, {"acc": acc, "seconds": time.time() - t0, "train_n": len(y)})
        print(f"{name}: acc {acc:.4f} in {time.time() - t0:.0f}s", flush=True)
    intra, inter_tma, inter = pairs(settings)
    epochs = settings["baseline_epochs"]
    for ds in NAMES:
        (xa, ya), (xt, yt) = train[ds], test[ds]
        tasks = [pair_task(xa, ya, a, xa, ya, b) for a, b in intra]
        tests = [pair_task(xt, yt, a, xt, yt, b) for a, b in intra]
        out = models_dir / f"TMA-intra-{ds}"
        train_baselines(out, tasks, tests, chunk=settings["chunk"], epochs=epochs)
    (xm, ym), (xf, yf) = train["MNIST"], train["FMNIST"]
    (tm, tym), (tf, tyf) = test["MNIST"], test["FMNIST"]
    for suffix, chosen in (("", inter_tma), ("-all", inter)):
        tasks = [pair_task(xm, ym, a, xf, yf, b) for a, b in chosen]
        tests = [pair_task(tm, tym, a, tf, tyf, b) for a, b in chosen]
        out = models_dir / f"TMA-inter-MNIST-FMNIST{suffix}"
        train_baselines(out, tasks, tests, chunk=settings["inter_chunk"], epochs=epochs)


__all__ = ["load", "load_params", "pair_task", "pairs", "save_params", "train_all"]
