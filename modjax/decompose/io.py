"""Pan & Rajan module directories, in the shared format of `modjax.modules.directory`.

A decomposed module is written with method `"panrajan"` and these array groups::

    params/     the masked form ("dense_0/kernel", ... or "stem/conv/kernel", ...), parent-shaped
    edge_masks/ bool kept edges per dense layer (kernel != 0): the edge masks of the value
    pruned/     dense only: the pruned form's parameters (widths in info.channels)
    positions/  CNN only: bool [H, W, C] kept positions per ReLU point

and `info = {"kind": "dense" | "cnn", "decompose": settings, "channels": ..., "preprocess":
...}`. `load_decomposed` verifies everything `modules.directory.load` does, then refuses another
method, and edge masks or position maps that do not match the parameters (naming them).
Version-2 directories (written through the MwT/MODA format, with a `keep` group) read the same.
"""

import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import traverse_util

from modjax import models
from modjax.decompose.cnn import module as cnn_module
from modjax.decompose.cnn.module import CnnModule
from modjax.decompose.dense import module as dense_module
from modjax.decompose.dense.module import DenseModule
from modjax.modules import directory
from modjax.modules.directory import MANIFEST, ModuleDir, ModuleFileError

METHOD = "panrajan"
"""The `method` of every Pan & Rajan module directory, dense or CNN."""


def _named(params) -> dict[str, np.ndarray]:
    flat = traverse_util.flatten_dict(_plain(params))
    return {"/".join(k): np.asarray(v) for k, v in flat.items()}


def _plain(tree):
    return {k: _plain(v) for k, v in tree.items()} if isinstance(tree, Mapping) else tree


def _unnamed(named: Mapping[str, np.ndarray]):
    return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in named.items()})


def save_decomposed(
    module: DenseModule | CnnModule,
    directory_: str | os.PathLike,
    *,
    overwrite: bool = False,
    preprocess: Mapping[str, Any] | None = None,
    class_names: list[str] | None = None,
) -> pathlib.Path:
    """Writes a dense or CNN Pan & Rajan module directory, atomically.

    Args:
        module: the module; its `parent` must describe a zoo model
            (`modules.identity.describe_parent`: model, model_kwargs, input_shape, step, hash).
        directory_: the target (must not exist unless `overwrite`).
        overwrite: replace an existing directory.
        preprocess: the parent's test transform (`modules.transform.preprocess_spec`), stored as
            `info["preprocess"]` so `modjax compose` can evaluate the module alone.
        class_names: the module's class name (one entry), stored as `info["class_names"]`.

    Raises:
        FileExistsError: `directory_` exists and `overwrite` is False.
        ValueError: edge masks that are not the kernels' non-zero entries, or a parent that
            is not a zoo model (naming what is missing).
    """
    if not isinstance(module, DenseModule | CnnModule):
        raise TypeError(f"save_decomposed takes a DenseModule or CnnModule, not {type(module)}")
    cnn = isinstance(module, CnnModule)
    parent = {"hash": None, "step": None, **module.parent}
    if "model" in parent and parent["model"] not in models.MODEL_NAMES:
        raise ValueError(f"module parent model={parent.get('model')!r} is not a zoo model")
    for name, mask in dense_module.edge_masks(module.params).items() if not cnn else ():
        if not np.array_equal(mask, np.asarray(module.masks.get(name))):
            raise ValueError(f"module.masks[{name!r}] is not the non-zero pattern of its kernel")
    arrays = {"params": _named(module.params), "edge_masks": dict(module.masks)}
    info: dict[str, Any] = {
        "decompose": dict(module.settings),
        "threshold": float(module.settings.get("confidence", 0.9)),
    }
    if cnn:
        head = np.asarray(module.params["head"]["kernel"])
        if not np.array_equal(np.asarray(module.masks["head"]), head != 0):
            raise ValueError("module.masks['head'] is not the non-zero pattern of the head kernel")
        arrays["positions"] = {k: np.asarray(v, bool) for k, v in module.keep.items()}
        info["kind"] = cnn_module.KIND
    else:
        channels, pruned = dense_module.prune(module.params)
        arrays["pruned"] = _named(pruned)
        info.update(kind=dense_module.KIND, channels=channels)
    if preprocess is not None:
        info["preprocess"] = dict(preprocess)
    if class_names is not None:
        info["class_names"] = list(class_names)
    return directory.save(
        directory_,
        method=METHOD,
        classes=(int(module.class_id),),
        parent=parent,
        metrics=module.metrics,
        info=info,
        arrays=arrays,
        overwrite=overwrite,
    )


def from_dir(saved: ModuleDir) -> DenseModule | CnnModule:
    """The Pan & Rajan module of a verified module directory.

    Raises:
        ModuleFileError: another method, or edge masks / position maps that do not match the
            parameters (naming the layer).
    """
    root = saved.path
    if saved.method != METHOD:
        raise ModuleFileError(
            f"{root / MANIFEST}: field 'method' is {saved.method!r}; a Pan & Rajan module has "
            f"{METHOD!r} (`modjax compose` reads modules of every family)"
        )
    params = _unnamed(directory.group(saved, "params"))
    masks = dict(directory.group(saved, "edge_masks"))
    common = {
        "class_id": int(saved.classes[0]),
        "parent": saved.parent,
        "settings": saved.info.get("decompose", {}),
        "metrics": saved.metrics,
    }
    if saved.info.get("kind") == cnn_module.KIND:
        keep = dict(directory.group(saved, "positions"))
        if "keep" in saved.arrays:  # version 2 also stored the kept channels
            for name, pos in keep.items():
                if not np.array_equal(np.any(pos, axis=(0, 1)), saved.arrays["keep"].get(name)):
                    raise ModuleFileError(
                        f"{root}: the position map of {name!r} does not match keep"
                    )
        if not np.array_equal(masks.get("head"), np.asarray(params["head"]["kernel"]) != 0):
            raise ModuleFileError(f"{root}: the edge mask of 'head' does not match its kernel")
        common["metrics"] = {**cnn_module.sizes(keep, params["head"]["kernel"]), **saved.metrics}
        return CnnModule(params=params, keep=keep, masks=masks, **common)
    for name, mask in dense_module.edge_masks(params).items():
        if name not in masks or not np.array_equal(mask, masks[name]):
            raise ModuleFileError(
                f"{root}: the edge mask of {name!r} does not match its kernel's non-zero entries"
            )
    return DenseModule(params=params, masks=masks, **common)


def load_decomposed(directory_: str | os.PathLike) -> DenseModule | CnnModule:
    """Reads and verifies a module written by `save_decomposed` (dense or CNN).

    Raises:
        ModuleFileError: whatever `modules.directory.load` refuses (a missing, extra, damaged
            or altered file, naming it), or what `from_dir` refuses.
    """
    return from_dir(directory.load(directory_))


def load_pruned(directory_: str | os.PathLike) -> tuple[dict[str, int], Any]:
    """`(channels, pruned params)` of a saved dense module, for `get_model("mlp", channels=...)`."""
    saved = directory.load(directory_)
    if saved.method != METHOD or "pruned" not in saved.arrays:
        raise ModuleFileError(f"{directory_} is not a dense Pan & Rajan module (no pruned form)")
    return dict(saved.info["channels"]), _unnamed(saved.arrays["pruned"])


__all__ = ["METHOD", "from_dir", "load_decomposed", "load_pruned", "save_decomposed"]
