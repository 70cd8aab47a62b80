r"""Pan & Rajan ICSE'22 (METHODS §7.7, §13.5): decompose a CIFAR ResNet without BN into modules.

    nice -n 5 python -m experiments.panrajan icse22 --config \
        experiments/panrajan/configs/icse22_cpu.py --data-dir ../shared/datasets \
        --workdir runs/panrajan_icse22_cpu --results benchmarks/results/panrajan_icse22_cpu.md

A config (`configs/icse22_*.py`) returns `train` (a `modjax train` config) and `decompose`
(`DECOMPOSE`: positives, confidence bar, δ, reuse pairs, chunk, test subsets). Stages: `train`
(a normal `modjax train` workdir under <workdir>/train, checkpointed and resumed by rerunning),
`decompose` (CI + TI + channelling, then MC-BLN, for every class; top-1/top-5 composed
accuracy, Jaccard, decomposition time; intra-dataset reuse on class pairs;
<workdir>/decompose/results.json), `report` (the markdown from results.json). Default (`all`):
those three. `sweep` adds MC-BLN at smaller δ. `replace --receiver-config CFG` trains a second
parent (e.g. a ResNet-32, `icse22_cpu_r32.py`) in <workdir>/receiver the same way and measures
intra replacement (Table 4): its module k replaced by this parent's module k, for every k.

Initialization: a He-initialized ResNet-20 without BatchNorm diverges under SGD (initial loss
~130, NaN by step 3 at lr 0.02; a dead network at 0.002). The paper's initializer and optimizer
are unknown (METHODS §3.8), so the train stage writes the initial state itself as checkpoint
step 0 with every residual branch's last conv zeroed (zero-init residual, Goyal et al. 2017;
Fixup) before `modjax train` resumes from it. Nothing else differs from a `modjax train` run.
"""

import itertools
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.panrajan.icse22_report import write_markdown
from modjax import checkpoint, loop, models, train
from modjax import decompose as dc
from modjax.modules import atomic
from modjax.runs import config as config_lib
from modjax.runs import training

DECOMPOSE = (
    "positives",  # CI positives per class (the paper: 1000)
    "confidence",  # ... with parent probability above this (the paper: 0.9)
    "delta",  # MC-BLN's δ (METHODS §7.7)
    "pairs",  # class pairs of the reuse table
    "chunk",  # images per scan step of the decomposition
    "eval_examples",  # a seeded test subset (None: all 10k)
    "replace_examples",  # test images of the replacement stage (None: all)
    "replace_confidence",  # CI bar of the replacement stage's two parents
)
"""The decomposition settings a config's `decompose` holds, every one of them."""


def load(path: str, data_dir: str | None) -> tuple[config_lib.TrainConfig, dict]:
    """`(training config, decomposition settings)` of a project config, checked by name."""
    try:
        return config_lib.load_project_config(path, "decompose", DECOMPOSE, data_dir)
    except ValueError as e:
        raise SystemExit(str(e)) from None


def zero_init_residual(params):
    """Zeroes the kernel and bias of every block's `conv2` (zero-init residual branches)."""
    out = dict(params)
    for name, block in params.items():
        if name.startswith("layer") and "conv2" in block:
            conv = block["conv2"]["conv"]
            out[name] = {
                **block,
                "conv2": {"conv": jax.tree.map(jnp.zeros_like, dict(conv))},
            }
    return out


def write_initial_state(config, workdir: pathlib.Path) -> None:
    """Checkpoint step 0 = the zoo init with zero-init residual branches (if none exists)."""
    manager = checkpoint.make_manager(workdir / "checkpoints", save_every=1, keep=2)
    try:
        if checkpoint.latest_step(manager) is not None:
            return
        run = training.build_run(config)
        state = train.create_train_state(
            model=run.model,
            tx=run.tx,
            seed=config.seed,
            image_shape=run.input_shape,
            mesh=run.mesh,
        )
        state = state._replace(params=zero_init_residual(state.params))
        meta = {"epoch": 0, "step": 0, "config": config.to_json(), "init": "zero_residual"}
        checkpoint.save(manager, 0, state, meta=meta, force=True)
        manager.wait_until_finished()
    finally:
        manager.close()


