"""The dataset registry: `DATASETS` (name -> `DatasetInfo`) and `get_info`.

Names follow TensorFlow Datasets (`mnist`, `emnist/letters`, `svhn_cropped`, ...). Every path in
`files` is relative to the data dir (see `modjax.data.resolve_data_dir`), and the layout mirrors
`shared/datasets`: `<data_dir>/<dataset dir>/<file>`. Download URLs and sha256 sums are the ones
tensorflow-datasets 4.9.10 registers (`url_checksums/*.txt`, `svhn_cropped/checksums.tsv`).

The registry is a constant: nothing registers itself on import.
"""

import dataclasses
import string
from collections.abc import Mapping

from modjax.data.info import DatasetInfo, Files, Layout, RemoteFile
from modjax.data.info import frozen as _frozen

__all__ = ["DATASETS", "DatasetInfo", "Layout", "RemoteFile", "get_info"]

_IDX = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_MNIST_SHAPE = (28, 28, 1)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _idx_files(directory: str) -> Files:
    return _frozen({s: tuple(f"{directory}/{f}" for f in fs) for s, fs in _IDX.items()})


def _idx_downloads(directory: str, base_url: str, sums: Mapping[str, tuple[str, int]]) -> tuple:
    return tuple(
        RemoteFile(url=base_url + f, path=f"{directory}/{f}", sha256=sha, size=size)
        for f, (sha, size) in sums.items()
    )


