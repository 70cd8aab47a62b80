"""The training loop behind `modjax train` and `modjax eval`: data, state, checkpoints, logs.

This is the side-effect layer: it owns the workdir, the progress bar and the checkpoint cadence,
and calls the pure, jitted steps of `modjax.train`.
"""

import dataclasses
import itertools
import json
import logging
import pathlib
import time
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from modjax import checkpoint, data, models, objectives, parallel, train
from modjax.runs import report
from modjax.runs.config import TrainConfig, load_json, save_json

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
    """The objective of `config.method` with the paper defaults unless weights are given."""
    if config.method == "standard":
        return objectives.standard
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
    if config.method == "mwt":
        allowed = {"cohesion_weight", "coupling_weight"}
        factory = objectives.mwt_objective
    else:
        allowed = {"affinity_weight", "dispersion_weight", "compactness_weight"}
        factory = objectives.moda_objective
    stray = sorted(set(weights) - allowed)
    if stray:
        raise ValueError(f"{stray} do not apply to method={config.method!r}; use {sorted(allowed)}")
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
    if n is None or n >= len(labels):
        return images, labels
    idx = np.sort(np.random.default_rng(seed).permutation(len(labels))[:n])
    return images[idx], labels[idx]


def build_run(config: TrainConfig) -> Run:
    """Loads and validates data, model and optimizer; every input error surfaces here."""
    info = data.get_info(config.dataset)
    model_kwargs = {} if config.depth is None else {"depth": config.depth}
    model = models.get_model(
        config.model,
        num_classes=info.num_classes,
        width=config.width,
        mask_generators=config.method == "mwt",
        **model_kwargs,
    )
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
        config, info, model, mesh, (train_images, train_labels), (test_images, test_labels),
        steps, tx, eval_step, input_shape(config, info),
    )


def _check_resume(config: TrainConfig, workdir: pathlib.Path) -> None:
    path = workdir / "config.json"
    if not path.exists():
        return
    old = load_json(path).to_json()
    diff = {
        k: (old[k], v)
        for k, v in config.to_json().items()
        if k not in RESUMABLE and old.get(k) != v
    }
    if diff:
        raise ValueError(
            f"workdir {workdir} holds a run with different settings {diff} (old, new); "
            "use a new --workdir or the same settings to resume"
        )


def evaluate(run: Run, variables, *, split: str = "test") -> dict[str, Any]:
    """Accuracy, mean loss and per-class accuracy of `variables` on a split (padded batches)."""
    images, labels = run.test_data if split == "test" else run.train_data
    variables = parallel.replicate(variables, run.mesh)
    totals = None
    for batch in data.eval_batches(
        images,
        labels,
        global_batch_size=run.config.global_batch_size,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    ):
        sums = run.eval_step(variables, parallel.shard_batch(batch, run.mesh))
        totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
    totals = jax.device_get(totals)
    per_class = totals["per_class_correct"] / np.maximum(totals["per_class_count"], 1)
    return {
        "accuracy": float(totals["correct"] / totals["count"]),
        "loss": float(totals["loss_sum"] / totals["count"]),
        "count": int(totals["count"]),
        "per_class_accuracy": per_class.tolist(),
    }


