"""Shared helpers of the commands: restoring a training run's checkpoint, atomic JSON results.

Module directories (describing a run as a parent, restoring it by hash) live in
`modjax.runs.compose`.
"""

import dataclasses
import json
import os
import pathlib
import tempfile
from typing import Any


def load_run(workdir: pathlib.Path, data_dir: str | None, *, step: int | None = None):
    """`(config, run, host variables, step)` of a training workdir's checkpoint."""
    import jax

    from modjax import checkpoint, train
    from modjax.runs import config as config_lib
    from modjax.runs import training

    if not (workdir / "config.json").is_file():
        raise FileNotFoundError(
            f"{workdir / 'config.json'} not found: is {workdir} a directory written by "
            "`modjax train`?"
        )
    config = config_lib.load_json(workdir / "config.json")
    if data_dir:
        config = dataclasses.replace(config, data_dir=data_dir)
    run = training.build_run(config)
    abstract = train.abstract_train_state(
        model=run.model, tx=run.tx, image_shape=run.input_shape, mesh=run.mesh
    )
    with checkpoint.open_read_only(workdir / "checkpoints") as manager:
        state, _ = checkpoint.restore(manager, abstract, step=step)
    return config, run, jax.device_get(train.variables_of(state)), int(state.step)


def write_json_atomic(path: pathlib.Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(value, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
