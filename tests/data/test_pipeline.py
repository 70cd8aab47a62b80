"""Tests for modjax.data.pipeline: batching, sharding over processes, validation and prefetching."""

import numpy as np
import pytest

from modjax import data

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
