"""The module directory: one on-disk format for the modules of every family.

Layout (format version 3)::

    manifest.json      format name and version, modjax version, method, classes, parent
                       (`identity.describe_parent`: model, kwargs, dataset, input shape, step,
                       hash), metrics, `info` (the family's own JSON sections) and an index of
                       every array group: `{"keep": [{"name", "file", "shape", "dtype"}, ...]}`
    <group>/00000.npy  named arrays, one folder per group, in the order given
    SHA256SUMS         `sha256  path` of every other file, the manifest included
    SIGNATURE          optional: `hmac-sha256 <hex>` of SHA256SUMS under a secret key

What the checks protect against. SHA256SUMS catches accidents: a truncated copy, a flipped bit,
a file edited or added by hand. It does not stop an attacker, who can edit a file and recompute
its sum. For that, set a secret key in the environment variable `MODJAX_MODULE_KEY` (`KEY_ENV`)
on the machines that cut and that compose modules: `save` then writes SIGNATURE, an
HMAC-SHA256 of SHA256SUMS under the key, and `load` refuses any module without a valid
signature under that key. Without the variable, a SIGNATURE present is neither needed nor
checked. Loading reads `.npy` without pickle, so no module file can run code.

`save` writes into a temporary directory beside the target and moves it into place
(`atomic.directory`). `load` refuses a missing, extra or edited file, a manifest missing a field
and another format, each as `ModuleFileError` naming the file and field. Arrays are plain
`.npy` (bool, int, uint, float) read without pickle.

Version 2 (modjax before the shared module layer: MwT/MODA and Pan & Rajan modules, with
`threshold` and `fallbacks` at the top level and a mandatory `keep` group) is read by
`_upgrade_v2`, which moves those two fields into `info`; version 1 and unknown versions are
refused with the command that cuts the module again.
"""

import hashlib
import hmac
import json
import os
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from flax import traverse_util

from modjax import __version__
from modjax.modules import atomic, identity, jsonrules

FORMAT = "modjax.module"
FORMAT_VERSION = 3
READABLE_VERSIONS = (2, 3)
MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
SIGNATURE = "SIGNATURE"
KEY_ENV = "MODJAX_MODULE_KEY"
"""The environment variable holding the secret key of module signatures (see the docstring)."""
REQUIRED = ("format", "format_version", "method", "classes", "parent", "metrics", "info", "arrays")
PARENT_REQUIRED = ("model", "model_kwargs", "input_shape", "hash", "step")
_DTYPE_KINDS = "biuf"
_GROUP = re.compile(r"[a-z_]+")


class ModuleFileError(ValueError):
    """A saved module is missing, damaged, altered, malformed, or of another format version."""


class ModuleDir(NamedTuple):
    """A verified module directory, as the family-neutral layer sees it.

    Attributes:
        path: the directory.
        method: the method that made it (a registered family's, `registry.family_of`).
        classes: the parent class ids it scores.
        parent: the parent description (`identity.describe_parent`).
        metrics: JSON scalars (sizes, rates).
        info: the family's JSON sections.
        arrays: `{group: {name: array}}` in the saved order.
        format_version: the version it was written in (2 is upgraded on read).
    """

    path: pathlib.Path
    method: str
    classes: tuple[int, ...]
    parent: dict[str, Any]
    metrics: dict[str, Any]
    info: dict[str, Any]
    arrays: dict[str, dict[str, np.ndarray]]
    format_version: int


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_npy(root: pathlib.Path, rel: str, name: str, array: Any) -> dict[str, Any]:
    array = np.asarray(array)
    if array.dtype.kind not in _DTYPE_KINDS:
        raise ValueError(
            f"array {name!r} has dtype {array.dtype}; expected bool, int, uint or float (cast "
            "bfloat16 to float32 first)"
        )
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(path, 0o644)
    return {"name": name, "file": rel, "shape": list(array.shape), "dtype": array.dtype.str}


