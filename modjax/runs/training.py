"""The training loop behind `modjax train` and `modjax eval`: data, state, checkpoints, logs.

This is the side-effect layer: it owns the workdir, the progress bar and the checkpoint cadence
(`runs.callbacks`), and runs the jitted steps of `modjax.train` through `loop.fit`. `load_run`
restores a workdir's checkpoint as a `RestoredRun`, what every command that reads a trained
network (`eval`, `modularize`, `decompose`, `arch`, `shrink`, `repair`, ...) starts from.
"""

import dataclasses
import logging
import os
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from modjax import checkpoint, data, loop, models, objectives, parallel, train
from modjax.modules import atomic, identity, transform
from modjax.runs import callbacks, plots, preemption, report
from modjax.runs import config as config_lib
from modjax.runs.config import TrainConfig, load_json

logger = logging.getLogger(__name__)

# Settings that may change when a run is resumed; any other difference is an error.
RESUMABLE = {
    "num_epochs",
    "log_every",
    "eval_every",
    "checkpoint_every",
    "keep_checkpoints",
    "data_dir",
    "backend",
    "num_devices",
}


@dataclasses.dataclass
class Run:
    """What a run is built from (host objects; no arrays of the state)."""

    config: TrainConfig
    info: Any
    model: Any
    mesh: Any
    train_data: tuple[np.ndarray, np.ndarray]
    test_data: tuple[np.ndarray, np.ndarray]
    steps_per_epoch: int
    tx: Any
    eval_step: Any
    input_shape: tuple[int, int, int]


def make_objective(config: TrainConfig, num_classes: int):
    """The objective of `config.method` with the paper defaults unless weights are given.

    Raises:
        ValueError: a weight of another method's objective (e.g. `cohesion_weight` with
            `method="standard"`), naming the weights and the method.
    """
    weights = {
        k: getattr(config, k)
        for k in (
            "cohesion_weight",
            "coupling_weight",
            "affinity_weight",
            "dispersion_weight",
            "compactness_weight",
        )
        if getattr(config, k) is not None
    }
    if config.method == "standard":
        allowed, factory = set(), None
    elif config.method == "mwt":
        allowed = {"cohesion_weight", "coupling_weight"}
        factory = objectives.mwt_objective
    elif config.method == "moda":
        allowed = {"affinity_weight", "dispersion_weight", "compactness_weight"}
        factory = objectives.moda_objective
    else:  # a registered objective (`config.methods()`) that modjax.objectives does not build
        raise ValueError(f"method={config.method!r} has no objective in modjax.objectives")
    stray = sorted(set(weights) - allowed)
    if stray:
        use = f"use {sorted(allowed)}" if allowed else "its objective has no weights"
        raise ValueError(f"{stray} do not apply to method={config.method!r}; {use}")
    if factory is None:
        return objectives.standard
    return factory(num_classes=num_classes, **weights)


def make_preprocess(config: TrainConfig, info, *, augment: bool):
    return data.make_preprocess(
        info, augment=augment, normalize=config.normalize, image_size=config.image_size
    )


def input_shape(config: TrainConfig, info) -> tuple[int, int, int]:
    """The model's input shape: the dataset's, or `image_size` square when resizing."""
    if config.image_size is None:
        return tuple(info.image_shape)
    return (config.image_size, config.image_size, info.image_shape[-1])


def _subset(images, labels, n, seed):
    if n is not None and n > len(labels):
        raise ValueError(
            f"train_examples={n} is larger than the training split ({len(labels)} examples); "
            "leave it unset to train on the whole split"
        )
    if n is None or n == len(labels):
        return images, labels
    idx = np.sort(np.random.default_rng(seed).permutation(len(labels))[:n])
    return images[idx], labels[idx]


