"""Stage 1 of `panrajan_fse20.py`: train every parent and baseline, resumably (one file each).

Run: nice -n 10 python experiments/panrajan_train_stage.py [WORKDIR]   (~1 h on a shared 2-core CPU)

Writes `WORKDIR/models/<name>.npz` (flattened params) and `<name>.json` (accuracy, seconds) for:
the 8 Table-1 parents (MNIST/FMNIST × 1–4 hidden layers, 50 epochs), the faulty MNIST-1 (500
images of digit 5), the 45 two-class baselines per dataset (MLP-4×49, 20 epochs, vmapped) and
the MNIST×FMNIST inter-dataset baselines of the 10 pairs (i, i), then of all 100 pairs. A file
that exists is skipped; the baselines resume chunk by chunk.
"""

import json
import pathlib
import sys
import time

import jax
import numpy as np
from flax import traverse_util

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import panrajan_keras as pk

from modjax import data

DATA_DIR = "/work/shared/datasets"
DATASETS = {"MNIST": "mnist", "FMNIST": "fashion_mnist"}
PAIRS = [(a, b) for a in range(10) for b in range(a + 1, 10)]
INTER = [(a, b) for a in range(10) for b in range(10)]
INTER_TMA = [(a, a) for a in range(10)]  # baselines trained for these 10 pairs only (CPU time)


def save_params(path: pathlib.Path, params, meta: dict) -> None:
    flat = {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(params).items()}
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **flat)
    tmp.replace(path.with_suffix(".npz"))
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))


def load_params(path: pathlib.Path):
    with np.load(path.with_suffix(".npz")) as f:
        return traverse_util.unflatten_dict({tuple(k.split("/")): f[k] for k in f.files})


def load(name: str, split: str, parity: bool = True):
    x, y = data.load(DATASETS[name], split, data_dir=DATA_DIR)
    return pk.preprocess(x, parity=parity), np.asarray(y)


def faulty_subset(x, y, digit=5, keep=500):
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
        part.write_text(json.dumps({"acc": accs, "seconds": time.time() - t0}))
        print(f"{out.name}: {len(accs)}/{len(tasks)} {time.time() - t0:.0f}s", flush=True)
    out.with_suffix(".json").write_text(json.dumps({"acc": accs, "seconds": time.time() - t0}))
    part.unlink(missing_ok=True)


def main(workdir: pathlib.Path) -> None:
    models_dir = workdir / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    train = {n: load(n, "train") for n in DATASETS}
    test = {n: load(n, "test") for n in DATASETS}
    jobs = [(f"{n}-{k}", n, k, False) for k in (1, 2, 3, 4) for n in DATASETS]
    jobs.append(("MNIST-1-faulty5", "MNIST", 1, True))
    for name, ds, depth, faulty in jobs:
        path = models_dir / name
        if path.with_suffix(".json").exists():
            continue
        x, y = faulty_subset(*train[ds]) if faulty else train[ds]
        t0 = time.time()
        params = pk.train(x, y, depth=depth, epochs=50, seed=depth)
        acc = pk.accuracy(depth, params, *test[ds])
        save_params(path, params, {"acc": acc, "seconds": time.time() - t0, "train_n": len(y)})
        print(f"{name}: acc {acc:.4f} in {time.time() - t0:.0f}s", flush=True)
    for ds in DATASETS:
        (xa, ya), (xt, yt) = train[ds], test[ds]
        tasks = [pair_task(xa, ya, a, xa, ya, b) for a, b in PAIRS]
        tests = [pair_task(xt, yt, a, xt, yt, b) for a, b in PAIRS]
        train_baselines(models_dir / f"TMA-intra-{ds}", tasks, tests)
    (xm, ym), (xf, yf) = train["MNIST"], train["FMNIST"]
    (tm, tym), (tf, tyf) = test["MNIST"], test["FMNIST"]
    tasks = [pair_task(xm, ym, a, xf, yf, b) for a, b in INTER_TMA]
    tests = [pair_task(tm, tym, a, tf, tyf, b) for a, b in INTER_TMA]
    train_baselines(models_dir / "TMA-inter-MNIST-FMNIST", tasks, tests, chunk=10)
    tasks = [pair_task(xm, ym, a, xf, yf, b) for a, b in INTER]
    tests = [pair_task(tm, tym, a, tf, tyf, b) for a, b in INTER]
    train_baselines(models_dir / "TMA-inter-MNIST-FMNIST-all", tasks, tests, chunk=10)


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "runs/panrajan_fse20"))
