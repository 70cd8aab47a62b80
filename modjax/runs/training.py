"""The training loop behind `modjax train`: workdir, resume, checkpoints, logs, pictures.

This is the side-effect layer: it owns the workdir, the progress bar and the checkpoint cadence
(`runs.callbacks`), SIGTERM (`runs.preemption`), TensorBoard and W&B logs (`runs.tensorboard_log`,
`runs.wandb_log`) and profiling (`runs.profiling`), and runs the jitted steps of `modjax.train`
through `loop.fit`. A run is built by `runs.build` and a trained workdir read by `runs.restore`;
their names are re-exported here, where callers have always found them.
"""

import contextlib
import logging
import os
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

from modjax import checkpoint, data, loop, train
from modjax.modules import atomic
from modjax.runs import (
    callbacks,
    cluster,
    plots,
    preemption,
    profiling,
    report,
    tensorboard_log,
    wandb_log,
)
from modjax.runs.build import (  # noqa: F401 - re-exported: callers use training.<name>
    Run,
    build_run,
    evaluate,
    input_shape,
    make_objective,
    make_preprocess,
    uses_generators,
)
from modjax.runs.config import TrainConfig
from modjax.runs.restore import (  # noqa: F401 - re-exported: callers use training.<name>
    RESUMABLE,
    RestoredRun,
    checkpoint_config,
    differing_settings,
    load_run,
    saved_config,
    workdir_label,
)

logger = logging.getLogger(__name__)


def _check_workdir(raw: str | os.PathLike) -> pathlib.Path:
    """The workdir as a path; a one-line error, before any work, if it cannot hold a run."""
    if not str(raw).strip():
        raise ValueError(f"--workdir {str(raw)!r} is empty; give a directory for the run's outputs")
    workdir = pathlib.Path(raw)
    if workdir.exists() and not workdir.is_dir():
        raise ValueError(f"--workdir {workdir} is a file, not a directory")
    existing = workdir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"--workdir {workdir}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--workdir {workdir}: {existing} is not writable")
    return workdir


def _check_resume(config: TrainConfig, workdir: pathlib.Path) -> None:
    old, where = saved_config(workdir)
    if old is None:
        return
    diff = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in differing_settings(config.to_json(), old)]
    if diff:
        raise ValueError(
            f"workdir {workdir} holds a run with other settings ({where}): {'; '.join(diff)}. "
            "Use a new --workdir, or the same settings to resume"
        )


def restore_or_create(run: Run, manager, *, from_valid: bool = False) -> train.TrainState:
    """The latest checkpoint's state, or a fresh one; `from_valid` falls back past damaged steps.

    With `from_valid`, each damaged step is moved aside (`checkpoint.quarantine`, name kept)
    before the next older one is tried, so the resumed run can write that step again and finish.

    Raises:
        CheckpointError: the latest checkpoint is damaged (and `from_valid` is False), or every
            checkpoint is.
    """
    abstract = train.abstract_train_state(
        model=run.model, tx=run.tx, image_shape=run.input_shape, mesh=run.mesh
    )
    steps = sorted(manager.all_steps(), reverse=True)
    for i, step in enumerate(steps):
        try:
            state, _ = checkpoint.restore(manager, abstract, step=step)
        except checkpoint.CheckpointError as err:
            if not from_valid or i == len(steps) - 1:
                raise
            moved = checkpoint.quarantine(manager, step)  # so that step can be saved again
            logger.warning("damaged checkpoint step %d moved to %s: %s", step, moved, err)
            continue
        logger.info("resumed from step %d", int(state.step))
        return state
    return train.create_train_state(
        model=run.model,
        tx=run.tx,
        seed=run.config.seed,
        image_shape=run.input_shape,
        mesh=run.mesh,
    )


