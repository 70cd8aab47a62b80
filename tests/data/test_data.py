"""Tests for modjax.data: registry, readers, loading, TFDS backend, batching and preprocessing."""

import dataclasses
import gzip
import hashlib
import io
import pathlib
import sys
import zipfile

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import data
from modjax.data import readers, registry

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
# Registry


def test_registry_entries_are_consistent():
    expected = {
        "digits",
        "mnist",
        "fashion_mnist",
        "kmnist",
        "emnist/letters",
        "cifar10",
        "cifar100",
        "svhn_cropped",
    }
    assert expected <= set(data.DATASETS)
    for name, info in data.DATASETS.items():
        assert info.name == name
        assert len(info.class_names) == info.num_classes == len(set(info.class_names)), name
        assert len(info.mean) == len(info.std) == info.image_shape[-1], name
        assert all(0 < s < 1 and 0 < m < 1 for m, s in zip(info.mean, info.std, strict=True)), name
        assert set(info.files) <= set(info.splits) == {"train", "test"}, name
        for remote in info.downloads:
            assert remote.sha256 is not None and len(remote.sha256) == 64, (name, remote)
    assert data.get_info("cifar10").augment_flip and data.get_info("cifar10").augment_crop_pad == 4
    assert data.get_info("svhn_cropped").augment_flip  # METHODS §2.5: h-flip for SVHN too.
    assert data.get_info("svhn_cropped").mean == (0.485, 0.456, 0.406)
    for grey in ("mnist", "fashion_mnist", "kmnist", "emnist/letters", "digits"):
        assert not data.get_info(grey).augment_flip
    assert data.get_info("mnist").mean == (0.1307,) and data.get_info("mnist").std == (0.3081,)
    assert data.get_info("fashion_mnist").mean == (0.2860,)


def test_get_info_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match=r"unknown dataset name='cifar11'.*'cifar10'"):
        data.get_info("cifar11")


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
# Data dir resolution and missing data


def test_resolve_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("MODJAX_DATA_DIR", raising=False)
    with pytest.raises(data.DatasetNotFoundError, match=r"no data dir.*MODJAX_DATA_DIR"):
        data.resolve_data_dir(None)
    with pytest.raises(FileNotFoundError, match=r"data dir .*nowhere \(from argument data_dir\)"):
        data.resolve_data_dir(tmp_path / "nowhere")
    monkeypatch.setenv("MODJAX_DATA_DIR", str(tmp_path))
    assert data.resolve_data_dir() == tmp_path
    with pytest.raises(data.DatasetNotFoundError, match=r"modjax data download mnist"):
        data.load("mnist", "train")  # found the data dir via the env, but no mnist in it


def test_missing_dataset_error_names_files_places_and_command(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(data.DatasetNotFoundError) as excinfo:
        data.load("cifar10", "test", data_dir=tmp_path)
    message = str(excinfo.value)
    assert "cifar10/cifar-10-batches-bin/test_batch.bin" in message
    assert str(tmp_path / "cifar10_jpeg_q75/cifar10-jpeg-test.zip") in message
    assert str(tmp_path / "tfds/cifar10") in message
    assert "pickles, which modjax never reads" in message
    assert f"modjax data download cifar10 --data-dir {tmp_path}" in message
    assert tmp_path / "cifar10/cifar-10-batches-bin/test_batch.bin" in excinfo.value.looked
    with pytest.raises(ValueError, match=r"split='validation' for mnist"):
        data.load("mnist", "validation", data_dir=tmp_path)
    with pytest.raises(ValueError, match=r"backend='torch'"):
        data.load("mnist", "test", data_dir=tmp_path, backend="torch")


def test_kmnist_train_images_missing(real_data_dir):
    with pytest.raises(data.DatasetNotFoundError) as excinfo:
        data.load("kmnist", "train", data_dir=real_data_dir)
    message = str(excinfo.value)
    assert "kmnist-train-imgs.npz (missing)" in message
    assert "kmnist-train-labels.npz (found)" in message
    assert str(real_data_dir / "kmnist/train-images-idx3-ubyte.gz") in message  # alternative
    assert str(real_data_dir / "tfds/kmnist") in message
    assert "modjax data download kmnist --data-dir" in message
    x, y = data.load("kmnist", "test", data_dir=real_data_dir)
    assert x.shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(y), [1000] * 10)


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


# ---------------------------------------------------------------------------------------------
# Batching


def _toy(n=23):
    images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1).repeat(2, axis=1)
    return images, np.arange(n, dtype=np.int64) % 5


def test_train_batches_order_is_pure_function_of_seed_and_epoch():
    images, labels = _toy()

    def order(seed, epoch):
        batches = list(
            data.train_batches(images, labels, global_batch_size=4, seed=seed, epoch=epoch)
        )
        for b in batches:
            assert b["image"].shape == (4, 2, 1, 1) and b["image"].dtype == np.uint8
            assert b["label"].dtype == np.int32
            np.testing.assert_array_equal(b["label"], b["image"][:, 0, 0, 0] % 5)
        return np.concatenate([b["image"][:, 0, 0, 0] for b in batches])

    first = order(0, 0)
    assert len(first) == 20 == data.steps_per_epoch(23, 4) * 4  # remainder dropped
    assert len(set(first.tolist())) == 20
    np.testing.assert_array_equal(first, order(0, 0))
    assert not np.array_equal(first, order(0, 1))
    assert not np.array_equal(first, order(1, 0))


