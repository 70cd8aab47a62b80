"""Tests for modjax.data readers and loading: synthetic files, real datasets and the TFDS backend."""

import dataclasses
import gzip
import hashlib
import io
import pathlib
import sys
import zipfile

import numpy as np
import pytest

from modjax import data
from modjax.data import registry

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


# ---------------------------------------------------------------------------------------------
# Helpers


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + np.ascontiguousarray(array, np.uint8).tobytes()


def _tiny_info(
    fmt: str, files: dict, *, num_examples: dict, image_shape=(4, 3, 1), num_classes=3, **kwargs
) -> data.DatasetInfo:
    channels = image_shape[-1]
    return data.DatasetInfo(
        name="tiny",
        num_classes=num_classes,
        image_shape=image_shape,
        mean=(0.5,) * channels,
        std=(0.25,) * channels,
        class_names=tuple(f"c{i}" for i in range(num_classes)),
        files=files,
        format=fmt,
        num_examples=num_examples,
        **kwargs,
    )


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> pathlib.Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("MODJAX_CACHE_DIR", str(path))
    return path


# ---------------------------------------------------------------------------------------------
# Readers on synthetic files


def test_digits_split_is_fixed_stratified_and_scaled():
    train_x, train_y = data.load("digits", "train")
    test_x, test_y = data.load("digits", "test")
    assert train_x.shape == (1437, 8, 8, 1) and test_x.shape == (360, 8, 8, 1)
    assert train_x.dtype == test_x.dtype == np.uint8
    assert train_y.dtype == test_y.dtype == np.int32
    total = np.bincount(train_y, minlength=10) + np.bincount(test_y, minlength=10)
    np.testing.assert_array_equal(total, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    assert np.all(np.abs(np.bincount(test_y) - total * 360 / 1797) < 1)  # stratified
    assert train_x.max() == 255 and train_x.min() == 0
    again_x, again_y = data.load("digits", "test")
    np.testing.assert_array_equal(again_x, test_x)
    np.testing.assert_array_equal(again_y, test_y)


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_gz_and_plain(tmp_path, compress):
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    blob = _idx_bytes(images)
    path = tmp_path / ("x.gz" if compress else "x")
    path.write_bytes(gzip.compress(blob) if compress else blob)
    np.testing.assert_array_equal(data.read_idx(path, ndim=3), images)


def test_read_idx_rejects_bad_magic_and_truncation(tmp_path):
    bad = tmp_path / "bad-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x0d\x03" + bytes(12)))
    with pytest.raises(ValueError, match=r"bad-images-idx3-ubyte\.gz: bad idx magic 0x00000d03"):
        data.read_idx(bad)
    short = tmp_path / "short-idx1-ubyte"
    short.write_bytes(_idx_bytes(np.arange(5, dtype=np.uint8))[:-1])
    with pytest.raises(ValueError, match=r"short-idx1-ubyte: idx header says shape \(5,\)"):
        data.read_idx(short)
    with pytest.raises(ValueError, match="has 1 dimensions; expected 3"):
        data.read_idx(tmp_path / "short-idx1-ubyte", ndim=3)


