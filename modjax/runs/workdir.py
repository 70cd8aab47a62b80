"""Shared helpers of the module commands: restoring training runs and writing results."""

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


def describe_run(config, run, workdir: pathlib.Path, step: int) -> dict[str, Any]:
    from modjax import modular as modularize

    kwargs = {} if config.depth is None else {"depth": config.depth}
    parent = modularize.describe_parent(
        config.model, dataset=config.dataset, checkpoint=str(workdir.resolve()),
        input_shape=run.input_shape, num_classes=run.info.num_classes, width=config.width,
        mask_generators=config.method == "mwt", **kwargs,
    )
    parent["step"] = step
    return parent


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


def _same_parent(saved: dict[str, Any], restored: dict[str, Any]) -> str | None:
    for key in ("model", "model_kwargs", "dataset", "input_shape"):
        a, b = (json.dumps(p.get(key), sort_keys=True) for p in (saved, restored))
        if a != b:
            return f"{key} is {saved.get(key)!r} in the module but {restored.get(key)!r} in the run"
    return None


def restore_parent(module, module_dir, data_dir):
    """`(config, run, host variables, step)` of the training run a module was cut from.

    Raises:
        ValueError: the manifest names no training workdir, or the run there is not the
            module's parent (another model, dataset or step).
    """
    ckpt = module.parent.get("checkpoint")
    if not ckpt or not (pathlib.Path(ckpt) / "config.json").is_file():
        raise ValueError(
            f"module {module_dir} comes from an unknown parent: its manifest names checkpoint "
            f"{ckpt!r}, which is not a training workdir (no config.json)"
        )
    config, run, variables, step = load_run(
        pathlib.Path(ckpt), data_dir, step=module.parent.get("step")
    )
    clash = _same_parent(module.parent, describe_run(config, run, pathlib.Path(ckpt), step))
    if clash:
        raise ValueError(f"module {module_dir} does not belong to the run in {ckpt}: {clash}")
    return config, run, variables, step
