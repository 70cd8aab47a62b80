"""DeepArc on a training workdir: CKA and modules, block removal, repair; tables and figures.

Shared by `modjax arch|shrink|repair`, `experiments/deeparc.py` and the notebook. Each function
writes its tables first and draws its figures from them (matplotlib Agg).
"""

import csv
import dataclasses
import json
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from modjax.deeparc import architecture, pipeline, surgery


@dataclasses.dataclass(frozen=True)
class Context:
    """A restored run: the model, its host variables and the data DeepArc uses."""

    model: Any
    variables: Any
    preprocess: Any
    num_classes: int
    train_data: tuple[np.ndarray, np.ndarray]
    test_data: tuple[np.ndarray, np.ndarray]
    step: int
    config: Any


def load(workdir: str | pathlib.Path, data_dir: str | None = None) -> Context:
    """Restores a `modjax train` workdir (latest checkpoint) with its eval transform."""
    from modjax.runs import training
    from modjax.runs import workdir as workdir_lib

    config, run, variables, step = workdir_lib.load_run(pathlib.Path(workdir), data_dir)
    preprocess = training.make_preprocess(config, run.info, augment=False)
    return Context(
        run.model,
        variables,
        preprocess,
        run.info.num_classes,
        run.train_data,
        run.test_data,
        step,
        config,
    )


def _subset(images, labels, n, seed=0):
    if n is None or n >= len(labels):
        return images, labels
    idx = np.sort(np.random.default_rng(seed).permutation(len(labels))[:n])
    return images[idx], labels[idx]


def _write_csv(path: pathlib.Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_cka(csv_path: pathlib.Path, png_path: pathlib.Path, *, title: str = "") -> None:
    """Heatmap of a saved CKA matrix (`cka.csv`: a `block` column, then one column per block)."""
    with csv_path.open() as f:
        rows = list(csv.reader(f))
    names = rows[0][1:]
    sim = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(sim, vmin=0, vmax=1, cmap="viridis")
    ticks = range(len(names))
    ax.set_xticks(ticks, names, rotation=90, fontsize=6)
    ax.set_yticks(ticks, names, fontsize=6)
    ax.set_xlabel("block output")
    ax.set_ylabel("block output")
    ax.set_title(title or "block-level linear CKA (unbiased HSIC)")
    fig.colorbar(im, ax=ax, label="CKA")
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)


def arch(
    ctx: Context,
    out: pathlib.Path,
    *,
    thresholds: Sequence[float] = (0.9, 0.95, 0.99),
    examples: int | None = None,
    batch_size: int = 256,
    passes: int = 10,
    seed: int = 0,
    parity: bool = False,
) -> dict[str, Any]:
    """Block CKA over the test split, modules and modularity at each θ (METHODS §8.2, §8.3).

    Writes `cka.csv`, `cka.png`, `modules.json`, `modularity.csv`, `modularity.png` in `out`.
    """
    out.mkdir(parents=True, exist_ok=True)
    images, _ = _subset(*ctx.test_data, examples, seed)
    batch_size = min(batch_size, len(images))
    names, sim = pipeline.block_cka(
        ctx.model,
        ctx.variables,
        images,
        preprocess=ctx.preprocess,
        batch_size=batch_size,
        passes=passes,
        seed=seed,
    )
    _write_csv(
        out / "cka.csv",
        [
            {"block": n, **{m: f"{v:.6f}" for m, v in zip(names, row, strict=True)}}
            for n, row in zip(names, sim, strict=True)
        ],
    )
    plot_cka(out / "cka.csv", out / "cka.png", title=f"block CKA, {len(images)} test images")
    rows = architecture.sweep(sim, thresholds, parity=parity)
    result = {
        "blocks": names,
        "examples": len(images),
        "passes": passes,
        "batch_size": batch_size,
        "adjacent_cka": [float(sim[i - 1, i]) for i in range(1, len(names))],
        "sweep": rows,
    }
    (out / "modules.json").write_text(json.dumps(result, indent=2))
    _write_csv(
        out / "modularity.csv",
        [{k: r[k] for k in ("threshold", "num_modules", "modularity")} for r in rows],
    )
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.plot([r["threshold"] for r in rows], [r["modularity"] for r in rows], "o-")
    ax.set_xlabel("threshold θ")
    ax.set_ylabel("modularity (share of blocks in multi-block modules)")
    ax.set_title("one model, one seed")
    fig.tight_layout()
    fig.savefig(out / "modularity.png", dpi=120)
    plt.close(fig)
    return {**result, "cka": sim}


