"""`load(name, split)`: find a dataset under the data dir, read it and validate it."""

import functools
import logging
import os
import pathlib

import numpy as np

from modjax.data import cache as _cache
from modjax.data import readers as _readers
from modjax.data import tfds_backend as _tfds
from modjax.data.pipeline import validate_batch
from modjax.data.registry import DATASETS, DatasetInfo, get_info

__all__ = [
    "DatasetNotFoundError",
    "dataset_table",
    "download_command",
    "load",
    "locate",
    "resolve_data_dir",
]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "raw", "tfds")
ENV_DATA_DIR = "MODJAX_DATA_DIR"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset (or the data dir itself) is not on disk.

    The message names the files expected, every place looked and the command that fetches them.

    Attributes:
        dataset: the dataset name, or None when the data dir itself is missing.
        looked: the paths that were checked.
    """

    def __init__(
        self, message: str, *, dataset: str | None = None, looked: tuple[pathlib.Path, ...] = ()
    ):
        super().__init__(message)
        self.dataset = dataset
        self.looked = looked


def download_command(name: str, data_dir: str | os.PathLike = "DIR") -> str:
    """The shell command that fetches dataset `name` into `data_dir`."""
    return f"modjax data download {name} --data-dir {data_dir}"


def _resolve(data_dir: str | os.PathLike | None) -> tuple[pathlib.Path, str]:
    if data_dir is not None:
        path, origin = pathlib.Path(data_dir).expanduser(), "argument data_dir"
    elif os.environ.get(ENV_DATA_DIR):
        path, origin = pathlib.Path(os.environ[ENV_DATA_DIR]).expanduser(), f"${ENV_DATA_DIR}"
    else:
        raise DatasetNotFoundError(
            f"no data dir: pass data_dir=... (CLI: --data-dir DIR) or set ${ENV_DATA_DIR}; "
            f"only 'digits' needs none. Fetch a dataset with: {download_command('NAME')}"
        )
    if not path.is_dir():
        raise DatasetNotFoundError(
            f"data dir {path} (from {origin}) does not exist or is not a directory; fetch a "
            f"dataset into it with: {download_command('NAME', path)}",
            looked=(path,),
        )
    return path, origin


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Returns the data dir: `data_dir` if given, else `$MODJAX_DATA_DIR`.

    Args:
        data_dir: an explicit directory, or None.

    Returns:
        The directory, which exists.

    Raises:
        DatasetNotFoundError: if neither is set, or the directory does not exist.
    """
    return _resolve(data_dir)[0]


def _finalize(
    images: np.ndarray, labels: np.ndarray, info: DatasetInfo, split: str, where: str
) -> tuple[np.ndarray, np.ndarray]:
    if info.transpose and images.ndim == 4:
        images = np.ascontiguousarray(images.transpose(0, 2, 1, 3))
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{where}: labels have dtype {labels.dtype}; expected integers")
    labels = (labels.astype(np.int64) - info.label_offset).astype(np.int32)
    try:
        validate_batch(images, labels, num_classes=info.num_classes, image_shape=info.image_shape)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    expected = info.num_examples.get(split)
    if expected is not None and len(labels) != expected:
        raise ValueError(f"{where}: {len(labels)} examples in split {split!r}; expected {expected}")
    return images, labels


def _describe(paths: list[pathlib.Path]) -> str:
    return ", ".join(f"{p} ({'found' if p.exists() else 'missing'})" for p in paths)


def _not_found(
    info: DatasetInfo,
    split: str,
    root: pathlib.Path,
    origin: str,
    tried: list[tuple[str, list[pathlib.Path]]],
) -> DatasetNotFoundError:
    lines = [
        f"dataset {info.name!r} split {split!r} not found in data dir {root} "
        f"(from {origin}). Looked for:"
    ]
    lines += [f"  {fmt}: {_describe(paths)}" for fmt, paths in tried]
    if info.files.get(split):
        lines.append(
            f"Expected files (relative to the data dir): {', '.join(info.files[split])}"
            + (" or an alternative above." if len(tried) > 1 else ".")
        )
    lines += [
        f"Note: found {root / p}, but {why}."
        for p, why in info.unsupported.items()
        if (root / p).exists()
    ]
    lines.append(f"Get them with: {download_command(info.name, root)}")
    looked = tuple(p for _, paths in tried for p in paths)
    return DatasetNotFoundError("\n".join(lines), dataset=info.name, looked=looked)


def _check_args(info: DatasetInfo, split: str, backend: str) -> None:
    if split not in info.num_examples:
        raise ValueError(f"split={split!r} for {info.name}; expected one of {list(info.splits)}")
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}; expected one of {list(BACKENDS)}")
    if info.format == "digits" and backend == "tfds":
        raise ValueError(
            "digits is embedded (scikit-learn) and has no TFDS copy; use backend='auto' or 'raw'"
        )


