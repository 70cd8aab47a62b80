"""Report on the modules of one trained model: sizes, overlap, composed accuracy, inference time.

Reads the per-class modules written by `modjax modularize` and their parent training run (restored
at the modules' step and checked against their parent hash), then measures (METHODS §10):
- per class: kernel/unit retention (KRR for MwT), weight retention of the pruned module;
- MODA overlap (|a∧b| / model size) and the true Jaccard |a∧b| / |a∨b| over all class pairs, from
  parameter-level keep trees (MODA's id-model method: prune a parent whose weights are their own
  ids), and the Jaccard coupling of the unit sets;
- per sub-task T: accuracy of the composed network (one fused pruned network over the union of
  T's modules, no retraining) vs the parent restricted to T's logits, on T's test samples, its
  relative parameters and MACs, and inference time fused vs one network per module.

Run: python experiments/module_report.py --modules runs/moda_mnist/modules \
         --tasks 3,8 0,2,4,6,8 --data-dir ../shared/datasets --out runs/moda_mnist/report.md
"""

import argparse
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from modjax import metrics
from modjax.modular import compose as cp
from modjax.modular import io as module_io
from modjax.modular import prune
from modjax.runs import report, training
from modjax.runs.modularize import restore_parent


def id_keep_trees(modules, variables, model_name, model_kwargs, input_shape):
    """Parameter-level keep trees (bool, parent's structure) of each module via an id model."""
    leaves, treedef = jax.tree.flatten(variables["params"])
    offsets = np.cumsum([0] + [x.size for x in leaves])
    ids = [
        np.arange(o, o + x.size, dtype=np.int32).reshape(x.shape) + 1
        for o, x in zip(offsets, leaves)
    ]
    id_variables = {**variables, "params": jax.tree.unflatten(treedef, ids)}
    trees = []
    for m in modules:
        _, pruned = prune.prune(
            model_name,
            model_kwargs,
            id_variables,
            m.keep,
            classes=m.classes if m.method == "moda" else None,
            method=m.method,
            input_shape=input_shape,
        )
        kept = np.concatenate([np.asarray(x).ravel() for x in jax.tree.leaves(pruned["params"])])
        kept = np.unique(kept[kept > 0])
        trees.append(jax.tree.unflatten(treedef, [np.isin(x, kept) for x in ids]))
    return trees


