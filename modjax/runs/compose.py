"""`modjax compose`: module directories of any families and parents into one classifier.

    result = compose_dirs(["moda/class_3", "panrajan/class_1", "deeparc_net"], calibrate=True)
    result["accuracy"], result["composed"].apply_fn

`compose_dirs` reads each directory (`modules.directory.load`), asks the family that made it
(`modules.registry.family_of(method)`) for its scorers, and joins them with
`modules.compose_scorers`: MwT/MODA modules of one parent fuse into one pruned network, Pan &
Rajan modules of one parent vote, DeepArc networks give their logits. Every module applies its
own recorded input transform to the shared raw input, so modules of datasets with the same raw
image shape compose (MNIST with Fashion-MNIST, at 28 or resized to 32 px); other shapes are
refused, naming both modules. Datasets are read (by name, from `data_dir`) only to calibrate or
evaluate.
"""

import os
import pathlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modjax import data
from modjax.modules import compose as mcompose
from modjax.modules import directory, identity, registry, scorer, transform
from modjax.modules.directory import ModuleDir, ModuleFileError


def parse_dir(spec: str | os.PathLike) -> tuple[pathlib.Path, tuple[int, ...] | None]:
    """`DIR` or `DIR:C1,C2,...` (only those classes of the module) -> `(path, classes or None)`.

    Raises:
        ValueError: a class list that is not comma-separated ints.
    """
    text = os.fspath(spec)
    path, sep, tail = text.rpartition(":")
    if not sep or pathlib.Path(text).exists() or not tail or not path:
        return pathlib.Path(text), None
    try:
        classes = tuple(int(c) for c in tail.split(","))
    except ValueError:
        raise ValueError(
            f"module {text!r}: after ':' give the classes to keep, e.g. {path}:3,5"
        ) from None
    return pathlib.Path(path), classes


def expand(dirs: Sequence[str | os.PathLike]) -> list[str]:
    """Each entry that is a folder of module directories (the `--out` of `modjax modularize` or
    `decompose`) becomes its module directories, in name order; other entries stay as given."""
    out: list[str] = []
    for spec in dirs:
        path = pathlib.Path(os.fspath(spec))
        if path.is_dir() and not (path / directory.MANIFEST).exists():
            found = sorted(p for p in path.iterdir() if (p / directory.MANIFEST).is_file())
            if found:
                out.extend(str(p) for p in found)
                continue
        out.append(os.fspath(spec))
    return out


def _dataset_and_classes(path: pathlib.Path) -> tuple[Any, list[int]]:
    """From the manifest alone (unverified: `compose_dirs` verifies every file afterwards)."""
    manifest = directory.read_manifest(path)
    parent = manifest.get("parent") if isinstance(manifest.get("parent"), dict) else {}
    return parent.get("dataset"), [int(c) for c in manifest.get("classes") or []]


def replace_dirs(
    dirs: Sequence[str | os.PathLike], replacements: Sequence[str | os.PathLike]
) -> list[str]:
    """Module replacement across models (Pan & Rajan FSE'20, METHODS §7.6), on directories.

    Every `(dataset, class)` a replacement scores is taken away from the `dirs` (a directory
    left with no class is dropped, one left with some becomes `DIR:C1,C2`), and the
    replacements are added: `replace_dirs(["m1"], ["m4/class_5"])` composes MNIST-1's modules
    with MNIST-4's module of class 5, whatever the two models' depths or families.

    Raises:
        ValueError: a replacement class that none of `dirs` scores (naming it), or two
            replacements of one class.
    """
    base, donors = expand(dirs), expand(replacements)
    taken: dict[tuple[Any, int], str] = {}
    for spec in donors:
        path, chosen = parse_dir(spec)
        dataset, classes = _dataset_and_classes(path)
        for c in chosen or classes:
            key = (dataset, int(c))
            if key in taken:
                raise ValueError(f"--replace {taken[key]} and {spec} both replace class {key}")
            taken[key] = os.fspath(spec)
    out, replaced = [], set()
    for spec in base:
        path, chosen = parse_dir(spec)
        dataset, classes = _dataset_and_classes(path)
        classes = [int(c) for c in (chosen or classes)]
        keep = [c for c in classes if (dataset, c) not in taken]
        replaced.update((dataset, c) for c in classes if c not in keep)
        if keep == classes:
            out.append(os.fspath(spec))
        elif keep:
            out.append(f"{path}:{','.join(map(str, keep))}")
    missing = [f"{taken[k]} (class {k[1]} of {k[0]})" for k in taken if k not in replaced]
    if missing:
        raise ValueError(f"--replace {', '.join(missing)}: no module of --modules scores it")
    return out + donors


