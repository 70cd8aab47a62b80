"""Atomic file and directory writes: write beside the target, fsync, then `os.replace`.

A reader never sees half a file: a killed writer leaves at most a hidden `.<name>.tmp-*`
temporary, which the next write of the same target removes.
"""

import contextlib
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from modjax.modules import jsonrules


def _clean_stale(target: pathlib.Path) -> None:
    for prefix in (f".{target.name}.tmp-", f".{target.name}.old-"):
        for stale in target.parent.glob(prefix + "*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes, *, mode: int = 0o644) -> pathlib.Path:
    """Writes `data` to `path` atomically (parents created) and returns the path."""
    target = pathlib.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    """`write_bytes` of UTF-8 text."""
    return write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, value: Any, *, what: str | None = None) -> pathlib.Path:
    """Writes `jsonrules.jsonable(value)` as indented, strict JSON, atomically."""
    return write_text(path, jsonrules.dumps(value, what or str(path)) + "\n")


@contextlib.contextmanager
def directory(target: str | os.PathLike, *, overwrite: bool = False) -> Iterator[pathlib.Path]:
    """Yields an empty temporary directory that becomes `target` when the block succeeds.

    On an exception the temporary is removed and `target` is untouched. With `overwrite`, an
    existing `target` is moved aside and replaced; without, an existing one is refused before
    anything is written.

    Raises:
        FileExistsError: `target` exists and `overwrite` is False.
    """
    target = pathlib.Path(target).absolute()
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(target)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        for d in [tmp, *(p for p in tmp.rglob("*") if p.is_dir())]:
            os.chmod(d, 0o755)
        if target.exists():
            old = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "previous")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


__all__ = ["directory", "write_bytes", "write_json", "write_text"]