def shrink(
    ctx: Context,
    out: pathlib.Path,
    *,
    remove: Sequence[int] = (),
    search: int = 0,
    candidates: Sequence[int] | None = None,
    num_subsets: int = 5,
    examples: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy after cumulative removals (`remove`) and/or a compression search (§8.4).

    `search` = largest number of blocks removed (best of `num_subsets` random subsets of
    `candidates`, default: every non-first block). Writes `shrink.csv`, `shrink.png`,
    `shrink.json`.
    """
    out.mkdir(parents=True, exist_ok=True)
    images, labels = _subset(*ctx.test_data, examples, seed)
    evaluate = pipeline.make_removal_eval(
        ctx.model,
        ctx.variables,
        images,
        labels,
        preprocess=ctx.preprocess,
        num_classes=ctx.num_classes,
    )
    result: dict[str, Any] = {"examples": len(labels), "baseline": evaluate([])}
    rows = []
    if remove:
        result["cumulative"] = surgery.apply_cumulatively(list(remove), evaluate)
        rows += [
            {
                "mode": "cumulative",
                "num_removed": len(r["removed"]),
                "removed": " ".join(map(str, r["removed"])),
                "accuracy": r["accuracy"],
            }
            for r in result["cumulative"]
        ]
    if search:
        allowed = surgery.removable(ctx.model)
        if candidates is None:
            candidates = allowed
        else:  # a stage's first block cannot go; out-of-range indices still raise below
            from modjax.deeparc.blocks import block_positions

            num_blocks = len(block_positions(ctx.model))
            skipped = [c for c in candidates if 0 <= c < num_blocks and c not in allowed]
            result["skipped_candidates"] = skipped
            candidates = [c for c in candidates if c not in skipped]
        result["search"] = surgery.compression_search(
            candidates, evaluate, max_remove=search, num_subsets=num_subsets, seed=seed
        )
        rows += [
            {"mode": "search", "num_removed": 0, "removed": "", "accuracy": result["baseline"]}
        ]
        rows += [
            {
                "mode": "search",
                "num_removed": r["num_removed"],
                "removed": " ".join(map(str, r["removed"])),
                "accuracy": r["accuracy"],
            }
            for r in result["search"]
        ]
    if not rows:
        raise ValueError("shrink needs --remove and/or --search N (N >= 1)")
    _write_csv(out / "shrink.csv", rows)
    (out / "shrink.json").write_text(json.dumps(result, indent=2))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 3))
    for mode in ("cumulative", "search"):
        pts = [(r["num_removed"], 100 * r["accuracy"]) for r in rows if r["mode"] == mode]
        if pts:
            ax.plot(*zip(*pts, strict=True), "o-", label=mode)
    ax.set_xlabel("blocks removed")
    ax.set_ylabel(f"test accuracy (%), {len(labels)} images")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "shrink.png", dpi=120)
    plt.close(fig)
    return result


def repair(
    ctx: Context,
    out: pathlib.Path,
    *,
    examples: int = 1000,
    test_examples: int | None = 1000,
    top_k: int = 5,
    max_share: float | None = None,
    epochs: int = 10,
    learning_rate: float = 1e-4,
    eps: float = 8.0,
    steps: int = 7,
    batch_size: int = 128,
    seed: int = 0,
) -> dict[str, Any]:
    """DeepArc repair with PGD error images (METHODS §8.5). Writes `repair.json/csv/png`."""
    out.mkdir(parents=True, exist_ok=True)
    images, labels = _subset(*ctx.train_data, examples, seed)
    test_images, test_labels = _subset(*ctx.test_data, test_examples, seed)
    res = pipeline.run_repair(
        ctx.model,
        ctx.variables,
        images,
        labels,
        preprocess=ctx.preprocess,
        test_images=test_images,
        test_labels=test_labels,
        num_classes=ctx.num_classes,
        attacks=({"eps": eps, "step_size": max(eps / 4, 1.0), "steps": steps},),
        top_k=top_k,
        max_share=max_share,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=min(batch_size, 2 * len(labels)),
        seed=seed,
    )
    result = {
        "attack": f"L-inf PGD, eps={eps}/255, {steps} steps, random start",
        "examples": len(labels),
        "test_examples": len(test_labels),
        "epochs": epochs,
        "learning_rate": learning_rate,
        "scores": res.scores,
        "top_k": top_k,
        "max_share": max_share,
        "selected": res.selected,
        "target_layer": res.target_layer,
        "trained_share": res.trained_share,
        "before": res.before,
        "after": res.after,
    }
    (out / "repair.json").write_text(json.dumps(result, indent=2))
    rows = [{"set": k, "before": res.before[k], "after": res.after[k]} for k in res.before]
    _write_csv(out / "repair.csv", rows)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [100 * r["before"] for r in rows], 0.4, label="before")
    ax.bar(x + 0.2, [100 * r["after"] for r in rows], 0.4, label="after")
    ax.set_xticks(x, [r["set"] for r in rows])
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"repair: {100 * res.trained_share:.1f}% of parameters trained")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "repair.png", dpi=120)
    plt.close(fig)
    return result


__all__ = ["Context", "arch", "load", "plot_cka", "repair", "shrink"]
