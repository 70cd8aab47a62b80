"""Saving and loading decomposed modules as modjax module directories (format version 2).

A Pan & Rajan module is written in the layout of `modjax.modular.io` (format 2): a JSON
manifest, named `.npy` array groups and `SHA256SUMS`, moved into place atomically::

    manifest.json        format, format_version, modjax_version, method ("panrajan"),
                         threshold (the CI confidence), classes, parent, metrics, fallbacks,
                         info {"decompose": settings, "channels": pruned widths}, arrays
    keep/00000.npy       bool [n_l] hidden nodes kept by the pruned form, per layer
    params/00000.npy     the masked form ("dense_0/kernel", ...), parent-shaped
    edge_masks/00000.npy bool edge mask per layer (kernel != 0)
    pruned/00000.npy     the pruned form's parameters (widths in info.channels)
    SHA256SUMS           `sha256  path` of every other file

`load_dense_module` refuses a missing, extra or edited file (naming it), another method, or
edge masks that are not exactly the kernels' non-zero entries.
"""

import hashlib
import json
import os
import pathlib
import shutil
import tempfile
from typing import Any

import numpy as np
from flax import traverse_util

import modjax
from modjax.decompose._module import METHOD, DenseModule, edge_masks, prune
from modjax.modular.io import ModuleFileError

FORMAT, FORMAT_VERSION, MANIFEST, SUMS = "modjax.module", 2, "manifest.json", "SHA256SUMS"


def _sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _json(x: Any) -> Any:
    return json.loads(json.dumps(x, default=lambda v: np.asarray(v).tolist()))


def _named(params) -> dict[str, np.ndarray]:
    flat = traverse_util.flatten_dict({k: dict(v) for k, v in params.items()})
    return {"/".join(k): np.asarray(v) for k, v in flat.items()}


def _unnamed(named: dict[str, np.ndarray]):
    return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in named.items()})


def _write_group(root: pathlib.Path, group: str, named: dict[str, np.ndarray]) -> list[dict]:
    (root / group).mkdir(parents=True, exist_ok=True)
    index = []
    for i, (name, array) in enumerate(named.items()):
        rel = f"{group}/{i:05d}.npy"
        np.save(root / rel, np.asarray(array), allow_pickle=False)
        index.append({"name": name, "file": rel, "shape": list(array.shape),
                      "dtype": np.asarray(array).dtype.str})  # fmt: skip
    return index


def save_dense_module(
    module: DenseModule, directory: str | os.PathLike, *, overwrite: bool = False
) -> pathlib.Path:
    """Writes `module` (masked form, edge masks, pruned form) to `directory`, atomically.

    Raises:
        FileExistsError: `directory` exists and `overwrite` is False.
        ValueError: edge masks that are not the kernels' non-zero entries.
    """
    target = pathlib.Path(directory).absolute()
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    for name, mask in edge_masks(module.params).items():
        if not np.array_equal(mask, np.asarray(module.masks.get(name))):
            raise ValueError(f"module.masks[{name!r}] is not the non-zero pattern of its kernel")
    channels, pruned = prune(module.params)
    keep = {}
    for name, p in module.params.items():
        if name != "head":
            w = np.asarray(p["kernel"])
            nxt = f"dense_{int(name[6:]) + 1}"
            w_next = np.asarray(module.params.get(nxt, module.params["head"])["kernel"])
            keep[name] = np.any(w != 0, axis=0) & np.any(w_next != 0, axis=1)
    parent = {"hash": None, "step": None, **module.parent}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        arrays = {
            "keep": _write_group(tmp, "keep", keep),
            "params": _write_group(tmp, "params", _named(module.params)),
            "edge_masks": _write_group(tmp, "edge_masks", module.masks),
            "pruned": _write_group(tmp, "pruned", _named(pruned)),
        }
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "modjax_version": modjax.__version__, "method": METHOD,
            "threshold": float(module.settings.get("confidence", 0.9)),
            "classes": [int(module.class_id)], "parent": _json(parent),
            "metrics": _json(module.metrics), "fallbacks": [],
            "info": {"decompose": _json(module.settings), "channels": channels},
            "arrays": arrays,
        }  # fmt: skip
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        (tmp / SUMS).write_text("".join(f"{_sha256(tmp / f)}  {f}\n" for f in files))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _verified(root: pathlib.Path) -> dict[str, Any]:
    if not (root / MANIFEST).is_file():
        raise ModuleFileError(f"{root / MANIFEST} not found; {root} is not a saved modjax module")
    if not (root / SUMS).is_file():
        raise ModuleFileError(f"{root / SUMS} not found; the module directory is incomplete")
    listed = {}
    for line in (root / SUMS).read_text().splitlines():
        digest, rel = line.split("  ", 1)
        listed[rel] = digest
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {SUMS}
    for rel in sorted(present ^ set(listed)):
        what = "extra" if rel in present else "missing"
        raise ModuleFileError(f"{root / rel} is {what} (not as listed in {SUMS})")
    for rel, digest in listed.items():
        if _sha256(root / rel) != digest:
            raise ModuleFileError(
                f"{root / rel} is damaged or altered (sha256 differs from {SUMS})"
            )
    manifest = json.loads((root / MANIFEST).read_text())
    if manifest.get("format_version") != FORMAT_VERSION or manifest.get("method") != METHOD:
        raise ModuleFileError(
            f"{root / MANIFEST} has format_version={manifest.get('format_version')!r}, method="
            f"{manifest.get('method')!r}; expected {FORMAT_VERSION} and {METHOD!r} (MwT/MODA "
            "modules load with modjax.modular.io)"
        )
    return manifest


def _group(root: pathlib.Path, manifest: dict, group: str) -> dict[str, np.ndarray]:
    return {
        e["name"]: np.load(root / e["file"], allow_pickle=False) for e in manifest["arrays"][group]
    }


def load_dense_module(directory: str | os.PathLike) -> DenseModule:
    """Reads and verifies a module written by `save_dense_module`.

    Raises:
        modular.io.ModuleFileError: a missing, extra, damaged or altered file, another method
            or format version, or edge masks that do not match the kernels (naming them).
    """
    root = pathlib.Path(directory)
    manifest = _verified(root)
    params = _unnamed(_group(root, manifest, "params"))
    masks = _group(root, manifest, "edge_masks")
    for name, mask in edge_masks(params).items():
        if name not in masks or not np.array_equal(mask, masks[name]):
            raise ModuleFileError(
                f"{root}: the edge mask of {name!r} does not match its kernel's non-zero entries"
            )
    return DenseModule(
        params=params,
        masks=masks,
        class_id=int(manifest["classes"][0]),
        parent=manifest["parent"],
        settings=manifest["info"]["decompose"],
        metrics=manifest["metrics"],
    )


def load_pruned(directory: str | os.PathLike) -> tuple[dict[str, int], Any]:
    """`(channels, pruned params)` of a saved module, for `get_model("mlp", channels=...)`."""
    root = pathlib.Path(directory)
    manifest = _verified(root)
    return dict(manifest["info"]["channels"]), _unnamed(_group(root, manifest, "pruned"))
