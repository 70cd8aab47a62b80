"""Saving and loading extracted modules: a JSON manifest plus verified `.npy` arrays, atomically.

Layout of a saved module directory::

    manifest.json        format name and version, modjax version, parent, classes, method,
                         threshold, metrics, fallbacks, and an index of every array file
                         (shape, dtype, sha256)
    keep/00000.npy       one bool [C] keep-mask per layer (names in the manifest)
    params/00000.npy     optional pruned parameters, one leaf per file (tree paths in the manifest)

Arrays are written with `np.save(allow_pickle=False)` and read with `allow_pickle=False`; every
file's sha256 is checked on load. The directory is written next to its target under a temporary
name and moved into place with `os.replace`, so an interrupted save leaves nothing behind.
"""

import hashlib
import json
import math
import os
import pathlib
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import traverse_util

import modjax
from modjax.modular.module import METHODS, FallbackEvent, Module, check_module
from modjax.typing import Params

FORMAT = "modjax.module"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# Plain NumPy dtypes only: they round-trip through `.npy` without pickle.
_DTYPE_KINDS = "biuf"


class ModuleFileError(ValueError):
    """A saved module is missing, damaged, altered, or of an unsupported format."""


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _jsonable(x: Any, what: str) -> Any:
    """Converts NumPy scalars, tuples and nested dicts to JSON types; rejects anything else."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v, f"{what}[{k!r}]") for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v, what) for v in x]
    if isinstance(x, np.generic | np.ndarray) and np.ndim(x) == 0:
        return x.item()
    if x is None or isinstance(x, bool | int | str):
        return x
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ValueError(f"{what}={x!r} is not finite; manifests hold finite JSON numbers")
        return x
    raise TypeError(f"{what} has a value of type {type(x).__name__}; expected JSON scalars")


def _write_array(root: pathlib.Path, rel: str, array: np.ndarray) -> dict[str, Any]:
    if array.dtype.kind not in _DTYPE_KINDS:
        raise ValueError(
            f"array {rel!r} has dtype {array.dtype}; expected bool, int, uint or float (cast "
            "bfloat16 to float32 first)"
        )
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    return {
        "file": rel,
        "shape": list(array.shape),
        "dtype": array.dtype.str,
        "sha256": _sha256(path),
    }


def _flatten_params(params: Params) -> list[tuple[list[str], np.ndarray]]:
    flat = traverse_util.flatten_dict(jax.device_get(dict(params)))
    out = []
    for path, leaf in flat.items():
        if not all(isinstance(k, str) for k in path):
            raise ValueError(f"params path {path} has a non-string key; expected nested dicts")
        out.append((list(path), np.asarray(leaf)))
    return out


def save_module(
    module: Module,
    directory: str | os.PathLike,
    *,
    params: Params | None = None,
    overwrite: bool = False,
) -> pathlib.Path:
    """Writes `module` (and optionally its pruned parameters) to `directory`, atomically.

    Everything is written into a temporary directory next to `directory` and renamed into place
    with `os.replace`; on any error the temporary directory is removed and `directory` is left
    as it was.

    Args:
        module: the module (its parent must be a zoo model; keep shapes are checked against it).
        directory: the target directory; it must not exist unless `overwrite`.
        params: an optional parameter pytree of nested dicts (e.g. the pruned form), saved leaf
            by leaf with its tree paths.
        overwrite: replace an existing module directory.

    Returns:
        The target path.

    Raises:
        FileExistsError: `directory` exists and `overwrite` is False.
        ValueError: a keep-mask that does not fit the parent, a bad method, an unsupported
            array dtype or non-JSON metadata.
    """
    target = pathlib.Path(directory).absolute()
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    if module.method not in METHODS:
        raise ValueError(f"module.method={module.method!r} must be one of {list(METHODS)}")
    check_module(module)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        keep_index = []
        for i, (name, k) in enumerate(module.keep.items()):
            entry = _write_array(tmp, f"keep/{i:05d}.npy", np.asarray(k, bool))
            keep_index.append({"name": name, **entry})
        param_index = None
        if params is not None:
            param_index = []
            for i, (path, leaf) in enumerate(_flatten_params(params)):
                param_index.append({"path": path, **_write_array(tmp, f"params/{i:05d}.npy", leaf)})
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "modjax_version": modjax.__version__,
            "parent": _jsonable(module.parent, "parent"),
            "classes": [int(c) for c in module.classes],
            "method": module.method,
            "threshold": float(module.threshold),
            "metrics": _jsonable(module.metrics, "metrics"),
            "fallbacks": [_jsonable(e._asdict(), "fallbacks") for e in module.fallbacks],
            "arrays": {"keep": keep_index, "params": param_index},
        }
        with open(tmp / MANIFEST, "w") as f:
            json.dump(manifest, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        if target.exists():  # overwrite: move the old one aside, then swap
            old = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "module")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _read_manifest(root: pathlib.Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.is_file():
        raise ModuleFileError(f"{path} not found; {root} is not a saved modjax module")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModuleFileError(f"{path} is not valid JSON ({e}); the file is damaged") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ModuleFileError(f"{path} has format={got!r}; expected {FORMAT!r}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ModuleFileError(
            f"{path} has format_version={version!r}; this modjax ({modjax.__version__}) reads "
            f"format_version {FORMAT_VERSION}"
        )
    return manifest


def _read_array(root: pathlib.Path, entry: Mapping[str, Any]) -> np.ndarray:
    rel = entry["file"]
    path = (root / rel).resolve()
    if root.resolve() not in path.parents:
        raise ModuleFileError(f"array file {rel!r} lies outside {root}")
    if not path.is_file():
        raise ModuleFileError(f"array file {path} listed in {MANIFEST} is missing")
    digest = _sha256(path)
    if digest != entry["sha256"]:
        raise ModuleFileError(
            f"array file {path} is damaged or altered: sha256 {digest} != {entry['sha256']} "
            f"recorded in {MANIFEST}"
        )
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise ModuleFileError(f"array file {path} cannot be read without pickle: {e}") from e
    if list(array.shape) != list(entry["shape"]) or array.dtype.str != entry["dtype"]:
        raise ModuleFileError(
            f"array file {path} holds {array.dtype.str} {list(array.shape)}; {MANIFEST} says "
            f"{entry['dtype']} {entry['shape']}"
        )
    return array


def _check_expected(parent: Mapping[str, Any], expect_parent: Mapping[str, Any]) -> None:
    def norm(x):
        return json.loads(json.dumps(_jsonable(x, "parent")))

    expected, got = norm(expect_parent), norm(parent)
    if "model" not in expected:
        raise ValueError(f"expect_parent={expect_parent!r} must name a 'model'")
    for key, value in expected.items():
        if value is not None and got.get(key) != value:
            raise ValueError(
                f"module parent does not match: {key} is {got.get(key)!r} in the saved module "
                f"but {value!r} expected (saved parent {got['model']!r} {got.get('model_kwargs')},"
                f" expected {expected['model']!r} {expected.get('model_kwargs')})"
            )


def load_module(
    directory: str | os.PathLike, *, expect_parent: Mapping[str, Any] | None = None
) -> Module:
    """Reads and verifies a module written by `save_module`.

    Checks the format name and version, the sha256, shape and dtype of every array file (the
    parameter files too), and the keep shapes against the parent's channel counts.

    Args:
        directory: a saved module directory.
        expect_parent: the parent the caller will apply the module to (e.g. `describe_parent`
            output); every key it gives a non-None value (`model`, `model_kwargs`, `dataset`,
            ...) must match.

    Returns:
        The `Module`.

    Raises:
        ModuleFileError (a ValueError): missing, damaged or altered files, or another format or
            version.
        ValueError: a parent that differs from `expect_parent`, or keep shapes that do not fit
            the parent architecture (naming both).
    """
    root = pathlib.Path(directory)
    manifest = _read_manifest(root)
    if manifest.get("method") not in METHODS:
        raise ModuleFileError(
            f"{root / MANIFEST} has method={manifest.get('method')!r}; expected one of "
            f"{list(METHODS)}"
        )
    arrays = manifest["arrays"]
    keep = {e["name"]: _read_array(root, e) for e in arrays["keep"]}
    for entry in arrays.get("params") or ():
        _read_array(root, entry)
    module = Module(
        keep=keep,
        classes=tuple(manifest["classes"]),
        parent=manifest["parent"],
        method=manifest["method"],
        threshold=manifest["threshold"],
        fallbacks=tuple(FallbackEvent(**e) for e in manifest["fallbacks"]),
        metrics=manifest["metrics"],
    )
    if expect_parent is not None:
        _check_expected(module.parent, expect_parent)
    check_module(module)
    return module


def load_module_params(directory: str | os.PathLike) -> Params | None:
    """The parameter pytree saved with a module (nested dicts of NumPy arrays), or None.

    Raises:
        ModuleFileError: as `load_module`.
    """
    root = pathlib.Path(directory)
    manifest = _read_manifest(root)
    index = manifest["arrays"].get("params")
    if index is None:
        return None
    flat = {tuple(e["path"]): _read_array(root, e) for e in index}
    return traverse_util.unflatten_dict(flat)


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ModuleFileError",
    "load_module",
    "load_module_params",
    "save_module",
]
