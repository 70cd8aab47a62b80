"""A DeepArc-shrunk or repaired network as a module directory, and its scorer.

`modjax shrink` and `modjax repair` make new networks: the parent with blocks removed, or with
its most deviating blocks retrained (METHODS §8.4–8.5). `save_network` writes one as a module
directory of method `"deeparc"` in the shared format, so `modjax eval`, `compose` and `--export`
take it like any module::

    params/            every variable, "params/stem/conv/kernel", "batch_stats/...", ...
    info.network       {"model": zoo name, "model_kwargs": ...} of the network itself
    info.deeparc       what was done: {"operation": "shrink" | "repair", "removed": [...], ...}
    info.preprocess    the parent's test transform; info.class_names

The manifest's `parent` is the network it was made from (content hash included); its `classes`
are every class of the parent, or the subset asked for. `network_scorer` turns the directory into a `modules.Scorer`
(its logits at its classes).
"""

import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn

from modjax import models
from modjax.modules import directory, identity, scorer, transform
from modjax.modules.directory import MANIFEST, ModuleDir, ModuleFileError

METHOD = "deeparc"


def save_network(
    directory_: str | os.PathLike,
    *,
    model_name: str,
    model: nn.Module,
    variables: Mapping[str, Any],
    parent: Mapping[str, Any],
    preprocess: Mapping[str, Any],
    class_names: Sequence[str] | None = None,
    operation: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    classes: Sequence[int] | None = None,
    overwrite: bool = False,
) -> pathlib.Path:
    """Writes a network made by DeepArc as a module directory (see the module docstring).

    Args:
        directory_: the target; must not exist unless `overwrite`.
        model_name: the zoo name that rebuilds `model` from its kwargs (`resnet_cifar`).
        model: the network (e.g. `surgery.remove_blocks`'s).
        variables: its `{"params", "batch_stats"}`.
        parent: the description of the network it was made from (with `hash` and `step`).
        preprocess: the parent's test transform (`modules.transform.preprocess_spec`).
        class_names: one name per class.
        operation: JSON record of what DeepArc did (`{"operation": "shrink", "removed": [...]}`).
        metrics: JSON scalars (accuracy before/after, parameter share, ...).
        classes: the classes the directory scores (default: all): a network restricted to some
            classes composes beside modules of the others.
        overwrite: replace an existing directory.

    Raises:
        FileExistsError: the target exists and `overwrite` is False.
        ValueError: `model_name` does not rebuild `model`, or a bad parent description.
    """
    kwargs = models.model_kwargs_of(model)
    if models.model_kwargs_of(models.get_model(model_name, **kwargs)) != kwargs:
        raise ValueError(f"model_name={model_name!r} does not rebuild the given network")
    num_classes = int(kwargs["num_classes"])
    classes = list(range(num_classes)) if classes is None else [int(c) for c in classes]
    if (
        not classes
        or len(set(classes)) != len(classes)
        or not all(0 <= c < num_classes for c in classes)
    ):
        raise ValueError(f"classes={classes} must be distinct class ids in [0, {num_classes})")
    info: dict[str, Any] = {
        "network": {"model": model_name, "model_kwargs": kwargs},
        "deeparc": dict(operation or {}),
        "preprocess": dict(preprocess),
    }
    if class_names is not None:
        if len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names for {num_classes} classes")
        info["class_names"] = [str(class_names[c]) for c in classes]
    return directory.save(
        directory_,
        method=METHOD,
        classes=classes,
        parent=parent,
        metrics={
            "params": models.count_params(variables["params"]),
            "hash": identity.parent_hash(variables),
            **dict(metrics or {}),
        },
        info=info,
        arrays={"params": identity.flat_variables(variables)},
        overwrite=overwrite,
    )


def load_network(saved: ModuleDir) -> tuple[nn.Module, dict[str, Any]]:
    """`(model, variables)` of a `"deeparc"` module directory, checked against its hash.

    Raises:
        ModuleFileError: another method, a network the zoo cannot rebuild, or variables whose
            structure or content hash differ from the recorded ones (naming the manifest).
    """
    where = saved.path / MANIFEST
    if saved.method != METHOD:
        raise ModuleFileError(f"{where}: field 'method' is {saved.method!r}; expected {METHOD!r}")
    net = directory.section(saved, "network")
    try:
        model = models.get_model(net["model"], **net["model_kwargs"])
    except (KeyError, TypeError, ValueError) as e:
        raise ModuleFileError(f"{where} field 'info.network' names no zoo network ({e})") from e
    variables = directory.network_variables(saved)
    return model, variables


def network_scorer(saved: ModuleDir) -> scorer.Scorer:
    """The `Scorer` of a `"deeparc"` module directory: the network's logits at its classes.

    Raises:
        ModuleFileError: as `load_network`.
    """
    model, variables = load_network(saved)
    spec = directory.section(saved, "preprocess")
    classes = tuple(saved.classes)
    return scorer.network_scorer(
        key=identity.parent_key(saved.parent),
        parent=saved.parent,
        method=METHOD,
        classes=classes,
        model=model,
        variables=variables,
        columns=classes,
        preprocess=transform.eval_transform(spec),
    )


__all__ = ["METHOD", "load_network", "network_scorer", "save_network"]