def _preprocessed(pre, images, batch=2000):
    fn = jax.jit(pre)
    key = jax.random.key(0)
    return np.concatenate(
        [np.asarray(fn(images[i : i + batch], key)) for i in range(0, len(images), batch)]
    )


def _topk_acc(scores, labels, ks=(1, 5)):
    order = np.argsort(-scores, axis=1)
    return {f"top{k}": float(np.mean(np.any(order[:, :k] == labels[:, None], axis=1))) for k in ks}


def _module_scores(modules, x, batch=250):
    """`[B, C]` vote scores of the composed modules (voters first, then own-class p)."""
    stacked, own, labels = dc.compose(modules)
    fn = jax.jit(lambda s, xb: dc.vote.vote_scores(dc.vote.module_logits(s, xb), own).T)
    out = [np.asarray(fn(stacked, jnp.asarray(x[i : i + batch]))) for i in range(0, len(x), batch)]
    scores = np.concatenate(out)
    full = np.full((len(x), int(labels.max()) + 1), -np.inf)
    full[:, np.asarray(labels)] = scores
    return full


def _decompose_timed(params, samples, groups, cm, settings):
    fn = dc.cnn.decompose.make_decompose(cm=cm, delta=settings["delta"], chunk=settings["chunk"])
    args = (params, jnp.asarray(samples.positives), jnp.asarray(groups), jnp.asarray(samples.valid))
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    stacked = jax.block_until_ready(compiled(*args))
    return stacked, t_compile, time.perf_counter() - t0


def time_full_width(settings, num_classes=10):
    """Decomposition time of a full-width resnet20_nobn at the given sample counts (random
    weights and images: the time does not depend on their values)."""
    model = models.get_model("resnet20_nobn", num_classes=num_classes)
    params = model.init(jax.random.key(0), jnp.ones((1, 32, 32, 3)))["params"]
    p, q = settings["positives"], max(1, round(settings["positives"] / (num_classes - 1)))
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(num_classes, p, 32, 32, 3)).astype(np.float32)
    neg = rng.normal(size=(num_classes, q, 32, 32, 3)).astype(np.float32)
    samples = dc.samples.Samples(pos, None, None, np.ones((num_classes, p), bool))
    _, t_compile, t_run = _decompose_timed(params, samples, neg, "bln", settings)
    return {"positives": p, "negatives_per_class": q, "compile_s": t_compile, "run_s": t_run}


