"""modjax data layer: dataset registry, offline readers, downloads, batching and preprocessing.

Typical use::

    info = get_info("cifar10")
    images, labels = load("cifar10", "train", data_dir="/data")    # numpy uint8 / int32
    preprocess_fn = make_preprocess(info, augment=True)            # traced inside the step
    for batch in prefetch(train_batches(images, labels, global_batch_size=128, seed=0,
                                        epoch=epoch)):
        ...
"""

from modjax.data.augment import make_preprocess, random_crop, random_flip
from modjax.data.cache import cache_dir
from modjax.data.download import ChecksumError, DownloadError, download, sha256sum
from modjax.data.loading import (
    DatasetNotFoundError,
    dataset_table,
    download_command,
    load,
    locate,
    resolve_data_dir,
)
from modjax.data.pipeline import (
    epoch_permutation,
    eval_batches,
    num_eval_batches,
    prefetch,
    steps_per_epoch,
    train_batches,
    validate_arrays,
    validate_batch,
)
from modjax.data.readers import (
    read_cifar_binary,
    read_digits,
    read_idx,
    read_image_folder,
    read_image_zip,
    read_svhn_mat,
)
from modjax.data.registry import DATASETS, DatasetInfo, Layout, RemoteFile, get_info
from modjax.data.split import seeded_subset, stratified_split

__all__ = [
    "seeded_subset",
    "stratified_split",
    "DATASETS",
    "ChecksumError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "DownloadError",
    "Layout",
    "RemoteFile",
    "cache_dir",
    "dataset_table",
    "download",
    "download_command",
    "epoch_permutation",
    "eval_batches",
    "get_info",
    "load",
    "locate",
    "make_preprocess",
    "num_eval_batches",
    "prefetch",
    "random_crop",
    "random_flip",
    "read_cifar_binary",
    "read_digits",
    "read_idx",
    "read_image_folder",
    "read_image_zip",
    "read_svhn_mat",
    "resolve_data_dir",
    "sha256sum",
    "steps_per_epoch",
    "train_batches",
    "validate_arrays",
    "validate_batch",
]
