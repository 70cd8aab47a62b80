"""Composing module directories without the parents' workdirs.

    result = compose_dirs(["mods/class_3", "mods/class_1"], calibrate=True)
    result["accuracy"], result["composed"].apply_fn

`compose_dirs` rebuilds the composition from module directories alone (`modular.io` format 2,
cut by `runs.modularize.modularize_workdir`): each parent's kept-unit values are assembled
(`modular.portable.assemble`), checked to cover the fused network, and composed with the
recorded input transforms. Datasets are read (by name, from `data_dir`) only to calibrate or
evaluate. Modules claiming one parent with two content hashes are refused.
"""

import functools
import os
import pathlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modjax.modular import io as module_io
from modjax.modular import portable
from modjax.modular.compose import parent_key
from modjax.modular.io import ModuleFileError
from modjax.modules import transform


def units_of(saved: module_io.Saved) -> portable.Units:
    """The kept-unit values of a loaded module directory, checked against its classes."""
    try:
        index, values = saved.arrays["unit_index"], saved.arrays["units"]
    except KeyError as e:
        raise ModuleFileError(
            f"{saved.path / module_io.MANIFEST} field 'arrays' lacks group {e.args[0]!r}"
        ) from None
    if set(index) != set(values):
        raise ModuleFileError(f"{saved.path}: 'units' and 'unit_index' name different leaves")
    head = index.get("params/head/kernel")
    m = saved.module
    if m.method == "moda" and (head is None or sorted(head.tolist()) != sorted(m.classes)):
        raise ModuleFileError(
            f"{saved.path / module_io.MANIFEST} field 'classes' is {list(m.classes)} but the "
            f"module's output units are {None if head is None else head.tolist()}"
        )
    return portable.Units(dict(index), dict(values))


def check_parents(saved: Sequence[module_io.Saved]) -> None:
    """Refuses modules that claim one parent (model, kwargs, dataset, step) with two hashes."""
    seen: dict[str, tuple[str, pathlib.Path]] = {}
    for s in saved:
        p = s.module.parent
        key = parent_key({k: v for k, v in p.items() if k not in ("hash", "checkpoint")})
        h = p.get("hash")
        if key in seen and seen[key][0] != h:
            other_hash, other = seen[key]
            raise ModuleFileError(
                f"{s.path / module_io.MANIFEST} field 'parent.hash' is {h!r} but {other} claims "
                f"the same parent ({p['model']} on {p.get('dataset')!r}, step {p.get('step')}) "
                f"with hash {other_hash!r}: they were cut from different weights"
            )
        seen.setdefault(key, (h, s.path))


def load_dirs(dirs: Sequence[str | os.PathLike]) -> list[module_io.Saved]:
    """Loads and verifies module directories; refuses conflicting parent hashes."""
    if not dirs:
        raise ValueError("no module directories given")
    saved = [module_io.load(d) for d in dirs]
    check_parents(saved)
    return saved


def build_composition(
    saved: Sequence[module_io.Saved],
    *,
    relabel: Mapping[tuple[str, int], int] | None = None,
):
    """`(composed, groups_info)` from loaded module directories alone (no parent checkpoint).

    Raises:
        ValueError: modules that cannot compose (clashing ids, different input shapes, units
            that do not cover the fused network), naming the modules.
    """
    import jax

    from modjax.modular import compose as cp
    from modjax.modular.module import union

    by_key: dict[str, list[module_io.Saved]] = {}
    for s in saved:
        by_key.setdefault(parent_key(s.module.parent), []).append(s)
    vbp, pre, specs = {}, {}, {}
    for key, group in by_key.items():
        p = group[0].module.parent
        names = [str(s.path) for s in group]
        variables, covered = portable.assemble(
            [units_of(s) for s in group],
            p["model"],
            p["model_kwargs"],
            input_shape=p["input_shape"],
            names=names,
        )
        u = union([s.module for s in group])
        portable.check_covered(
            covered,
            p["model"],
            p["model_kwargs"],
            u.keep,
            classes=list(u.classes) if u.method == "moda" else None,
            method=u.method,
            input_shape=p["input_shape"],
            what=f"modules {', '.join(names)}",
        )
        vbp[key] = variables
        spec = info_section(group[0], "preprocess")
        specs[key] = spec
        pre[key] = functools.partial(transform.input_transform(spec), rng=jax.random.PRNGKey(0))
    shapes = {tuple(s["image_shape"]) for s in specs.values()}
    if len(shapes) > 1:
        raise ValueError(
            f"modules come from datasets with different image shapes {sorted(shapes)}; "
            "composition feeds one input to every parent"
        )
    composed = cp.compose([s.module for s in saved], vbp, relabel=relabel, preprocess_by_parent=pre)
    for g in composed.groups:
        group = by_key[g.key]
        if len(group) == 1 and "pruned" in group[0].info:  # its own pruned form, as recorded
            recorded = group[0].info["pruned"].get("model_kwargs")
            if parent_key(recorded) != parent_key(portable.model_kwargs_of(g.model)):
                raise ModuleFileError(
                    f"{group[0].path / module_io.MANIFEST} field 'info.pruned.model_kwargs' "
                    f"does not match the network its keep-masks and units rebuild"
                )
    return composed, specs


