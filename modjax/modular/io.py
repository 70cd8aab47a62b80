"""MwT/MODA module directories, in the shared format of `modjax.modules.directory`.

A MwT/MODA module is saved with its keep-masks as the array group `keep` (one bool `[C]` per
layer, in the parent's forward layer order), its τ and fallback events as the manifest sections
`info.threshold` and `info.fallbacks`, and whatever further groups and sections the caller
passes: kept-unit parameters (`units`, `unit_index`), the pruned form (`info.pruned`), the input
transform (`info.preprocess`), class names. Everything about files (the manifest, `SHA256SUMS`,
the atomic move, version checks, tamper detection) is the shared layer's; this file adds only
what a keep-mask module means: the keep shapes are checked against the parent's channel counts
on save and on load.
"""

import os
import pathlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from modjax import models
from modjax.modular.module import METHODS, FallbackEvent, Module, check_module
from modjax.modules import directory
from modjax.modules.directory import MANIFEST, SUMS, ModuleFileError

FORMAT = directory.FORMAT
FORMAT_VERSION = directory.FORMAT_VERSION
_OWN = ("threshold", "fallbacks")  # info sections this file writes itself


class Saved(NamedTuple):
    """A loaded MwT/MODA module directory.

    Attributes:
        module: the `Module` (masked form: keep-masks, classes, parent, ...).
        info: the manifest's other sections (`save_module(info=...)`).
        arrays: `{group: {name: array}}` of every group other than `keep`.
        path: the directory.
    """

    module: Module
    info: dict[str, Any]
    arrays: dict[str, dict[str, np.ndarray]]
    path: pathlib.Path


def forward_keep(module: Module) -> dict[str, np.ndarray]:
    """`module.keep` in the parent's forward layer order (`models.mask_points`)."""
    p = module.parent
    order = models.mask_points(
        p["model"], input_shape=p.get("input_shape") or (32, 32, 3), **p["model_kwargs"]
    )
    return {n: np.asarray(module.keep[n], bool) for n in order if n in module.keep}


def save_module(
    module: Module,
    directory_: str | os.PathLike,
    *,
    arrays: Mapping[str, Mapping[str, Any]] | None = None,
    info: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> pathlib.Path:
    """Writes `module`, named array groups and manifest sections to a directory, atomically.

    Args:
        module: the module (its parent must be a zoo model; keep shapes are checked against it,
            and keep-masks are stored in forward layer order).
        directory_: the target; it must not exist unless `overwrite`.
        arrays: `{group: {name: array}}` extra arrays (e.g. kept-unit parameters).
        info: JSON-able manifest sections (e.g. `{"pruned": ..., "preprocess": ...}`).
        overwrite: replace an existing directory.

    Returns:
        The target path.

    Raises:
        FileExistsError: `directory_` exists and `overwrite` is False.
        ValueError: a keep-mask that does not fit the parent, a method that is not MwT/MODA, a
            bad group name, an unsupported array dtype or non-JSON metadata.
    """
    if module.method not in METHODS:
        raise ValueError(f"module.method={module.method!r} must be one of {list(METHODS)}")
    groups = dict(arrays or {})
    if "keep" in groups:
        raise ValueError("array group 'keep' is the module's own; pass other group names")
    extra = dict(info or {})
    clash = [k for k in _OWN if k in extra]
    if clash:
        raise ValueError(f"info sections {clash} are the module's own; pass other names")
    check_module(module)
    return directory.save(
        directory_,
        method=module.method,
        classes=module.classes,
        parent=module.parent,
        metrics=module.metrics,
        info={
            **extra,
            "threshold": float(module.threshold),
            "fallbacks": [e._asdict() for e in module.fallbacks],
        },
        arrays={"keep": forward_keep(module), **groups},
        overwrite=overwrite,
    )


def from_dir(saved: directory.ModuleDir) -> Saved:
    """The MwT/MODA view of a verified module directory.

    Raises:
        ModuleFileError: another method, or keep-masks, τ or fallbacks that do not describe a
            valid module of its parent (naming the manifest).
    """
    where = saved.path / MANIFEST
    if saved.method not in METHODS:
        raise ModuleFileError(
            f"{where}: field 'method' is {saved.method!r}; MwT/MODA modules have one of "
            f"{list(METHODS)} (`modjax compose` reads modules of every family)"
        )
    keep = directory.group(saved, "keep")
    try:
        module = Module(
            keep=dict(keep),
            classes=saved.classes,
            parent=saved.parent,
            method=saved.method,
            threshold=float(directory.section(saved, "threshold")),
            fallbacks=tuple(FallbackEvent(**e) for e in directory.section(saved, "fallbacks")),
            metrics=saved.metrics,
        )
        check_module(module)
    except (TypeError, ValueError) as e:
        if isinstance(e, ModuleFileError):
            raise
        raise ModuleFileError(f"{where} does not describe a valid module: {e}") from e
    info = {k: v for k, v in saved.info.items() if k not in _OWN}
    arrays = {g: a for g, a in saved.arrays.items() if g != "keep"}
    return Saved(module, info, arrays, saved.path)


def load(directory_: str | os.PathLike) -> Saved:
    """Reads and verifies a MwT/MODA module directory (format 3, or 2 through its upgrade).

    Raises:
        ModuleFileError (a ValueError): whatever `modules.directory.load` refuses (a missing,
            extra, edited or unreadable file, another format or version, a missing field), or
            what `from_dir` refuses, naming the file and field.
    """
    return from_dir(directory.load(directory_))


def load_module(directory_: str | os.PathLike) -> Module:
    """The verified `Module` of a module directory (see `load`)."""
    return load(directory_).module


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "SUMS",
    "ModuleFileError",
    "Saved",
    "forward_keep",
    "from_dir",
    "load",
    "load_module",
    "save_module",
]
