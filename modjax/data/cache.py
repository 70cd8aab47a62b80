"""On-disk cache of decoded arrays (`.npz`, no pickle) for slow sources: JPEG folders and TFDS.

The cache lives in `$MODJAX_CACHE_DIR`, else `~/.cache/modjax`, never next to the data (which
may be read-only). An entry's key hashes the dataset, split, reader and the *content* of every
source (sha256 of each file; for a directory, of every file under it with its relative path), so
an edited or replaced source invalidates the entry whatever its path, size or modification
time, and a moved data directory still finds its entries. Failure to read or write the cache is
logged and never fatal.
"""

import hashlib
import json
import logging
import os
import pathlib
import tempfile
import zipfile
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["cache_dir", "cached_arrays"]

logger = logging.getLogger(__name__)

_VERSION = 2
_CHUNK = 1 << 20
Arrays = tuple[np.ndarray, np.ndarray]


def cache_dir() -> pathlib.Path:
    """Returns the cache directory: `$MODJAX_CACHE_DIR`, else `~/.cache/modjax`.

    The default is per user and created 0700 (only its owner reads or plants arrays there). A
    `$MODJAX_CACHE_DIR` shared between users is their explicit choice: every user of it trusts
    every other, since a planted `.npz` is read as data.
    """
    env = os.environ.get("MODJAX_CACHE_DIR")
    if env:
        return pathlib.Path(env)
    default = pathlib.Path.home() / ".cache" / "modjax"
    if not default.exists():
        default.parent.mkdir(parents=True, exist_ok=True)
        default.mkdir(mode=0o700, exist_ok=True)
    return default


def _file_sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _content(path: pathlib.Path) -> str:
    """sha256 of a file, or of a directory's files (relative path + content), recursively."""
    if not path.is_dir():
        return _file_sha256(path)
    digest = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{child.relative_to(path).as_posix()}\0{_file_sha256(child)}\n".encode())
    return digest.hexdigest()


def _key(description: dict, sources: Sequence[pathlib.Path]) -> str:
    blob = json.dumps(
        {"version": _VERSION, **description, "sources": [_content(p) for p in sources]},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cached_arrays(
    compute_fn: Callable[[], Arrays],
    *,
    description: dict,
    sources: Sequence[pathlib.Path],
    enabled: bool = True,
) -> Arrays:
    """Returns `compute_fn()`, reusing a cached copy keyed on `description` and `sources`.

    Args:
        compute_fn: produces `(images, labels)` when there is no valid cache entry.
        description: JSON-serialisable facts that select the arrays (dataset, split, reader);
            `description["name"]` and `description["split"]` also name the file.
        sources: the files or directories the arrays come from.
        enabled: False skips the cache entirely.

    Returns:
        `(images, labels)`, from the cache when possible.
    """
    if not enabled:
        return compute_fn()
    stem = f"{description['name'].replace('/', '-')}-{description['split']}"
    path = cache_dir() / f"{stem}-{_key(description, sources)}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as npz:
                logger.info(
                    "loaded %s %s from cache %s", description["name"], description["split"], path
                )
                return npz["images"], npz["labels"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            logger.warning("damaged cache file %s (%s): deleting and rebuilding it", path, e)
            path.unlink(missing_ok=True)
    images, labels = compute_fn()
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{stem}-", suffix=".tmp")
        tmp = pathlib.Path(name)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, images=images, labels=labels)
        tmp.chmod(0o644)  # mkstemp creates 0600; the cache may be shared.
        os.replace(tmp, path)
        tmp = None
        logger.info("cached %s %s at %s", description["name"], description["split"], path)
    except OSError as e:
        logger.warning("could not write cache file %s: %s", path, e)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return images, labels