def load_dirs(dirs: Sequence[str | os.PathLike]) -> list[ModuleDir]:
    """Loads and verifies module directories of any registered family (`DIR` or
    `DIR:C1,C2`; see `selection`).

    Raises:
        ValueError: no directories, one directory twice (a folder of modules counts as its
            modules), or a class the module does not score; ModuleFileError for a
            damaged, altered or old-format one, or one whose method no registered family reads
            (naming it).
    """
    if not dirs:
        raise ValueError("no module directories given")
    saved, seen = [], {}
    for spec in expand(dirs):
        path, classes = parse_dir(spec)
        where = path.resolve()
        if where in seen:  # a module scores its classes once; DIR:C1,C2 selects several
            raise ValueError(
                f"module directory {spec} is given twice (also as {seen[where]}); give each "
                "module once (DIR:C1,C2 keeps several of its classes)"
            )
        seen[where] = spec
        d = directory.load(path)
        if classes is not None:
            missing = [c for c in classes if c not in d.classes]
            if missing or len(set(classes)) != len(classes):
                raise ValueError(
                    f"{spec}: classes {list(classes)} must be distinct classes of the module, "
                    f"which scores {list(d.classes)}"
                )
        try:
            registry.family_of(d.method)
        except ValueError as e:
            raise ModuleFileError(f"{d.path / directory.MANIFEST}: {e}") from None
        saved.append(d)
    return saved


def selection(dirs: Sequence[str | os.PathLike]) -> dict[pathlib.Path, tuple[int, ...]]:
    """`{directory: classes}` of the entries `DIR:C1,C2` that keep only some of a module's
    classes (e.g. two classes of a DeepArc network, which scores every class)."""
    out = {}
    for spec in expand(dirs):
        path, classes = parse_dir(spec)
        if classes is not None:
            out[path] = classes
    return out


def check_inputs(saved: Sequence[ModuleDir]) -> dict[str, dict[str, Any]]:
    """`{path: input transform}` of every module, refusing raw shapes that differ.

    Raises:
        ModuleFileError: a module without a recorded transform.
        ValueError: two modules whose raw inputs differ in shape, naming both modules, both
            shapes and the transform each applies.
    """
    specs = {str(s.path): directory.section(s, "preprocess") for s in saved}
    first = saved[0]
    for s in saved[1:]:
        a, b = specs[str(first.path)], specs[str(s.path)]
        if tuple(a["image_shape"]) != tuple(b["image_shape"]):
            raise ValueError(
                f"{first.path} ({first.method}, {first.parent.get('model')}) reads raw images "
                f"of shape {tuple(a['image_shape'])} but {s.path} ({s.method}, "
                f"{s.parent.get('model')}) reads {tuple(b['image_shape'])}: no common input. "
                f"Transforms: {transform.describe_transform(a)}; "
                f"{transform.describe_transform(b)}"
            )
    return specs