def build_run(config: TrainConfig) -> Run:
    """Loads and validates data, model and optimizer; every input error surfaces here."""
    info = data.get_info(config.dataset)
    make_objective(config, info.num_classes)  # weights that do not apply: refused before work
    model_kwargs = {} if config.depth is None else {"depth": config.depth}
    model = models.get_model(
        config.model,
        num_classes=info.num_classes,
        width=config.width,
        mask_generators=config.method == "mwt",
        **model_kwargs,
    )
    models.trace(model, input_shape(config, info))  # every layer builds (e.g. width)
    mesh = parallel.make_mesh(config.num_devices)
    parallel.check_batch_size(config.global_batch_size, mesh)
    train_images, train_labels = _subset(
        *data.load(config.dataset, "train", data_dir=config.data_dir, backend=config.backend),
        config.train_examples,
        config.seed,
    )
    test_images, test_labels = data.load(
        config.dataset, "test", data_dir=config.data_dir, backend=config.backend
    )
    for split, (x, y) in (
        ("train", (train_images, train_labels)),
        ("test", (test_images, test_labels)),
    ):
        data.validate_arrays(x, y, info=info, what=f"{config.dataset}/{split}")
    steps = data.steps_per_epoch(len(train_labels), config.global_batch_size)
    if steps == 0:
        raise ValueError(
            f"global_batch_size={config.global_batch_size} exceeds the {len(train_labels)} "
            f"training examples of {config.dataset}: no full batch per epoch"
        )
    tx = train.make_optimizer(
        learning_rate=config.learning_rate,
        mask_learning_rate=config.mask_learning_rate,
        steps_per_epoch=steps,
        num_epochs=config.num_epochs,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
        schedule=config.schedule,
        t_max=config.t_max,
    )
    eval_step = train.make_eval_step(
        model=model,
        num_classes=info.num_classes,
        mesh=mesh,
        preprocess=make_preprocess(config, info, augment=False),
    )
    return Run(
        config,
        info,
        model,
        mesh,
        (train_images, train_labels),
        (test_images, test_labels),
        steps,
        tx,
        eval_step,
        input_shape(config, info),
    )


def workdir_label(workdir: str | pathlib.Path) -> str:
    """A user-free name of a workdir for module manifests: relative to the current directory
    when it lies below it, else its last two path parts (never a home or absolute path)."""
    path = pathlib.Path(workdir).resolve()
    try:
        return str(path.relative_to(pathlib.Path.cwd().resolve()))
    except ValueError:
        return str(pathlib.Path(*path.parts[-2:]))


@dataclasses.dataclass(frozen=True)
class RestoredRun:
    """A training workdir's checkpoint, restored on the host, with what commands read from it.

    Attributes:
        workdir: the run's directory.
        config: its settings (`data_dir` as given to `load_run`).
        run: the `Run` built from them (data, model, mesh, eval step).
        variables: `{"params", "batch_stats"}` of the checkpoint, host NumPy arrays.
        step: the checkpoint's step.
        preprocess: the eval transform `(uint8 images, rng) -> float32` (no augmentation).
    """

    workdir: pathlib.Path
    config: TrainConfig
    run: Run
    variables: Any
    step: int
    preprocess: Callable[[Any, Any], Any]

    @property
    def model(self):
        return self.run.model

    @property
    def info(self):
        return self.run.info

    @property
    def num_classes(self) -> int:
        return self.run.info.num_classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.run.input_shape

    @property
    def train_data(self) -> tuple[np.ndarray, np.ndarray]:
        return self.run.train_data

    @property
    def test_data(self) -> tuple[np.ndarray, np.ndarray]:
        return self.run.test_data

    @property
    def class_names(self) -> list[str]:
        """One name per class: the dataset's, or the class ids as text."""
        names = self.run.info.class_names
        return [str(n) for n in names] if names else [str(c) for c in range(self.num_classes)]

    def preprocess_spec(self) -> dict[str, Any]:
        """The JSON record of the eval transform, as module directories store it."""
        return transform.preprocess_spec(
            self.run.info, normalize=self.config.normalize, image_size=self.config.image_size
        )

    def describe(self, *, checkpoint: str | None = None) -> dict[str, Any]:
        """This network as a module's parent: zoo model, dataset, step and content hash.

        Args:
            checkpoint: where it came from, for people (e.g. the workdir); not its identity.
        """
        config = self.config
        kwargs = {} if config.depth is None else {"depth": config.depth}
        return identity.describe_parent(
            config.model,
            dataset=config.dataset,
            checkpoint=checkpoint,
            input_shape=self.run.input_shape,
            step=self.step,
            hash=identity.parent_hash(self.variables),
            num_classes=self.run.info.num_classes,
            width=config.width,
            mask_generators=config.method == "mwt",
            **kwargs,
        )


