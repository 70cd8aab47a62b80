"""Checkpoints with Orbax: save every N steps, keep the last K, atomic writes, resume latest."""

import logging
import pathlib
from typing import Any

import orbax.checkpoint as ocp

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be restored (damaged, truncated, or another model's)."""


def make_manager(
    directory: str | pathlib.Path, *, save_every: int, keep: int
) -> ocp.CheckpointManager:
    """A `CheckpointManager` that writes every `save_every` steps and keeps the last `keep`.

    Orbax writes each checkpoint to a temporary directory and renames it when complete, so an
    interrupted save never shadows the previous checkpoint. Every process calls `save`.

    Raises:
        ValueError: `save_every` or `keep` is not positive.
    """
    if save_every <= 0 or keep <= 0:
        raise ValueError(f"save_every={save_every} and keep={keep} must both be positive")
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, save_interval_steps=save_every, cleanup_tmp_directories=True
    )
    return ocp.CheckpointManager(
        pathlib.Path(directory).absolute(), options=options, item_names=("state", "meta")
    )


def save(
    manager: ocp.CheckpointManager, step: int, state: Any, *, meta: dict | None = None,
    force: bool = False,
) -> bool:
    """Saves `state` (a pytree) and JSON `meta` at `step` if the manager's interval says so.

    Returns:
        Whether a checkpoint was started (writes finish in the background; call
        `manager.wait_until_finished()` before exiting).
    """
    args = ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta or {})
    )
    return manager.save(step, args=args, force=force)


def latest_step(manager: ocp.CheckpointManager) -> int | None:
    """The newest complete checkpoint's step, or `None` if there is none."""
    return manager.latest_step()


def restore(
    manager: ocp.CheckpointManager, abstract_state: Any, *, step: int | None = None
) -> tuple[Any, dict]:
    """Restores `(state, meta)` at `step` (default: latest) onto `abstract_state`'s shardings.

    Args:
        manager: from `make_manager`.
        abstract_state: pytree of `jax.ShapeDtypeStruct` (with shardings) from `eval_shape`.
        step: which checkpoint; `None` = the latest.

    Raises:
        FileNotFoundError: there is no checkpoint in the directory.
        CheckpointError: the checkpoint is damaged or does not match `abstract_state`.
    """
    step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {manager.directory}")
    args = ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
    )
    try:
        restored = manager.restore(step, args=args)
    except Exception as err:  # Orbax/TensorStore raise many types; report one clear error.
        raise CheckpointError(
            f"checkpoint step {step} in {manager.directory} could not be restored "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). It is "
            "damaged or was written by a different model/optimizer configuration; delete that "
            "step's directory to resume from the previous one, or start a new workdir."
        ) from err
    return restored.state, dict(restored.meta or {})
