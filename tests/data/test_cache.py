"""The decoded-array cache is keyed by the sources' content, not their path, size or mtime."""

import os
import pathlib

import numpy as np
import pytest

from modjax.data import cache


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> pathlib.Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("MODJAX_CACHE_DIR", str(path))
    return path


def _read_counter():
    calls = []

    def read():
        calls.append(1)
        return np.full((2, 1, 1, 1), len(calls), np.uint8), np.arange(2, dtype=np.int32)

    return read, calls


def test_same_size_and_mtime_edit_invalidates(tmp_path, cache_dir):
    src = tmp_path / "src.bin"
    src.write_bytes(b"aaaa")
    stat = src.stat()
    read, calls = _read_counter()
    desc = {"name": "x", "split": "train"}
    first = cache.cached_arrays(read, description=desc, sources=[src])
    again = cache.cached_arrays(read, description=desc, sources=[src])
    assert len(calls) == 1 and (first[0] == again[0]).all()
    src.write_bytes(b"bbbb")  # same size; put the old mtime back
    os.utime(src, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    edited = cache.cached_arrays(read, description=desc, sources=[src])
    assert len(calls) == 2 and int(edited[0].max()) == 2


def test_moved_directory_reuses_entry(tmp_path, cache_dir):
    a = tmp_path / "a" / "imgs"
    (a / "cat").mkdir(parents=True)
    (a / "cat" / "0.jpg").write_bytes(b"123")
    read, calls = _read_counter()
    desc = {"name": "y", "split": "test"}
    cache.cached_arrays(read, description=desc, sources=[a])
    b = tmp_path / "b"
    b.mkdir()
    a.rename(b / "imgs")
    cache.cached_arrays(read, description=desc, sources=[b / "imgs"])
    assert len(calls) == 1
    (b / "imgs" / "cat" / "0.jpg").write_bytes(b"124")  # a file deep inside changes
    cache.cached_arrays(read, description=desc, sources=[b / "imgs"])
    assert len(calls) == 2
    assert len(list(cache_dir.glob("y-test-*.npz"))) == 2


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_damaged_entry_is_a_named_miss_deleted_and_rebuilt(tmp_path, cache_dir, caplog, damage):
    src = tmp_path / "src.bin"
    src.write_bytes(b"data")
    read, calls = _read_counter()
    desc = {"name": "z", "split": "train"}
    cache.cached_arrays(read, description=desc, sources=[src])
    (entry,) = cache_dir.glob("z-train-*.npz")
    raw = entry.read_bytes()
    entry.write_bytes({"truncate": raw[: len(raw) // 2], "garbage": b"PK\x03\x04" + b"x" * 40,
                       "empty": b""}[damage])  # fmt: skip
    images, _ = cache.cached_arrays(read, description=desc, sources=[src])
    assert len(calls) == 2 and int(images.max()) == 2  # recomputed, not fatal
    assert f"damaged cache file {entry}" in caplog.text
    again, _ = cache.cached_arrays(read, description=desc, sources=[src])
    assert len(calls) == 2 and int(again.max()) == 2  # the rebuilt entry is read back


def test_default_cache_is_per_user_0700(tmp_path, monkeypatch):
    monkeypatch.delenv("MODJAX_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    path = cache.cache_dir()
    assert path == tmp_path / ".cache" / "modjax" and path.stat().st_mode & 0o777 == 0o700
