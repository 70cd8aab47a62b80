"""`modjax decompose` on a training workdir: Pan & Rajan modules cut from its checkpoint.

    summary = decompose_workdir("runs/mnist4", "runs/mnist4/pr", ti="sne", cm="rie")
    summary["composed_accuracy"], summary["classes"]

An MLP parent gets the dense method (FSE'20: CI + TI + CM, METHODS §7.1-7.4), a CIFAR ResNet
without BatchNorm the CNN method (ICSE'22: inactive-position CI, TI at 1:1, channelling and
MC-BLN, §7.7). Every module directory names its parent like the modules of every other family
(`RestoredRun.describe`: zoo model, dataset, step and `modules.identity.parent_hash`).
"""

import os
import pathlib
import time
from typing import Any

import jax
import numpy as np

from modjax import decompose as dc
from modjax import loop, train
from modjax.modules import atomic
from modjax.runs import plots, training

EVAL_BATCH_SIZE = 250
"""Test examples per eval step of the parent's and the vote's accuracy."""

DENSE_CM = ("rie", "c", "none")
CNN_CM = ("bln", "c", "none")


def check_options(
    model: str, *, ti: str, cm: str | None, parity: bool, paper_constants: bool
) -> str:
    """The concern modularization for a parent `model`, refusing the other method's options.

    Returns:
        `cm`, or the method's default (`"rie"` dense, `"bln"` CNN).

    Raises:
        ValueError: a model neither method takes, or an option of the other method (named).
    """
    if model == "mlp":
        dc.check_parent(model)
        cm = cm or "rie"
        if cm not in DENSE_CM:
            raise ValueError(
                f"--cm {cm} is the CNN method's; an MLP parent takes {', '.join(DENSE_CM)}"
            )
        return cm
    dc.check_cnn_parent(model)
    cm = cm or "bln"
    if cm not in CNN_CM:
        raise ValueError(
            f"--cm {cm} is the dense method's; a CNN parent ({model}) takes {', '.join(CNN_CM)}"
        )
    dense_only = [
        flag
        for flag, on in (
            ("--ti", ti != "sne"),
            ("--parity", parity),
            ("--paper-constants", paper_constants),
        )
        if on
    ]
    if dense_only:
        raise ValueError(
            f"{', '.join(dense_only)}: options of the dense method, for MLP parents only (FSE'20)"
        )
    return cm


def _preprocessed(restored: training.RestoredRun) -> tuple[np.ndarray, np.ndarray]:
    """`(train images, train labels)` through the eval transform, what decomposition reads."""
    pre = jax.jit(restored.preprocess)
    key = jax.random.key(0)
    images, labels = restored.train_data
    x = np.concatenate(
        [np.asarray(pre(images[i : i + 4096], key)) for i in range(0, len(images), 4096)]
    )
    return x, np.asarray(labels)


def _test_accuracy(restored: training.RestoredRun, predict_fn, variables) -> float:
    """Test accuracy of `predict_fn(variables, preprocessed images) -> [B, classes]` scores.

    One `loop.evaluate` pass of `train.make_eval_step(predict_fn=...)` over the raw test split
    (the eval transform runs inside the step; the last batch padded and masked).
    """
    images, labels = restored.test_data
    eval_step = train.make_eval_step(
        predict_fn=predict_fn,
        preprocess=restored.preprocess,
        num_classes=restored.num_classes,
        loss=False,
    )
    result = loop.evaluate(
        eval_step=eval_step,
        variables=variables,
        images=images,
        labels=labels,
        global_batch_size=EVAL_BATCH_SIZE,
    )
    return result["accuracy"]


