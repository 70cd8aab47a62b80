"""The `loop.fit` callbacks of a workdir run: metrics lines, NaN stop, progress bar, checkpoints,
TensorBoard/W&B scalars.

Each factory returns a `loop.Callback`. They are the side effects of `training.train_and_evaluate`
and are usable by any script that calls `loop.fit`.
"""

import contextlib
import math
import pathlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
from tqdm.auto import tqdm

from modjax import checkpoint, loop
from modjax.runs import preemption, report


def _train_values(event: loop.LogEvent, global_batch_size: int) -> dict[str, float]:
    """A log step's numbers: window means, and `compile_time_s` (the first log of a `fit` call:
    compile plus one step) or `images_per_s` over the window."""
    means = report.window_means(event.records)
    if event.first:
        means["compile_time_s"] = event.seconds
    else:
        means["images_per_s"] = len(event.records) * global_batch_size / event.seconds
    return means


def write_metrics(writer: report.MetricWriter, *, global_batch_size: int) -> loop.Callback:
    """One `{"kind": "train", "step", <window means>}` line per log step.

    The first log of a `fit` call carries `compile_time_s` (compile plus one step); the others
    `images_per_s` over their window.
    """

    def on_log(event: loop.LogEvent) -> None:
        writer.write(
            {"kind": "train", "step": event.step, **_train_values(event, global_batch_size)}
        )

    return loop.Callback(on_log=on_log)


def log_scalars(
    logs: Sequence[Callable[[int, Mapping[str, float]], None]],
    *,
    history: list[dict[str, Any]],
    global_batch_size: int,
    learning_rates: Callable[[int], Mapping[str, float]],
) -> loop.Callback:
    """The numbers of the metrics lines as scalars, for TensorBoard and W&B alike.

    At a log step: `train/<key>` for each key of that step's `"train"` line, plus
    `train/learning_rate` (and `train/mask_learning_rate` for MwT) of the step. At an epoch's
    end: `epoch/<key>` for each number of the epoch's `"epoch"` line (train means, module
    statistics of modular objectives, test accuracy and loss when evaluated, epoch time), read
    from `history`, so put this callback after `epoch_summaries`. Undefined (NaN) means, `null`
    in the metrics file, are left out.

    Args:
        logs: `(step, {tag: value}) -> None` functions (`tensorboard_log`, `wandb_log`).
        history: `epoch_summaries`' list of epoch records.
        global_batch_size: examples per step, for `images_per_s`.
        learning_rates: `step -> {"learning_rate": lr, ...}`, the rates step `step` used.
    """

    def send(step: int, prefix: str, values: Mapping[str, Any]) -> None:
        scalars = {
            f"{prefix}/{k}": float(v)
            for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        }
        for log in logs:
            log(step, scalars)

    def on_log(event: loop.LogEvent) -> None:
        values = {**_train_values(event, global_batch_size), **learning_rates(event.step)}
        send(event.step, "train", values)

    def on_epoch_end(event: loop.EpochEvent) -> None:
        record = history[-1] if history else {}
        if record.get("epoch") != event.epoch:
            raise RuntimeError(
                f"log_scalars found no record of epoch {event.epoch} in history; put it after "
                "epoch_summaries in the callbacks"
            )
        values = {k: v for k, v in record.items() if k not in ("kind", "epoch", "step")}
        send(event.step, "epoch", {**values, **learning_rates(event.step)})

    return loop.Callback(on_log=on_log, on_epoch_end=on_epoch_end)


def stop_on_nonfinite(manager, directory: pathlib.Path | str) -> loop.Callback:
    """Raises `FloatingPointError` naming the first non-finite step of a log window.

    Put it before `save_checkpoints`: the log of a checkpoint step runs before its save, so no
    checkpoint of a diverged state is written. Pending saves finish before the error.
    """

    def on_log(event: loop.LogEvent) -> None:
        step = loop.first_nonfinite_step(event)
        if step is None:
            return
        manager.wait_until_finished()
        loss = event.records[step - event.step - 1]["loss"]
        raise FloatingPointError(
            f"non-finite loss or gradient at step {step} (loss={loss}); the last checkpoint "
            f"before it is kept in {directory}"
        )

    return loop.Callback(on_log=on_log)


