r"""Report on the modules of one trained model: sizes, overlap, composed accuracy, inference time.

    python -m experiments.module_report --modules runs/moda_mnist/modules \
        --tasks 3,8 0,2,4,6,8 --data-dir ../shared/datasets --out runs/moda_mnist/report.md

Reads the per-class modules written by `modjax modularize` and their parent training run (restored
at the modules' step and checked against their parent hash), then measures (METHODS §10):
- per class: kernel/unit retention (KRR for MwT), weight retention of the pruned module, its
  MACs and XLA's compiled FLOPs relative to the parent (`modjax.metrics.compiled_flops`: about
  2·MACs less the taps on SAME padding, plus elementwise work);
- MODA overlap (|a∧b| / model size) and the true Jaccard |a∧b| / |a∨b| over all class pairs, from
  parameter-level keep trees, and the Jaccard coupling of the unit sets
  (`modjax.runs.module_sizes.size_table`);
- per sub-task T: accuracy of the composed network (one fused pruned network over the union of
  T's modules, no retraining) vs the parent restricted to T's logits
  (`modjax.runs.pipeline.parent_restricted_accuracy`), on T's test samples, its relative
  parameters and MACs, and inference time fused vs one network per module.
Sub-tasks, batch size and timing repeats come from `--config` (default
`experiments/module_report/configs/default.py`); flags override them.
"""

import argparse
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp

from modjax.modular import compose as cp
from modjax.modular import io as module_io
from modjax.modules import atomic
from modjax.runs import config as config_lib
from modjax.runs import module_sizes, report
from modjax.runs.modularize import restore_parent
from modjax.runs.pipeline import parent_restricted_accuracy

DEFAULT = pathlib.Path(__file__).resolve().parent / "configs" / "default.py"
TASK_COLUMNS = (
    "task",
    "parent_restricted",
    "composed",
    "one_by_one",
    "rel_params",
    "rel_macs",
    "fused_ms",
    "one_by_one_ms",
    "speedup",
)


def time_apply(apply_fn, x, repeats=10):
    """Median wall time of `apply_fn(x)` over `repeats` runs after one warm-up."""
    jax.block_until_ready(apply_fn(x))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(apply_fn(x))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _count(flops) -> str:
    return "n/a" if flops is None else f"{flops:,.0f}"


def task_row(modules, restored, task, *, batch_size, repeats) -> dict:
    """One sub-task: fused and one-by-one composition vs the restricted parent, sizes, times."""
    key = cp.parent_key(modules[0].parent)
    rng = jax.random.PRNGKey(0)
    vbp = {key: restored.variables}
    pbp = {key: lambda x: restored.preprocess(x, rng)}
    chosen = [modules[c] for c in task]
    fused = cp.compose(chosen, vbp, preprocess_by_parent=pbp)
    single = cp.compose_one_by_one(chosen, vbp, preprocess_by_parent=pbp)
    test_x, test_y = restored.test_data
    acc = {
        name: cp.evaluate_composed(
            composed,
            test_x,
            test_y,
            batch_size=batch_size,
            preprocess=lambda x, r: jnp.asarray(x),
        )["accuracy"]
        for name, composed in (("composed", fused), ("one_by_one", single))
    }
    x = jnp.asarray(test_x[:batch_size])
    t_fused = time_apply(fused.apply_fn, x, repeats)
    t_single = time_apply(single.apply_fn, x, repeats)
    size = fused.groups[0].size
    return {
        "task": ",".join(str(c) for c in task),
        "parent_restricted": parent_restricted_accuracy(
            restored.config, restored.run, restored.variables, task
        ),
        **acc,
        "rel_params": size["params"] / size["parent_params"],
        "rel_macs": size["macs"] / size["parent_macs"],
        "fused_ms": t_fused * 1e3,
        "one_by_one_ms": t_single * 1e3,
        "speedup": t_single / t_fused,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.module_report",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--modules", required=True, help="directory written by modularize")
    parser.add_argument(
        "--config",
        default=str(DEFAULT),
        help="tasks, batch_size and repeats (default: experiments/module_report/configs/"
        "default.py; run as Python: use only files you trust)",
    )
    parser.add_argument(
        "--tasks", nargs="+", help="sub-tasks as comma-separated class ids (default: the config's)"
    )
    parser.add_argument(
        "--workdir",
        help="the parent's training workdir, restored at the modules' step and checked by hash "
        "(default: the parent of --modules)",
    )
    parser.add_argument("--data-dir", help="dataset directory (default: the run's)")
    parser.add_argument(
        "--batch-size", type=int, help="timing/eval batch size (default: the config's)"
    )
    parser.add_argument("--out", help="write the report (markdown) here")
    args = parser.parse_args(argv)
    settings = config_lib.load_config_file(args.config)
    tasks = args.tasks or list(settings["tasks"])
    batch_size = args.batch_size or settings["batch_size"]
    repeats = settings["repeats"]

    root = pathlib.Path(args.modules)
    modules = [
        module_io.load_module(d)
        for d in sorted(root.glob("class_*"), key=lambda p: int(p.name.split("_")[1]))
    ]
    if not modules:
        raise FileNotFoundError(
            f"--modules {root}: no class_<c> module directories there (the output folder of "
            "`modjax modularize`)"
        )
    parent = modules[0].parent
    workdir = pathlib.Path(args.workdir) if args.workdir else root.resolve().parent
    restored = restore_parent(modules[0], workdir, args.data_dir)
    sizes = module_sizes.size_table(
        modules, restored.variables, input_shape=restored.input_shape, flops=True
    )
    task_rows = [
        task_row(
            modules,
            restored,
            sorted(int(c) for c in spec.split(",")),
            batch_size=batch_size,
            repeats=repeats,
        )
        for spec in tasks
    ]

    device = jax.devices()[0]
    kwargs = parent["model_kwargs"]
    text = "\n".join(
        [
            f"# Modules of {parent['model']} (width {kwargs.get('width')}) on "
            f"{parent['dataset']}, {modules[0].method}, step {restored.step}, "
            f"tau {modules[0].threshold}",
            "",
            f"Device: {device.platform}, JAX {jax.__version__}. Timing: median of {repeats} "
            f"applications to a batch of {batch_size} test images after warm-up.",
            "",
            "```",
            report.format_table(
                sizes["rows"],
                [
                    "class",
                    "unit_retention",
                    "weight_retention",
                    "relative_macs",
                    "relative_flops",
                    "fallbacks",
                ],
            ),
            "```",
            "",
            f"Parent: {sizes['parent_macs']:,} MACs (conv/dense, fvcore convention) and "
            f"{_count(sizes['parent_flops'])} XLA FLOPs (compiled forward pass) per example.",
            "",
            f"Mean unit (kernel) retention {sizes['unit_retention']:.4f}; mean weight retention "
            f"{sizes['weight_retention']:.4f}; overlap over {sizes['pairs']} class pairs: MODA "
            f"definition {sizes['overlap']:.4f}, true Jaccard {sizes['jaccard']:.4f}; Jaccard "
            f"coupling of unit sets {sizes['coupling']:.4f}.",
            "",
            "```",
            report.format_table(task_rows, list(TASK_COLUMNS)),
            "```",
        ]
    )
    print(text)
    if args.out:
        atomic.write_text(args.out, text + "\n")
    return 0


if __name__ == "__main__":
    from experiments import run

    raise SystemExit(run(main, "python -m experiments.module_report"))