def test_load_idx_end_to_end_with_transpose_and_label_offset(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (6, 3, 4), dtype=np.uint8)  # stored transposed (EMNIST)
    labels = np.array([1, 2, 3, 1, 2, 3], np.uint8)  # stored 1-based (EMNIST letters)
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny/img.gz").write_bytes(gzip.compress(_idx_bytes(images)))
    (tmp_path / "tiny/lab").write_bytes(_idx_bytes(labels))
    info = _tiny_info(
        "idx",
        {"train": ("tiny/img.gz", "tiny/lab")},
        num_examples={"train": 6},
        transpose=True,
        label_offset=1,
    )
    monkeypatch.setitem(registry.DATASETS, "tiny", info)
    x, y = data.load("tiny", "train", data_dir=tmp_path)
    assert x.shape == (6, 4, 3, 1) and x.dtype == np.uint8 and y.dtype == np.int32
    np.testing.assert_array_equal(x[..., 0], images.transpose(0, 2, 1))
    np.testing.assert_array_equal(y, labels - 1)
    # A count that differs from the registry names the files and the expectation.
    monkeypatch.setitem(
        registry.DATASETS, "tiny", dataclasses.replace(info, num_examples={"train": 7})
    )
    with pytest.raises(ValueError, match=r"img\.gz.*6 examples in split 'train'; expected 7"):
        data.load("tiny", "train", data_dir=tmp_path)
    # Labels outside [0, num_classes) name the file and the bad label.
    monkeypatch.setitem(
        registry.DATASETS, "tiny", dataclasses.replace(info, num_classes=2, class_names=("a", "b"))
    )
    match = r"tiny/lab: labels\[2\]=2 is outside \[0, num_classes=2\)"
    with pytest.raises(ValueError, match=match):
        data.load("tiny", "train", data_dir=tmp_path)


def test_read_cifar_binary_reorders_chw_to_hwc(tmp_path):
    rng = np.random.default_rng(2)
    chw = rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    records = np.concatenate(
        [np.array([[7, 1], [7, 2], [7, 3]], np.uint8), chw.reshape(3, -1)], axis=1
    )
    path = tmp_path / "train.bin"
    path.write_bytes(records.tobytes())
    images, labels = data.read_cifar_binary([path], label_bytes=2, label_index=1)
    np.testing.assert_array_equal(labels, [1, 2, 3])
    np.testing.assert_array_equal(images, chw.transpose(0, 2, 3, 1))
    path.write_bytes(records.tobytes()[:-1])
    with pytest.raises(ValueError, match=r"train\.bin: 9221 bytes is not a whole number"):
        data.read_cifar_binary([path], label_bytes=2, label_index=1)


def test_image_zip_and_folder_decode_pngs_and_cache(tmp_path, monkeypatch, cache_dir):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (4, 4, 3, 3), dtype=np.uint8)
    classes = ["c1", "c0", "c2", "c1"]
    root = tmp_path / "imgs/train"
    (tmp_path / "imgs").mkdir()
    with zipfile.ZipFile(tmp_path / "imgs/train.zip", "w") as zf:
        for i, (image, cls) in enumerate(zip(pixels, classes, strict=True)):
            (root / cls).mkdir(parents=True, exist_ok=True)
            (root / cls / f"{i:04d}.png").write_bytes(_png(image))
            zf.writestr(f"train/{cls}/{i:04d}.png", _png(image))
    expected_labels = [0, 1, 1, 2]  # sorted by class directory, then file name
    expected_images = pixels[[1, 0, 3, 2]]
    info = _tiny_info(
        "image_zip",
        {"train": ("imgs/train.zip",)},
        num_examples={"train": 4},
        image_shape=(4, 3, 3),
    )
    monkeypatch.setitem(registry.DATASETS, "tiny", info)
    for _ in range(2):  # cold, then from the cache
        x, y = data.load("tiny", "train", data_dir=tmp_path)
        np.testing.assert_array_equal(x, expected_images)
        np.testing.assert_array_equal(y, expected_labels)
    assert len(list(cache_dir.glob("tiny-train-*.npz"))) == 1
    x, y = data.read_image_folder(root, class_names=info.class_names, image_shape=(4, 3, 3))
    np.testing.assert_array_equal(x, expected_images)
    with pytest.raises(ValueError, match=r"0000\.png: class directory 'c1' is not a known class"):
        data.read_image_folder(root, class_names=["c0", "c2"], image_shape=(4, 3, 3))
    with pytest.raises(ValueError, match=r"image is \(4, 3\); expected \(5, 3\)"):
        data.read_image_folder(root, class_names=info.class_names, image_shape=(5, 3, 3))


