"""`download(name, data_dir=...)`: fetch a dataset's canonical files, verified by sha256.

URLs and checksums are the ones TensorFlow Datasets registers. Each file streams into a
temporary file in its target directory, is checked against its sha256 and is then renamed into
place atomically, so a failed or corrupted download leaves nothing behind. Archives (`.tar.gz`,
`.zip`) are extracted after verification, through a temporary directory, and then deleted.
Files already present with the right checksum (or archives whose contents are present) are
skipped.

Mirrors: `base_url` (or `$MODJAX_DATA_MIRROR`) replaces the origin. A mirror serves the data-dir
layout itself: file `<data_dir>/mnist/train-images-idx3-ubyte.gz` is fetched from
`<base_url>/mnist/train-images-idx3-ubyte.gz`, so any HTTP server over a data dir is a mirror.
"""

import hashlib
import logging
import os
import pathlib
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile

from modjax.data.registry import RemoteFile, get_info

__all__ = ["ChecksumError", "DownloadError", "download", "sha256sum"]

logger = logging.getLogger(__name__)

ENV_MIRROR = "MODJAX_DATA_MIRROR"
_CHUNK = 1 << 20
_PROGRESS_MIN_BYTES = 1 << 20
_TIMEOUT_S = 60


class ChecksumError(ValueError):
    """A downloaded file's sha256 differs from the registered one; nothing was kept."""


class DownloadError(RuntimeError):
    """A file could not be fetched (network or HTTP error); nothing was kept."""


def sha256sum(path: str | os.PathLike) -> str:
    """Returns the hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _progress_bar(total: int | None, desc: str, progress: bool):
    from tqdm.auto import tqdm  # Imported here: only downloads show progress.

    show = progress and sys.stderr.isatty() and (total is None or total >= _PROGRESS_MIN_BYTES)
    return tqdm(
        total=total,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not show,
        leave=False,
    )


def _fetch(url: str, remote: RemoteFile, target: pathlib.Path, progress: bool) -> None:
    """Streams `url` to a temp file next to `target`, verifies it, then renames it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = pathlib.Path(name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
                    total = response.length or remote.size
                    with _progress_bar(total, target.name, progress) as bar:
                        while chunk := response.read(_CHUNK):
                            out.write(chunk)
                            digest.update(chunk)
                            bar.update(len(chunk))
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                raise DownloadError(f"could not download {url} to {target}: {e}") from e
        actual = digest.hexdigest()
        if actual != remote.sha256:
            raise ChecksumError(
                f"checksum mismatch for {target.name} downloaded from {url}: expected sha256 "
                f"{remote.sha256}, got {actual} ({tmp.stat().st_size} bytes"
                + (f", expected {remote.size}" if remote.size else "")
                + "); the file was deleted, nothing was kept"
            )
        os.replace(tmp, target)
        logger.info("downloaded %s (sha256 %s)", target, actual)
    finally:
        tmp.unlink(missing_ok=True)


def _extract(archive: pathlib.Path) -> None:
    """Extracts `archive` into its directory through a temp dir, then deletes it."""
    parent = archive.parent
    staging = pathlib.Path(tempfile.mkdtemp(dir=parent, prefix=f".{archive.name}.extract-"))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:  # zipfile drops absolute and '..' parts.
                zf.extractall(staging)
        else:
            with tarfile.open(archive, "r:*") as tf:
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(staging, filter="data")
                else:  # Python < 3.11.4: refuse unsafe member names ourselves.
                    for member in tf.getmembers():
                        if member.name.startswith("/") or ".." in member.name.split("/"):
                            raise ValueError(f"{archive}: unsafe member path {member.name!r}")
                    tf.extractall(staging)
        for entry in staging.iterdir():
            destination = parent / entry.name
            if destination.is_dir() and not destination.is_symlink():
                shutil.rmtree(destination)
            os.replace(entry, destination)
        logger.info("extracted %s into %s", archive, parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    archive.unlink()


def download(
    name: str,
    *,
    data_dir: str | os.PathLike | None,
    base_url: str | None = None,
    progress: bool = True,
) -> list[pathlib.Path]:
    """Downloads dataset `name` into `data_dir` (`<data_dir>/<dataset dir>/...`).

    Args:
        name: a registry name, e.g. `"mnist"`.
        data_dir: the data dir, created if missing; None uses `$MODJAX_DATA_DIR`.
        base_url: a mirror serving the data-dir layout; None uses `$MODJAX_DATA_MIRROR`, else
            the canonical URLs.
        progress: show a tqdm bar for large files (only when stderr is a terminal).

    Returns:
        The dataset's canonical files (`DatasetInfo.files`, all splits), now on disk.

    Raises:
        ValueError: unknown name, or a file with no registered checksum (never fetched).
        ChecksumError: a downloaded file's sha256 differs; names the file and both digests.
        DownloadError: the network or server failed.

    Example:
        >>> download("digits", data_dir=tempfile.mkdtemp())  # embedded: nothing to fetch
        []
    """
    info = get_info(name)
    if data_dir is None:
        data_dir = os.environ.get("MODJAX_DATA_DIR")
        if not data_dir:
            raise ValueError("data_dir=None and $MODJAX_DATA_DIR is not set; pass --data-dir DIR")
    root = pathlib.Path(data_dir).expanduser()
    unverified = [r.url for r in info.downloads if not r.sha256]
    if unverified:
        raise ValueError(
            f"no registered sha256 for {unverified} ({name}); modjax does not download "
            "unverified files. Place the files by hand (see `modjax.data.get_info(name).files`)."
        )
    if not info.downloads:
        logger.info("%s needs no download", name)
        return []
    mirror = base_url if base_url is not None else os.environ.get(ENV_MIRROR)
    root.mkdir(parents=True, exist_ok=True)
    for remote in info.downloads:
        target = root / remote.path
        if remote.extract and remote.provides and all((root / p).exists() for p in remote.provides):
            logger.info("%s: contents already present, skipping", target)
            continue
        if target.is_file() and sha256sum(target) == remote.sha256:
            logger.info("%s already present with the registered sha256", target)
        else:
            if target.exists():
                logger.warning("%s exists with a different sha256; downloading it again", target)
            url = f"{mirror.rstrip('/')}/{remote.path}" if mirror else remote.url
            logger.info("downloading %s -> %s", url, target)
            _fetch(url, remote, target, progress)
        if remote.extract:
            _extract(target)
    return [root / path for paths in info.files.values() for path in paths]