def time_apply(apply_fn, x, repeats=10):
    jax.block_until_ready(apply_fn(x))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(apply_fn(x))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", required=True, help="directory written by modularize")
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=["0,1", "0,1,2,3,4"],
        help="sub-tasks as comma-separated class ids (default: %(default)s)",
    )
    parser.add_argument(
        "--workdir",
        help="the parent's training workdir, restored at the "
        "modules' step and checked by hash (default: the parent of --modules)",
    )
    parser.add_argument("--data-dir", help="dataset directory (default: the run's)")
    parser.add_argument("--batch-size", type=int, default=256, help="timing/eval batch size")
    parser.add_argument("--out", help="write the report (markdown) here")
    args = parser.parse_args()

    root = pathlib.Path(args.modules)
    modules = [
        module_io.load_module(d)
        for d in sorted(root.glob("class_*"), key=lambda p: int(p.name.split("_")[1]))
    ]
    parent = modules[0].parent
    workdir = pathlib.Path(args.workdir) if args.workdir else root.resolve().parent
    config, run, variables, step = restore_parent(modules[0], workdir, args.data_dir)
    kwargs = dict(parent["model_kwargs"])
    input_shape = run.input_shape
    method = modules[0].method
    params = variables["params"]

    # Per-class sizes and pairwise overlap (MwT generators are excluded: modules drop them).
    trees = id_keep_trees(modules, variables, parent["model"], kwargs, input_shape)
    rows = []
    for m, tree in zip(modules, trees):
        units = np.concatenate([np.asarray(k, bool) for k in m.keep.values()])
        rows.append(
            {
                "class": m.classes[0],
                "unit_retention": float(units.mean()),
                "weight_retention": metrics.weight_retention(tree, params),
                "fallbacks": len(m.fallbacks),
            }
        )
    overlap = metrics.mean_pairwise_overlap(trees)
    U = np.stack([np.concatenate([np.asarray(k, bool) for k in m.keep.values()]) for m in modules])
    coupling = metrics.jaccard_coupling(U)

    # Sub-tasks: fused composition vs parent restricted to T; timing fused vs one-by-one.
    key = cp.parent_key(parent)
    pre = training.make_preprocess(config, run.info, augment=False)
    rng = jax.random.PRNGKey(0)
    vbp = {key: variables}
    test_x, test_y = run.test_data
    parent_logits = np.concatenate(
        [
            np.asarray(run.model.apply(variables, pre(test_x[i : i + 1000], rng), train=False)[0])
            for i in range(0, len(test_y), 1000)
        ]
    )
    task_rows = []
    for spec in args.tasks:
        task = sorted(int(c) for c in spec.split(","))
        chosen = [modules[c] for c in task]
        fused = cp.compose(chosen, vbp, preprocess_by_parent={key: lambda x: pre(x, rng)})
        single = cp.compose_one_by_one(
            chosen, vbp, preprocess_by_parent={key: lambda x: pre(x, rng)}
        )
        result = cp.evaluate_composed(
            fused,
            test_x,
            test_y,
            batch_size=args.batch_size,
            preprocess=lambda x, r: jnp.asarray(x),
        )
        sel = np.isin(test_y, task)
        restricted = np.asarray(task)[np.argmax(parent_logits[sel][:, task], axis=1)]
        one_acc = cp.evaluate_composed(
            single,
            test_x,
            test_y,
            batch_size=args.batch_size,
            preprocess=lambda x, r: jnp.asarray(x),
        )["accuracy"]
        x = jnp.asarray(test_x[: args.batch_size])
        t_fused, t_single = time_apply(fused.apply_fn, x), time_apply(single.apply_fn, x)
        size = fused.groups[0].size
        task_rows.append(
            {
                "task": spec,
                "parent_restricted": float(np.mean(restricted == test_y[sel])),
                "composed": result["accuracy"],
                "one_by_one": one_acc,
                "rel_params": size["params"] / size["parent_params"],
                "rel_macs": size["macs"] / size["parent_macs"],
                "fused_ms": t_fused * 1e3,
                "one_by_one_ms": t_single * 1e3,
                "speedup": t_single / t_fused,
            }
        )

    device = jax.devices()[0]
    text = "\n".join(
        [
            f"# Modules of {parent['model']} (width {kwargs.get('width')}) on {parent['dataset']}, "
            f"{method}, step {step}, tau {modules[0].threshold}",
            "",
            f"Device: {device.platform}, JAX {jax.__version__}. Timing: median of 10 applications to "
            f"a batch of {args.batch_size} test images after warm-up.",
            "",
            "```",
            report.format_table(rows, ["class", "unit_retention", "weight_retention", "fallbacks"]),
            "```",
            "",
            f"Mean unit (kernel) retention {np.mean([r['unit_retention'] for r in rows]):.4f}; "
            f"mean weight retention {np.mean([r['weight_retention'] for r in rows]):.4f}; "
            f"overlap over {len(overlap.pairs)} class pairs: MODA definition {overlap.moda:.4f}, "
            f"true Jaccard {overlap.jaccard:.4f}; Jaccard coupling of unit sets "
            f"{coupling.mean:.4f}.",
            "",
            "```",
            report.format_table(
                task_rows,
                [
                    "task",
                    "parent_restricted",
                    "composed",
                    "one_by_one",
                    "rel_params",
                    "rel_macs",
                    "fused_ms",
                    "one_by_one_ms",
                    "speedup",
                ],
            ),
            "```",
        ]
    )
    print(text)
    if args.out:
        pathlib.Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