def load_run(
    workdir: str | os.PathLike, data_dir: str | None = None, *, step: int | None = None
) -> RestoredRun:
    """Restores a `modjax train` workdir's checkpoint (default: the latest) on the host.

    The settings are the checkpoint's own (`checkpoint_config`): every command that opens a run
    (eval, modularize, decompose, arch, shrink, repair, replace, pipeline, the experiments)
    comes through here, so an edited `config.json` is caught, not trusted.

    Args:
        workdir: a directory written by `modjax train`.
        data_dir: dataset directory replacing the run's (default: the run's).
        step: the checkpoint step (default: the latest).

    Raises:
        FileNotFoundError: no `checkpoints/` in `workdir`, no checkpoint, or no settings.
        ValueError: `config.json` disagrees with the checkpoint's settings (fields named).
        CheckpointError: the checkpoint is damaged or does not fit the run's settings.
    """
    workdir = pathlib.Path(workdir)
    if not (workdir / "checkpoints").is_dir():
        if not (workdir / "config.json").is_file():
            raise FileNotFoundError(
                f"{workdir / 'config.json'} not found: is {workdir} a directory written by "
                "`modjax train`?"
            )
        raise FileNotFoundError(
            f"{workdir / 'checkpoints'} not found: the run in {workdir} has no checkpoint "
            f"(train it with `modjax train --workdir {workdir}` first)"
        )
    config = checkpoint_config(workdir, step)
    if data_dir:
        config = dataclasses.replace(config, data_dir=data_dir)
    run = build_run(config)
    abstract = train.abstract_train_state(
        model=run.model, tx=run.tx, image_shape=run.input_shape, mesh=run.mesh
    )
    with checkpoint.open_read_only(workdir / "checkpoints") as manager:
        state, _ = checkpoint.restore(manager, abstract, step=step)
    return RestoredRun(
        workdir=workdir,
        config=config,
        run=run,
        variables=jax.device_get(train.variables_of(state)),
        step=int(state.step),
        preprocess=make_preprocess(config, run.info, augment=False),
    )


def _differing(settings: dict[str, Any], other: dict[str, Any]) -> list[tuple[str, Any]]:
    """`(field, value)` of `settings` that `other` differs in, outside `RESUMABLE`."""
    return [(k, v) for k, v in settings.items() if k not in RESUMABLE and other.get(k) != v]


def checkpoint_config(workdir: pathlib.Path, step: int | None = None) -> TrainConfig:
    """The settings of the checkpoint a command restores: they are the truth for every reader.

    `config.json` is read too, and must agree with them on every setting that shapes the
    network or its data (all but `RESUMABLE`); a run whose checkpoints predate stored settings
    uses `config.json` alone.

    Raises:
        FileNotFoundError: no checkpoint, or neither stored settings nor `config.json`.
        ValueError: `config.json` disagrees with the checkpoint, naming each field.
    """
    path = workdir / "config.json"
    with checkpoint.open_read_only(workdir / "checkpoints") as manager:
        at = checkpoint.latest_step(manager) if step is None else step
        if at is None:
            raise FileNotFoundError(f"no checkpoint in {workdir / 'checkpoints'}")
        stored = checkpoint.read_meta(manager, at).get("config")
    if stored is None:
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found and checkpoint step {at} stores no settings")
        return load_json(path)
    truth = config_lib.from_dict(stored, source=f"checkpoint step {at} in {workdir}")
    if path.is_file():
        written = load_json(path).to_json()
        diff = [
            f"{k}: {v!r} in the checkpoint, {written.get(k)!r} in config.json"
            for k, v in _differing(truth.to_json(), written)
        ]
        if diff:
            raise ValueError(
                f"{path} disagrees with checkpoint step {at}, whose settings the weights were "
                f"trained with: {'; '.join(diff)}. Restore config.json (or delete it: the "
                "checkpoint holds the settings)"
            )
        truth = dataclasses.replace(truth, **{k: written[k] for k in RESUMABLE if k in written})
    return truth


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