def train_and_evaluate(
    config: TrainConfig,
    workdir: str | pathlib.Path,
    *,
    progress: bool = True,
    resume_from_valid: bool = False,
    tensorboard: bool = True,
    wandb_project: str | None = None,
    wandb_mode: str | None = None,
    profile: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Trains `config` in `workdir`, resuming from its latest checkpoint; returns a summary.

    Writes `config.json`, `metrics.jsonl` (one line per log step and per epoch), checkpoints
    under `checkpoints/`, `summary.json`, `curves.png` (`plots.training_curves`) and TensorBoard
    event files under `tb/` (`callbacks.log_scalars`: the metrics lines' numbers and the
    learning rate, and the config as text).

    The configuration is also stored in every checkpoint, and a resume whose settings differ
    from the latest checkpoint's is refused, even when `config.json` was deleted. The logging
    and profiling options are not settings: a resume may change them.

    Args:
        config: the run's settings.
        workdir: the run's directory; its latest checkpoint is resumed.
        progress: show a progress bar (process 0).
        resume_from_valid: if the latest checkpoint is damaged, resume from the newest one
            that restores (default: stop with the error).
        tensorboard: write `tb/` (process 0).
        wandb_project: also log the scalars to this W&B project (process 0; `wandb_log`).
        wandb_mode: `"online"` or `"offline"` (None: `$WANDB_MODE`, else online).
        profile: `(start, stop)`: trace steps `start..stop` (1-based, inclusive) with
            `jax.profiler` into `profile/` (`runs.profiling`).

    Raises:
        ValueError: bad settings or workdir, settings that differ from the run in `workdir`
            (each differing field named), a profile range outside the run's steps, or a W&B
            project that cannot be logged to (no package, no API key online), all before
            anything is written.
        CheckpointError: a damaged checkpoint (see `resume_from_valid`).
        FloatingPointError: the loss or gradient norm became NaN/Inf; names the step. The last
            checkpoint written before that step is kept.
        preemption.Preempted: SIGTERM stopped the run after writing a checkpoint of the step it
            stopped at (a `SystemExit` with status 143; `preemption` says when it stops).
    """
    workdir = _check_workdir(workdir)
    _check_resume(config, workdir)
    if wandb_project is not None:  # every process checks: all stop, none waits for the others
        wandb_mode = wandb_log.check(wandb_project, mode=wandb_mode)
    run = build_run(config)  # all input validation happens before anything is written
    if profile is not None:
        profile = profiling.check_range(
            *profile, total_steps=run.steps_per_epoch * config.num_epochs
        )
    with checkpoint.disk_errors(workdir):  # a full disk: one line naming the workdir
        return _fit(
            config,
            run,
            workdir,
            progress=progress,
            resume_from_valid=resume_from_valid,
            tensorboard=tensorboard,
            wandb_project=wandb_project,
            wandb_mode=wandb_mode,
            profile=profile,
        )


def learning_rates(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], dict[str, float]]:
    """`step -> {"learning_rate": lr}` (plus `mask_learning_rate` for MwT and NeMo): the rates the
    optimizer of `build_run` applies at step `step` (1-based), tabulated once on the host.

    It mirrors `train.make_optimizer`'s choice of schedule and evaluates the same
    `train.cosine_per_epoch`, once for every step of the run, so a log step reads a table.
    """
    total = steps_per_epoch * config.num_epochs
    peaks = {"learning_rate": config.learning_rate}
    if uses_generators(config.method):
        peaks["mask_learning_rate"] = config.mask_learning_rate or config.learning_rate
    if config.schedule == "constant":
        table = {k: np.full(total, v, np.float64) for k, v in peaks.items()}
    else:
        counts = jax.device_put(np.arange(total, dtype=np.int32))  # optax's count of each step
        table = {
            k: np.asarray(
                jax.device_get(
                    train.cosine_per_epoch(
                        learning_rate=v,
                        steps_per_epoch=steps_per_epoch,
                        t_max=config.t_max or config.num_epochs,
                    )(counts)
                )
            )
            for k, v in peaks.items()
        }
    return lambda step: {k: float(t[step - 1]) for k, t in table.items()}


@contextlib.contextmanager
def _scalar_logs(
    workdir: pathlib.Path,
    config: TrainConfig,
    *,
    start: int,
    tensorboard: bool,
    wandb_project: str | None,
    wandb_mode: str | None,
    enabled: bool,
) -> Iterator[list[tensorboard_log.ScalarLog]]:
    """The run's open scalar logs (TensorBoard, W&B; none off process 0), closed on exit."""
    with contextlib.ExitStack() as stack:
        logs = []
        if tensorboard:
            logs.append(
                stack.enter_context(
                    tensorboard_log.open_log(
                        workdir / "tb", start=start, config=config.to_json(), enabled=enabled
                    )
                )
            )
        if wandb_project is not None:
            logs.append(
                stack.enter_context(
                    wandb_log.open_run(
                        wandb_project,
                        mode=wandb_mode,
                        workdir=workdir,
                        config=config.to_json(),
                        enabled=enabled,
                    )
                )
            )
        yield [log for log in logs if log is not None]


def _profiler(
    workdir: pathlib.Path, profile: tuple[int, int] | None, *, start: int
) -> contextlib.AbstractContextManager[loop.Callback]:
    """`profiling.profile_steps` into `<workdir>/profile/` (a folder per process when there are
    several), or a callback doing nothing."""
    if profile is None:
        return contextlib.nullcontext(loop.Callback())
    if profile[1] <= start:
        logger.warning(
            "--profile %d:%d: the run resumes after step %d, so nothing is profiled",
            *profile,
            start,
        )
    directory = workdir / "profile"
    if jax.process_count() > 1:
        directory = directory / f"process_{jax.process_index()}"
    return profiling.profile_steps(directory, start=profile[0], stop=profile[1])


def _fit(
    config: TrainConfig,
    run: Run,
    workdir: pathlib.Path,
    *,
    progress: bool,
    resume_from_valid: bool,
    tensorboard: bool = True,
    wandb_project: str | None = None,
    wandb_mode: str | None = None,
    profile: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """`train_and_evaluate` after its checks: everything that writes to the workdir."""
    is_main = jax.process_index() == 0
    created = not workdir.exists()
    workdir.mkdir(parents=True, exist_ok=True)
    if created:
        os.chmod(workdir, 0o755)  # shared like its files (0644), whatever the umask
    try:
        cluster.check_shared_workdir(workdir)  # before anything else is written
    except ValueError:
        if created:
            workdir.rmdir()  # empty again: nothing was written
        raise
    if is_main:
        atomic.write_json(workdir / "config.json", config.to_json())
    logger.info(
        "JAX %s, %d devices (%s), %d processes",
        jax.__version__,
        jax.device_count(),
        jax.devices()[0].platform,
        jax.process_count(),
    )

    manager = checkpoint.make_manager(
        workdir / "checkpoints", save_every=config.checkpoint_every, keep=config.keep_checkpoints
    )
    state = restore_or_create(run, manager, from_valid=resume_from_valid)
    objective = make_objective(config, run.info.num_classes)
    augment = True if config.augment is None else config.augment  # dataset's crop/flip rules
    train_step = train.make_train_step(
        model=run.model,
        tx=run.tx,
        objective=objective,
        mesh=run.mesh,
        preprocess=make_preprocess(config, run.info, augment=augment),
    )
    writer = report.MetricWriter(workdir / "metrics.jsonl", enabled=is_main)
    start = int(state.step)
    if is_main:  # lines logged after the restored checkpoint will be logged again
        report.drop_records_after(writer.path, start)
    spe, total = run.steps_per_epoch, run.steps_per_epoch * config.num_epochs
    images, labels = run.train_data
    epochs, compile_s = [], []

    def epoch_batches(epoch):
        return data.train_batches(
            images,
            labels,
            global_batch_size=config.global_batch_size,
            seed=config.seed,
            epoch=epoch,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        )

    def record_compile(event: loop.LogEvent) -> None:
        if event.first:
            compile_s.append(event.seconds)

    with (
        preemption.handle_sigterm(preemption.StopRequest()) as stop,
        callbacks.progress_bar(
            total=total,
            initial=start,
            global_batch_size=config.global_batch_size,
            enabled=progress and is_main,
        ) as bar,
        _scalar_logs(
            workdir,
            config,
            start=start,
            tensorboard=tensorboard,
            wandb_project=wandb_project,
            wandb_mode=wandb_mode,
            enabled=is_main,
        ) as logs,
        _profiler(workdir, profile, start=start) as profiler,
    ):
        state = loop.fit(
            train_step=train_step,
            state=state,
            epoch_batches=epoch_batches,
            steps_per_epoch=spe,
            num_epochs=config.num_epochs,
            mesh=run.mesh,
            log_every=config.log_every,
            callbacks=[
                loop.check_labels(num_classes=run.info.num_classes),
                callbacks.stop_on_nonfinite(manager, workdir / "checkpoints"),
                loop.Callback(on_log=record_compile),
                callbacks.write_metrics(writer, global_batch_size=config.global_batch_size),
                bar,
                callbacks.save_checkpoints(
                    manager,
                    steps_per_epoch=spe,
                    total_steps=total,
                    config=config.to_json(),
                    stop=stop,
                ),
                callbacks.epoch_summaries(
                    writer,
                    epochs,
                    evaluate=lambda s: evaluate(run, train.variables_of(s)),
                    eval_every=config.eval_every,
                    num_epochs=config.num_epochs,
                ),
                callbacks.log_scalars(
                    logs,
                    history=epochs,
                    global_batch_size=config.global_batch_size,
                    learning_rates=learning_rates(config, spe),
                ),
                profiler,
            ],
        )
        manager.wait_until_finished()

    final = evaluate(run, train.variables_of(state))
    summary = {
        "model": config.model,
        "dataset": config.dataset,
        "method": config.method,
        "steps": int(state.step),
        "epochs": config.num_epochs,
        "test_accuracy": final["accuracy"],
        "test_loss": final["loss"],
        "per_class_accuracy": final["per_class_accuracy"],
        "compile_time_s": compile_s[0] if compile_s else None,
        "devices": jax.device_count(),
        "platform": jax.devices()[0].platform,
        "epochs_log": epochs,
    }
    if is_main:
        atomic.write_json(workdir / "summary.json", summary)
        plots.training_curves(writer.path, workdir / "curves.png")
    return summary