def run_decompose(workdir: pathlib.Path, data_dir, settings, scale: str) -> dict:
    """Decomposes <workdir>/train's parent (CI+TI+MC and +MC-BLN); writes decompose/."""
    restored = training.load_run(workdir / "train", data_dir)
    config, run, variables, step = restored.config, restored.run, restored.variables, restored.step
    dc.check_cnn_parent(config.model)
    params = jax.device_get(variables["params"])
    pre = training.make_preprocess(config, run.info, augment=False)
    x_train = _preprocessed(pre, run.train_data[0])
    y_train = np.asarray(run.train_data[1])
    test_x, test_y = run.test_data
    if settings["eval_examples"] is not None:  # the test split is class-sorted: a seeded subset
        idx = np.random.default_rng(0).permutation(len(test_y))[: settings["eval_examples"]]
        test_x, test_y = test_x[np.sort(idx)], np.asarray(test_y)[np.sort(idx)]
    x_test = _preprocessed(pre, test_x)
    y_test = np.asarray(test_y)
    num_classes = run.info.num_classes

    probs_test = dc.cnn.pipeline.parent_probs(params, x_test)
    trained = _topk_acc(probs_test, y_test)
    probs = dc.cnn.pipeline.parent_probs(params, x_train)
    samples = dc.samples.select_samples(
        x_train, y_train, probs, num_positives=settings["positives"], negatives_per_class=0,
        confidence=settings["confidence"], allow_fewer=True,
    )  # fmt: skip
    per_class = max(1, round(settings["positives"] / (num_classes - 1)))
    groups = dc.cnn.pipeline.class_groups(
        x_train, y_train, num_classes=num_classes, per_class=per_class
    )
    parent = {"model": config.model, "dataset": config.dataset, "step": step}
    result = {
        "scale": scale, "settings": settings, "step": step, "config": config.to_json(),
        "trained": trained, "num_confident": samples.num_confident.tolist(),
        "negatives_per_class": per_class, "variants": {}, "jax": jax.__version__,
        "platform": jax.devices()[0].platform,
    }  # fmt: skip
    modules = {}
    for cm in ("c", "bln"):
        stacked, t_compile, t_run = _decompose_timed(params, samples, groups, cm, settings)
        mods = dc.cnn.module.unstack(params, stacked, parent=parent, settings={"cm": cm})
        modules[cm] = mods
        t0 = time.perf_counter()
        scores = _module_scores(mods, x_test)
        acc = _topk_acc(scores, y_test)
        result["variants"][cm] = {
            **acc,
            "ji": dc.cnn.module.mean_jaccard(mods),
            "position_rate": float(np.mean([m.metrics["position_rate"] for m in mods])),
            "channel_rate": float(np.mean([m.metrics["channel_rate"] for m in mods])),
            "compile_s": t_compile,
            "decompose_s": t_run,
            "eval_s": time.perf_counter() - t0,
        }
        print(f"{cm}: {acc} in {t_run:.1f} s (+{t_compile:.1f} s compile)", flush=True)
    result["bln_marks"] = bln_summary(params, settings["delta"])
    result["reuse"] = reuse_pairs(modules["bln"], params, x_test, y_test, settings["pairs"])
    result["full_width_timing"] = time_full_width(settings, num_classes)
    atomic.write_json(workdir / "decompose" / "results.json", result)
    return result


def _decomposed(train_dir: pathlib.Path, data_dir, settings, test_idx):
    """+MC-BLN modules of one parent and its preprocessed test subset and labels."""
    restored = training.load_run(train_dir, data_dir)
    config, run, variables, step = restored.config, restored.run, restored.variables, restored.step
    dc.check_cnn_parent(config.model)
    params = jax.device_get(variables["params"])
    pre = training.make_preprocess(config, run.info, augment=False)
    x_train, y_train = _preprocessed(pre, run.train_data[0]), np.asarray(run.train_data[1])
    mods = dc.decompose_cnn(
        params, x_train, y_train, cm="bln", delta=settings["delta"],
        confidence=settings["replace_confidence"],
        num_positives=settings["positives"],
        allow_fewer=True, chunk=settings["chunk"],
        parent={"model": config.model, "dataset": config.dataset, "step": step},
    )  # fmt: skip
    x_test = _preprocessed(pre, run.test_data[0][test_idx])
    return config, params, mods, x_test, np.asarray(run.test_data[1])[test_idx]