def saved_config(workdir: pathlib.Path) -> tuple[dict[str, Any] | None, str]:
    """The settings a workdir's run was trained with, and where they were read.

    The latest checkpoint's meta comes first (it is written atomically with the state, so it
    cannot be lost or disagree with the weights); `config.json` only for checkpoints written
    before configs were stored in them, or a run that has none yet.
    """
    directory = workdir / "checkpoints"
    if directory.is_dir():
        with checkpoint.open_read_only(directory) as manager:
            step = checkpoint.latest_step(manager)
            if step is not None:
                meta = checkpoint.read_meta(manager, step)
                if "config" in meta:
                    return meta["config"], f"checkpoint step {step}"
    path = workdir / "config.json"
    if path.exists():
        return load_json(path).to_json(), str(path)
    return None, ""


def _check_resume(config: TrainConfig, workdir: pathlib.Path) -> None:
    old, where = saved_config(workdir)
    if old is None:
        return
    diff = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in _differing(config.to_json(), old)]
    if diff:
        raise ValueError(
            f"workdir {workdir} holds a run with other settings ({where}): {'; '.join(diff)}. "
            "Use a new --workdir, or the same settings to resume"
        )


def evaluate(run: Run, variables, *, split: str = "test") -> dict[str, Any]:
    """Accuracy, mean loss and per-class accuracy of `variables` on a split (`loop.evaluate`)."""
    images, labels = run.test_data if split == "test" else run.train_data
    result = loop.evaluate(
        eval_step=run.eval_step,
        variables=parallel.replicate(variables, run.mesh),
        images=images,
        labels=labels,
        global_batch_size=run.config.global_batch_size,
        mesh=run.mesh,
    )
    return {**result, "per_class_accuracy": result["per_class_accuracy"].tolist()}


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
) -> dict[str, Any]:
    """Trains `config` in `workdir`, resuming from its latest checkpoint; returns a summary.

    Writes `config.json`, `metrics.jsonl` (one line per log step and per epoch), checkpoints
    under `checkpoints/`, `summary.json` and `curves.png` (`plots.training_curves`).

    The configuration is also stored in every checkpoint, and a resume whose settings differ
    from the latest checkpoint's is refused, even when `config.json` was deleted.

    Args:
        config: the run's settings.
        workdir: the run's directory; its latest checkpoint is resumed.
        progress: show a progress bar (process 0).
        resume_from_valid: if the latest checkpoint is damaged, resume from the newest one
            that restores (default: stop with the error).

    Raises:
        ValueError: bad settings or workdir, or settings that differ from the run in `workdir`
            (each differing field named), all before anything is written.
        CheckpointError: a damaged checkpoint (see `resume_from_valid`).
        FloatingPointError: the loss or gradient norm became NaN/Inf; names the step. The last
            checkpoint written before that step is kept.
        preemption.Preempted: SIGTERM stopped the run after writing a checkpoint of the step it
            stopped at (a `SystemExit` with status 143; `preemption` says when it stops).
    """
    workdir = _check_workdir(workdir)
    _check_resume(config, workdir)
    run = build_run(config)  # all input validation happens before anything is written
    is_main = jax.process_index() == 0
    workdir.mkdir(parents=True, exist_ok=True)
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
