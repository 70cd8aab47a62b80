"""Reads datasets that TensorFlow Datasets prepared, via `tfds.data_source` (no TensorFlow).

The prepared copy lives in `<data_dir>/tfds/<tfds name>/<version>/` (array_record files plus
`dataset_info.json`), e.g. `shared/datasets/tfds/mnist/3.0.1/`. modjax never lets TFDS
download or prepare anything. `tensorflow_datasets` is imported lazily: it is the optional
`tfds` extra (`pip install 'modjax[tfds]'`).

TFDS stores examples in its own (shuffled) order, so arrays from here hold the same examples
as the raw files in a different order.
"""

import logging
import pathlib

import numpy as np

from modjax.data.registry import DatasetInfo

__all__ = ["has_tfds_copy", "read_tfds", "tfds_path"]

logger = logging.getLogger(__name__)

_CHUNK = 4096


def tfds_path(info: DatasetInfo, data_dir: pathlib.Path) -> pathlib.Path | None:
    """Returns `<data_dir>/tfds/<tfds name>`, where the TFDS copy of `info` would live.

    Returns None when TFDS has no such dataset (e.g. `digits`).
    """
    return None if info.tfds_name is None else data_dir / "tfds" / info.tfds_name


def has_tfds_copy(info: DatasetInfo, data_dir: pathlib.Path) -> bool:
    """Whether a prepared TFDS copy (some `<version>/dataset_info.json`) exists."""
    path = tfds_path(info, data_dir)
    return path is not None and any(path.glob("*/dataset_info.json"))


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError(
            "backend='tfds' needs tensorflow-datasets and array-record, the optional 'tfds' "
            "extra: pip install 'modjax[tfds]' (no TensorFlow needed); or use backend='raw' "
            f"({e})"
        ) from e
    return tfds


def read_tfds(
    info: DatasetInfo, split: str, *, data_dir: pathlib.Path
) -> tuple[np.ndarray, np.ndarray]:
    """Reads one split of a prepared TFDS dataset into numpy arrays.

    Args:
        info: the registry entry (its `tfds_name` is used).
        split: e.g. `"train"`.
        data_dir: the modjax data dir; TFDS's data dir is `<data_dir>/tfds`.

    Returns:
        `(images uint8 [N, H, W, C], labels int64 [N])` as stored by TFDS (no label offset or
        transposition applied), in TFDS's order.

    Raises:
        ImportError: if the `tfds` extra is not installed.
        ValueError: if TFDS cannot open the prepared copy or the split, naming the directory.
    """
    if info.tfds_name is None:
        raise ValueError(f"dataset {info.name!r} has no TFDS copy; use backend='raw'")
    tfds = _import_tfds()
    root = data_dir / "tfds"
    try:
        sources = tfds.data_source(info.tfds_name, data_dir=str(root), download=False)
    except Exception as e:  # TFDS raises assorted types (AssertionError, DatasetNotFoundError).
        raise ValueError(
            f"TFDS could not open {info.tfds_name!r} in {root}: {type(e).__name__}: {e}"
        ) from e
    if split not in sources:
        raise ValueError(
            f"TFDS copy of {info.tfds_name!r} in {root} has splits {sorted(sources)}; "
            f"expected {split!r}"
        )
    source = sources[split]
    images, labels = [], []
    logger.info(
        "reading %d examples of %s[%s] from TFDS in %s", len(source), info.tfds_name, split, root
    )
    for start in range(0, len(source), _CHUNK):
        records = source.__getitems__(list(range(start, min(start + _CHUNK, len(source)))))
        images.extend(record["image"] for record in records)
        labels.extend(record["label"] for record in records)
    if not images:
        raise ValueError(f"TFDS copy of {info.tfds_name!r}[{split}] in {root} is empty")
    return np.stack(images).astype(np.uint8), np.asarray(labels, np.int64)