def test_train_batches_process_shards_make_the_global_batch():
    images, labels = _toy(40)
    kwargs = dict(global_batch_size=8, seed=3, epoch=2)
    whole = list(data.train_batches(images, labels, **kwargs))
    shards = [
        list(data.train_batches(images, labels, process_index=p, process_count=2, **kwargs))
        for p in range(2)
    ]
    assert len(whole) == len(shards[0]) == len(shards[1]) == 5
    for full, a, b in zip(whole, *shards, strict=True):
        assert a["image"].shape == (4, 2, 1, 1)
        assert not set(a["image"].ravel()) & set(b["image"].ravel())
        np.testing.assert_array_equal(np.concatenate([a["image"], b["image"]]), full["image"])
        np.testing.assert_array_equal(np.concatenate([a["label"], b["label"]]), full["label"])
    with pytest.raises(
        ValueError,
        match=r"global_batch_size=8 must be divisible by "
        r"process_count=3",
    ):
        data.train_batches(images, labels, process_count=3, **kwargs)
    with pytest.raises(ValueError, match=r"num_examples=40 is smaller than global_batch_size=64"):
        data.train_batches(images, labels, global_batch_size=64, seed=0, epoch=0)


@pytest.mark.parametrize("process_count", [1, 2, 4])
def test_eval_batches_pad_and_mask_cover_every_example_once(process_count):
    images, labels = _toy(23)
    seen = []
    for p in range(process_count):
        batches = list(
            data.eval_batches(
                images, labels, global_batch_size=8, process_index=p, process_count=process_count
            )
        )
        assert len(batches) == 3  # equal step counts on every process
        for b in batches:
            assert set(b) == {"image", "label", "mask"}
            assert b["image"].shape == (8 // process_count, 2, 1, 1)
            assert b["mask"].dtype == bool and b["label"].dtype == np.int32
            seen.extend(b["image"][b["mask"], 0, 0, 0].tolist())
    assert sorted(seen) == list(range(23))
    last = list(data.eval_batches(images, labels, global_batch_size=8))[-1]
    np.testing.assert_array_equal(last["mask"], [True] * 7 + [False])


def test_prefetch_keeps_order_and_reraises():
    assert list(data.prefetch(iter(range(10)), size=2)) == list(range(10))

    def failing():
        yield 1
        raise RuntimeError("boom in producer")

    stream = data.prefetch(failing())
    assert next(stream) == 1
    with pytest.raises(RuntimeError, match="boom in producer"):
        next(stream)


def test_validate_batch_errors():
    images = np.zeros((3, 8, 8, 1), np.uint8)
    data.validate_batch(images, np.array([0, 9, 3]), num_classes=10, image_shape=(8, 8, 1))
    with pytest.raises(ValueError, match=r"labels\[1\]=10 is outside \[0, num_classes=10\)"):
        data.validate_batch(images, np.array([0, 10, -1]), num_classes=10, image_shape=(8, 8, 1))
    with pytest.raises(ValueError, match=r"images.shape=\(3, 8, 8, 1\); expected .*\(28, 28, 1\)"):
        data.validate_batch(images, np.array([0, 1, 2]), num_classes=10, image_shape=(28, 28, 1))
    with pytest.raises(ValueError, match=r"images.dtype=float32; expected uint8"):
        data.validate_batch(
            images.astype(np.float32), np.array([0, 1, 2]), num_classes=10, image_shape=(8, 8, 1)
        )
    with pytest.raises(ValueError, match=r"labels.shape=\(2,\); expected \[3\]"):
        data.validate_batch(images, np.array([0, 1]), num_classes=10, image_shape=(8, 8, 1))


# ---------------------------------------------------------------------------------------------
# Preprocessing


def _cifar_like(batch=16):
    rng = np.random.default_rng(5)
    return jnp.asarray(rng.integers(1, 256, (batch, 32, 32, 3), dtype=np.uint8))


def test_preprocess_without_augmentation_is_deterministic_normalization():
    info = data.get_info("cifar10")
    images = _cifar_like()
    fn = jax.jit(data.make_preprocess(info, augment=False))
    out = fn(images, jax.random.key(0))
    assert out.shape == images.shape and out.dtype == jnp.float32
    expected = (np.asarray(images, np.float32) / 255 - np.float32(info.mean)) / np.float32(info.std)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out, fn(images, jax.random.key(1)))
    raw = data.make_preprocess(info, augment=False, normalize=False)(images, jax.random.key(0))
    np.testing.assert_allclose(raw, np.asarray(images) / 255, atol=1e-7)


