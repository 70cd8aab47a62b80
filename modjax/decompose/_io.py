"""Saving and loading Pan & Rajan modules through `modjax.modular.io` (format 2, method "panrajan").

A decomposed module is written with `modular.io.save_module` like a MwT/MODA module (manifest,
named `.npy` groups, `SHA256SUMS`, atomic move), as a `modular.Module` with method
`"panrajan"` whose `keep` marks the hidden nodes (dense) or channels (CNN) the module uses,
plus these array groups::

    params/     the masked form ("dense_0/kernel", ... or "stem/conv/kernel", ...), parent-shaped
    edge_masks/ bool kept edges per dense layer (kernel != 0): the edge masks of the value
    pruned/     dense only: the pruned form's parameters (widths in info.channels)
    positions/  CNN only: bool [H, W, C] kept positions per ReLU point

and `info = {"kind": "dense" | "cnn", "decompose": settings, "channels": ..., "preprocess":
...}`. `load_decomposed` verifies everything `modular.io.load` does, then refuses another
method, and edge masks or position maps that do not match the parameters (naming them).
"""

import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import traverse_util

from modjax.decompose._cnn_module import CNN_KIND, CnnModule, cnn_sizes
from modjax.decompose._module import METHOD, DenseModule, edge_masks, prune
from modjax.modular import io as module_io
from modjax.modular.io import ModuleFileError
from modjax.modular.module import Module


def _named(params) -> dict[str, np.ndarray]:
    flat = traverse_util.flatten_dict(_plain(params))
    return {"/".join(k): np.asarray(v) for k, v in flat.items()}


def _plain(tree):
    return {k: _plain(v) for k, v in tree.items()} if isinstance(tree, Mapping) else tree


def _unnamed(named: Mapping[str, np.ndarray]):
    return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in named.items()})


def _dense_keep(params) -> dict[str, np.ndarray]:
    keep = {}
    for name, p in params.items():
        if name != "head":
            w = np.asarray(p["kernel"])
            nxt = f"dense_{int(name[6:]) + 1}"
            w_next = np.asarray(params.get(nxt, params["head"])["kernel"])
            keep[name] = np.any(w != 0, axis=0) & np.any(w_next != 0, axis=1)
    return keep


def save_decomposed(
    module: DenseModule | CnnModule,
    directory: str | os.PathLike,
    *,
    overwrite: bool = False,
    preprocess: Mapping[str, Any] | None = None,
) -> pathlib.Path:
    """Writes a dense or CNN Pan & Rajan module with `modular.io.save_module`.

    Args:
        module: the module; its `parent` must describe a zoo model (`modular.describe_parent`:
            model, model_kwargs, input_shape) and may add `step` and `hash`.
        directory: the target (must not exist unless `overwrite`).
        overwrite: replace an existing directory.
        preprocess: the parent's test transform (`portable.preprocess_spec`), stored as
            `info["preprocess"]` so `modjax compose` can evaluate the module alone.

    Raises:
        FileExistsError: `directory` exists and `overwrite` is False.
        ValueError: edge masks that are not the kernels' non-zero entries, or a parent that
            is not a zoo model (naming what is missing).
    """
    cnn = isinstance(module, CnnModule)
    for name, mask in edge_masks(module.params).items() if not cnn else ():
        if not np.array_equal(mask, np.asarray(module.masks.get(name))):
            raise ValueError(f"module.masks[{name!r}] is not the non-zero pattern of its kernel")
    arrays = {"params": _named(module.params), "edge_masks": dict(module.masks)}
    info: dict[str, Any] = {"decompose": dict(module.settings)}
    if cnn:
        head = np.asarray(module.params["head"]["kernel"])
        if not np.array_equal(np.asarray(module.masks["head"]), head != 0):
            raise ValueError("module.masks['head'] is not the non-zero pattern of the head kernel")
        keep = {k: np.any(np.asarray(v, bool), axis=(0, 1)) for k, v in module.keep.items()}
        arrays["positions"] = {k: np.asarray(v, bool) for k, v in module.keep.items()}
        info["kind"] = CNN_KIND
    else:
        channels, pruned = prune(module.params)
        keep = _dense_keep(module.params)
        arrays["pruned"] = _named(pruned)
        info.update(kind="dense", channels=channels)
    if preprocess is not None:
        info["preprocess"] = dict(preprocess)
    value = Module(
        keep=keep,
        classes=(int(module.class_id),),
        parent={"hash": None, "step": None, **module.parent},
        method=METHOD,
        threshold=float(module.settings.get("confidence", 0.9)),
        fallbacks=(),
        metrics=dict(module.metrics),
    )
    return module_io.save_module(value, directory, arrays=arrays, info=info, overwrite=overwrite)


