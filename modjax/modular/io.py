"""Module directories: a JSON manifest, named `.npy` arrays and a checksum list, atomically.

Layout of a saved module directory (format version 2)::

    manifest.json      format name and version, modjax version, method, threshold, classes,
                       parent (model, kwargs, dataset, input shape, step, hash), metrics,
                       fallbacks, method-specific sections (`info`), and an index of every array
                       group: `{"keep": [{"name", "file", "shape", "dtype"}, ...], ...}`
    keep/00000.npy     one bool [C] keep-mask per layer, in the parent's forward layer order
    <group>/00000.npy  further named arrays, one group per kind (e.g. `units`, `unit_index`)
    SHA256SUMS         `sha256  path` of every other file, the manifest included

`load` refuses a directory with a missing, extra or edited file (naming it), another format
version, or a manifest missing a key (naming it), all as `ModuleFileError` (a ValueError).
Arrays are written with `np.save(allow_pickle=False)` and read with `allow_pickle=False`. The
directory is written next to its target under `.<name>.tmp-*` and moved into place with
`os.replace`; stale temporaries of a killed save are removed by the next save. Files are 0644,
directories 0755.

Carrying method-specific arrays: pass them to `save_module(..., arrays={"edge_masks": {name:
array}}, info={"decompose": {...}})`; each group is written under `<group>/`, listed in the
manifest in the given order and covered by `SHA256SUMS`; `load(directory).arrays["edge_masks"]`
returns `{name: array}` in that order and `.info["decompose"]` the section. A decomposition
method (Pan & Rajan, parent-shaped edge masks) thus reuses this file format unchanged; names
are free strings (e.g. "params/dense_0/kernel"), group names are `[a-z_]+` other than `keep`.
Pan & Rajan modules are saved with method `"panrajan"` (`module.DECOMPOSITION_METHODS`) by
`modjax.decompose.save_decomposed`, which also checks their edge masks on load.
"""

import hashlib
import json
import math
import os
import pathlib
import re
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

import modjax
from modjax import models
from modjax.modular.module import MODULE_METHODS, FallbackEvent, Module, check_module

FORMAT = "modjax.module"
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
REQUIRED = (
    "format",
    "format_version",
    "method",
    "threshold",
    "classes",
    "parent",
    "metrics",
    "fallbacks",
    "arrays",
    "info",
)
PARENT_REQUIRED = ("model", "model_kwargs", "input_shape", "hash", "step")
# Plain NumPy dtypes only: they round-trip through `.npy` without pickle.
_DTYPE_KINDS = "biuf"
_GROUP = re.compile(r"[a-z_]+")


class ModuleFileError(ValueError):
    """A saved module is missing, damaged, altered, malformed, or of another format version."""


class Saved(NamedTuple):
    """A loaded module directory.

    Attributes:
        module: the `Module` (masked form: keep-masks, classes, parent, ...).
        info: the manifest's method-specific sections (`save_module(info=...)`).
        arrays: `{group: {name: array}}` of every group other than `keep`.
        path: the directory.
    """

    module: Module
    info: dict[str, Any]
    arrays: dict[str, dict[str, np.ndarray]]
    path: pathlib.Path


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def jsonable(x: Any, what: str) -> Any:
    """Converts NumPy scalars, tuples and nested dicts to JSON types; rejects anything else."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v, f"{what}[{k!r}]") for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v, what) for v in x]
    if isinstance(x, np.generic | np.ndarray) and np.ndim(x) == 0:
        return x.item()
    if x is None or isinstance(x, bool | int | str):
        return x
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ValueError(f"{what}={x!r} is not finite; manifests hold finite JSON numbers")
        return x
    raise TypeError(f"{what} has a value of type {type(x).__name__}; expected JSON scalars")


def _write(path: pathlib.Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(path, 0o644)


def _write_array(root: pathlib.Path, rel: str, name: str, array: np.ndarray) -> dict[str, Any]:
    array = np.asarray(array)
    if array.dtype.kind not in _DTYPE_KINDS:
        raise ValueError(
            f"array {name!r} has dtype {array.dtype}; expected bool, int, uint or float (cast "
            "bfloat16 to float32 first)"
        )
    _write(root / rel, lambda f: np.save(f, array, allow_pickle=False))
    return {"name": name, "file": rel, "shape": list(array.shape), "dtype": array.dtype.str}


def forward_keep(module: Module) -> dict[str, np.ndarray]:
    """`module.keep` in the parent's forward layer order (`models.mask_points`)."""
    p = module.parent
    order = models.mask_points(
        p["model"], input_shape=p.get("input_shape") or (32, 32, 3), **p["model_kwargs"]
    )
    return {n: np.asarray(module.keep[n], bool) for n in order if n in module.keep}


