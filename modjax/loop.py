"""The one epoch loop (`fit`) and the one padded-eval pass (`evaluate`) of modjax.

`evaluate_predict` is that pass for any prediction function of the inputs (a module's vote, a
composed or patched classifier, a network outside the zoo).

`fit` runs a jitted train step over epochs of host batches, resuming mid-epoch from
`state.step`, and hands everything else to callbacks: logging, NaN checks, progress bars,
evaluation and checkpoints. It touches no files and takes no config objects. Metrics stay on the
device between log steps and are copied to the host (`jax.device_get`) once per log step.
"""

import contextlib
import functools
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh

from modjax import data, metrics, parallel, train
from modjax.typing import Batch

HostMetrics = dict[str, np.ndarray]
"""One step's metrics on the host: `{name: numpy scalar}`."""


class LogEvent(NamedTuple):
    """What `on_log` receives at a log step.

    Attributes:
        step: the global step just completed (1-based: the state's `step` after it).
        records: host metrics of every step since the previous log step, in order (the last
            one is `step`'s).
        seconds: wall time of those steps; on the first log of a `fit` call it includes
            compilation (see `first`).
        first: whether this is the first log of the `fit` call (step 1 after a fresh start, or
            the first step after a resume), whose `seconds` hold the compile time.
    """

    step: int
    records: list[HostMetrics]
    seconds: float
    first: bool


class EpochEvent(NamedTuple):
    """What `on_epoch_end` receives after the last step of an epoch.

    Attributes:
        epoch: the number of epochs completed (1-based), so `step == epoch * steps_per_epoch`.
        step: the global step.
        state: the train state after the epoch (read it; do not keep it if the step donates).
        records: host metrics of the epoch's steps run in this `fit` call (after a resume
            mid-epoch, only those since the resume).
        seconds: wall time of those steps, callbacks included, evaluation of the previous
            epoch excluded.
    """

    epoch: int
    step: int
    state: Any
    records: list[HostMetrics]
    seconds: float


class Callback(NamedTuple):
    """Hooks into `fit`; any may be `None`. Called in the order the callbacks are given.

    Per step, `fit` takes the batch and runs the train step inside every `around_step`, then (at
    a log step) every `on_log`, then every `on_step`, then (at an epoch's end) every
    `on_epoch_end`. So a NaN check in `on_log` runs before a checkpoint `on_step` of the same
    step can save the state.

    Attributes:
        on_log: `(LogEvent) -> None`, at log steps only; the metrics are already on the host.
        on_step: `(step, state) -> None`, after every step. Must not sync with the device
            (no `float(x)`, no `device_get`); Orbax's async `save` is fine.
        on_epoch_end: `(EpochEvent) -> None`; may evaluate (a host sync) or write files.
        log_at: `(step) -> bool`, extra log steps, e.g. the steps where a checkpoint is saved;
            called at every step, in order.
        around_step: `(step) -> context manager` entered before the step's batch is taken and
            left once its train step is dispatched (not finished), e.g. a
            `jax.profiler.StepTraceAnnotation`. Like `on_step`, it must not sync with the device.
    """

    on_log: Callable[[LogEvent], None] | None = None
    on_step: Callable[[int, Any], None] | None = None
    on_epoch_end: Callable[[EpochEvent], None] | None = None
    log_at: Callable[[int], bool] | None = None
    around_step: Callable[[int], contextlib.AbstractContextManager] | None = None


def _to_device(batches: Iterable[Batch], mesh: Mesh | None) -> Iterator[dict[str, jax.Array]]:
    """Puts each host batch on the devices and waits until every shard has arrived.

    The wait runs on the read-ahead thread, so the loop still overlaps the copy with the
    previous step. Without it, a 4-device CPU run (one process, MODA MLP on MNIST) deadlocked at
    its first step in 2 of 2 tries (XLA aborted the all-reduce after 40 s, one device never
    joined: its input copy was still pending); with it, 3 of 3 finish. So the loop hands the
    train step only batches that have arrived.
    """
    for batch in batches:
        put = jax.device_put(batch) if mesh is None else parallel.shard_batch(batch, mesh)
        yield jax.block_until_ready(put)


