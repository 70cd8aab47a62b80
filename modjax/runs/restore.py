"""Reading a trained workdir: `load_run` restores its checkpoint as a `RestoredRun`.

Every command that reads a trained network (`eval`, `modularize`, `decompose`, `arch`,
`shrink`, `repair`, ...) starts here. The checkpoint's stored settings are the truth
(`checkpoint_config`); `RESUMABLE` names the settings that may differ between a checkpoint and a
resumed or re-read run.
"""

import dataclasses
import os
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from modjax import checkpoint, data, train
from modjax.modules import identity, transform
from modjax.runs import config as config_lib
from modjax.runs.build import Run, build_run, make_preprocess, uses_generators
from modjax.runs.config import TrainConfig, load_json

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
    def validation_data(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The run's held-out validation examples (`validation_split`), or None."""
        return self.run.validation_data

    def selection_data(
        self, n: int | None = None, seed: int = 0
    ) -> tuple[tuple[np.ndarray, np.ndarray], str]:
        """Examples to select on (never the test set) and where they come from.

        The validation split when the run has one, else the training examples (seen in
        training, so selections on them favour what the network memorized; a run with
        `validation_split` avoids that). `n` caps the count (a seeded subset).
        """
        if self.validation_data is not None:
            (x, y), source = self.validation_data, "validation split"
        else:
            (x, y), source = self.train_data, "training examples (the run has no validation split)"
        x, y = data.seeded_subset(x, y, n, seed)
        return (x, y), f"{len(y)} {source}"

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
            mask_generators=uses_generators(config.method),
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


def differing_settings(settings: dict[str, Any], other: dict[str, Any]) -> list[tuple[str, Any]]:
    """`(field, value)` of `settings` that `other` differs in, outside `RESUMABLE`.

    A field `other` lacks (written before the field existed) counts as its default.
    """
    defaults = TrainConfig().to_json()
    return [
        (k, v)
        for k, v in settings.items()
        if k not in RESUMABLE and other.get(k, defaults.get(k)) != v
    ]


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
            for k, v in differing_settings(truth.to_json(), written)
        ]
        if diff:
            raise ValueError(
                f"{path} disagrees with checkpoint step {at}, whose settings the weights were "
                f"trained with: {'; '.join(diff)}. Restore config.json (or delete it: the "
                "checkpoint holds the settings)"
            )
        truth = dataclasses.replace(truth, **{k: written[k] for k in RESUMABLE if k in written})
    return truth


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