def test_read_svhn_mat_maps_label_10_to_0(tmp_path):
    import scipy.io

    images = np.random.default_rng(4).integers(0, 256, (32, 32, 3, 3), dtype=np.uint8)
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": images, "y": np.array([[10], [1], [9]])})
    x, y = data.read_svhn_mat(tmp_path / "test_32x32.mat")
    assert x.shape == (3, 32, 32, 3) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[1], images[..., 1])
    np.testing.assert_array_equal(y, [0, 1, 9])


def test_kmnist_npz_layout(tmp_path, monkeypatch):
    (tmp_path / "k").mkdir()
    images = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3)
    np.savez(tmp_path / "k/imgs.npz", images)
    np.savez(tmp_path / "k/labels.npz", np.array([2, 0], np.uint8))
    monkeypatch.setitem(
        registry.DATASETS,
        "tiny",
        _tiny_info(
            "kmnist_npz", {"test": ("k/imgs.npz", "k/labels.npz")}, num_examples={"test": 2}
        ),
    )
    x, y = data.load("tiny", "test", data_dir=tmp_path)
    np.testing.assert_array_equal(x[..., 0], images)
    np.testing.assert_array_equal(y, [2, 0])


# ---------------------------------------------------------------------------------------------
# Real data


def test_real_mnist_and_fashion_mnist(real_data_dir):
    x, y = data.load("mnist", "train", data_dir=real_data_dir, backend="raw")
    assert x.shape == (60000, 28, 28, 1) and x.dtype == np.uint8 and y.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(y), MNIST_TRAIN_COUNTS)
    assert x.mean() / 255 == pytest.approx(0.1307, abs=5e-5)
    x, y = data.load("mnist", "test", data_dir=real_data_dir)
    assert x.shape == (10000, 28, 28, 1) and np.bincount(y).sum() == 10000
    x, y = data.load("fashion_mnist", "train", data_dir=real_data_dir)
    np.testing.assert_array_equal(np.bincount(y), [6000] * 10)
    assert x.mean() / 255 == pytest.approx(0.2860, abs=5e-5)
    _, y = data.load("fashion_mnist", "test", data_dir=real_data_dir)
    np.testing.assert_array_equal(np.bincount(y), [1000] * 10)


def test_real_cifar10_jpeg_test_split(real_data_dir, cache_dir):
    x, y = data.load("cifar10", "test", data_dir=real_data_dir)
    assert x.shape == (10000, 32, 32, 3) and x.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y), [1000] * 10)
    # Image 0000 of class "cat" is test image 0 (foolbox PNG, label 3): same picture after JPEG.
    from PIL import Image

    reference = np.asarray(Image.open(real_data_dir / "cifar10_samples_foolbox/cifar10_00_3.png"))
    first_cat = x[np.flatnonzero(y == 3)[0]].astype(np.float32)
    mse = np.mean((first_cat - reference.astype(np.float32)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 25  # PSNR in dB
    assert len(list(cache_dir.glob("cifar10-test-*.npz"))) == 1


def test_tfds_backend_on_real_mnist(real_data_dir, cache_dir):
    pytest.importorskip("tensorflow_datasets")
    x, y = data.load("mnist", "test", data_dir=real_data_dir, backend="tfds")
    raw_x, raw_y = data.load("mnist", "test", data_dir=real_data_dir, backend="raw")
    assert x.shape == raw_x.shape and x.dtype == np.uint8 and y.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(y), np.bincount(raw_y))

    # Same examples in another order: compare the sorted per-example digests.
    def digests(images, labels):
        return sorted(
            hashlib.sha1(im.tobytes() + bytes([lab])).hexdigest()
            for im, lab in zip(images, labels, strict=True)
        )

    assert not np.array_equal(y, raw_y)
    assert digests(x, y) == digests(raw_x, raw_y)


def test_tfds_backend_without_the_extra(real_data_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match=r"modjax\[tfds\]"):
        data.load("mnist", "test", data_dir=real_data_dir, backend="tfds", cache=False)