def build_composition(
    saved: Sequence[ModuleDir],
    *,
    relabel: Mapping[tuple[str, int], int] | None = None,
    select: Mapping[pathlib.Path, Sequence[int]] | None = None,
) -> tuple[mcompose.Composed, dict[str, dict[str, Any]]]:
    """`(composed, {scorer key: input transform})` from loaded directories alone.

    Families are asked in order of first appearance; their scorers keep that order. `select`
    (`selection(dirs)`) keeps only some classes of the directories it names.

    Raises:
        ValueError: modules that cannot compose (clashing ids, different raw input shapes,
            units that do not cover a fused network), naming the modules.
    """
    check_inputs(saved)
    by_family: dict[str, list[ModuleDir]] = {}
    for s in saved:
        by_family.setdefault(registry.family_of(s.method).name, []).append(s)
    chosen = {pathlib.Path(p): set(c) for p, c in (select or {}).items()}
    scorers = []
    for name, group in by_family.items():
        for sc in registry.families()[name].scorers(group):
            wanted = {
                c
                for s in group
                if identity.parent_key(s.parent) == sc.key
                for c in chosen.get(s.path, s.classes)
            }
            if not set(sc.classes) <= wanted:
                sc = scorer.restrict(sc, [c for c in sc.classes if c in wanted])
            scorers.append(sc)
    specs = {}
    for s in saved:
        specs.setdefault(identity.parent_key(s.parent), directory.section(s, "preprocess"))
    return mcompose.compose_scorers(scorers, relabel=relabel), specs


def class_names(saved: Sequence[ModuleDir]) -> dict[tuple[str, int], str]:
    """`{(dataset, class id): name}` from the modules' manifests (ids where none is recorded)."""
    out = {}
    for s in saved:
        names = s.info.get("class_names")
        if names is not None and len(names) == len(s.classes):
            for c, n in zip(s.classes, names):
                out[(s.parent.get("dataset"), int(c))] = str(n)
    return out


def load_split(dataset: str, split: str, data_dir: str | None):
    """One split of a dataset by name (modules record the name, not a workdir)."""
    return data.load(dataset, split, data_dir=data_dir)