# sha256 and sizes: tensorflow_datasets 4.9.10, url_checksums/{mnist,fashion_mnist,kmnist}.txt.
# fmt: off
_MNIST_SUMS = {
    "train-images-idx3-ubyte.gz": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
    "train-labels-idx1-ubyte.gz": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
    "t10k-images-idx3-ubyte.gz": (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
    "t10k-labels-idx1-ubyte.gz": (
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
}
_FASHION_SUMS = {
    "train-images-idx3-ubyte.gz": (
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
    "train-labels-idx1-ubyte.gz": (
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
    "t10k-images-idx3-ubyte.gz": (
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
    "t10k-labels-idx1-ubyte.gz": (
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
}
_KMNIST_SUMS = {
    "train-images-idx3-ubyte.gz": (
        "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4", 18165135),
    "train-labels-idx1-ubyte.gz": (
        "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17", 29497),
    "t10k-images-idx3-ubyte.gz": (
        "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5", 3041136),
    "t10k-labels-idx1-ubyte.gz": (
        "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c", 5120),
}

_DIGITS = tuple(string.digits)
_FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
            "Bag", "Ankle boot")
# KMNIST classes: お き す つ な は ま や れ を (romanised).
_KMNIST = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
_CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
            "truck")
# fmt: on
_CIFAR100 = tuple(
    """
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly
camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup
dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower
leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange
orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit
raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel
streetcar sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip
turtle wardrobe whale willow_tree wolf woman worm
""".split()
)


def _emnist(
    variant: str,
    classes: tuple[str, ...],
    counts: tuple[int, int],
    offset: int = 0,
    mean: float = 0.1736,
    std: float = 0.3317,
) -> DatasetInfo:
    """EMNIST variant; the idx files come out of NIST's `gzip.zip` as `emnist/gzip/...`."""

    def files(prefix: str) -> Files:
        return _frozen(
            {
                split: (
                    f"{prefix}emnist-{variant}-{split}-images-idx3-ubyte.gz",
                    f"{prefix}emnist-{variant}-{split}-labels-idx1-ubyte.gz",
                )
                for split in ("train", "test")
            }
        )

    canonical = files("emnist/gzip/")
    return DatasetInfo(
        name=f"emnist/{variant}",
        num_classes=len(classes),
        image_shape=_MNIST_SHAPE,
        mean=(mean,),
        std=(std,),
        class_names=classes,
        files=canonical,
        format="idx",
        num_examples=_frozen({"train": counts[0], "test": counts[1]}),
        alternatives=(Layout("idx", files("emnist/")),),
        downloads=(
            RemoteFile(
                url="https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip",
                path="emnist/gzip.zip",
                sha256="fb9bb67e33772a9cc0b895e4ecf36d2cf35be8b709693c3564cea2a019fcda8e",
                size=561753746,
                extract=True,
                provides=sum(canonical.values(), ()),
            ),
        ),
        label_offset=offset,
        transpose=True,
        tfds_name=f"emnist/{variant}",
    )


def _cifar(
    name: str,
    classes: tuple[str, ...],
    mean: tuple,
    std: tuple,
    files: Files,
    fmt: str,
    download: RemoteFile,
    alternatives: tuple = (),
    unsupported: Mapping[str, str] = _frozen({}),
) -> DatasetInfo:
    return DatasetInfo(
        name=name,
        num_classes=len(classes),
        image_shape=(32, 32, 3),
        mean=mean,
        std=std,
        class_names=classes,
        files=files,
        format=fmt,
        num_examples=_frozen({"train": 50000, "test": 10000}),
        augment_crop_pad=4,
        augment_flip=True,
        alternatives=alternatives,
        downloads=(dataclasses.replace(download, provides=sum(files.values(), ())),),
        unsupported=unsupported,
        tfds_name=name,
    )


_NO_PICKLE = (
    "the Python version holds pickles, which modjax never reads; use the binary "
    "version (`modjax data download {name}` fetches it)"
)
_CIFAR10_BIN = [f"cifar10/cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)]

DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        # scikit-learn's bundled 8x8 digits (UCI optdigits test set), pixels 0..16 scaled to
        # 0..255; a fixed, seeded, stratified 1437/360 split (see `readers.read_digits`).
        # mean/std: this train split, computed offline.
        name="digits",
        num_classes=10,
        image_shape=(8, 8, 1),
        mean=(0.3051,),
        std=(0.3757,),
        class_names=_DIGITS,
        files=_frozen({}),
        format="digits",
        num_examples=_frozen({"train": 1437, "test": 360}),
    ),
    "mnist": DatasetInfo(
        # METHODS §2.5: Pan & Rajan use no normalization (`normalize=False`); these are the
        # train-set statistics, verified on shared/datasets/mnist.
        name="mnist",
        num_classes=10,
        image_shape=_MNIST_SHAPE,
        mean=(0.1307,),
        std=(0.3081,),
        class_names=_DIGITS,
        files=_idx_files("mnist"),
        format="idx",
        num_examples=_frozen({"train": 60000, "test": 10000}),
        downloads=_idx_downloads(
            "mnist", "https://storage.googleapis.com/cvdf-datasets/mnist/", _MNIST_SUMS
        ),
        tfds_name="mnist",
    ),
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist",
        num_classes=10,
        image_shape=_MNIST_SHAPE,
        mean=(0.2860,),
        std=(0.3530,),
        class_names=_FASHION,
        files=_idx_files("fashion_mnist"),
        format="idx",
        num_examples=_frozen({"train": 60000, "test": 10000}),
        downloads=_idx_downloads(
            "fashion_mnist",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            _FASHION_SUMS,
        ),
        tfds_name="fashion_mnist",
    ),
    "kmnist": DatasetInfo(
        # Commonly cited train statistics (train images are not available offline to verify).
        name="kmnist",
        num_classes=10,
        image_shape=_MNIST_SHAPE,
        mean=(0.1918,),
        std=(0.3483,),
        class_names=_KMNIST,
        format="kmnist_npz",
        files=_frozen(
            {
                s: (f"kmnist/kmnist-{s}-imgs.npz", f"kmnist/kmnist-{s}-labels.npz")
                for s in ("train", "test")
            }
        ),
        num_examples=_frozen({"train": 60000, "test": 10000}),
        alternatives=(Layout("idx", _idx_files("kmnist")),),
        # The npz files have no registered checksum; download the TFDS-registered idx files.
        downloads=_idx_downloads(
            "kmnist", "http://codh.rois.ac.jp/kmnist/dataset/kmnist/", _KMNIST_SUMS
        ),
        tfds_name="kmnist",
    ),
    # EMNIST statistics are approximate (commonly cited; EMNIST is not available offline).
    "emnist/letters": _emnist(
        "letters", tuple(string.ascii_uppercase), (88800, 14800), offset=1, mean=0.1722, std=0.3309
    ),
    "emnist/digits": _emnist("digits", _DIGITS, (240000, 40000)),
    "emnist/mnist": _emnist("mnist", _DIGITS, (60000, 10000)),
    "emnist/balanced": _emnist(
        "balanced",
        _DIGITS + tuple(string.ascii_uppercase) + tuple("abdefghnqrt"),
        (112800, 18800),
        mean=0.1751,
        std=0.3332,
    ),
    "emnist/bymerge": _emnist(
        "bymerge", _DIGITS + tuple(string.ascii_uppercase) + tuple("abdefghnqrt"), (697932, 116323)
    ),
    "emnist/byclass": _emnist(
        "byclass",
        _DIGITS + tuple(string.ascii_uppercase) + tuple(string.ascii_lowercase),
        (697932, 116323),
    ),
    "cifar10": _cifar(
        "cifar10",
        _CIFAR10,
        (0.4914, 0.4822, 0.4465),
        (0.2471, 0.2435, 0.2616),
        files=_frozen(
            {"train": tuple(_CIFAR10_BIN), "test": ("cifar10/cifar-10-batches-bin/test_batch.bin",)}
        ),
        fmt="cifar10_bin",
        download=RemoteFile(
            url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
            path="cifar10/cifar-10-binary.tar.gz",
            sha256="c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
            size=170052171,
            extract=True,
        ),
        alternatives=(
            Layout(
                "cifar10_bin",
                _frozen(
                    {
                        "train": tuple(p.removeprefix("cifar10/") for p in _CIFAR10_BIN),
                        "test": ("cifar-10-batches-bin/test_batch.bin",),
                    }
                ),
            ),
            # shared/datasets: lossy JPEG (q75) copies, as zips or extracted.
            Layout(
                "image_zip",
                _frozen(
                    {s: (f"cifar10_jpeg_q75/cifar10-jpeg-{s}.zip",) for s in ("train", "test")}
                ),
            ),
            Layout(
                "image_folder", _frozen({s: (f"cifar10_jpeg_q75/{s}",) for s in ("train", "test")})
            ),
        ),
        unsupported=_frozen(
            {
                p: _NO_PICKLE.format(name="cifar10")
                for p in ("cifar10/cifar-10-batches-py", "cifar-10-batches-py")
            }
        ),
    ),
    "cifar100": _cifar(
        "cifar100",
        _CIFAR100,
        (0.5071, 0.4867, 0.4408),
        (0.2675, 0.2565, 0.2761),
        files=_frozen({s: (f"cifar100/cifar-100-binary/{s}.bin",) for s in ("train", "test")}),
        fmt="cifar100_bin",
        download=RemoteFile(
            url="https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
            path="cifar100/cifar-100-binary.tar.gz",
            sha256="58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec",
            size=168513733,
            extract=True,
        ),
        alternatives=(
            Layout(
                "cifar100_bin",
                _frozen({s: (f"cifar-100-binary/{s}.bin",) for s in ("train", "test")}),
            ),
        ),
        unsupported=_frozen(
            {
                p: _NO_PICKLE.format(name="cifar100")
                for p in ("cifar100/cifar-100-python", "cifar-100-python")
            }
        ),
    ),
    "svhn_cropped": DatasetInfo(
        # METHODS §2.5: ImageNet statistics and h-flip (parity); no "extra" split.
        name="svhn_cropped",
        num_classes=10,
        image_shape=(32, 32, 3),
        mean=_IMAGENET_MEAN,
        std=_IMAGENET_STD,
        class_names=_DIGITS,
        format="svhn_mat",
        files=_frozen({s: (f"svhn_cropped/{s}_32x32.mat",) for s in ("train", "test")}),
        num_examples=_frozen({"train": 73257, "test": 26032}),
        augment_crop_pad=4,
        augment_flip=True,
        downloads=(
            RemoteFile(
                url="http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
                path="svhn_cropped/train_32x32.mat",
                size=182040794,
                sha256="435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8",
            ),
            RemoteFile(
                url="http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
                path="svhn_cropped/test_32x32.mat",
                size=64275384,
                sha256="cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b",
            ),
        ),
        tfds_name="svhn_cropped",
    ),
}


def get_info(name: str) -> DatasetInfo:
    """Returns the registry entry of dataset `name`.

    Args:
        name: a key of `DATASETS`, e.g. `"mnist"` or `"emnist/letters"`.

    Returns:
        The `DatasetInfo`.

    Raises:
        ValueError: if `name` is unknown; the message lists the known names.

    Example:
        >>> get_info("cifar10").image_shape
        (32, 32, 3)
    """
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset name={name!r}; expected one of {sorted(DATASETS)}"
        ) from None
