"""Tests for modjax.data: the dataset registry, data-dir resolution, locating data and the public API."""

import numpy as np
import pytest

from modjax import data
from modjax.data import readers, registry

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


def test_public_api_is_exported():
    assert set(data.__all__) <= set(dir(data))
    assert set(readers.READERS) >= {
        layout.format for info in data.DATASETS.values() for layout in info.layouts()
    }


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