def locate(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    backend: str = "auto",
) -> tuple[str, list[pathlib.Path]]:
    """Finds where `load` would read one split from, without reading it.

    Args:
        name: a registry name.
        split: `"train"` or `"test"`.
        data_dir: the data dir; None uses `$MODJAX_DATA_DIR` (ignored for `digits`).
        backend: `"auto"`, `"raw"` or `"tfds"`.

    Returns:
        `(format, paths)`: the reader format (`"tfds"` for the TFDS copy, `"digits"` for the
        embedded set, with no paths) and the files or directory it reads.

    Raises:
        ValueError: unknown name, split or backend.
        DatasetNotFoundError: as in `load`.
    """
    info = get_info(name)
    _check_args(info, split, backend)
    if info.format == "digits":
        return "digits", []
    root, origin = _resolve(data_dir)
    tried: list[tuple[str, list[pathlib.Path]]] = []
    if backend in ("auto", "raw"):
        for layout in info.layouts():
            paths = [root / f for f in layout.files.get(split, ())]
            if paths and all(p.exists() for p in paths):
                return layout.format, paths
            if paths:
                tried.append((layout.format, paths))
    if backend in ("auto", "tfds") and info.tfds_name is not None:
        location = _tfds.tfds_path(info, root)
        if _tfds.has_tfds_copy(info, root):
            return "tfds", [location]
        tried.append(("tfds", [location / "<version>" / "dataset_info.json"]))
    raise _not_found(info, split, root, origin, tried)


def load(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    backend: str = "auto",
    cache: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Loads one split of a dataset as numpy arrays.

    Raw files are looked for under the data dir in the registry's layouts (canonical first);
    `backend="auto"` falls back to a prepared TFDS copy in `<data_dir>/tfds`. JPEG folders/zips
    and TFDS reads are cached as `.npz` (see `modjax.data.cache`). `digits` is embedded and
    needs no data dir.

    Args:
        name: a registry name, e.g. `"mnist"`, `"cifar10"`, `"emnist/letters"`.
        split: `"train"` or `"test"`.
        data_dir: the data dir; None uses `$MODJAX_DATA_DIR`.
        backend: `"auto"` (raw files, else TFDS), `"raw"` or `"tfds"`.
        cache: whether slow sources may use and fill the decode cache.

    Returns:
        `(images, labels)`: `uint8 [N, H, W, C]` and `int32 [N]` in `[0, num_classes)`.

    Raises:
        ValueError: unknown name, split or backend; a file with a bad format, count, shape or
            label range (the message names the file).
        DatasetNotFoundError: the data dir or the dataset is missing; the message names the
            expected files, every place looked and the download command.
        ImportError: `backend="tfds"` without the `tfds` extra.

    Example:
        >>> images, labels = load("digits", "test")
        >>> images.shape, images.dtype, labels.dtype
        ((360, 8, 8, 1), dtype('uint8'), dtype('int32'))
    """
    info = get_info(name)
    fmt, paths = locate(name, split, data_dir=data_dir, backend=backend)
    if fmt == "digits":
        return _finalize(*_readers.read_digits(split), info, split, "digits (scikit-learn)")
    description = {"name": name, "split": split, "format": fmt, "shape": list(info.image_shape)}
    if fmt == "tfds":
        location = paths[0]
        logger.info("reading %s[%s] from the TFDS copy in %s", name, split, location)
        root = resolve_data_dir(data_dir)
        read_fn = functools.partial(_tfds.read_tfds, info, split, data_dir=root)
        sources, where = sorted(location.glob("*/*")), f"TFDS copy in {location}"
    else:
        logger.info("reading %s[%s] (%s) from %s", name, split, fmt, paths[0])
        read_fn = functools.partial(
            _readers.READERS[fmt], paths, info.image_shape, info.class_names
        )
        sources, where = paths, ", ".join(map(str, paths))
    enabled = cache and (fmt == "tfds" or fmt in _readers.SLOW_FORMATS)
    images, labels = _cache.cached_arrays(
        read_fn, description=description, sources=sources, enabled=enabled
    )
    return _finalize(images, labels, info, split, where)


def dataset_table(data_dir: str | os.PathLike | None = None) -> list[dict[str, object]]:
    """One row per registered dataset: what it is and whether it is on disk.

    Args:
        data_dir: the data dir; None uses `$MODJAX_DATA_DIR`. A missing data dir is reported
            in the rows, not raised.

    Returns:
        Dicts with keys `name`, `classes`, `shape` (`"HxWxC"`), `available` (the splits found,
        e.g. `"train,test"`, or `"-"`) and `location` (where they were found, or the canonical
        place they are expected).
    """
    rows = []
    for name, info in DATASETS.items():
        found: dict[str, tuple[str, list[pathlib.Path]]] = {}
        no_data_dir = False
        for split in info.splits:
            try:
                found[split] = locate(name, split, data_dir=data_dir)
            except DatasetNotFoundError as e:
                no_data_dir = no_data_dir or e.dataset is None
        if info.format == "digits":
            location = "embedded (scikit-learn)"
        elif found:
            dirs = {
                fmt_paths[1][0] if fmt_paths[0] == "tfds" else fmt_paths[1][0].parent
                for fmt_paths in found.values()
            }
            location = ", ".join(sorted(map(str, dirs)))
        elif no_data_dir:
            location = "no data dir (--data-dir DIR or $MODJAX_DATA_DIR)"
        else:
            location = f"expected <data_dir>/{next(iter(info.files.values()))[0]}"
        rows.append(
            {
                "name": name,
                "classes": info.num_classes,
                "shape": "x".join(map(str, info.image_shape)),
                "available": ",".join(found) or "-",
                "location": location,
            }
        )
    return rows
