"""DeepArc on a training workdir: CKA and modules, block removal, repair; tables and figures.

Shared by `modjax arch|shrink|repair`, `python -m experiments.deeparc` and the notebook; each function
takes the run restored by `training.load_run`. Each writes its tables first and draws its
figures from them (matplotlib Agg). `shrink` and `repair` also save the network they make as a
module directory `<out>/network/` (`deeparc.network.save_network`, method "deeparc"), which
`modjax eval --module` evaluates and `modjax compose` composes like any module.
"""

import csv
import io
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modjax import data
from modjax.deeparc import architecture, network, pipeline, surgery
from modjax.deeparc.blocks import block_names, block_positions
from modjax.modules import atomic
from modjax.runs import plots
from modjax.runs.training import RestoredRun, workdir_label

MODEL_NAME = "resnet_cifar"
"""The zoo name that rebuilds every network DeepArc makes (any depth, any blocks per stage)."""


def _write_csv(path: pathlib.Path, rows: list[dict[str, Any]]) -> None:
    """Writes `rows` as a CSV table, atomically (`modules.atomic`)."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(path, text.getvalue())


def _save_network(
    restored: RestoredRun,
    target: pathlib.Path,
    *,
    model,
    variables,
    operation: Mapping[str, Any],
    metrics: Mapping[str, Any],
) -> pathlib.Path:
    """Saves a network made from `restored` as a `"deeparc"` module directory at `target`.

    Its parent is the restored checkpoint (step and content hash), its input transform and
    class names the run's; an existing `target` is replaced, as the tables beside it are.
    """
    return network.save_network(
        target,
        model_name=MODEL_NAME,
        model=model,
        variables=variables,
        parent=restored.describe(checkpoint=workdir_label(restored.workdir)),
        preprocess=restored.preprocess_spec(),
        class_names=restored.class_names,
        operation=operation,
        metrics=metrics,
        overwrite=True,
    )


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
    plots.save_figure(fig, png_path, dpi=120)


def _check_blocks(model, remove: Sequence[int] | None, candidates: Sequence[int] | None) -> None:
    """Refuses `--remove` / `--candidates` indices before any work, naming the valid range."""
    num_blocks = len(block_positions(model))
    allowed = surgery.removable(model)
    span = f"0..{num_blocks - 1}"
    for flag, indices in (("--remove", remove), ("--candidates", candidates)):
        for i in indices or ():
            if not 0 <= i < num_blocks:
                raise ValueError(
                    f"{flag} {i}: no such block; the model has {num_blocks} blocks ({span}), "
                    f"removable: {' '.join(map(str, allowed))}"
                )
    for i in remove or ():
        if i not in allowed:
            raise ValueError(
                f"--remove {i}: block {i} ({block_names(model)[i]}) is the first block of stage "
                f"{block_positions(model)[i][0]}, which changes the shape (stride, shortcut "
                f"conv) and cannot be removed; removable: {' '.join(map(str, allowed))}"
            )
    if remove and len(set(remove)) != len(remove):
        raise ValueError(f"--remove {' '.join(map(str, remove))} repeats a block index")


def arch(
    restored: RestoredRun,
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
    images, _ = data.seeded_subset(*restored.test_data, examples, seed)
    batch_size = min(batch_size, len(images))
    names, sim = pipeline.block_cka(
        restored.model,
        restored.variables,
        images,
        preprocess=restored.preprocess,
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
    atomic.write_json(out / "modules.json", result)
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
    plots.save_figure(fig, out / "modularity.png", dpi=120)
    return {**result, "cka": sim}


def shrink(
    restored: RestoredRun,
    out: pathlib.Path,
    *,
    remove: Sequence[int] = (),
    search: int = 0,
    candidates: Sequence[int] | None = None,
    num_subsets: int = 5,
    examples: int | None = None,
    seed: int = 0,
    network_dir: str | os.PathLike | None = None,
    finetune_epochs: int = 0,
    finetune_examples: int | None = 5000,
    finetune_lr: float = 0.01,
) -> dict[str, Any]:
    """Accuracy after cumulative removals (`remove`) and/or a compression search (§8.4).

    The search picks each size's best subset by accuracy on `restored.selection_data` (the
    run's validation split, else training images: never the test set) and reports the test
    accuracy of what it picked; `selected_on` in the result says which examples chose.

    DeepArc does not fine-tune after removal. With `finetune_epochs` > 0, every network of the
    table is also fine-tuned (`pipeline.finetune`: CE on `finetune_examples` training images,
    lr `finetune_lr`) and its accuracy recorded as `accuracy_finetuned` (the saved network stays
    the one without fine-tuning).

    `search` = largest number of blocks removed (best of `num_subsets` random subsets of
    `candidates`, default: every non-first block). Writes `shrink.csv`, `shrink.png`,
    `shrink.json`, and the shrunk network as a module directory at `network_dir` (default
    `out/network`): without the blocks of `remove` when given, else without the best subset
    the search found at its largest size (none when the search had no candidates).

    Returns:
        `{"examples", "baseline", "cumulative"?, "search"?, "skipped_candidates"?, "network"}`;
        `network` is `{"path", "removed", "accuracy", "blocks"}` of the saved network, or None.
    """
    _check_blocks(restored.model, remove, candidates)
    out.mkdir(parents=True, exist_ok=True)
    images, labels = data.seeded_subset(*restored.test_data, examples, seed)
    (sel_images, sel_labels), selected_on = restored.selection_data(examples, seed)

    def removal_eval(x, y):
        return pipeline.make_removal_eval(
            restored.model,
            restored.variables,
            x,
            y,
            preprocess=restored.preprocess,
            num_classes=restored.num_classes,
        )

    evaluate, select = removal_eval(images, labels), removal_eval(sel_images, sel_labels)
    result: dict[str, Any] = {
        "examples": len(labels),
        "selected_on": selected_on,
        "baseline": evaluate([]),
        "baseline_selection": select([]),
    }
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
        allowed = surgery.removable(restored.model)
        if candidates is None:
            candidates = allowed
        else:  # a stage's first block cannot go (a CKA module may span a stage boundary)
            skipped = [c for c in candidates if c not in allowed]
            result["skipped_candidates"] = skipped
            candidates = [c for c in candidates if c not in skipped]
        # The subsets are chosen on the selection examples; the table reports their test
        # accuracy (the selection accuracy is kept beside it).
        found = surgery.compression_search(
            candidates, select, max_remove=search, num_subsets=num_subsets, seed=seed
        )
        result["search"] = [
            {**r, "selection_accuracy": r["accuracy"], "accuracy": evaluate(r["removed"])}
            for r in found
        ]
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
    if finetune_epochs:
        ft_images, ft_labels = data.seeded_subset(*restored.train_data, finetune_examples, seed)
        tuned: dict[str, float] = {}
        for row in rows:
            if row["removed"] not in tuned:
                removed = [int(b) for b in row["removed"].split()]
                m, v = surgery.remove_blocks(restored.model, restored.variables, removed)
                v = pipeline.finetune(
                    m, v, ft_images, ft_labels, preprocess=restored.preprocess,
                    epochs=finetune_epochs, learning_rate=finetune_lr, seed=seed,
                )  # fmt: skip
                tuned[row["removed"]] = pipeline.accuracy(
                    m, v, images, labels, preprocess=restored.preprocess,
                    num_classes=restored.num_classes,
                )  # fmt: skip
            row["accuracy_finetuned"] = tuned[row["removed"]]
        result["finetune"] = {
            "epochs": finetune_epochs,
            "examples": len(ft_labels),
            "learning_rate": finetune_lr,
            "accuracy": tuned,
        }
    if remove:
        mode, chosen = "remove", result["cumulative"][-1]
    else:
        mode, chosen = "search", (result["search"] or [None])[-1]
    result["network"] = None
    if chosen is not None:
        model, variables = surgery.remove_blocks(
            restored.model, restored.variables, chosen["removed"]
        )
        path = _save_network(
            restored,
            pathlib.Path(network_dir) if network_dir else out / "network",
            model=model,
            variables=variables,
            operation={
                "operation": "shrink",
                "mode": mode,
                "removed": list(chosen["removed"]),
                "removed_names": [block_names(restored.model)[i] for i in chosen["removed"]],
                "blocks": list(model.stage_blocks()),
            },
            metrics={
                "accuracy": chosen["accuracy"],
                "baseline_accuracy": result["baseline"],
                "test_examples": len(labels),
            },
        )
        result["network"] = {
            "path": str(path),
            "removed": list(chosen["removed"]),
            "accuracy": chosen["accuracy"],
            "blocks": list(model.stage_blocks()),
        }
    _write_csv(out / "shrink.csv", rows)
    atomic.write_json(out / "shrink.json", result)
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
    plots.save_figure(fig, out / "shrink.png", dpi=120)
    return result


def repair(
    restored: RestoredRun,
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
    network_dir: str | os.PathLike | None = None,
    train_all: bool = False,
    mse_weight: float = 0.5,
    bn: str = "train",
    recalibrate: bool = True,
) -> dict[str, Any]:
    """DeepArc repair with PGD error images (METHODS §8.5).

    `train_all` gives the full-retraining baseline (every parameter trained on the same data
    with the same loss); `mse_weight` weighs the activation term against CE (DeepArc: 0.5).
    `bn` and `recalibrate`: the trained blocks' BatchNorm (`pipeline.run_repair`).

    Writes `repair.json/csv/png`, and the repaired network (the selected blocks retrained, every
    other weight the parent's) as a module directory at `network_dir` (default `out/network`);
    the result's `network` is `{"path", "blocks", "accuracy"}` (clean test accuracy after).
    """
    out.mkdir(parents=True, exist_ok=True)
    images, labels = data.seeded_subset(*restored.train_data, examples, seed)
    test_images, test_labels = data.seeded_subset(*restored.test_data, test_examples, seed)
    res = pipeline.run_repair(
        restored.model,
        restored.variables,
        images,
        labels,
        preprocess=restored.preprocess,
        test_images=test_images,
        test_labels=test_labels,
        num_classes=restored.num_classes,
        attacks=({"eps": eps, "step_size": max(eps / 4, 1.0), "steps": steps},),
        top_k=top_k,
        max_share=max_share,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=min(batch_size, 2 * len(labels)),
        seed=seed,
        train_all=train_all,
        mse_weight=mse_weight,
        bn=bn,
        recalibrate=recalibrate,
    )
    result = {
        "attack": f"L-inf PGD, eps={eps}/255, {steps} steps, random start",
        "examples": len(labels),
        "test_examples": len(test_labels),
        "epochs": epochs,
        "learning_rate": learning_rate,
        "train_all": train_all,
        "mse_weight": mse_weight,
        "bn": bn,
        "bn_recalibrated": recalibrate,
        "scores": res.scores,
        "top_k": top_k,
        "max_share": max_share,
        "selected": res.selected,
        "target_layer": res.target_layer,
        "trained_share": res.trained_share,
        "before": res.before,
        "after": res.after,
    }
    names = block_names(restored.model)
    path = _save_network(
        restored,
        pathlib.Path(network_dir) if network_dir else out / "network",
        model=restored.model,
        variables=res.variables,
        operation={
            "operation": "repair",
            "blocks": list(res.selected),
            "block_names": [names[i] for i in res.selected],
            "target_layer": res.target_layer,
            "trained_share": res.trained_share,
            "attack": result["attack"],
            "examples": len(labels),
            "epochs": epochs,
            "learning_rate": learning_rate,
        },
        metrics={
            "accuracy": res.after["clean_test"],
            "test_examples": len(test_labels),
            **{f"{k}_before": v for k, v in res.before.items()},
            **{f"{k}_after": v for k, v in res.after.items()},
        },
    )
    result["network"] = {
        "path": str(path),
        "blocks": list(res.selected),
        "accuracy": res.after["clean_test"],
    }
    atomic.write_json(out / "repair.json", result)
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
    plots.save_figure(fig, out / "repair.png", dpi=120)
    return result


__all__ = ["MODEL_NAME", "arch", "plot_cka", "repair", "shrink"]