def _clean_stale(target: pathlib.Path) -> None:
    for prefix in (f".{target.name}.tmp-", f".{target.name}.old-"):
        for stale in target.parent.glob(prefix + "*"):
            shutil.rmtree(stale, ignore_errors=True)


def save_module(
    module: Module,
    directory: str | os.PathLike,
    *,
    arrays: Mapping[str, Mapping[str, Any]] | None = None,
    info: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> pathlib.Path:
    """Writes `module`, named array groups and manifest sections to `directory`, atomically.

    Args:
        module: the module (its parent must be a zoo model; keep shapes are checked against it,
            and keep-masks are stored in forward layer order).
        directory: the target; it must not exist unless `overwrite`.
        arrays: `{group: {name: array}}` extra arrays (e.g. kept-unit parameters, edge masks).
        info: JSON-able manifest sections (e.g. `{"pruned": ..., "preprocess": ...}`).
        overwrite: replace an existing directory.

    Returns:
        The target path.

    Raises:
        FileExistsError: `directory` exists and `overwrite` is False.
        ValueError: a keep-mask that does not fit the parent, a bad method, a bad group name,
            an unsupported array dtype or non-JSON metadata.
    """
    target = pathlib.Path(directory).absolute()
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    if module.method not in MODULE_METHODS:
        raise ValueError(f"module.method={module.method!r} must be one of {list(MODULE_METHODS)}")
    missing = [k for k in PARENT_REQUIRED if k not in module.parent]
    if missing:
        raise ValueError(f"module.parent lacks {missing}; describe the parent with its hash/step")
    groups = dict(arrays or {})
    for g in groups:
        if not _GROUP.fullmatch(g) or g == "keep":
            raise ValueError(f"array group {g!r} must match [a-z_]+ and differ from 'keep'")
    check_module(module)
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(target)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        index = {
            "keep": [
                _write_array(tmp, f"keep/{i:05d}.npy", n, k)
                for i, (n, k) in enumerate(forward_keep(module).items())
            ]
        }
        for g, named in groups.items():
            index[g] = [
                _write_array(tmp, f"{g}/{i:05d}.npy", str(n), a)
                for i, (n, a) in enumerate(named.items())
            ]
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "modjax_version": modjax.__version__,
            "method": module.method,
            "threshold": float(module.threshold),
            "classes": [int(c) for c in module.classes],
            "parent": jsonable(module.parent, "parent"),
            "metrics": jsonable(module.metrics, "metrics"),
            "fallbacks": [jsonable(e._asdict(), "fallbacks") for e in module.fallbacks],
            "info": jsonable(dict(info or {}), "info"),
            "arrays": index,
        }
        text = json.dumps(manifest, indent=2).encode()
        _write(tmp / MANIFEST, lambda f: f.write(text))
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        sums = "".join(f"{_sha256(tmp / rel)}  {rel}\n" for rel in files).encode()
        _write(tmp / SUMS, lambda f: f.write(sums))
        for d in [tmp, *(p for p in tmp.rglob("*") if p.is_dir())]:
            os.chmod(d, 0o755)
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


def _check_version(root: pathlib.Path) -> None:
    """Another format version gets its own error before any checksum complaint."""
    path = root / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return  # reported by the checksum and manifest checks
    if not isinstance(manifest, dict):
        return
    if manifest.get("format") != FORMAT:
        raise ModuleFileError(
            f"{path}: field 'format' is {manifest.get('format')!r}; expected {FORMAT!r}"
        )
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ModuleFileError(
            f"{path}: field 'format_version' is {version!r}; this modjax "
            f"({modjax.__version__}) reads format_version {FORMAT_VERSION} (run `modjax "
            "modularize` again to cut modules in this format)"
        )