def save_checkpoints(
    manager,
    *,
    steps_per_epoch: int,
    total_steps: int,
    config: dict[str, Any] | None = None,
    stop: preemption.StopRequest | None = None,
) -> loop.Callback:
    """Offers every step's state to the Orbax manager, which writes at its interval.

    The last step is always written. Checkpoint steps are log steps, so their metrics are checked
    (and written) before the save. `config` (JSON) is stored in every checkpoint's meta, written
    atomically with the state, so a resume can be checked against it. With `stop`, the step at
    which SIGTERM asks to stop is logged and written too, and then `preemption.Preempted` ends
    the run once the write is complete.
    """

    def log_at(step: int) -> bool:
        due = stop is not None and stop.due(step)  # polled at every step, as it must be
        return manager.should_save(step) or due

    def on_step(step: int, state: Any) -> None:
        meta = {"epoch": (step - 1) // steps_per_epoch, "step": step}
        if config is not None:
            meta["config"] = config
        stopping = stop is not None and stop.step == step
        checkpoint.save(manager, step, state, meta=meta, force=step == total_steps or stopping)
        if stopping:
            manager.wait_until_finished()
            stopped = preemption.Preempted(step, str(manager.directory))
            preemption.logger.warning("%s", stopped)
            raise stopped

    return loop.Callback(on_step=on_step, log_at=log_at)


def epoch_summaries(
    writer: report.MetricWriter,
    history: list[dict[str, Any]],
    *,
    evaluate: Callable[[Any], dict[str, Any]],
    eval_every: int,
    num_epochs: int,
) -> loop.Callback:
    """One `{"kind": "epoch", ...}` line per epoch with train means and, when due, a test eval.

    Args:
        writer: the metrics writer.
        history: each record is also appended here (the run's `epochs_log`).
        evaluate: `state -> {"accuracy", "loss", ...}` on the test split.
        eval_every: evaluate every this many epochs (and after the last one).
        num_epochs: the run's epochs.
    """

    def on_epoch_end(event: loop.EpochEvent) -> None:
        record = {
            "kind": "epoch",
            "epoch": event.epoch,
            "step": event.step,
            "epoch_time_s": event.seconds,
            **{f"train_{k}": v for k, v in report.window_means(event.records).items()},
        }
        if event.epoch % eval_every == 0 or event.epoch == num_epochs:
            result = evaluate(event.state)
            record.update(test_accuracy=result["accuracy"], test_loss=result["loss"])
        writer.write(record)
        history.append(record)

    return loop.Callback(on_epoch_end=on_epoch_end)


@contextlib.contextmanager
def progress_bar(
    *, total: int, initial: int, global_batch_size: int, enabled: bool = True
) -> Iterator[loop.Callback]:
    """A tqdm bar over steps (process 0 only), its postfix updated at log steps; closed on exit."""
    bar = tqdm(
        total=total,
        initial=initial,
        unit="step",
        disable=not (enabled and jax.process_index() == 0),
        dynamic_ncols=True,
    )

    def on_log(event: loop.LogEvent) -> None:
        means = report.window_means(event.records)
        rate = 0.0 if event.first else len(event.records) * global_batch_size / event.seconds
        bar.set_postfix(
            loss=f"{means['loss']:.4f}", acc=f"{means['accuracy']:.3f}", img_s=f"{rate:.0f}"
        )

    try:
        yield loop.Callback(on_log=on_log, on_step=lambda step, state: bar.update(1))
    finally:
        bar.close()


__all__ = [
    "epoch_summaries",
    "log_scalars",
    "progress_bar",
    "save_checkpoints",
    "stop_on_nonfinite",
    "write_metrics",
]