def save(
    directory: str | os.PathLike,
    *,
    method: str,
    classes: Sequence[int],
    parent: Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
    info: Mapping[str, Any] | None = None,
    arrays: Mapping[str, Mapping[str, Any]] | None = None,
    overwrite: bool = False,
) -> pathlib.Path:
    """Writes one module directory atomically (see the module docstring) and returns its path.

    Args:
        directory: the target; it must not exist unless `overwrite`.
        method: the method that made the module (a registered family's).
        classes: parent class ids the module scores.
        parent: `identity.describe_parent(...)` with `hash` and `step` set.
        metrics: JSON scalars.
        info: the family's JSON sections.
        arrays: `{group: {name: array}}`; group names match `[a-z_]+`.
        overwrite: replace an existing directory.

    Raises:
        FileExistsError: `directory` exists and `overwrite` is False.
        ValueError: a parent without the required fields, a bad group name, an array dtype
            that `.npy` cannot hold without pickle, or metadata that is not JSON.
    """
    missing = [k for k in PARENT_REQUIRED if k not in parent]
    if missing:
        raise ValueError(f"parent lacks {missing}; describe it with identity.describe_parent")
    groups = dict(arrays or {})
    for g in groups:
        if not _GROUP.fullmatch(g):
            raise ValueError(f"array group {g!r} must match [a-z_]+")
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "modjax_version": __version__,
        "method": str(method),
        "classes": [int(c) for c in classes],
        "parent": jsonrules.jsonable(dict(parent), "parent"),
        "metrics": jsonrules.jsonable(dict(metrics or {}), "metrics"),
        "info": jsonrules.jsonable(dict(info or {}), "info"),
    }
    with atomic.directory(directory, overwrite=overwrite) as tmp:
        manifest["arrays"] = {
            g: [
                _write_npy(tmp, f"{g}/{i:05d}.npy", str(n), a)
                for i, (n, a) in enumerate(named.items())
            ]
            for g, named in groups.items()
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, allow_nan=False))
        os.chmod(tmp / MANIFEST, 0o644)
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        (tmp / SUMS).write_text("".join(f"{_sha256(tmp / rel)}  {rel}\n" for rel in files))
        os.chmod(tmp / SUMS, 0o644)
        key = signing_key()
        if key is not None:
            (tmp / SIGNATURE).write_text(f"hmac-sha256 {_sign(key, tmp / SUMS)}\n")
            os.chmod(tmp / SIGNATURE, 0o644)
    return pathlib.Path(directory).absolute()