def decompose_workdir(
    workdir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    ti: str = "sne",
    cm: str | None = None,
    delta: float = 0.5,
    parity: bool = False,
    paper_constants: bool = False,
    confidence: float = 0.9,
    allow_fewer: bool = False,
    positives: int | None = None,
    negatives: int | None = None,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Decomposes a run's latest checkpoint into one module per class, saved under `out`.

    Writes `out/class_<c>/` (`decompose.save_decomposed`, with the test transform and class
    name) and `out/modules.json` (the summary); `out` is written whole or not at all.

    Args:
        workdir: a `modjax train` workdir of an MLP or a CIFAR ResNet without BatchNorm.
        out: the output directory; it must not exist.
        ti: tangling identification variant of the dense method (sne, i, pn, hp).
        cm: concern modularization (dense: rie, c, none; CNN: bln, c, none; default: rie / bln).
        delta: MC-BLN's δ (CNN).
        parity: the reference code's quirks (dense).
        paper_constants: the paper's TI thresholds and sample counts (dense).
        confidence: a CI positive needs p_c above this.
        allow_fewer: use the confident positives there are when a class has too few.
        positives: CI positives per class (default: the TI variant's; CNN: 1000).
        negatives: TI negatives per other class (default: the variant's; CNN: 1:1).
        data_dir: dataset directory (default: the run's).

    Returns:
        The summary written to `modules.json`: `workdir, step, method, kind, cm, settings,
        parent, decompose_seconds, model_accuracy, composed_accuracy, classes` (one row per
        class: `class, name, confident` and the kind's retention rates).

    Raises:
        ValueError: `out` exists, a confidence outside [0, 1), a parent neither method takes, or an option of the other
            method; FileNotFoundError: `workdir` holds no run or no checkpoint.
    """
    workdir, out = pathlib.Path(workdir), pathlib.Path(out)
    if not 0 <= confidence < 1:  # the CLI's type (`cli.flags.probability`) says the same
        raise ValueError(f"--confidence={confidence} must be in [0, 1)")
    if out.exists():
        raise ValueError(f"--out {out} exists; remove it or choose another directory")
    restored = training.load_run(workdir, data_dir)
    config = restored.config
    cnn = config.model != "mlp"
    cm = check_options(config.model, ti=ti, cm=cm, parity=parity, paper_constants=paper_constants)
    params = restored.variables["params"]
    parent = restored.describe(checkpoint=training.workdir_label(workdir))
    x, y = _preprocessed(restored)
    t0 = time.perf_counter()
    if cnn:
        modules = dc.decompose_cnn(
            params, x, y, cm=cm, delta=delta, confidence=confidence,
            num_positives=positives or 1000, negatives_per_class=negatives,
            allow_fewer=allow_fewer, parent=parent,
        )  # fmt: skip
    else:
        modules = dc.decompose_dense(
            params, x, y, ti=ti, cm=cm, parity=parity, paper_constants=paper_constants,
            confidence=confidence, allow_fewer=allow_fewer, num_positives=positives,
            negatives_per_class=negatives, parent=parent,
        )  # fmt: skip
    seconds = time.perf_counter() - t0
    stacked, own, labels = dc.compose(modules)
    num_classes = restored.num_classes

    def flat(batch):  # the dense method reads flat inputs
        return batch if cnn else batch.reshape(batch.shape[0], -1)

    def vote_fn(v, batch):  # one-hot of the vote's label: its argmax is `dc.predict`, exactly
        label = dc.predict(v["stacked"], v["own"], v["labels"], flat(batch))
        return jax.nn.one_hot(label, num_classes)

    def parent_fn(p, batch):
        return dc.run(p, batch)[0] if cnn else dc.forward(dc.dense_layers(p), flat(batch))

    composed = _test_accuracy(restored, vote_fn, {"stacked": stacked, "own": own, "labels": labels})
    model_accuracy = _test_accuracy(restored, parent_fn, params)
    names = restored.class_names
    rates = ("position_rate", "channel_rate") if cnn else ("edge_rate", "node_rate", "mac_rate")
    rows = [
        {
            "class": m.class_id,
            "name": names[m.class_id],
            "confident": m.metrics["num_confident"],
            **{r: m.metrics[r] for r in rates},
        }
        for m in modules
    ]
    summary = {
        "workdir": training.workdir_label(workdir),
        "step": restored.step,
        "method": dc.io.METHOD,
        "kind": "cnn" if cnn else "dense",
        "cm": cm,
        "settings": modules[0].settings,
        "parent": parent,
        "decompose_seconds": seconds,
        "model_accuracy": model_accuracy,
        "composed_accuracy": composed,
        "classes": rows,
    }
    spec = restored.preprocess_spec()
    with atomic.directory(out) as tmp:
        for m in modules:
            dc.save_decomposed(
                m, tmp / f"class_{m.class_id}", preprocess=spec, class_names=[names[m.class_id]]
            )
        atomic.write_json(tmp / "modules.json", summary)
        plots.module_overview(tmp, tmp / "modules.png")  # kept units and class overlap
    return summary


__all__ = ["CNN_CM", "DENSE_CM", "check_options", "decompose_workdir"]
