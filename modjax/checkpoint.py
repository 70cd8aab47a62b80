"""Checkpoints with Orbax: save every N steps, keep the last K, atomic writes, resume latest.

Every checkpoint records a checksum of each leaf of the state in its JSON `meta` (two 32-bit
sums over the leaf's bytes, computed on the devices, so multi-host states need no gather);
`restore` recomputes them and refuses a checkpoint whose bytes changed, naming the step, the
leaf and the earlier steps to fall back to.

A full disk is one `OSError(ENOSPC)` naming the directory: `save` checks the free space before it
starts a write, and `disk_errors` turns a write that fails in Orbax's background threads into
the same one line, without their tracebacks on stderr.
"""

import contextlib
import errno
import logging
import os
import pathlib
import re
import shutil
import sys
import threading
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be restored (damaged, truncated, or another model's)."""


CHECKSUMS = "checksums"
"""Key of the per-leaf checksums in a checkpoint's `meta`."""


def _words(x: jax.Array) -> jax.Array:
    """A leaf's bytes as a flat uint32 vector (narrower dtypes widened, wider ones split)."""
    x = jnp.ravel(x)
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    size = x.dtype.itemsize
    if size < 4:
        return jax.lax.bitcast_convert_type(x, jnp.dtype(f"uint{8 * size}")).astype(jnp.uint32)
    if size == 4:
        return jax.lax.bitcast_convert_type(x, jnp.uint32)
    return jnp.ravel(jax.lax.bitcast_convert_type(x, jnp.uint32))


@jax.jit
def _leaf_sums(tree: Any) -> list[jax.Array]:
    out = []
    for leaf in jax.tree.leaves(tree):
        w = _words(jnp.asarray(leaf))
        pos = jnp.arange(1, w.size + 1, dtype=jnp.uint32)
        out.append(jnp.stack([jnp.sum(w, dtype=jnp.uint32), jnp.sum(w * pos, dtype=jnp.uint32)]))
    return out


def checksums(state: Any) -> dict[str, list[int]]:
    """`{leaf path: [sum of words, position-weighted sum]}` mod 2³², computed on the devices.

    Example:
        >>> checksums({"w": jnp.ones(2, jnp.float32)})
        {"['w']": [2130706432, 3196059648]}
    """
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]]
    sums = jax.device_get(_leaf_sums(state))
    return {p: [int(a), int(b)] for p, (a, b) in zip(paths, sums)}


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
    directory = pathlib.Path(directory).absolute()
    created = not directory.exists()
    manager = ocp.CheckpointManager(directory, options=options, item_names=("state", "meta"))
    if created and directory.is_dir():
        os.chmod(directory, 0o755)  # readable by the people the workdir is shared with
    return manager


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
    absl = logging.getLogger("absl")  # Orbax warns that a read-only manager is read-only
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        options = ocp.CheckpointManagerOptions(read_only=True, create=False)
        manager = ocp.CheckpointManager(directory, options=options, item_names=("state", "meta"))
    finally:
        absl.setLevel(level)
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

    The state's checksums (`checksums`) are added to `meta`; computing them waits for the
    state, so this syncs with the device at checkpoint steps only.

    Returns:
        Whether a checkpoint was started (writes finish in the background; call
        `manager.wait_until_finished()` before exiting).
    """
    if not force and not manager.should_save(step):
        return False
    _check_free_space(pathlib.Path(manager.directory), step, state)
    meta = {**(meta or {}), CHECKSUMS: checksums(state)}
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    return manager.save(step, args=args, force=force)


HEADROOM = 1.25
"""`save` wants this many times the state's bytes free (plus 1 MiB) before it writes."""

_DISK_FULL = re.compile(r"No space left|ENOSPC|Errno 28|RESOURCE_EXHAUSTED: Error writing")
"""How TensorStore and Python word a full disk (not an out-of-memory RESOURCE_EXHAUSTED)."""


def _disk_full(directory: pathlib.Path, detail: str = "") -> OSError:
    return OSError(
        errno.ENOSPC,
        f"no space left on the device of {directory}{detail}. Free space there (or use another "
        "--workdir); the run resumes from its last complete checkpoint",
    )


