"""Module replacement in the workdir layer: a weak run's class repaired by a module directory.

    value = replace_class("runs/weak", "strong/modules/class_3", target_class=3, epochs=5)
    value["accuracy"], value["change"]["moda_adapter"]

The strong module is rebuilt from its directory alone (`runs.compose.build_composition`); the
weak run is restored from its workdir. METHODS §5.7; the evaluation itself (adapter, baseline,
per-class accuracies and "TC | mean non-TC" changes, one set of key names) is
`modjax.modular.replace.evaluate_replacement`, shared with `python -m experiments.reproduce
moda_replace`.
"""

import os
import pathlib
from typing import Any

import numpy as np

from modjax import data
from modjax.modular import compose as cp
from modjax.modular import replace as rp
from modjax.modules import transform
from modjax.runs import compose as modules
from modjax.runs import training


def _check(epochs: int, batch_size: int, learning_rate: float) -> None:
    if epochs < 1:
        raise ValueError(f"--epochs={epochs} must be >= 1 (MODA: 5)")
    if batch_size < 1:
        raise ValueError(f"--batch-size={batch_size} must be >= 1")
    if not learning_rate > 0:
        raise ValueError(f"--learning-rate={learning_rate} must be > 0")


def replace_class(
    weak_workdir: str | os.PathLike,
    module_dir: str | os.PathLike,
    *,
    target_class: int,
    epochs: int = 5,
    learning_rate: float = 0.05,
    batch_size: int = 128,
    seed: int = 0,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Trains the MODA adapter and the CNNSplitter baseline; returns the JSON-able result.

    Raises:
        ValueError: bad arguments, a multi-class module, a target class outside the weak run or
            other than the module's class, or runs whose images differ in shape (naming the value).
    """
    import jax
    import jax.numpy as jnp

    _check(epochs, batch_size, learning_rate)
    saved = modules.load_dirs([module_dir])  # validate cheap inputs before restoring runs
    module = saved[0]
    if len(module.classes) != 1:
        raise ValueError(
            f"--module {module_dir} holds classes {list(module.classes)}; replacement needs a "
            "single-class module (one directory class_<c> of `modjax modularize` or `decompose`)"
        )
    weak_dir = pathlib.Path(weak_workdir)
    weak = training.load_run(weak_dir, data_dir)
    weak_config, weak_run, weak_vars, weak_step = weak.config, weak.run, weak.variables, weak.step
    n, k = weak_run.info.num_classes, target_class
    if not 0 <= k < n:
        raise ValueError(
            f"--target-class={k} is not a class of the weak run ({weak_config.dataset}, {n} "
            f"classes): expected 0..{n - 1}"
        )
    if int(module.classes[0]) != k:  # a module stands in for its own class only
        raise ValueError(
            f"--target-class={k} is not the class of --module {module_dir}, which scores class "
            f"{module.classes[0]} of {module.parent.get('dataset')!r}: a module replaces its own "
            f"class (pass --target-class {module.classes[0]}, or the module of class {k})"
        )
    composed, specs = modules.build_composition(saved)
    spec = next(iter(specs.values()))
    if tuple(spec["image_shape"]) != tuple(weak_run.info.image_shape):
        raise ValueError(
            f"the strong module's images are {tuple(spec['image_shape'])} but the weak run's "
            f"are {tuple(weak_run.info.image_shape)}; both models must read the same inputs"
        )

    def strong_apply(images):
        return composed.apply_fn(jnp.asarray(images, jnp.float32))[:, 0]

    key0 = jax.random.PRNGKey(0)
    weak_pre = weak.preprocess
    weak_model = weak_run.model

    @jax.jit
    def weak_apply(images):
        x = weak_pre(jnp.asarray(images, jnp.float32), key0)
        return weak_model.apply(weak_vars, x, train=False)[0]

    s_images, s_labels = data.load(spec["dataset"], "train", data_dir=data_dir)
    lo, hi = cp.fit_calibration(
        composed.groups[0],
        data.eval_batches(s_images, s_labels, global_batch_size=256),
        preprocess=transform.input_transform(spec),
    )
    lo, hi = float(lo[0]), float(hi[0])
    images, labels = weak_run.train_data
    test_x, test_y = weak_run.test_data
    result = rp.evaluate_replacement(
        weak_apply,
        strong_apply,
        train_batches=data.eval_batches(images, labels, global_batch_size=batch_size),
        test_images=test_x,
        test_labels=test_y,
        target_index=k,
        num_classes=n,
        strong_min=lo,
        strong_max=hi,
        num_epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        seed=seed,
    )
    acc = result["per_class_accuracy"]
    counts = np.bincount(test_y, minlength=n)
    names = weak_run.info.class_names
    rows = [
        {
            "class": c,
            "name": (names[c] if names else str(c)) + (" (TC)" if c == k else ""),
            "test_samples": int(counts[c]),
            **{name: float(a[c]) for name, a in acc.items()},
        }
        for c in range(n)
    ]
    return {
        "weak_workdir": str(weak_dir.resolve()),
        "weak_step": weak_step,
        "weak_model": weak_config.model,
        "weak_dataset": weak_config.dataset,
        "module": str(pathlib.Path(module_dir).resolve()),
        "strong_class": int(module.classes[0]),
        "strong_method": module.method,
        "strong_model": module.parent["model"],
        "target_class": k,
        "epochs": epochs,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "seed": seed,
        "strong_min": lo,
        "strong_max": hi,
        "accuracy": result["accuracy"],
        "per_class": rows,
        "change": result["change"],
        "adapter_train_time_s": result["adapter_train_time_s"],
    }


__all__ = ["replace_class"]
