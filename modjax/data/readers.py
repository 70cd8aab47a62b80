"""Parsers for raw dataset files: bytes on disk -> numpy `uint8 [N, H, W, C]` and integer labels.

Every reader takes explicit paths and returns `(images, labels)` without looking at the registry
beyond the expected image shape; `modjax.data.load` picks the files, checks counts and label
ranges, and caches slow decodes. Errors are `ValueError`s that name the offending file.

Formats:
    idx: MNIST-family idx files (`*-idx3-ubyte`, `*-idx1-ubyte`), gzipped or not.
    kmnist_npz: `kmnist-{split}-{imgs,labels}.npz`, key `arr_0`.
    cifar10_bin / cifar100_bin: the *binary* CIFAR releases (`cifar-10-batches-bin`,
        `cifar-100-binary`). The Python releases are pickles, which modjax never reads.
    image_folder / image_zip: `<root>/<class>/*.{jpg,jpeg,png}` or a zip of such paths (any
        prefix, e.g. `train/<class>/0001.jpg`); the label is the parent directory's index in
        the class names. Decoded with Pillow.
    svhn_mat: SVHN `{split}_32x32.mat` (MATLAB v5, via scipy.io); label 10 means digit 0.
    digits: scikit-learn's bundled 8x8 digits, no files.
"""

import gzip
import io
import os
import pathlib
import zipfile
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

__all__ = [
    "READERS",
    "read_cifar_binary",
    "read_digits",
    "read_idx",
    "read_image_folder",
    "read_image_zip",
    "read_svhn_mat",
]

PathLike = str | os.PathLike
Arrays = tuple[np.ndarray, np.ndarray]

_IDX_UBYTE = 0x08
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_PIL_FORMATS = ("JPEG", "PNG")
_DIGITS_TEST_SIZE = 360
_DIGITS_SEED = 0


def read_idx(path: PathLike, *, ndim: int | None = None) -> np.ndarray:
    """Reads an idx file of unsigned bytes (the MNIST format), gzipped or not.

    Args:
        path: the file; gzip is detected from its first bytes, not its name.
        ndim: the expected number of dimensions (3 for images, 1 for labels), or None.

    Returns:
        A `uint8` array of the shape stored in the header.

    Raises:
        ValueError: on a bad magic number, an unexpected `ndim` or a wrong payload length.
    """
    raw = pathlib.Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: corrupt gzip stream ({e})") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE:
        raise ValueError(
            f"{path}: bad idx magic 0x{raw[:4].hex()}; expected 0x000008NN (unsigned-byte idx "
            "file, NN = number of dimensions)"
        )
    file_ndim = raw[3]
    if ndim is not None and file_ndim != ndim:
        raise ValueError(f"{path}: idx file has {file_ndim} dimensions; expected {ndim}")
    header = 4 + 4 * file_ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=file_ndim, offset=4))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise ValueError(
            f"{path}: idx header says shape {shape} ({expected} bytes) but the file has "
            f"{len(raw)} bytes"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape).copy()


def _read_idx_pair(paths: Sequence[PathLike]) -> Arrays:
    images_path, labels_path = paths
    images = read_idx(images_path, ndim=3)[..., None]
    return images, read_idx(labels_path, ndim=1)


def _read_npz_array(path: PathLike) -> np.ndarray:
    with np.load(path, allow_pickle=False) as npz:
        if "arr_0" not in npz:
            raise ValueError(f"{path}: expected key 'arr_0', found {sorted(npz.files)}")
        return npz["arr_0"]


def _read_kmnist_npz(paths: Sequence[PathLike]) -> Arrays:
    images_path, labels_path = paths
    images = _read_npz_array(images_path)
    if images.ndim != 3:
        raise ValueError(f"{images_path}: arr_0 has shape {images.shape}; expected [N, H, W]")
    return images[..., None], _read_npz_array(labels_path)