def restore_or_create(run: Run, manager) -> train.TrainState:
    abstract = train.abstract_train_state(
        model=run.model, tx=run.tx, image_shape=run.input_shape, mesh=run.mesh
    )
    if checkpoint.latest_step(manager) is not None:
        state, _ = checkpoint.restore(manager, abstract)
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
    config: TrainConfig, workdir: str | pathlib.Path, *, progress: bool = True
) -> dict[str, Any]:
    """Trains `config` in `workdir`, resuming from its latest checkpoint; returns a summary.

    Writes `config.json`, `metrics.jsonl` (one line per log step and per epoch), checkpoints
    under `checkpoints/`, and `summary.json`.

    Raises:
        FloatingPointError: the loss or gradient norm became NaN/Inf; names the step. The last
            checkpoint written before that step is kept.
    """
    workdir = pathlib.Path(workdir)
    _check_resume(config, workdir)
    run = build_run(config)  # all input validation happens before anything is written
    is_main = jax.process_index() == 0
    workdir.mkdir(parents=True, exist_ok=True)
    if is_main:
        save_json(config, workdir / "config.json")
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
    state = restore_or_create(run, manager)
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
    spe, total = run.steps_per_epoch, run.steps_per_epoch * config.num_epochs
    start = int(state.step)
    images, labels = run.train_data
    epochs, pending, epoch_records = [], [], []
    bar = tqdm(
        total=total,
        initial=start,
        unit="step",
        disable=not (progress and is_main),
        dynamic_ncols=True,
    )
    t_window, t_compile = time.perf_counter(), None

    def flush(step, *, compile_s=None):
        """Host sync at log/checkpoint steps: NaN check, window means, progress postfix."""
        nonlocal pending, t_window
        host = jax.device_get(pending)
        bad = report.first_nonfinite(host)
        if bad is not None:
            manager.wait_until_finished()
            raise FloatingPointError(
                f"non-finite loss or gradient at step {step - len(host) + bad + 1} "
                f"(loss={host[bad]['loss']}); the last checkpoint before it is kept in "
                f"{workdir / 'checkpoints'}"
            )
        now = time.perf_counter()
        means = report.window_means(host)
        if compile_s is None:
            means["images_per_s"] = len(host) * config.global_batch_size / (now - t_window)
        else:  # the first step (compile + run) is reported apart from throughput
            means["compile_time_s"] = compile_s
        writer.write({"kind": "train", "step": step, **means})
        bar.set_postfix(
            loss=f"{means['loss']:.4f}",
            acc=f"{means['accuracy']:.3f}",
            img_s=f"{means.get('images_per_s', 0):.0f}",
        )
        epoch_records.extend(host)
        pending, t_window = [], now

    for epoch in range(start // spe, config.num_epochs):
        t_epoch = time.perf_counter()
        first = max(start - epoch * spe, 0)  # resuming mid-epoch: skip the batches done
        batches = itertools.islice(
            data.train_batches(
                images,
                labels,
                global_batch_size=config.global_batch_size,
                seed=config.seed,
                epoch=epoch,
                process_index=jax.process_index(),
                process_count=jax.process_count(),
            ),
            first,
            None,
        )
        for step in range(epoch * spe + first + 1, (epoch + 1) * spe + 1):
            state, metrics = train_step(state, parallel.shard_batch(next(batches), run.mesh))
            pending.append(metrics)
            if t_compile is None:  # one sync on the first step: compile time, reported apart
                jax.block_until_ready(metrics)
                t_compile = time.perf_counter() - t_window
                flush(step, compile_s=t_compile)
            elif step % config.log_every == 0 or step % spe == 0 or manager.should_save(step):
                flush(step)
            checkpoint.save(
                manager, step, state, meta={"epoch": epoch, "step": step}, force=step == total
            )
            bar.update(1)
        record = {
            "kind": "epoch",
            "epoch": epoch + 1,
            "step": (epoch + 1) * spe,
            "epoch_time_s": time.perf_counter() - t_epoch,
            **{f"train_{k}": v for k, v in report.window_means(epoch_records).items()},
        }
        epoch_records = []
        if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.num_epochs:
            result = evaluate(run, train.variables_of(state))
            record.update(test_accuracy=result["accuracy"], test_loss=result["loss"])
        writer.write(record)
        epochs.append(record)
        t_window = time.perf_counter()
    bar.close()
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
        "compile_time_s": t_compile,
        "devices": jax.device_count(),
        "platform": jax.devices()[0].platform,
        "epochs_log": epochs,
    }
    if is_main:
        (workdir / "summary.json").write_text(json.dumps(report.jsonable(summary), indent=2))
    return summary