def run_replace(workdir: pathlib.Path, data_dir, settings) -> dict:
    """Intra replacement (METHODS §7.6, §13.5 Table 4): in the composition of the receiver's
    modules (<workdir>/receiver, e.g. a ResNet-32), module k is replaced by the donor's module k
    (<workdir>/train, the ResNet-20), for every k; top-1/top-5 on a seeded test subset.

    Each module's vote scores depend on that module alone (`dc.vote.vote_scores`), so every module
    of both parents runs once and each replacement is a column swap of the score matrix; the
    two architectures are composed side by side, not stacked.
    """
    n = len(training.load_run(workdir / "train", data_dir).test_data[1])
    count = settings["replace_examples"] or n
    idx = np.sort(np.random.default_rng(2).permutation(n)[:count])
    donor_cfg, donor_params, donor, x_d, y = _decomposed(workdir / "train", data_dir, settings, idx)
    recv_cfg, recv_params, recv, x_r, y_r = _decomposed(
        workdir / "receiver", data_dir, settings, idx
    )
    assert np.array_equal(y, y_r)
    t0 = time.perf_counter()
    donor_scores, recv_scores = _module_scores(donor, x_d), _module_scores(recv, x_r)
    rows = []
    for k in range(recv_scores.shape[1]):
        scores = recv_scores.copy()
        scores[:, k] = donor_scores[:, k]
        rows.append({"class": k, **_topk_acc(scores, y)})
    return {
        "examples": int(count),
        "confidence": settings["replace_confidence"],
        "donor": {"model": donor_cfg.model, "width": donor_cfg.width,
                  "num_confident": [m.metrics["num_confident"] for m in donor],
                  "trained": _topk_acc(dc.cnn.pipeline.parent_probs(donor_params, x_d), y),
                  "ma": _topk_acc(donor_scores, y)},
        "receiver": {"model": recv_cfg.model, "width": recv_cfg.width,
                     "num_confident": [m.metrics["num_confident"] for m in recv],
                     "num_epochs": recv_cfg.num_epochs,
                     "trained": _topk_acc(dc.cnn.pipeline.parent_probs(recv_params, x_r), y),
                     "ma": _topk_acc(recv_scores, y)},
        "rows": rows,
        "eval_s": time.perf_counter() - t0,
    }  # fmt: skip


def bln_sweep(workdir: pathlib.Path, data_dir, settings, deltas=(0.1, 0.05), n=2000) -> dict:
    """MC-BLN at smaller δ on a seeded test subset (δ = 0.5 marks nothing on a weak head)."""
    restored = training.load_run(workdir / "train", data_dir)
    config, run, variables = restored.config, restored.run, restored.variables
    params = jax.device_get(variables["params"])
    pre = training.make_preprocess(config, run.info, augment=False)
    x_train, y_train = _preprocessed(pre, run.train_data[0]), np.asarray(run.train_data[1])
    idx = np.sort(np.random.default_rng(1).permutation(len(run.test_data[1]))[:n])
    x_test, y_test = _preprocessed(pre, run.test_data[0][idx]), np.asarray(run.test_data[1])[idx]
    rows = {}
    for cm, delta in (("c", settings["delta"]), *(("bln", d) for d in deltas)):
        mods = dc.decompose_cnn(
            params, x_train, y_train, cm=cm, delta=delta, confidence=settings["confidence"],
            num_positives=settings["positives"], allow_fewer=True, chunk=settings["chunk"],
        )  # fmt: skip
        acc = _topk_acc(_module_scores(mods, x_test), y_test)
        marks = bln_summary(params, delta)["marked"]
        rows[f"{cm}@{delta}"] = {**acc, "marked": marks, "ji": dc.cnn.module.mean_jaccard(mods)}
        print(cm, delta, rows[f"{cm}@{delta}"], flush=True)
    trained = _topk_acc(dc.cnn.pipeline.parent_probs(params, x_test), y_test)
    return {"examples": n, "trained": trained, "rows": rows}


def bln_summary(params, delta):
    """How many pooled features MC-BLN marks per class, and the largest edge to V_uc."""
    w, b = params["head"]["kernel"], params["head"]["bias"]
    marked, top = [], []
    for c in range(w.shape[1]):
        wc, _ = dc.cnn.channel.channel_head(jnp.asarray(w), jnp.asarray(b), c)
        marked.append(int(np.sum(np.asarray(dc.cnn.channel.bln_marks(wc, c, delta=delta)))))
        top.append(float(np.max(np.asarray(wc[:, 1 if c == 0 else 0]))))
    return {"marked": marked, "max_w_uc": max(top), "features": int(w.shape[0])}


def _pair_vote(variables, x):
    """One-hot of a two-module vote's label (0/1), for the eval step."""
    return jax.nn.one_hot(dc.predict(*variables, x), 2)


def _restricted(variables, x):
    """The parent's logits of the two classes of a pair."""
    params, columns = variables
    return dc.run(params, x)[0][:, columns]


