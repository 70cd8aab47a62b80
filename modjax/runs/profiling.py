"""`modjax train --profile START:STOP`: a `jax.profiler` trace of those steps, one loop callback.

The trace (XProf's `*.xplane.pb` and a Chrome-format `*.trace.json.gz` that ui.perfetto.dev
opens) is written under `<workdir>/profile/plugins/profile/<time>/`; each step inside it is a
`jax.profiler.StepTraceAnnotation("train", step_num=step)`, which XProf's step-time views read.
"""

import contextlib
import logging
import pathlib
from collections.abc import Iterator
from typing import Any

import jax

from modjax import loop

logger = logging.getLogger(__name__)


def check_range(start: Any, stop: Any, *, total_steps: int | None = None) -> tuple[int, int]:
    """`(start, stop)` if they name steps `start..stop` (1-based, inclusive) of the run.

    Raises:
        ValueError: a non-int bound, `start < 1`, `start > stop`, or `stop` past `total_steps`
            (when given), naming the range and what was expected.
    """
    shown = f"--profile {start}:{stop}"
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, stop)):
        raise ValueError(f"{shown}: expected START:STOP with two integer steps, e.g. 10:20")
    if start < 1 or start > stop:
        raise ValueError(f"{shown}: expected 1 <= START <= STOP (steps count from 1)")
    if total_steps is not None and stop > total_steps:
        raise ValueError(
            f"{shown}: the run has {total_steps} steps; expected STOP <= {total_steps}"
        )
    return start, stop


def parse_range(text: str) -> tuple[int, int]:
    """`"START:STOP"` -> `(START, STOP)`, checked by `check_range` (without the run's length).

    Example:
        >>> parse_range("10:20")
        (10, 20)
    """
    parts = text.split(":")
    try:
        start, stop = (int(p) for p in parts)
    except ValueError:
        raise ValueError(
            f"--profile {text!r} is not START:STOP; expected two integer steps, e.g. 10:20"
        ) from None
    return check_range(start, stop)


@contextlib.contextmanager
def profile_steps(directory: pathlib.Path, *, start: int, stop: int) -> Iterator[loop.Callback]:
    """A callback tracing steps `start..stop` (inclusive) into `directory`; closed on exit.

    The trace starts before step `start` takes its batch (or before the first step of a run
    resumed inside the range) and stops after step `stop` has finished on the device: the one
    host sync this adds, at the last profiled step. Other steps only compare integers. If the
    run stops inside the range (an error, SIGTERM), the trace is stopped and written on exit.
    """
    active = False

    def around_step(step: int):
        nonlocal active
        if not start <= step <= stop:
            return contextlib.nullcontext()
        if not active:
            directory.mkdir(parents=True, exist_ok=True)
            jax.profiler.start_trace(str(directory))
            active = True
        return jax.profiler.StepTraceAnnotation("train", step_num=step)

    def on_step(step: int, state: Any) -> None:
        nonlocal active
        if step == stop and active:
            jax.block_until_ready(state)  # the trace holds the last step's device work too
            jax.profiler.stop_trace()
            active = False
            logger.info("profile of steps %d-%d written to %s", start, stop, directory)

    try:
        yield loop.Callback(on_step=on_step, around_step=around_step)
    finally:
        if active:
            jax.profiler.stop_trace()


__all__ = ["check_range", "parse_range", "profile_steps"]