def _split_of_outputs(composed, split: str, data_dir: str | None):
    """The union of the involved datasets' `split` samples of the composed classes, labels
    mapped to output ids."""
    out_id = dict(zip(composed.sources, composed.classes))
    xs, ys = [], []
    for dataset in dict.fromkeys(d for d, _ in composed.sources):
        images, labels = load_split(dataset, split, data_dir)
        mapping = {c: i for (d, c), i in out_id.items() if d == dataset}
        sel = np.isin(labels, list(mapping))
        xs.append(images[sel])
        ys.append(np.array([mapping[int(c)] for c in labels[sel]], np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def calibrate_on_train(composed, *, data_dir: str | None, batch_size: int, rule: str = "minmax"):
    """Calibrates every scorer on training data (`modules.compose.fit_calibration`).

    `"minmax"` (METHODS §5.7 step 5): each scorer on its own dataset's training samples of its
    classes. `"platt"`: each output against the training samples of every composed class (all
    involved datasets), which puts the scores of different parents and families on one scale.
    """
    if rule not in ("minmax", "platt"):
        raise ValueError(f"--calibration {rule!r} must be minmax or platt")
    cal: dict[str, list] = {}
    if rule == "platt":
        images, labels = _split_of_outputs(composed, "train", data_dir)
    position = 0
    for g in composed.groups:
        ids = composed.classes[position : position + len(g.classes)]
        position += len(g.classes)
        if rule == "platt":
            batches = data.eval_batches(images, labels, global_batch_size=batch_size)
            lo, hi = mcompose.fit_calibration(g, batches, rule="platt", positive=ids)
        else:
            tx, ty = load_split(g.parent["dataset"], "train", data_dir)
            sel = np.isin(ty, g.classes)
            batches = data.eval_batches(tx[sel], ty[sel], global_batch_size=batch_size)
            lo, hi = mcompose.fit_calibration(g, batches)
        cal.setdefault(g.key, []).append((g.classes, lo, hi))
    merged = {}
    for key, parts in cal.items():  # one (min, max) per parent over its sorted classes
        by_class = {c: (lo[i], hi[i]) for cls, lo, hi in parts for i, c in enumerate(cls)}
        order = sorted(by_class)
        merged[key] = (
            np.asarray([by_class[c][0] for c in order], np.float32),
            np.asarray([by_class[c][1] for c in order], np.float32),
        )
    return mcompose.calibrate(composed, merged)


def test_set(composed, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The union of the involved test sets, restricted to the composed classes, labels mapped
    to output ids."""
    return _split_of_outputs(composed, "test", data_dir)


def compose_dirs(
    dirs: Sequence[str | os.PathLike],
    *,
    relabel: Mapping[tuple[str, int], int] | None = None,
    calibrate: bool = False,
    calibration: str = "minmax",
    evaluate: bool = True,
    data_dir: str | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Composes module directories of any families into one classifier; calibrates and
    evaluates on request.

    Args:
        dirs: module directories (`modjax modularize`, `decompose`, `shrink`, `repair`); an
            entry `DIR:C1,C2` keeps only those classes of the module.
        relabel: `{(dataset, class id): new id}` for clashing ids of different datasets.
        calibrate: calibrate the scores on training data (reads the training splits).
        calibration: `"minmax"` (METHODS §5.7 step 5, each scorer on its own classes) or
            `"platt"` (each output against every composed class: for modules of different
            parents or families).
        evaluate: evaluate on the test split of every involved dataset.
        data_dir: dataset directory (default `$MODJAX_DATA_DIR`).
        batch_size: evaluation and calibration batch size.

    Returns:
        `{"composed", "saved", "classes", "sources", "names", "calibrated", "groups", "size"}`
        plus `"accuracy", "count", "per_class", "eval_time_s"` when `evaluate`.

    Raises:
        ValueError (ModuleFileError for damaged or old directories): naming the module.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"--batch-size={batch_size!r} must be >= 1")
    saved = load_dirs(dirs)
    composed, specs = build_composition(saved, relabel=relabel, select=selection(dirs))
    if calibrate:
        composed = calibrate_on_train(
            composed, data_dir=data_dir, batch_size=batch_size, rule=calibration
        )
    names = class_names(saved)
    groups = [
        {
            "method": g.method,
            "model": g.parent["model"],
            "dataset": g.parent.get("dataset"),
            "hash": g.parent.get("hash"),
            "step": g.parent.get("step"),
            "classes": list(g.classes),
            **g.size,
        }
        for g in composed.groups
    ]
    size = {
        k: sum(g.get(k, 0) for g in groups)
        for k in ("params", "macs", "parent_params", "parent_macs")
    }
    size.update(
        relative_params=size["params"] / max(size["parent_params"], 1),
        relative_macs=size["macs"] / max(size["parent_macs"], 1),
    )
    value = {
        "composed": composed,
        "saved": saved,
        "modules": [str(pathlib.Path(d).resolve()) for d in expand(dirs)],
        "classes": list(composed.classes),
        "sources": [list(s) for s in composed.sources],
        "names": [names.get(tuple(s), str(s[1])) for s in composed.sources],
        "relabel": [[d, c, n] for (d, c), n in (relabel or {}).items()],
        "calibrated": calibration if calibrate else None,
        "groups": groups,
        "size": size,
    }
    if not evaluate:
        return value
    images, labels = test_set(composed, data_dir)
    t0 = time.perf_counter()
    result = mcompose.evaluate_composed(composed, images, labels, batch_size=batch_size)
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
    "expand",
    "replace_dirs",
    "build_composition",
    "calibrate_on_train",
    "check_inputs",
    "class_names",
    "compose_dirs",
    "load_dirs",
    "load_split",
    "parse_dir",
    "selection",
    "test_set",
]