def reuse_pairs(mods, params, x, y, num_pairs):
    """Intra-dataset reuse (METHODS §7.6): 2-module compositions on class pairs of 4 random
    classes, against the parent restricted to the same two outputs (no retrained TMA)."""
    classes = sorted(np.random.default_rng(0).choice(len(mods), 4, replace=False).tolist())
    pairs = list(itertools.combinations(classes, 2))[:num_pairs]
    rows = []
    for a, b in pairs:
        sel = (y == a) | (y == b)
        xs, ys = x[sel], (y[sel] == b).astype(np.int32)
        stacked, own, labels = dc.compose([mods[a], mods[b]], labels=[0, 1])
        ma, parent = (
            loop.evaluate_predict(f, xs, ys, num_classes=2, batch_size=500, variables=v)["accuracy"]
            for f, v in (
                (_pair_vote, (stacked, own, labels)),
                (_restricted, (params, jnp.asarray([a, b]))),
            )
        )
        rows.append({"pair": [a, b], "ma": ma, "parent": parent})
    return rows


def _add_section(workdir: pathlib.Path, key: str, section: dict, results: pathlib.Path) -> None:
    """Adds `section` to decompose/results.json under `key` and rewrites the markdown."""
    path = workdir / "decompose" / "results.json"
    result = json.loads(path.read_text())
    result[key] = section
    atomic.write_json(path, result)
    write_markdown(result, results)
    print(f"wrote {results}")


def add_arguments(parser) -> None:
    parser.add_argument(
        "--config",
        required=True,
        help="a file of experiments/panrajan/configs (icse22_*.py: train, decompose) (run as Python: use only files you trust)",
    )
    parser.add_argument("--workdir", required=True, help="output directory")
    parser.add_argument("--data-dir", help="dataset directory (default: $MODJAX_DATA_DIR)")
    parser.add_argument(
        "--stage",
        choices=("train", "decompose", "sweep", "replace", "report", "all"),
        default="all",
        help="train, decompose, report, all (= those three, the default); sweep: MC-BLN at "
        "smaller δ; replace: a second parent (--receiver-config) and module replacement",
    )
    parser.add_argument(
        "--receiver-config",
        help="replace stage: config of the second parent (e.g. configs/icse22_cpu_r32.py), "
        "trained in <workdir>/receiver, whose modules are replaced by this parent's",
    )
    parser.add_argument("--results", help="markdown results file (default: <workdir>/results.md)")
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bars"
    )
    parser.add_argument("--note", default="", help="a sentence on the run's history for the report")


def run(args, parser) -> int:
    """The `icse22` command."""
    config, settings = load(args.config, args.data_dir)
    scale = pathlib.Path(args.config).stem
    workdir = pathlib.Path(args.workdir)
    results = pathlib.Path(args.results) if args.results else workdir / "results.md"
    if args.stage in ("train", "all"):
        write_initial_state(config, workdir / "train")
        training.train_and_evaluate(config, workdir / "train", progress=args.progress)
    if args.stage in ("decompose", "all"):
        result = run_decompose(workdir, args.data_dir, settings, scale)
        result["training_note"] = args.note + " " if args.note else ""
        atomic.write_json(workdir / "decompose" / "results.json", result)
        write_markdown(result, results)
        print(f"wrote {results}")
    if args.stage == "sweep":  # MC-BLN at smaller δ, added to results.json
        section = bln_sweep(workdir, args.data_dir, settings)
        _add_section(workdir, "bln_sweep", section, results)
    if args.stage == "replace":  # a second parent, then module replacement into its modules
        if not args.receiver_config:
            parser.error("--stage replace needs --receiver-config (the second parent)")
        receiver, _ = load(args.receiver_config, args.data_dir)
        write_initial_state(receiver, workdir / "receiver")
        training.train_and_evaluate(receiver, workdir / "receiver", progress=args.progress)
        section = run_replace(workdir, args.data_dir, settings)
        _add_section(workdir, "replacement", section, results)
    if args.stage == "report":
        result = json.loads((workdir / "decompose" / "results.json").read_text())
        write_markdown(result, results)
        print(f"wrote {results}")
    return 0


__all__ = ["DECOMPOSE", "add_arguments", "load", "run", "run_decompose", "run_replace"]
