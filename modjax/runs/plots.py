"""The pictures the commands write: training curves and a module overview (matplotlib, Agg).

    training_curves(workdir / "metrics.jsonl", workdir / "curves.png")   # modjax train
    module_overview(out, out / "modules.png")    # modjax modularize / decompose, any family

`training_curves` draws the loss terms of every log step and the train and test accuracy of every
epoch. `module_overview` draws, for a folder of module directories, the fraction of each layer's
units (neurons or channels) that each class's module keeps, and the class-pair overlap (Jaccard
index of the kept units, all layers together); the units come from each family's `units` rule of
the module layer, so it is the same picture for MwT, MODA and Pan & Rajan modules.
"""

import io
import json
import pathlib
from collections.abc import Mapping

import numpy as np

from modjax.modules import atomic, directory, registry

_NOT_PLOTTED = {  # bookkeeping, or on another scale than the objective's terms
    "step", "kind", "accuracy", "grad_norm", "images_per_s", "compile_time_s", "finite", "bad_labels",
}  # fmt: skip


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, png: str | pathlib.Path, *, dpi: int = 110) -> pathlib.Path:
    """Writes `fig` as PNG through `atomic.write_bytes`: whole or not at all, mode 0644 whatever
    the umask, like every other file a command writes for people to share."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return atomic.write_bytes(png, buf.getvalue())


def save_figure(fig, png: str | pathlib.Path, *, dpi: int = 110) -> pathlib.Path:
    """Writes and closes a matplotlib figure as PNG (atomic, 0644): how every command saves one."""
    return _save(_pyplot(), fig, png, dpi=dpi)


def training_curves(metrics: str | pathlib.Path, png: str | pathlib.Path) -> pathlib.Path:
    """Writes `png`: loss terms per log step (left), train/test accuracy per epoch (right).

    Raises:
        FileNotFoundError: no `metrics` file.
    """
    lines = [json.loads(x) for x in pathlib.Path(metrics).read_text().splitlines() if x.strip()]
    train = [r for r in lines if r.get("kind") == "train"]
    epochs = [r for r in lines if r.get("kind") == "epoch"]
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    terms = sorted({k for r in train for k in r if k not in _NOT_PLOTTED})
    for term in terms:
        pts = [(r["step"], r[term]) for r in train if isinstance(r.get(term), (int, float))]
        if pts:
            left.plot(*zip(*pts, strict=True), label=term, lw=1)
    left.set(xlabel="step", title="loss terms and module statistics (log-step means)")
    if terms:
        left.legend(fontsize=8)
    for key, label in (("train_accuracy", "train"), ("test_accuracy", "test")):
        pts = [(r["epoch"], r[key]) for r in epochs if key in r]
        if pts:
            right.plot(*zip(*pts, strict=True), marker="o", label=label)
    right.set(xlabel="epoch", ylabel="accuracy", title="accuracy per epoch", ylim=(0, 1))
    right.legend(fontsize=8)
    fig.tight_layout()
    return _save(plt, fig, png)


def kept_fractions(
    units: Mapping[int, Mapping[str, np.ndarray]],
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """`(layers, kept [classes, layers], jaccard [classes, classes])` of per-class kept units.

    Example:
        >>> u = {0: {"a": np.array([1, 1, 0, 0], bool)}, 1: {"a": np.array([0, 1, 1, 0], bool)}}
        >>> layers, kept, jac = kept_fractions(u)
        >>> layers, kept.tolist(), jac.round(3).tolist()
        (['a'], [[0.5], [0.5]], [[1.0, 0.333], [0.333, 1.0]])
    """
    classes = sorted(units)
    layers = list(units[classes[0]])
    kept = np.array(
        [[float(np.mean(np.asarray(units[c][n], bool))) for n in layers] for c in classes]
    )
    flat = [
        np.concatenate([np.asarray(units[c][n], bool).ravel() for n in layers]) for c in classes
    ]
    jac = np.ones((len(classes), len(classes)))
    for i, a in enumerate(flat):
        for j, b in enumerate(flat):
            union = np.sum(a | b)
            jac[i, j] = np.sum(a & b) / union if union else 1.0
    return layers, kept, jac


def module_overview(modules_dir: str | pathlib.Path, png: str | pathlib.Path) -> pathlib.Path:
    """Writes `png` for the module directories in `modules_dir` (`class_<c>/`, any family).

    Raises:
        ValueError: no module directory in `modules_dir`, or a family without a `units` rule.
    """
    root = pathlib.Path(modules_dir)
    saved = [
        directory.load(p) for p in sorted(root.iterdir()) if (p / directory.MANIFEST).is_file()
    ]
    if not saved:
        raise ValueError(f"{root} holds no module directory")
    units: dict[int, dict[str, np.ndarray]] = {}
    for d in saved:
        family = registry.family_of(d.method)
        if family.units is None:
            raise ValueError(f"family {family.name!r} ({d.path}) has no units rule to draw")
        for c in d.classes:
            units[int(c)] = family.units(d)
    layers, kept, jac = kept_fractions(units)
    classes = sorted(units)
    plt = _pyplot()
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(4 + 0.5 * len(layers) + 0.35 * len(classes), 3.8)
    )
    im = left.imshow(kept, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    left.set(xticks=range(len(layers)), yticks=range(len(classes)), xlabel="layer",
             ylabel="class", title="kept units per layer")  # fmt: skip
    left.set_xticklabels(layers, rotation=60, ha="right", fontsize=7)
    left.set_yticklabels(classes, fontsize=7)
    fig.colorbar(im, ax=left, fraction=0.046)
    im = right.imshow(jac, vmin=0, vmax=1, cmap="magma")
    right.set(xticks=range(len(classes)), yticks=range(len(classes)),
              title="class-pair overlap (Jaccard)")  # fmt: skip
    right.set_xticklabels(classes, fontsize=7)
    right.set_yticklabels(classes, fontsize=7)
    fig.colorbar(im, ax=right, fraction=0.046)
    fig.suptitle(f"{saved[0].method} modules of {saved[0].parent.get('model')}", fontsize=9)
    fig.tight_layout()
    return _save(plt, fig, png)


__all__ = ["kept_fractions", "module_overview", "training_curves"]