def _check_free_space(directory: pathlib.Path, step: int, state: Any) -> None:
    need = int(HEADROOM * sum(x.nbytes for x in jax.tree.leaves(state))) + (1 << 20)
    existing = next(p for p in (directory, *directory.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if free < need:
        raise _disk_full(
            directory,
            f" for the checkpoint of step {step} ({need / 2**20:.1f} MiB needed, "
            f"{free / 2**20:.1f} MiB free)",
        )


class _DropWriteErrors(logging.Filter):
    """Drops the error records (with tracebacks) of Orbax's background writes that failed for
    lack of space; `disk_errors` raises the failure once instead."""

    def __init__(self, directory: str):
        super().__init__()
        self.directory = directory

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += str(record.exc_info[1])
        ours = (  # the cause (disk full), or Orbax's summary lines whose cause is raised anyway
            _DISK_FULL.search(text) is not None
            or "Save Finalize" in text
            or ("background save thread" in text and self.directory in text)
        )
        return not (record.levelno >= logging.ERROR and ours)


def _after_disk_full(exc: BaseException | None) -> bool:
    """Whether `exc` is noise that follows a failed write: TensorStore's callbacks posting to
    Orbax's closed event loop (`RuntimeError('Event loop is closed')`), or another writer of
    the run (TensorBoard's event thread and its exit flush) hitting the same full disk."""
    if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
        return True
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


def _quiet_closed_loops(previous):
    """An unraisable hook that drops `_after_disk_full` noise and passes the rest on."""

    def hook(unraisable):
        if not _after_disk_full(unraisable.exc_value):
            previous(unraisable)

    return hook


def _quiet_thread_errors(previous):
    """A `threading.excepthook` that drops `_after_disk_full` noise and passes the rest on."""

    def hook(args):
        if not _after_disk_full(args.exc_value):
            previous(args)

    return hook


@contextlib.contextmanager
def disk_errors(directory: str | pathlib.Path) -> Iterator[None]:
    """A write under `directory` (a workdir: checkpoints, logs, results) that fails for lack of
    space raises one `OSError` (ENOSPC) naming the directory, and Orbax's background threads
    print nothing about it.

    Other failures propagate unchanged, and Orbax's log records about them stay.
    """
    directory = pathlib.Path(directory).absolute()
    drop = _DropWriteErrors(str(directory))
    loggers = [logging.getLogger(n) for n in ("absl", "asyncio")]
    for lg in loggers:
        lg.addFilter(drop)
    previous_hook, previous_thread_hook = sys.unraisablehook, threading.excepthook
    sys.unraisablehook = _quiet_closed_loops(previous_hook)
    threading.excepthook = _quiet_thread_errors(previous_thread_hook)
    failed_write = False
    try:
        yield
    except Exception as err:  # noqa: BLE001 - Orbax/TensorStore wrap ENOSPC in many types
        if isinstance(err, OSError) and err.errno == errno.ENOSPC and str(directory) in str(err):
            raise  # `save`'s own check, before anything was written
        if getattr(err, "errno", None) == errno.ENOSPC or _DISK_FULL.search(str(err)):
            failed_write = True  # Orbax's threads may still report it: the filters stay
            raise _disk_full(directory) from err
        raise
    finally:
        if not failed_write:
            for lg in loggers:
                lg.removeFilter(drop)
            sys.unraisablehook, threading.excepthook = previous_hook, previous_thread_hook


def latest_step(manager: ocp.CheckpointManager) -> int | None:
    """The newest complete checkpoint's step, or `None` if there is none."""
    return manager.latest_step()


def read_meta(manager: ocp.CheckpointManager, step: int) -> dict:
    """The JSON `meta` of checkpoint `step` alone (no state is read).

    Raises:
        CheckpointError: the meta item is missing or unreadable.
    """
    try:
        restored = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    except Exception as err:  # noqa: BLE001 - one clear error for any Orbax failure
        raise CheckpointError(
            f"checkpoint step {step} in {manager.directory}: its meta could not be read "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from err
    return dict(restored.meta or {})


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
    meta = dict(restored.meta or {})
    _verify(manager, step, restored.state, meta.get(CHECKSUMS))
    return restored.state, meta


QUARANTINE = "damaged_checkpoints"
"""Where `quarantine` moves damaged steps: a sibling of the checkpoint directory."""


def quarantine(manager: ocp.CheckpointManager, step: int) -> pathlib.Path:
    """Moves checkpoint `step` aside, keeping its name, so that training can save that step again.

    The step directory goes to `<checkpoint dir>/../damaged_checkpoints/<step>` (`<step>.1`,
    `<step>.2`, ... if that exists), out of Orbax's sight, and the manager re-reads its steps.
    Nothing is deleted: the bytes stay for inspection. Returns the new path.
    """
    directory = pathlib.Path(manager.directory)
    source = directory / str(step)
    if not source.is_dir():
        raise FileNotFoundError(f"checkpoint step {step} is not a directory in {directory}")
    target_dir = directory.parent / QUARANTINE
    target_dir.mkdir(exist_ok=True)
    target, n = target_dir / str(step), 0
    while target.exists():
        n += 1
        target = target_dir / f"{step}.{n}"
    source.rename(target)
    manager.reload()
    return target


def _verify(manager, step: int, state: Any, expected: dict[str, list[int]] | None) -> None:
    if expected is None:  # written before checksums were recorded
        logger.warning("checkpoint step %d in %s has no checksums", step, manager.directory)
        return
    found = checksums(state)
    bad = [p for p, sums in expected.items() if found.get(p) != sums]
    if bad or set(found) != set(expected):
        earlier = [s for s in manager.all_steps() if s < step]
        hint = (
            f"the previous checkpoint is step {max(earlier)} (delete step {step}'s directory or "
            "resume with --resume-from-valid)"
            if earlier
            else "there is no earlier checkpoint"
        )
        raise CheckpointError(
            f"checkpoint step {step} in {manager.directory} is damaged: the bytes of "
            f"{bad[:3] or sorted(set(found) ^ set(expected))[:3]} differ from the checksums "
            f"recorded when it was saved; {hint}"
        )