def _verify_files(root: pathlib.Path) -> None:
    sums = root / SUMS
    if not sums.is_file():
        raise ModuleFileError(f"{sums} is missing; {root} is not a complete modjax module")
    listed = {}
    for n, line in enumerate(sums.read_text().splitlines(), 1):
        digest, sep, rel = line.partition("  ")
        if not sep or not re.fullmatch(r"[0-9a-f]{64}", digest) or rel in listed:
            raise ModuleFileError(f"{sums} line {n} is malformed: {line!r}")
        listed[rel] = digest
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {SUMS}
    missing, extra = sorted(set(listed) - present), sorted(present - set(listed))
    if missing:
        raise ModuleFileError(f"{root / missing[0]} is missing (listed in {SUMS})")
    if extra:
        raise ModuleFileError(f"{root / extra[0]} is not listed in {sums}: an extra file")
    for rel, digest in listed.items():
        if _sha256(root / rel) != digest:
            raise ModuleFileError(
                f"{root / rel} was edited or damaged: its sha256 differs from {sums}"
            )


def _field(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise ModuleFileError(f"{where} lacks field {key!r}")
    return mapping[key]


def _read_array(root: pathlib.Path, entry: Mapping[str, Any], where: str) -> np.ndarray:
    for key in ("name", "file", "shape", "dtype"):
        _field(entry, key, where)
    path = (root / entry["file"]).resolve()
    if root.resolve() not in path.parents:
        raise ModuleFileError(f"{where}: file {entry['file']!r} lies outside {root}")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ModuleFileError(f"{path} cannot be read as .npy without pickle: {e}") from e
    if list(array.shape) != list(entry["shape"]) or array.dtype.str != entry["dtype"]:
        raise ModuleFileError(
            f"{path} holds {array.dtype.str} {list(array.shape)}; {where} says "
            f"{entry['dtype']} {entry['shape']}"
        )
    return array


def load(directory: str | os.PathLike) -> Saved:
    """Reads and verifies a module directory written by `save_module`.

    Checks, in order: the format version; that the files are exactly those of `SHA256SUMS`
    with their digests; every required manifest field; array shapes and dtypes; keep shapes
    against the parent's channel counts.

    Raises:
        ModuleFileError (a ValueError): a missing, extra, edited or unreadable file, another
            format or version, or a missing manifest field, naming the file and field.
    """
    root = pathlib.Path(directory)
    if not (root / MANIFEST).is_file():
        raise ModuleFileError(f"{root / MANIFEST} not found; {root} is not a saved modjax module")
    _check_version(root)
    _verify_files(root)
    where = str(root / MANIFEST)
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModuleFileError(f"{where} is not valid JSON ({e})") from e
    for key in REQUIRED:
        _field(manifest, key, where)
    parent = manifest["parent"]
    for key in PARENT_REQUIRED:
        _field(parent, key, f"{where} field 'parent'")
    if manifest["method"] not in MODULE_METHODS:
        raise ModuleFileError(
            f"{where}: field 'method' is {manifest['method']!r}; expected one of "
            f"{list(MODULE_METHODS)}"
        )
    index = manifest["arrays"]
    keep = {
        e["name"]: _read_array(root, e, f"{where} field 'arrays.keep'")
        for e in _field(index, "keep", f"{where} field 'arrays'")
    }
    arrays = {
        g: {e["name"]: _read_array(root, e, f"{where} field 'arrays.{g}'") for e in entries}
        for g, entries in index.items()
        if g != "keep"
    }
    try:
        fallbacks = tuple(FallbackEvent(**e) for e in manifest["fallbacks"])
        module = Module(
            keep=keep,
            classes=tuple(int(c) for c in manifest["classes"]),
            parent=parent,
            method=manifest["method"],
            threshold=float(manifest["threshold"]),
            fallbacks=fallbacks,
            metrics=dict(manifest["metrics"]),
        )
        check_module(module)
    except (TypeError, ValueError) as e:
        raise ModuleFileError(f"{where} does not describe a valid module: {e}") from e
    return Saved(module, dict(manifest["info"]), arrays, root)


def load_module(directory: str | os.PathLike) -> Module:
    """The verified `Module` of a module directory (see `load`)."""
    return load(directory).module


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "SUMS",
    "ModuleFileError",
    "Saved",
    "forward_keep",
    "jsonable",
    "load",
    "load_module",
    "save_module",
]
