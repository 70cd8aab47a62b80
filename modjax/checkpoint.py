"""Checkpoints with Orbax: save every N steps, keep the last K, atomic writes, resume latest."""

import contextlib
import logging
import pathlib
from collections.abc import Iterator
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


@contextlib.contextmanager
def open_read_only(directory: str | pathlib.Path) -> Iterator[ocp.CheckpointManager]:
    """A `CheckpointManager` for restoring only, closed when the `with` block ends.

    It creates no directory, skips `save` and `delete`, and cleans up no temporary directories, so
    reading a run (for eval, module extraction or replacement) leaves its checkpoints untouched
    even while another process is training in the same workdir. (Orbax still honours
    `save(..., force=True)`; never force a save through this manager.)

    Raises:
        FileNotFoundError: `directory` does not exist.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     with open_read_only(tmp) as manager:
        ...         print(latest_step(manager))
        None
    """
    directory = pathlib.Path(directory).absolute()
    if not directory.is_dir():
        raise FileNotFoundError(f"no checkpoint in {directory}: the directory does not exist")
    options = ocp.CheckpointManagerOptions(read_only=True, create=False)
    manager = ocp.CheckpointManager(directory, options=options, item_names=("state", "meta"))
    try:
        yield manager
    finally:
        manager.close()


def save(
    manager: ocp.CheckpointManager,
    step: int,
    state: Any,
    *,
    meta: dict | None = None,
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
        manager: from `make_manager` or `open_read_only`.
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