def fit(
    *,
    train_step: Callable[[Any, Batch], tuple[Any, dict[str, jax.Array]]],
    state: Any,
    epoch_batches: Callable[[int], Iterable[Batch]],
    steps_per_epoch: int,
    num_epochs: int,
    mesh: Mesh | None = None,
    callbacks: Sequence[Callback] = (),
    log_every: int = 50,
    prefetch: int = 2,
) -> Any:
    """Trains `state` up to `num_epochs * steps_per_epoch` steps; the epoch loop of modjax.

    The data position comes from `state.step`: a restored state resumes in epoch
    `step // steps_per_epoch`, skipping that epoch's first `step % steps_per_epoch` batches, so
    an interrupted and resumed run sees the same batches as an uninterrupted one. Batches are
    read ahead and put on the devices (`parallel.shard_batch` over `mesh`) on a background
    thread (`data.prefetch`).

    Log steps are the first step of the call, every multiple of `log_every`, each epoch's last
    step and every step a callback's `log_at` selects. Only there does the loop wait for the
    device: it copies the metrics of the steps since the previous log step with one
    `jax.device_get`.

    Args:
        train_step: the jitted `(state, batch) -> (state, metrics)` of `train.make_train_step`
            (or any step with that contract; `metrics` a dict of scalars with fixed keys).
        state: the initial or restored state; it needs an int `step` attribute.
        epoch_batches: `epoch -> iterable` of this process's host batches of epoch `epoch`
            (0-based), e.g. `partial(data.train_batches, images, labels, ...)`; it must yield
            at least `steps_per_epoch` batches, of which the first `steps_per_epoch` are used.
        steps_per_epoch: optimizer steps per epoch (>= 1).
        num_epochs: epochs of the whole run (>= 1), counting those a restored state has done.
        mesh: the device mesh; `None` puts batches on the default device.
        callbacks: `Callback`s, called in order.
        log_every: log-step interval in steps (>= 1).
        prefetch: batches read ahead (0: no background thread).

    Returns:
        The state after the last step (the input state if it had already reached the end).

    Raises:
        ValueError: a non-positive `steps_per_epoch`, `num_epochs` or `log_every`, a negative
            `prefetch`, or an `epoch_batches` that runs out within an epoch.

    Example:
        >>> step_fn = lambda s, b: (s._replace(step=s.step + 1), {"loss": b["x"].sum()})
        >>> class S(NamedTuple):
        ...     step: Any
        >>> losses = []
        >>> log = Callback(on_log=lambda e: losses.extend(float(r["loss"]) for r in e.records))
        >>> final = fit(train_step=step_fn, state=S(np.int32(0)),
        ...             epoch_batches=lambda e: [{"x": np.full(2, e, np.float32)}] * 2,
        ...             steps_per_epoch=2, num_epochs=2, callbacks=[log], log_every=1)
        >>> int(final.step), losses
        (4, [0.0, 0.0, 2.0, 2.0])
    """
    for name, value in (
        ("steps_per_epoch", steps_per_epoch),
        ("num_epochs", num_epochs),
        ("log_every", log_every),
    ):
        if value < 1:
            raise ValueError(f"{name}={value} must be >= 1")
    if prefetch < 0:
        raise ValueError(f"prefetch={prefetch} must be >= 0")
    on_log = [c.on_log for c in callbacks if c.on_log is not None]
    on_step = [c.on_step for c in callbacks if c.on_step is not None]
    on_epoch_end = [c.on_epoch_end for c in callbacks if c.on_epoch_end is not None]
    log_at = [c.log_at for c in callbacks if c.log_at is not None]
    around_step = [c.around_step for c in callbacks if c.around_step is not None]
    spe = steps_per_epoch
    start = int(jax.device_get(state.step))  # one explicit read of the data position

    pending: list[dict[str, jax.Array]] = []
    epoch_records: list[HostMetrics] = []
    first_log = True
    t_window = time.perf_counter()
    for epoch in range(start // spe, num_epochs):
        t_epoch = time.perf_counter()
        skip = max(start - epoch * spe, 0)  # resuming mid-epoch: the batches already done
        host = itertools.islice(epoch_batches(epoch), skip, spe)
        batches = _to_device(host, mesh)
        if prefetch:
            batches = data.prefetch(batches, prefetch)
        with contextlib.closing(batches):  # stops the read-ahead thread on errors too
            for step in range(epoch * spe + skip + 1, (epoch + 1) * spe + 1):
                with contextlib.ExitStack() as around:
                    for f in around_step:
                        around.enter_context(f(step))
                    batch = next(batches, None)
                    if batch is None:
                        raise ValueError(
                            f"epoch_batches({epoch}) ran out after {step - 1 - epoch * spe} "
                            f"batches; expected steps_per_epoch={spe}"
                        )
                    state, step_metrics = train_step(state, batch)
                pending.append(step_metrics)
                asked = [f(step) for f in log_at]  # every one, every step: some poll state
                if first_log or step % log_every == 0 or step % spe == 0 or any(asked):
                    records = jax.device_get(pending)  # the only host sync of a step
                    now = time.perf_counter()
                    event = LogEvent(step, records, now - t_window, first_log)
                    for f in on_log:
                        f(event)
                    epoch_records.extend(records)
                    pending, t_window, first_log = [], now, False
                for f in on_step:
                    f(step, state)
        if on_epoch_end:
            event = EpochEvent(
                epoch + 1, (epoch + 1) * spe, state, epoch_records, time.perf_counter() - t_epoch
            )
            for f in on_epoch_end:
                f(event)
        epoch_records, t_window = [], time.perf_counter()
    return state


def check_finite(*, key: str = "finite") -> Callback:
    """A callback raising at the first log step whose window holds a non-finite step.

    Args:
        key: the bool metric that is False on a bad step (`train.make_train_step`'s `finite`:
            loss and gradient norm are finite).

    Returns:
        A `Callback` whose `on_log` raises `FloatingPointError` naming the first bad step,
        e.g. "non-finite loss or gradient at step 7 (loss=nan)".

    Example:
        >>> event = LogEvent(4, [{"finite": True}, {"finite": False, "loss": np.nan}], 0.1, False)
        >>> check_finite().on_log(event)
        Traceback (most recent call last):
        ...
        FloatingPointError: non-finite loss or gradient at step 4 (loss=nan)
    """

    def on_log(event: LogEvent) -> None:
        step = first_nonfinite_step(event, key=key)
        if step is not None:
            loss = event.records[step - event.step - 1].get("loss")
            raise FloatingPointError(f"non-finite loss or gradient at step {step} (loss={loss})")

    return Callback(on_log=on_log)


def check_labels(*, key: str = "bad_labels", num_classes: int | None = None) -> Callback:
    """A callback raising at the first log step whose window holds a batch with bad labels.

    Labels cannot be checked by value inside `jit`; `train.make_train_step` counts those outside
    `[0, num_classes)` in its `bad_labels` metric, and this reports the first step with any.

    Example:
        >>> event = LogEvent(2, [{"bad_labels": 0}, {"bad_labels": 3}], 0.1, False)
        >>> check_labels(num_classes=10).on_log(event)
        Traceback (most recent call last):
        ...
        ValueError: the batch of step 2 holds 3 labels outside [0, 10); the data has labels the model has no output for
    """
    bound = "[0, num_classes)" if num_classes is None else f"[0, {num_classes})"

    def on_log(event: LogEvent) -> None:
        for i, record in enumerate(event.records):
            count = int(record.get(key, 0))
            if count:
                step = event.step - len(event.records) + i + 1
                raise ValueError(
                    f"the batch of step {step} holds {count} labels outside {bound}; the data "
                    "has labels the model has no output for"
                )

    return Callback(on_log=on_log)


def first_nonfinite_step(event: LogEvent, *, key: str = "finite") -> int | None:
    """The global step of the first record in `event` whose `key` flag is False, else None."""
    for i, record in enumerate(event.records):
        if not bool(record[key]):
            return event.step - len(event.records) + i + 1
    return None


def evaluate(
    *,
    eval_step: Callable[[Any, Batch], dict[str, jax.Array]],
    variables: Any,
    images: np.ndarray,
    labels: np.ndarray,
    global_batch_size: int,
    mesh: Mesh | None = None,
    prefetch: int = 2,
) -> dict[str, Any]:
    """One pass over every example in padded batches, summing the eval step; host numbers.

    Batches come from `data.eval_batches` (fixed shape, the last padded, a validity `mask`), so
    the eval step compiles once; each batch's sums are copied to the host while the next batch
    runs, and added there (`_add_on_host` says why not on the device).

    Args:
        eval_step: `(variables, batch) -> sums` of `train.make_eval_step`: int `correct`,
            `count`, `per_class_correct [C]`, `per_class_count [C]`, float `loss_sum`.
        variables: the model variables, passed to `eval_step` as they are (replicate them on
            `mesh` beforehand, `parallel.replicate`, to avoid a transfer per batch).
        images: `uint8 [N, H, W, C]` (N >= 1), the whole split; every process passes the same.
        labels: int `[N]`.
        global_batch_size: examples per eval step over all processes.
        mesh: the device mesh; `None` puts batches on the default device.
        prefetch: batches read ahead on a background thread (0: none).

    Returns:
        `{"accuracy": float, "loss": float (mean cross-entropy), "count": int,
        "per_class_accuracy": float64 [C] (NaN for a class without examples)}`.

    Example:
        >>> def eval_step(v, b):  # predicts class 0 for every example
        ...     y, m = b["label"], b["mask"]
        ...     hit = (y == 0) & m
        ...     return {"correct": hit.sum(), "count": m.sum(), "loss_sum": 0.0 * m.sum(),
        ...             "per_class_correct": jnp.stack([hit.sum(), 0 * hit.sum()]),
        ...             "per_class_count": jnp.stack([(m & (y == 0)).sum(), (m & (y == 1)).sum()])}
        >>> import jax.numpy as jnp
        >>> r = evaluate(eval_step=eval_step, variables=None, images=np.zeros((5, 1, 1, 1)),
        ...              labels=np.array([0, 0, 1, 0, 1]), global_batch_size=2)
        >>> r["accuracy"], r["count"], r["per_class_accuracy"].tolist()
        (0.6, 5, [1.0, 0.0])
    """
    batches = _to_device(
        data.eval_batches(
            images,
            labels,
            global_batch_size=global_batch_size,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        ),
        mesh,
    )
    if prefetch:
        batches = data.prefetch(batches, prefetch)
    totals, pending = None, None
    with contextlib.closing(batches):
        for batch in batches:
            sums = eval_step(variables, batch)
            if pending is not None:  # the previous batch's sums, fetched while this one runs
                totals = _add_on_host(totals, jax.device_get(pending))
            pending = sums
    totals = _add_on_host(totals, jax.device_get(pending))
    count = int(totals["count"])
    return {
        "accuracy": metrics.accuracy_from_sums(totals["correct"], count),
        "loss": float(totals["loss_sum"]) / count,
        "count": count,
        "per_class_accuracy": metrics.per_class_accuracy(
            totals["per_class_correct"], totals["per_class_count"], allow_empty=True
        ),
    }


def _add_on_host(totals: dict | None, sums: dict) -> dict:
    """Adds one eval step's host sums to the running totals (int64/float64 on the host).

    The sums are added on the host, one batch behind the device, rather than by jitted adds on
    the device. On multi-process CPU runs, dispatching a second computation (even `a + b`) on
    the outputs of an eval step whose all-reduce is still in flight deadlocked both processes
    (`benchmarks/stress_multihost.py`: 5 of 5 runs hung before, and a 2-process script of 40
    eval steps hung at the first round); with the device running only the eval step, and the
    host fetching each batch's sums while the next batch runs, it does not.
    """
    sums = {k: np.asarray(v, np.float64 if np.asarray(v).dtype.kind == "f" else np.int64)
            for k, v in sums.items()}  # fmt: skip
    return sums if totals is None else {k: totals[k] + sums[k] for k in sums}


def _unchanged(images, rng):
    return images


@functools.lru_cache(maxsize=32)
def _predict_step(predict_fn: Callable, num_classes: int):
    """One compiled eval step per (prediction function, classes): a module-level `predict_fn`
    called again with variables of the same shapes reuses its compilation."""
    return train.make_eval_step(
        predict_fn=predict_fn, preprocess=_unchanged, num_classes=num_classes, loss=False
    )


def evaluate_predict(
    predict: Callable[..., jax.Array],
    images: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    batch_size: int = 256,
    variables: Any = None,
) -> dict[str, Any]:
    """`evaluate` of a prediction function's top-1: `predict(x)`, or `predict(variables, x)`.

    `images` reach `predict` as they are (it holds its own preprocessing; float inputs are
    fine). One `train.make_eval_step(predict_fn=...)` over fixed batches (the last padded and
    masked), so `predict` compiles once per call. With `variables`, `predict(variables, x)` is
    the eval step's prediction and its compilation is kept for the next call with the same
    function (define it once, at module level) and variables of the same shapes. No loss is
    summed: scores need not be logits.

    Returns:
        `evaluate`'s dict (`loss` is 0).
    """
    if variables is None:
        eval_step = train.make_eval_step(
            predict_fn=lambda variables, x: predict(x),
            preprocess=_unchanged,
            num_classes=num_classes,
            loss=False,
        )
    else:
        eval_step = _predict_step(predict, num_classes)
    return evaluate(
        eval_step=eval_step,
        variables={} if variables is None else variables,
        images=images,
        labels=labels,
        global_batch_size=batch_size,
    )


__all__ = [
    "Callback",
    "EpochEvent",
    "LogEvent",
    "check_finite",
    "evaluate",
    "evaluate_predict",
    "first_nonfinite_step",
    "fit",
]