def info_section(s: module_io.Saved, key: str) -> Any:
    """A method-specific manifest section (`info[key]`) of a loaded module directory."""
    if key not in s.info:
        raise ModuleFileError(f"{s.path / module_io.MANIFEST} field 'info' lacks {key!r}")
    return s.info[key]


def class_names(saved: Sequence[module_io.Saved]) -> dict[tuple[str, int], str]:
    """`{(dataset, class id): name}` from the modules' manifests."""
    out = {}
    for s in saved:
        names = info_section(s, "class_names")
        for c, n in zip(s.module.classes, names):
            out[(s.module.parent.get("dataset"), int(c))] = str(n)
    return out


def load_split(dataset: str, split: str, data_dir: str | None):
    """One split of a dataset by name (modules record the name, not a workdir)."""
    from modjax import data

    return data.load(dataset, split, data_dir=data_dir)


def compose_dirs(
    dirs: Sequence[str | os.PathLike],
    *,
    relabel: Mapping[tuple[str, int], int] | None = None,
    calibrate: bool = False,
    evaluate: bool = True,
    data_dir: str | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Composes module directories into one classifier; calibrates and evaluates on request.

    Args:
        dirs: module directories (`modjax modularize` output); no parent workdir is read.
        relabel: `{(dataset, class id): new id}` for clashing ids of different datasets.
        calibrate: min-max calibrate each parent's outputs on its dataset's training samples of
            the composed classes (METHODS §5.7 step 5); reads the training split.
        evaluate: evaluate on the test split of every involved dataset.
        data_dir: dataset directory (default `$MODJAX_DATA_DIR`).
        batch_size: evaluation and calibration batch size.

    Returns:
        `{"composed", "saved", "classes", "sources", "names", "calibrated", "groups", "size"}`
        plus `"accuracy", "count", "per_class", "eval_time_s"` when `evaluate`.

    Raises:
        ValueError (ModuleFileError for damaged or conflicting directories): naming the module.
    """
    import jax.numpy as jnp

    from modjax import data
    from modjax.modular import compose as cp

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"--batch-size={batch_size!r} must be >= 1")
    saved = load_dirs(dirs)
    composed, specs = build_composition(saved, relabel=relabel)
    if calibrate:
        cal = {}
        for g in composed.groups:
            images, labels = load_split(g.parent["dataset"], "train", data_dir)
            sel = np.isin(labels, g.classes)
            batches = data.eval_batches(images[sel], labels[sel], global_batch_size=batch_size)
            fn = transform.input_transform(specs[g.key])
            cal[g.key] = cp.fit_calibration(g, batches, preprocess=fn)
        composed = cp.calibrate(composed, cal)
    names = class_names(saved)
    groups = [
        {
            "model": g.parent["model"],
            "dataset": g.parent.get("dataset"),
            "hash": g.parent.get("hash"),
            "step": g.parent.get("step"),
            "method": g.method,
            "classes": list(g.classes),
            **g.size,
        }
        for g in composed.groups
    ]
    size = {
        k: sum(g[k] for g in groups) for k in ("params", "macs", "parent_params", "parent_macs")
    }
    size.update(
        relative_params=size["params"] / size["parent_params"],
        relative_macs=size["macs"] / size["parent_macs"],
    )
    value = {
        "composed": composed,
        "saved": saved,
        "modules": [str(pathlib.Path(d).resolve()) for d in dirs],
        "classes": list(composed.classes),
        "sources": [list(s) for s in composed.sources],
        "names": [names.get(tuple(s), str(s[1])) for s in composed.sources],
        "relabel": [[d, c, n] for (d, c), n in (relabel or {}).items()],
        "calibrated": calibrate,
        "groups": groups,
        "size": size,
    }
    if not evaluate:
        return value
    out_id = dict(zip(composed.sources, composed.classes))
    test_x, test_y = [], []
    for dataset in dict.fromkeys(d for d, _ in composed.sources):
        images, labels = load_split(dataset, "test", data_dir)
        mapping = {c: i for (d, c), i in out_id.items() if d == dataset}
        sel = np.isin(labels, list(mapping))
        test_x.append(images[sel])
        test_y.append(np.array([mapping[int(c)] for c in labels[sel]], np.int64))
    t0 = time.perf_counter()
    result = cp.evaluate_composed(
        composed,
        np.concatenate(test_x),
        np.concatenate(test_y),
        batch_size=batch_size,
        preprocess=lambda x, rng: x.astype(jnp.float32),
    )
    value["eval_time_s"] = time.perf_counter() - t0
    value["per_class"] = [
        {
            "output_id": i,
            "dataset": d,
            "class": c,
            "name": n,
            "test_samples": result["per_class_count"][i],
            "accuracy": result["per_class_accuracy"][i],
        }
        for (d, c), i, n in zip(composed.sources, composed.classes, value["names"])
    ]
    value.update(accuracy=result["accuracy"], count=result["count"])
    return value


__all__ = [
    "build_composition",
    "check_parents",
    "class_names",
    "compose_dirs",
    "info_section",
    "load_dirs",
    "load_split",
    "units_of",
]
