"""Tests for modjax.data.download against a local HTTP server (no internet)."""

import contextlib
import dataclasses
import functools
import hashlib
import http.server
import io
import pathlib
import shutil
import tarfile
import threading

import numpy as np
import pytest

from modjax import data
from modjax.data import registry


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args) -> None:
        del args

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        super().do_GET()


@contextlib.contextmanager
def serve(directory: pathlib.Path):
    """Serves `directory` on 127.0.0.1 at a free port; yields the base URL."""
    handler = type("Handler", (_QuietHandler,), {"requests": []})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(directory))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _files(root: pathlib.Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _sha(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _fake_info(remotes: tuple, files: dict) -> data.DatasetInfo:
    return data.DatasetInfo(
        name="fake",
        num_classes=2,
        image_shape=(2, 2, 1),
        mean=(0.5,),
        std=(0.5,),
        class_names=("a", "b"),
        files=files,
        format="idx",
        num_examples={"train": 2},
        downloads=remotes,
    )


# ---------------------------------------------------------------------------------------------
# The mechanism, with a fake registry entry (always runs).


def test_download_verifies_skips_and_rejects_corruption(tmp_path, monkeypatch):
    blob = np.random.default_rng(0).bytes(3 << 20)  # > 1 MiB: exercises chunking
    mirror, target = tmp_path / "mirror", tmp_path / "data"
    (mirror / "fake").mkdir(parents=True)
    (mirror / "fake/blob.bin").write_bytes(blob)
    remote = data.RemoteFile(
        url="https://example.invalid/blob.bin",
        path="fake/blob.bin",
        sha256=_sha(blob),
        size=len(blob),
    )
    monkeypatch.setitem(
        registry.DATASETS, "fake", _fake_info((remote,), {"train": ("fake/blob.bin",)})
    )
    with serve(mirror) as (base_url, requests):
        paths = data.download("fake", data_dir=target, base_url=base_url + "/")
        assert paths == [target / "fake/blob.bin"]
        assert (target / "fake/blob.bin").read_bytes() == blob
        assert requests == ["/fake/blob.bin"]
        data.download("fake", data_dir=target, base_url=base_url)  # present: no new request
        assert requests == ["/fake/blob.bin"]

    corrupt = bytearray(blob)
    corrupt[12345] ^= 0xFF
    (mirror / "fake/blob.bin").write_bytes(bytes(corrupt))
    fresh = tmp_path / "fresh"
    with serve(mirror) as (base_url, _):
        monkeypatch.setenv("MODJAX_DATA_MIRROR", base_url)  # the env var names the mirror
        with pytest.raises(data.ChecksumError) as excinfo:
            data.download("fake", data_dir=fresh)
    message = str(excinfo.value)
    assert "blob.bin" in message and _sha(blob) in message and _sha(bytes(corrupt)) in message
    assert _files(fresh) == []  # no partial or temporary files
    assert not any(fresh.rglob(".*"))


def test_download_refuses_unknown_checksum_and_reports_http_errors(tmp_path, monkeypatch):
    remote = data.RemoteFile(url="https://example.invalid/x.bin", path="fake/x.bin", sha256=None)
    monkeypatch.setitem(registry.DATASETS, "fake", _fake_info((remote,), {}))
    with pytest.raises(ValueError, match=r"no registered sha256 for \['https://example.invalid"):
        data.download("fake", data_dir=tmp_path / "d", base_url="http://127.0.0.1:9")
    assert not (tmp_path / "d").exists()
    monkeypatch.setitem(
        registry.DATASETS, "fake", _fake_info((dataclasses.replace(remote, sha256="0" * 64),), {})
    )
    (tmp_path / "empty").mkdir()
    with serve(tmp_path / "empty") as (base_url, _):
        with pytest.raises(data.DownloadError, match=r"fake/x\.bin.*404"):
            data.download("fake", data_dir=tmp_path / "d", base_url=base_url)
    assert _files(tmp_path / "d") == []
    assert data.download("digits", data_dir=tmp_path / "d") == []


def test_download_extracts_verified_archives(tmp_path, monkeypatch):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, payload in [("pack/a.bin", b"alpha"), ("pack/b.bin", b"beta")]:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    archive = buffer.getvalue()
    (tmp_path / "mirror/fake").mkdir(parents=True)
    (tmp_path / "mirror/fake/pack.tar.gz").write_bytes(archive)
    provides = ("fake/pack/a.bin", "fake/pack/b.bin")
    remote = data.RemoteFile(
        url="https://example.invalid/pack.tar.gz",
        path="fake/pack.tar.gz",
        sha256=_sha(archive),
        extract=True,
        provides=provides,
    )
    monkeypatch.setitem(registry.DATASETS, "fake", _fake_info((remote,), {"train": provides}))
    target = tmp_path / "data"
    with serve(tmp_path / "mirror") as (base_url, requests):
        data.download("fake", data_dir=target, base_url=base_url)
        data.download("fake", data_dir=target, base_url=base_url)  # contents present: skipped
    assert requests == ["/fake/pack.tar.gz"]
    assert _files(target) == list(provides)  # archive deleted, no staging dirs left
    assert (target / "fake/pack/b.bin").read_bytes() == b"beta"


# ---------------------------------------------------------------------------------------------
# Real MNIST files served from a local mirror.


def test_download_real_mnist_from_local_mirror(real_data_dir, tmp_path):
    if not (real_data_dir / "mnist").is_dir():
        pytest.skip(f"no mnist/ in {real_data_dir}")
    mirror = tmp_path / "mirror"
    shutil.copytree(real_data_dir / "mnist", mirror / "mnist")
    target = tmp_path / "data"
    with serve(mirror) as (base_url, _):
        paths = data.download("mnist", data_dir=target, base_url=base_url)
    registered = {r.path: r.sha256 for r in data.get_info("mnist").downloads}
    assert sorted(p.relative_to(target).as_posix() for p in paths) == sorted(registered)
    for path in paths:
        assert data.sha256sum(path) == registered[path.relative_to(target).as_posix()]
    _, labels = data.load("mnist", "test", data_dir=target)
    assert labels.shape == (10000,)

    first = data.get_info("mnist").downloads[0]  # downloaded first, so nothing precedes it
    corrupt = bytearray((mirror / first.path).read_bytes())
    corrupt[100:110] = bytes(10)
    (mirror / first.path).write_bytes(bytes(corrupt))
    fresh = tmp_path / "fresh"
    with serve(mirror) as (base_url, _):
        with pytest.raises(
            data.ChecksumError,
            match=rf"train-images-idx3-ubyte\.gz.*expected "
            rf"sha256 {first.sha256}, got [0-9a-f]{{64}}",
        ):
            data.download("mnist", data_dir=fresh, base_url=base_url)
    assert list(fresh.rglob("*")) in ([], [fresh / "mnist"])  # no file, no temp file
