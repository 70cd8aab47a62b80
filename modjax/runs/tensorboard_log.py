"""TensorBoard event files of a run (`<workdir>/tb/`), written through tensorboardX (no TensorFlow).

`metrics.jsonl` stays the run's record; these files repeat its numbers for TensorBoard. A resumed
run opens a new event file whose `purge_step` makes TensorBoard drop the steps logged after the
restored checkpoint in the older files, so each step is shown once.
"""

import contextlib
import json
import os
import pathlib
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

ScalarLog = Callable[[int, Mapping[str, float]], None]
"""`(step, {tag: value})`: writes one step's scalars (a TensorBoard or W&B log)."""

EVENT_FILES = "events.out.tfevents.*"


def config_text(config: Mapping[str, Any]) -> str:
    """The run's settings as Markdown for TensorBoard's text tab: indented JSON, a code block."""
    text = json.dumps(dict(config), indent=2, sort_keys=True, default=str)
    return "\n".join("    " + line for line in text.splitlines())


@contextlib.contextmanager
def open_log(
    logdir: pathlib.Path,
    *,
    start: int,
    config: Mapping[str, Any],
    enabled: bool = True,
) -> Iterator[ScalarLog | None]:
    """A TensorBoard log in `logdir` (created 0755), the config as text; closed on exit.

    Args:
        logdir: the event-file directory, `<workdir>/tb`.
        start: the step the run starts from (0 fresh, else the restored checkpoint's); steps
            after it that older files hold are purged in TensorBoard.
        config: the run's settings, written as text under the tag `config` at step `start`.
        enabled: False on every process but 0: yields None and writes nothing.

    Yields:
        A `ScalarLog`, or None when not enabled.
    """
    if not enabled:
        yield None
        return
    from tensorboardX import SummaryWriter  # imported here: a run pays for it, `--help` not

    created = not logdir.exists()
    logdir.mkdir(parents=True, exist_ok=True)
    if created:
        os.chmod(logdir, 0o755)  # shared like the workdir, whatever the umask
    before = set(logdir.glob(EVENT_FILES))
    # The file name holds the second it was opened; the suffix keeps a resume within the same
    # second from overwriting the last file (names still sort in the order they were written).
    writer = SummaryWriter(
        str(logdir),
        purge_step=start + 1 if start else None,
        filename_suffix=f".{len(before):04d}",
    )
    try:
        writer.add_text("config", config_text(config), global_step=start)

        def log(step: int, values: Mapping[str, float]) -> None:
            for tag, value in values.items():
                writer.add_scalar(tag, value, global_step=step)

        yield log
    finally:
        try:
            writer.close()
        except OSError:
            _stop_after_failed_close(writer)
            if sys.exc_info()[1] is None:  # no other error on its way out: this one is news
                raise
            # else e.g. the disk filled up and the run's own error already says so
        for path in set(logdir.glob(EVENT_FILES)) - before:  # this writer's file: 0644
            with contextlib.suppress(OSError):
                os.chmod(path, 0o644)


def _stop_after_failed_close(writer) -> None:
    """Stops the event thread that tensorboardX's `close` leaves running when its flush raises
    (a full disk): left alone, it fails at interpreter exit on its closed queue, and the exit
    hook would flush again. Uses tensorboardX internals (2.6), guarded."""
    events = getattr(getattr(writer, "file_writer", None), "event_writer", None)
    worker = getattr(events, "_worker", None)
    if worker is None:
        return
    with contextlib.suppress(Exception):
        worker.stop()  # its own failed flush goes to threading.excepthook (filtered on ENOSPC)
    with contextlib.suppress(Exception):
        events._event_queue.close()
    events._worker, events._event_queue, events._closed = None, None, True


__all__ = ["ScalarLog", "config_text", "open_log"]