def read_cifar_binary(paths: Sequence[PathLike], *, label_bytes: int, label_index: int) -> Arrays:
    """Reads CIFAR binary batches: records of label byte(s) then 3072 bytes of CHW pixels.

    Args:
        paths: the `.bin` files, concatenated in order.
        label_bytes: 1 for CIFAR-10, 2 for CIFAR-100 (coarse, fine).
        label_index: which label byte to return (CIFAR-100 fine labels: 1).

    Returns:
        `(images uint8 [N, 32, 32, 3], labels uint8 [N])`.

    Raises:
        ValueError: if a file's size is not a whole number of records.
    """
    record = label_bytes + 3 * 32 * 32
    images, labels = [], []
    for path in paths:
        raw = np.fromfile(path, np.uint8)
        if raw.size == 0 or raw.size % record:
            raise ValueError(
                f"{path}: {raw.size} bytes is not a whole number of {record}-byte CIFAR records"
            )
        rows = raw.reshape(-1, record)
        labels.append(rows[:, label_index])
        images.append(rows[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def _decode(data: bytes, where: str, image_shape: tuple[int, ...]) -> np.ndarray:
    height, width, channels = image_shape
    mode = "L" if channels == 1 else "RGB"
    try:
        with Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as image:
            array = np.asarray(image if image.mode == mode else image.convert(mode))
    except OSError as e:
        raise ValueError(f"{where}: cannot decode image ({e})") from e
    if array.shape[:2] != (height, width):
        raise ValueError(f"{where}: image is {array.shape[:2]}; expected {(height, width)}")
    return array.reshape(image_shape)


def _label_of(member: str, where: str, class_names: Sequence[str]) -> int:
    parent = pathlib.PurePosixPath(member).parent.name
    try:
        return class_names.index(parent)
    except ValueError:
        raise ValueError(
            f"{where}: class directory {parent!r} is not a known class; expected one of "
            f"{list(class_names)}"
        ) from None


def _stack(decoded: list[np.ndarray], labels: list[int], where: PathLike) -> Arrays:
    if not decoded:
        raise ValueError(f"{where}: no {'/'.join(_IMAGE_SUFFIXES)} images found")
    return np.stack(decoded), np.asarray(labels, np.int32)


def read_image_zip(
    path: PathLike, *, class_names: Sequence[str], image_shape: tuple[int, int, int]
) -> Arrays:
    """Reads a zip of `.../<class>/<file>.{jpg,jpeg,png}` images.

    Args:
        path: the zip file.
        class_names: label `i` is the directory named `class_names[i]`.
        image_shape: `(H, W, C)` every image must have (C = 1 decodes as grey, 3 as RGB).

    Returns:
        `(images uint8 [N, H, W, C], labels int32 [N])`, sorted by member name.

    Raises:
        ValueError: naming the member for undecodable images, wrong sizes or unknown classes.
    """
    class_names = list(class_names)
    decoded, labels = [], []
    with zipfile.ZipFile(path) as archive:
        members = sorted(m for m in archive.namelist() if m.lower().endswith(_IMAGE_SUFFIXES))
        for member in members:
            where = f"{path}:{member}"
            labels.append(_label_of(member, where, class_names))
            decoded.append(_decode(archive.read(member), where, image_shape))
    return _stack(decoded, labels, path)


def read_image_folder(
    root: PathLike, *, class_names: Sequence[str], image_shape: tuple[int, int, int]
) -> Arrays:
    """Reads `<root>/<class>/<file>.{jpg,jpeg,png}` images; see `read_image_zip`."""
    root = pathlib.Path(root)
    class_names = list(class_names)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    decoded, labels = [], []
    for file in files:
        relative = file.relative_to(root).as_posix()
        labels.append(_label_of(relative, str(file), class_names))
        decoded.append(_decode(file.read_bytes(), str(file), image_shape))
    return _stack(decoded, labels, root)


def read_svhn_mat(path: PathLike) -> Arrays:
    """Reads an SVHN cropped-digits `.mat` file (`X` [32, 32, 3, N], `y` [N, 1]); maps 10 -> 0."""
    import scipy.io  # Imported here: only SVHN needs scipy.

    try:
        mat = scipy.io.loadmat(path)
    except (ValueError, OSError, NotImplementedError) as e:
        raise ValueError(f"{path}: not a readable MATLAB v5 file ({e})") from e
    if "X" not in mat or "y" not in mat:
        raise ValueError(f"{path}: expected variables 'X' and 'y', found {sorted(mat)}")
    images = np.ascontiguousarray(np.transpose(mat["X"], (3, 0, 1, 2)))
    labels = np.asarray(mat["y"]).reshape(-1).astype(np.int32)
    return images.astype(np.uint8), np.where(labels == 10, 0, labels)


def read_digits(split: str) -> Arrays:
    """Loads scikit-learn's bundled 8x8 digits with a fixed, seeded, stratified split.

    Pixels 0..16 are scaled to 0..255. The test split holds 360 of the 1797 images, allotted to
    classes in proportion to their size (largest remainders), drawn with `numpy` seed 0.

    Args:
        split: `"train"` (1437 images) or `"test"` (360 images).

    Returns:
        `(images uint8 [N, 8, 8, 1], labels int32 [N])`, in the original order.
    """
    from sklearn.datasets import load_digits  # Imported here: sklearn is slow to import.

    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} for digits; expected 'train' or 'test'")
    bunch = load_digits()
    labels = bunch.target.astype(np.int32)
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)[..., None]
    counts = np.bincount(labels)
    exact = counts * _DIGITS_TEST_SIZE / counts.sum()
    quota = np.floor(exact).astype(int)
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[: _DIGITS_TEST_SIZE - quota.sum()]] += 1
    rng = np.random.default_rng(_DIGITS_SEED)
    is_test = np.zeros(labels.shape, bool)
    for cls, n_test in enumerate(quota):
        members = np.flatnonzero(labels == cls)
        is_test[rng.permutation(members)[:n_test]] = True
    keep = is_test if split == "test" else ~is_test
    return images[keep], labels[keep]


Reader = Callable[[Sequence[pathlib.Path], tuple[int, int, int], Sequence[str]], Arrays]
"""`(paths, image_shape, class_names) -> (images, labels)` for one split's files."""

READERS: dict[str, Reader] = {
    "idx": lambda paths, shape, names: _read_idx_pair(paths),
    "kmnist_npz": lambda paths, shape, names: _read_kmnist_npz(paths),
    "cifar10_bin": lambda paths, shape, names: read_cifar_binary(
        paths, label_bytes=1, label_index=0
    ),
    "cifar100_bin": lambda paths, shape, names: read_cifar_binary(
        paths, label_bytes=2, label_index=1
    ),
    "image_zip": lambda paths, shape, names: read_image_zip(
        paths[0], class_names=names, image_shape=shape
    ),
    "image_folder": lambda paths, shape, names: read_image_folder(
        paths[0], class_names=names, image_shape=shape
    ),
    "svhn_mat": lambda paths, shape, names: read_svhn_mat(paths[0]),
}
"""Format name (as in `DatasetInfo.format` / `Layout.format`) -> reader."""

SLOW_FORMATS = frozenset({"image_zip", "image_folder"})
"""Formats whose decoded arrays `load` caches (per-image decoding)."""
