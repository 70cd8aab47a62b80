"""Host-side batching: seeded train epochs, padded eval passes, validation and read-ahead.

Everything here is numpy on the host with fixed shapes and no float64: batches are
`{"image": uint8 [local_B, H, W, C], "label": int32 [local_B]}` (eval batches add
`"mask": bool [local_B]`), where `local_B = global_batch_size // process_count`. Each process
takes its own contiguous slice of every global batch, so the processes' slices, stacked in
process order, are exactly the single-process global batch; feed them to
`jax.make_array_from_process_local_data`.
"""

import queue
import threading
from collections.abc import Iterable, Iterator

import numpy as np

from modjax.data.info import DatasetInfo

__all__ = [
    "epoch_permutation",
    "eval_batches",
    "num_eval_batches",
    "prefetch",
    "steps_per_epoch",
    "train_batches",
    "validate_arrays",
    "validate_batch",
]

Batch = dict[str, np.ndarray]


def validate_batch(
    images: np.ndarray, labels: np.ndarray, *, num_classes: int, image_shape: tuple[int, ...]
) -> None:
    """Checks images and labels before training or evaluation.

    Args:
        images: `uint8 [N, H, W, C]`.
        labels: integer `[N]`.
        num_classes: labels must lie in `[0, num_classes)`.
        image_shape: the expected `(H, W, C)`.

    Raises:
        ValueError: naming the bad value and the expected one (shape, dtype, count or label).

    Example:
        >>> validate_batch(np.zeros((2, 8, 8, 1), np.uint8), np.array([0, 10]), num_classes=10,
        ...                image_shape=(8, 8, 1))
        Traceback (most recent call last):
        ...
        ValueError: labels[1]=10 is outside [0, num_classes=10)
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or images.shape[1:] != tuple(image_shape):
        raise ValueError(
            f"images.shape={images.shape}; expected [N, *image_shape] = [N, {tuple(image_shape)}]"
        )
    if images.dtype != np.uint8:
        raise ValueError(f"images.dtype={images.dtype}; expected uint8")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"labels.shape={labels.shape}; expected [{images.shape[0]}] (one per image)"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels.dtype={labels.dtype}; expected an integer dtype")
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise ValueError(
            f"labels[{bad[0]}]={labels[bad[0]]} is outside [0, num_classes={num_classes})"
            + (f" ({bad.size} labels out of range)" if bad.size > 1 else "")
        )


def validate_arrays(
    images: np.ndarray, labels: np.ndarray, *, info: DatasetInfo, what: str | None = None
) -> None:
    """`validate_batch` against a dataset's `num_classes` and `image_shape`.

    Args:
        images: `uint8 [N, H, W, C]`.
        labels: integer `[N]`.
        info: the dataset's registry entry.
        what: a prefix for error messages, e.g. `"cifar10/train"`.

    Raises:
        ValueError: as `validate_batch`, prefixed with `what`.
    """
    try:
        validate_batch(images, labels, num_classes=info.num_classes, image_shape=info.image_shape)
    except ValueError as e:
        raise ValueError(f"{what or info.name}: {e}") from None


def _local_batch_size(global_batch_size: int, process_index: int, process_count: int) -> int:
    if global_batch_size <= 0:
        raise ValueError(f"global_batch_size={global_batch_size}; expected a positive integer")
    if process_count <= 0 or not 0 <= process_index < process_count:
        raise ValueError(
            f"process_index={process_index}, process_count={process_count}; expected "
            "0 <= process_index < process_count"
        )
    if global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size={global_batch_size} must be divisible by "
            f"process_count={process_count}"
        )
    return global_batch_size // process_count


def _check_pair(images: np.ndarray, labels: np.ndarray) -> None:
    if len(images) != len(labels):
        raise ValueError(f"len(images)={len(images)} != len(labels)={len(labels)}")


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
    """Number of full global batches in one training epoch (the remainder is dropped).

    Raises:
        ValueError: if there is not even one full batch.

    Example:
        >>> steps_per_epoch(1437, 128)
        11
    """
    _local_batch_size(global_batch_size, 0, 1)
    if num_examples < global_batch_size:
        raise ValueError(
            f"num_examples={num_examples} is smaller than global_batch_size={global_batch_size}"
            "; expected at least one full batch per epoch"
        )
    return num_examples // global_batch_size


def epoch_permutation(num_examples: int, *, seed: int, epoch: int) -> np.ndarray:
    """The training order of one epoch: a pure function of `(seed, epoch)`, int64 `[N]`."""
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed={seed}, epoch={epoch}; expected non-negative integers")
    rng = np.random.default_rng(np.random.SeedSequence([seed, epoch]))
    return rng.permutation(num_examples)


def train_batches(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    global_batch_size: int,
    seed: int,
    epoch: int,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[Batch]:
    """Returns this process's slices of one shuffled training epoch, dropping the remainder.

    Args:
        images: `uint8 [N, H, W, C]`, the full training set (every process holds the same).
        labels: integer `[N]`.
        global_batch_size: examples per step over all processes.
        seed: shuffling seed; the order is a pure function of `(seed, epoch)`.
        epoch: epoch number, so every epoch has its own order.
        process_index: this process (`jax.process_index()` in a script).
        process_count: number of processes (`jax.process_count()`).

    Returns:
        An iterator over `steps_per_epoch(N, global_batch_size)` dicts
        `{"image": uint8 [local_B, H, W, C], "label": int32 [local_B]}`, where this process's
        rows are `[process_index * local_B, (process_index + 1) * local_B)` of each global
        batch.

    Raises:
        ValueError: bad sizes or indices, or fewer examples than one global batch (raised
            at the call, not at the first `next`).

    Example:
        >>> x, y = np.zeros((10, 2, 2, 1), np.uint8), np.arange(10)
        >>> [b["label"].shape for b in train_batches(x, y, global_batch_size=4, seed=0, epoch=0)]
        [(4,), (4,)]
    """
    local = _local_batch_size(global_batch_size, process_index, process_count)
    _check_pair(images, labels)
    num_steps = steps_per_epoch(len(labels), global_batch_size)
    order = epoch_permutation(len(labels), seed=seed, epoch=epoch)
    start = process_index * local

    def batches() -> Iterator[Batch]:
        for step in range(num_steps):
            index = order[step * global_batch_size + start :][:local]
            yield {"image": images[index], "label": labels[index].astype(np.int32)}

    return batches()


def num_eval_batches(num_examples: int, global_batch_size: int) -> int:
    """Number of eval batches covering `num_examples` with the last one padded."""
    _local_batch_size(global_batch_size, 0, 1)
    return -(-num_examples // global_batch_size)


def eval_batches(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    global_batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[Batch]:
    """Returns this process's slices of one pass over every example, in order, padding the end.

    The last global batch is padded to full size by repeating example 0, with `mask` False on
    padding rows; every batch carries `mask`, so the structure and shapes never change. All
    processes yield the same number of batches.

    Args:
        images: `uint8 [N, H, W, C]`.
        labels: integer `[N]`.
        global_batch_size: examples per step over all processes.
        process_index: this process.
        process_count: number of processes.

    Returns:
        An iterator over `ceil(N / global_batch_size)` dicts `{"image": uint8 [local_B, H, W, C],
        "label": int32 [local_B], "mask": bool [local_B]}`.

    Raises:
        ValueError: bad sizes or indices, or no examples.

    Example:
        >>> x, y = np.zeros((5, 2, 2, 1), np.uint8), np.arange(5)
        >>> [int(b["mask"].sum()) for b in eval_batches(x, y, global_batch_size=4)]
        [4, 1]
    """
    local = _local_batch_size(global_batch_size, process_index, process_count)
    _check_pair(images, labels)
    num_examples = len(labels)
    if num_examples == 0:
        raise ValueError("len(images)=0; expected at least one example to evaluate")
    offsets = process_index * local + np.arange(local)

    def batches() -> Iterator[Batch]:
        for step in range(num_eval_batches(num_examples, global_batch_size)):
            position = step * global_batch_size + offsets
            mask = position < num_examples
            index = np.where(mask, position, 0)
            yield {"image": images[index], "label": labels[index].astype(np.int32), "mask": mask}

    return batches()


_DONE = object()


def prefetch(iterator: Iterable, size: int = 2) -> Iterator:
    """Reads `iterator` ahead on a background thread, keeping up to `size` items buffered.

    The thread starts at the first `next`. Exceptions raised by `iterator` are re-raised in the
    consumer. Closing the returned generator (or dropping it) stops the thread at its next
    item.

    Args:
        iterator: any iterable, e.g. `train_batches(...)`.
        size: buffer size (at least 1).

    Returns:
        An iterator over the items of `iterator`, in order.

    Raises:
        ValueError: if `size < 1`.

    Example:
        >>> list(prefetch(iter(range(3))))
        [0, 1, 2]
    """
    if size < 1:
        raise ValueError(f"size={size}; expected at least 1")
    return _prefetch(iter(iterator), size)


def _prefetch(iterator: Iterator, size: int) -> Iterator:
    buffer: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in iterator:
                if not put((item, None)):
                    return
        except BaseException as e:  # Handed to the consumer, which re-raises it.
            put((_DONE, e))
            return
        put((_DONE, None))

    thread = threading.Thread(target=produce, name="modjax-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = buffer.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