def load_decomposed(directory: str | os.PathLike) -> DenseModule | CnnModule:
    """Reads and verifies a module written by `save_decomposed` (dense or CNN).

    Raises:
        modular.io.ModuleFileError: whatever `modular.io.load` refuses (a missing, extra,
            damaged or altered file, naming it), another method, or edge masks / position maps
            that do not match the parameters (naming the layer).
    """
    saved = module_io.load(directory)
    root, m = saved.path, saved.module
    if m.method != METHOD:
        raise ModuleFileError(
            f"{root / module_io.MANIFEST}: field 'method' is {m.method!r}; a Pan & Rajan module "
            f"has {METHOD!r} (MwT/MODA modules load with modjax.modular.io.load)"
        )
    for group in ("params", "edge_masks"):
        if group not in saved.arrays:
            raise ModuleFileError(f"{root / module_io.MANIFEST} field 'arrays' lacks {group!r}")
    params = _unnamed(saved.arrays["params"])
    masks = dict(saved.arrays["edge_masks"])
    common = {
        "class_id": int(m.classes[0]),
        "parent": m.parent,
        "settings": saved.info.get("decompose", {}),
        "metrics": m.metrics,
    }
    if saved.info.get("kind") == CNN_KIND:
        keep = dict(saved.arrays.get("positions", {}))
        if list(keep) != list(m.keep):
            raise ModuleFileError(
                f"{root}: position maps {list(keep)} differ from keep {list(m.keep)}"
            )
        for name, pos in keep.items():
            if not np.array_equal(np.any(pos, axis=(0, 1)), m.keep[name]):
                raise ModuleFileError(f"{root}: the position map of {name!r} does not match keep")
        if not np.array_equal(masks.get("head"), np.asarray(params["head"]["kernel"]) != 0):
            raise ModuleFileError(f"{root}: the edge mask of 'head' does not match its kernel")
        common["metrics"] = {**cnn_sizes(keep, params["head"]["kernel"]), **m.metrics}
        return CnnModule(params=params, keep=keep, masks=masks, **common)
    for name, mask in edge_masks(params).items():
        if name not in masks or not np.array_equal(mask, masks[name]):
            raise ModuleFileError(
                f"{root}: the edge mask of {name!r} does not match its kernel's non-zero entries"
            )
    return DenseModule(params=params, masks=masks, **common)


def save_dense_module(
    module: DenseModule, directory: str | os.PathLike, *, overwrite: bool = False
) -> pathlib.Path:
    """`save_decomposed` for a dense module."""
    if not isinstance(module, DenseModule):
        raise TypeError(f"save_dense_module takes a DenseModule, not {type(module).__name__}")
    return save_decomposed(module, directory, overwrite=overwrite)


def load_dense_module(directory: str | os.PathLike) -> DenseModule:
    """`load_decomposed`, refusing a CNN module (naming the directory)."""
    module = load_decomposed(directory)
    if not isinstance(module, DenseModule):
        raise ModuleFileError(f"{directory} holds a CNN Pan & Rajan module, not a dense one")
    return module


def load_pruned(directory: str | os.PathLike) -> tuple[dict[str, int], Any]:
    """`(channels, pruned params)` of a saved dense module, for `get_model("mlp", channels=...)`."""
    saved = module_io.load(directory)
    if saved.module.method != METHOD or "pruned" not in saved.arrays:
        raise ModuleFileError(f"{directory} is not a dense Pan & Rajan module (no pruned form)")
    return dict(saved.info["channels"]), _unnamed(saved.arrays["pruned"])