def signing_key(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The signature key from `MODJAX_MODULE_KEY` (UTF-8 bytes), or None when unset or empty."""
    value = (os.environ if environ is None else environ).get(KEY_ENV, "")
    return value.encode() if value else None


def _sign(key: bytes, sums: pathlib.Path) -> str:
    return hmac.new(key, sums.read_bytes(), hashlib.sha256).hexdigest()


def _verify_signature(root: pathlib.Path) -> None:
    key = signing_key()
    if key is None:
        return
    path = root / SIGNATURE
    if not path.is_file():
        raise ModuleFileError(
            f"{root} is not signed ({SIGNATURE} missing) and {KEY_ENV} is set: only modules "
            f"cut with that key are accepted. Cut it again with {KEY_ENV} set, or unset it to "
            "accept unsigned modules"
        )
    kind, _, digest = path.read_text().strip().partition(" ")
    if kind != "hmac-sha256" or not hmac.compare_digest(digest, _sign(key, root / SUMS)):
        raise ModuleFileError(
            f"{path} does not match: {root} was signed with another key than {KEY_ENV}, or "
            f"its {SUMS} was altered after signing"
        )


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a module directory, unverified (for dispatch before `load`).

    Raises:
        ModuleFileError: no manifest, or one that is not a JSON object.
    """
    path = pathlib.Path(directory) / MANIFEST
    if not path.is_file():
        raise ModuleFileError(f"{path} not found; {directory} is not a saved modjax module")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModuleFileError(f"{path} is not valid JSON ({e})") from e
    if not isinstance(manifest, dict):
        raise ModuleFileError(f"{path} is not a JSON object")
    return manifest


def _check_version(root: pathlib.Path, manifest: Mapping[str, Any]) -> int:
    path = root / MANIFEST
    if manifest.get("format") != FORMAT:
        raise ModuleFileError(
            f"{path}: field 'format' is {manifest.get('format')!r}; expected {FORMAT!r}"
        )
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ModuleFileError(
            f"{path}: field 'format_version' is {version!r}; this modjax ({__version__}) reads "
            f"format versions {list(READABLE_VERSIONS)}. Cut the module again from its run "
            "(`modjax modularize`, `modjax decompose`) to write it in version "
            f"{FORMAT_VERSION}"
        )
    return int(version)


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
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    present -= {SUMS, SIGNATURE}
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


def field(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    """`mapping[key]`, or `ModuleFileError` naming `where` and the missing field."""
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise ModuleFileError(f"{where} lacks field {key!r}")
    return mapping[key]


def _read_npy(root: pathlib.Path, entry: Mapping[str, Any], where: str) -> np.ndarray:
    for key in ("name", "file", "shape", "dtype"):
        field(entry, key, where)
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


def _upgrade_v2(manifest: dict[str, Any], where: str) -> dict[str, Any]:
    """Version 2 → 3 in memory: `threshold` and `fallbacks` move into `info`."""
    for key in ("threshold", "fallbacks"):
        field(manifest, key, where)
    info = dict(field(manifest, "info", where))
    info.setdefault("threshold", manifest.pop("threshold"))
    info.setdefault("fallbacks", manifest.pop("fallbacks"))
    return {**manifest, "info": info, "format_version": FORMAT_VERSION}


def load(directory: str | os.PathLike) -> ModuleDir:
    """Reads and verifies a module directory of any family (see the module docstring).

    Checks, in order: the format and version; that the files are exactly those of `SHA256SUMS`
    with their digests; the signature when `MODJAX_MODULE_KEY` is set; every required manifest
    field; array shapes and dtypes. What the arrays
    mean is checked by the family that reads them.

    Raises:
        ModuleFileError (a ValueError): naming the file and field.
    """
    root = pathlib.Path(directory)
    manifest = read_manifest(root)
    version = _check_version(root, manifest)
    _verify_files(root)
    _verify_signature(root)
    where = str(root / MANIFEST)
    if version == 2:
        manifest = _upgrade_v2(manifest, where)
    for key in REQUIRED:
        field(manifest, key, where)
    parent = manifest["parent"]
    for key in PARENT_REQUIRED:
        field(parent, key, f"{where} field 'parent'")
    index = manifest["arrays"]
    if not isinstance(index, Mapping):
        raise ModuleFileError(f"{where} field 'arrays' is not an object")
    arrays = {
        g: {e["name"]: _read_npy(root, e, f"{where} field 'arrays.{g}'") for e in entries}
        for g, entries in index.items()
    }
    try:
        classes = tuple(int(c) for c in manifest["classes"])
    except (TypeError, ValueError) as e:
        raise ModuleFileError(f"{where} field 'classes' is not a list of ints ({e})") from e
    if not isinstance(manifest["info"], Mapping) or not isinstance(manifest["metrics"], Mapping):
        raise ModuleFileError(f"{where} fields 'info' and 'metrics' must be objects")
    return ModuleDir(
        root,
        str(manifest["method"]),
        classes,
        dict(parent),
        dict(manifest["metrics"]),
        dict(manifest["info"]),
        arrays,
        version,
    )


def group(saved: ModuleDir, name: str) -> dict[str, np.ndarray]:
    """`saved.arrays[name]`, or `ModuleFileError` naming the manifest and the missing group."""
    if name not in saved.arrays:
        raise ModuleFileError(f"{saved.path / MANIFEST} field 'arrays' lacks group {name!r}")
    return saved.arrays[name]


def network_variables(saved: ModuleDir, name: str = "params") -> dict[str, Any]:
    """A whole network's `{"params", "batch_stats"}` from group `name` (written with
    `identity.flat_variables`), checked against the manifest's `metrics.hash`.

    Raises:
        ModuleFileError: no such group, or variables whose content hash is not the recorded one.
    """
    flat = group(saved, name)
    tree = traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})
    if saved.metrics.get("hash") != identity.parent_hash(tree):
        raise ModuleFileError(
            f"{saved.path / MANIFEST} field 'metrics.hash' does not match the saved variables"
        )
    return {c: tree[c] for c in identity.COLLECTIONS if c in tree}


def section(saved: ModuleDir, key: str) -> Any:
    """`saved.info[key]`, or `ModuleFileError` naming the manifest and the missing section."""
    if key not in saved.info:
        raise ModuleFileError(f"{saved.path / MANIFEST} field 'info' lacks {key!r}")
    return saved.info[key]


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "PARENT_REQUIRED",
    "READABLE_VERSIONS",
    "SUMS",
    "ModuleDir",
    "ModuleFileError",
    "field",
    "group",
    "load",
    "network_variables",
    "read_manifest",
    "save",
    "section",
]