def test_preprocess_flip_only_mirrors_some_images():
    images = _cifar_like(32)
    fn = jax.jit(
        data.make_preprocess(data.get_info("cifar10"), augment=True, normalize=False, crop_pad=0)
    )
    out = np.asarray(fn(images, jax.random.key(0)))
    source = np.asarray(images, np.float32) / 255
    same = np.all(np.isclose(out, source, atol=1e-6), axis=(1, 2, 3))
    mirrored = np.all(np.isclose(out, source[:, :, ::-1], atol=1e-6), axis=(1, 2, 3))
    assert np.all(same | mirrored)
    assert 0 < mirrored.sum() < 32


def test_preprocess_crop_shifts_with_zero_padding():
    images = _cifar_like(32)  # pixels >= 1, so zeros in the output come from padding
    preprocess_fn = data.make_preprocess(
        data.get_info("cifar10"), augment=True, normalize=False, flip=False
    )
    fn = jax.jit(chex.assert_max_traces(preprocess_fn, n=1))
    key = jax.random.key(0)
    with jax.transfer_guard("disallow"):  # no hidden host<->device copies
        out = fn(images, key)
    out = np.asarray(out)
    np.testing.assert_array_equal(out, fn(images, jax.random.key(0)))  # fixed key, fixed crop
    assert not np.array_equal(out, fn(images, jax.random.key(1)))
    source = np.pad(np.asarray(images, np.float32) / 255, ((0, 0), (4, 4), (4, 4), (0, 0)))
    moved = 0
    for i in range(32):  # each output is some 32x32 window of the zero-padded image
        matches = [
            (dy, dx)
            for dy in range(9)
            for dx in range(9)
            if np.allclose(out[i], source[i, dy : dy + 32, dx : dx + 32], atol=1e-6)
        ]
        assert matches, i
        moved += matches != [(4, 4)]
    assert moved > 20


def test_preprocess_does_not_flip_or_crop_grey_mnist_by_default():
    info = data.get_info("mnist")
    images = jnp.asarray(np.random.default_rng(6).integers(0, 256, (8, 28, 28, 1), np.uint8))
    train_fn = data.make_preprocess(info, augment=True)
    test_fn = data.make_preprocess(info, augment=False)
    np.testing.assert_array_equal(
        train_fn(images, jax.random.key(0)), test_fn(images, jax.random.key(0))
    )
    with pytest.raises(ValueError, match=r"images.shape=\(8, 28, 28, 1\); expected .*32, 32, 3"):
        data.make_preprocess(data.get_info("cifar10"), augment=False)(images, jax.random.key(0))


def test_normalized_digits_have_zero_mean_unit_std():
    info = data.get_info("digits")
    images, _ = data.load("digits", "train")
    out = data.make_preprocess(info, augment=False)(images, jax.random.key(0))
    assert float(jnp.mean(out)) == pytest.approx(0.0, abs=2e-3)
    assert float(jnp.std(out)) == pytest.approx(1.0, abs=2e-3)


def test_public_api_is_exported():
    assert set(data.__all__) <= set(dir(data))
    assert set(readers.READERS) >= {
        layout.format for info in data.DATASETS.values() for layout in info.layouts()
    }


def test_prefetch_stops_its_thread_when_closed():
    import threading

    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    stream = data.prefetch(endless(), size=2)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()
    for thread in threading.enumerate():
        if thread.name == "modjax-prefetch":
            thread.join(timeout=2)
            assert not thread.is_alive()
    assert len(produced) <= 3 + 2 + 1  # consumed + buffered + one in flight
    with pytest.raises(ValueError, match="size=0; expected at least 1"):
        data.prefetch([], size=0)


def test_locate_dataset_table_and_validate_arrays(tmp_path, monkeypatch):
    monkeypatch.delenv("MODJAX_DATA_DIR", raising=False)
    (tmp_path / "mnist").mkdir()
    for name in registry.DATASETS["mnist"].files["test"]:
        (tmp_path / name).write_bytes(b"")  # presence is enough for locate
    assert data.locate("mnist", "test", data_dir=tmp_path) == (
        "idx",
        [tmp_path / p for p in registry.DATASETS["mnist"].files["test"]],
    )
    assert data.locate("digits", "train") == ("digits", [])
    rows = {row["name"]: row for row in data.dataset_table(tmp_path)}
    assert set(rows) == set(data.DATASETS)
    assert rows["digits"]["available"] == "train,test" and rows["digits"]["shape"] == "8x8x1"
    assert rows["mnist"]["available"] == "test"
    assert rows["mnist"]["location"] == str(tmp_path / "mnist")
    assert rows["cifar10"]["available"] == "-" and rows["cifar100"]["classes"] == 100
    assert "no data dir" in {r["name"]: r for r in data.dataset_table()}["mnist"]["location"]
    images = np.zeros((2, 28, 28, 1), np.uint8)
    data.validate_arrays(images, np.array([0, 9]), info=data.get_info("mnist"))
    with pytest.raises(ValueError, match=r"mnist/test: labels\[0\]=-1 is outside"):
        data.validate_arrays(
            images, np.array([-1, 9]), info=data.get_info("mnist"), what="mnist/test"
        )
