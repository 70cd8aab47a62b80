r"""DeepArc protocol (METHODS §8): train a CIFAR ResNet-v1, then CKA, modules, shrink and repair.

    nice -n 5 python -m experiments.deeparc --config experiments/deeparc/configs/cpu_r56.py \
        --data-dir ../shared/datasets --workdir runs/deeparc_cpu_r56 [--results FILE.md]

A config (`experiments/deeparc/configs/*.py`) returns `train` (a `modjax train` config) and
`analysis` (CKA images and passes, compression search, repair; see `configs/cpu.py`). Stages:
`train` (a normal `modjax train` workdir under <workdir>/train, checkpointed and resumed by
rerunning), `analyze` (block-level CKA, modules and modularity over θ, compression search,
repair; <workdir>/analysis/results.json and the markdown table, with the CKA table and heatmap
copied beside it as <stem>_cka.csv/png), `report` (rewrite the markdown from results.json,
adding any <workdir>/analysis_*/repair.json of extra `modjax repair` runs). Default (`all`):
train + analyze.
"""

import argparse
import json
import logging
import pathlib
import time

import jax

from experiments.deeparc import report
from modjax.deeparc import architecture, surgery
from modjax.modules import atomic
from modjax.runs import config as config_lib
from modjax.runs import deeparc, training

ANALYSIS = (
    "cka_examples",  # test images for CKA (None: all)
    "passes",  # minibatch CKA passes over them
    "eval_examples",  # test images for the compression search (None: all)
    "max_remove",  # blocks removed at most (and candidates wanted)
    "subsets",  # random subsets tried per number of removed blocks
    "repair_examples",  # training images the error images are made from
    "repair_test",  # test images the repair is evaluated on
    "repair_epochs",
    "repair_lr",
    "repair_top_k",  # blocks retrained, by deviation score
    "repair_max_share",  # ... within this share of the parameters (None: no cap)
    "pgd_steps",
    "finetune_epochs",  # > 0: each shrunk network also fine-tuned (DeepArc does not)
    "finetune_examples",  # ... on this many training images
)
"""The analysis settings a config's `analysis` holds, every one of them."""

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
"""JAX's monitoring event for one XLA compilation (`jax._src.dispatch.BACKEND_COMPILE_EVENT`)."""


def load(path: str, data_dir: str | None) -> tuple[config_lib.TrainConfig, dict]:
    """`(training config, analysis settings)` of a project config, checked by name."""
    try:
        return config_lib.load_project_config(path, "analysis", ANALYSIS, data_dir)
    except ValueError as e:
        raise SystemExit(str(e)) from None


def _candidates(sweep, want, allowed):
    """Redundant blocks at the highest θ that offers `want` of them (DeepArc: θ = 0.99), among
    the `allowed` ones (a stage's first block cannot be removed, `surgery.removable`)."""

    def cands(row):
        return [
            c for c in architecture.redundant([tuple(m) for m in row["modules"]]) if c in allowed
        ]

    for row in sorted(sweep, key=lambda r: -r["threshold"]):
        if len(cands(row)) >= want:
            return row["threshold"], cands(row)
    row = min(sweep, key=lambda r: r["threshold"])
    return row["threshold"], cands(row)


def analyze(workdir: pathlib.Path, data_dir, settings) -> dict:
    """CKA, modules, compression search and repair of <workdir>/train; writes analysis/."""
    ctx = training.load_run(workdir / "train", data_dir)
    out = workdir / "analysis"
    t0 = time.perf_counter()
    compiles = []  # XLA compilations of the CKA stage: one HSIC program per minibatch shape
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, secs, **kw: compiles.append(secs) if event == COMPILE_EVENT else None
    )
    arch = deeparc.arch(
        ctx,
        out,
        thresholds=architecture.DEFAULT_THRESHOLDS,
        examples=settings["cka_examples"],
        passes=settings["passes"],
    )
    t_arch = time.perf_counter() - t0
    cka_compiles = len(compiles)
    allowed = surgery.removable(ctx.model)
    theta, cands = _candidates(arch["sweep"], settings["max_remove"], allowed)
    if len(cands) < settings["max_remove"]:  # too few redundant blocks: any non-first block
        cands, theta = allowed, None
    shrink = deeparc.shrink(
        ctx,
        out,
        search=settings["max_remove"],
        candidates=cands,
        num_subsets=settings["subsets"],
        examples=settings["eval_examples"],
        network_dir=out / "shrink_network",
        finetune_epochs=settings["finetune_epochs"],
        finetune_examples=settings["finetune_examples"],
    )
    t_shrink = time.perf_counter() - t0 - t_arch
    rep = deeparc.repair(
        ctx,
        out,
        examples=settings["repair_examples"],
        test_examples=settings["repair_test"],
        epochs=settings["repair_epochs"],
        learning_rate=settings["repair_lr"],
        steps=settings["pgd_steps"],
        top_k=settings["repair_top_k"],
        max_share=settings["repair_max_share"],
        network_dir=out / "repair_network",
    )
    t_repair = time.perf_counter() - t0 - t_arch - t_shrink
    result = {
        "step": ctx.step,
        "config": ctx.config.to_json(),
        "settings": settings,
        "arch": {k: v for k, v in arch.items() if k != "cka"},
        "cka_seconds": t_arch,
        "cka_compilations": cka_compiles,
        "seconds": {"arch": t_arch, "shrink": t_shrink, "repair": t_repair},
        "candidate_theta": theta,
        "candidates": cands,
        "shrink": shrink,
        "repair": rep,
        "jax": jax.__version__,
        "platform": jax.devices()[0].platform,
    }
    atomic.write_json(out / "results.json", result)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.deeparc",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        required=True,
        help="a file of experiments/deeparc/configs (train, analysis) (run as Python: use only files you trust)",
    )
    parser.add_argument("--workdir", required=True, help="output directory (train/, analysis/)")
    parser.add_argument("--data-dir", help="dataset directory (default: $MODJAX_DATA_DIR)")
    parser.add_argument(
        "--stage",
        choices=("train", "analyze", "report", "all"),
        default="all",
        help="train, analyze (CKA, shrink, repair), report (markdown from results.json), or "
        "all = train + analyze (default)",
    )
    parser.add_argument("--results", help="markdown results file (default: <workdir>/results.md)")
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bars"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    config, settings = load(args.config, args.data_dir)
    workdir = pathlib.Path(args.workdir)
    results = pathlib.Path(args.results) if args.results else workdir / "results.md"
    if args.stage in ("train", "all"):
        training.train_and_evaluate(config, workdir / "train", progress=args.progress)
    if args.stage in ("analyze", "all"):
        result = analyze(workdir, args.data_dir, settings)
        report.write_markdown(result, results, workdir)
        print(f"wrote {results}")
    if args.stage == "report":  # rewrite the markdown from analysis/results.json
        result = json.loads((workdir / "analysis" / "results.json").read_text())
        report.write_markdown(result, results, workdir)
        print(f"wrote {results}")
    return 0


if __name__ == "__main__":
    from experiments import run

    raise SystemExit(run(main, "python -m experiments.deeparc"))
