"""SIGTERM as "save and stop": the run checkpoints at a step every process agrees on, then exits.

Cluster schedulers (Slurm, Kubernetes, preemptible VMs) send SIGTERM and, after a grace period,
SIGKILL. `modjax train` answers SIGTERM by finishing the current step, logging it, writing a
checkpoint of it and exiting with status 143 (128 + SIGTERM), so that rerunning the same command
resumes there.

- One process: a Python handler records the signal. A second SIGTERM, or `grace_s` seconds
  without an exit (a hung device, say), ends the process at once with status 143.
- Several processes (`--distributed`): `jax.distributed.initialize` installs JAX's preemption
  notifier, which takes SIGTERM on any process and agrees on a sync step with the others through
  the coordination service (`multihost_utils.reached_preemption_sync_point`). Every process stops
  at that same step, so the checkpoint save, a collective, is matched.

How long it takes: the rest of the current step, plus the epoch's evaluation if the signal
arrives during it, plus the checkpoint write (`BUILD.md` gives measured times).
"""

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator

import jax
from jax.experimental import multihost_utils

logger = logging.getLogger(__name__)

EXIT_STATUS = 128 + signal.SIGTERM
"""The exit status of a run stopped by SIGTERM (143), as if the signal had ended it."""


class Preempted(SystemExit):
    """Raised after a SIGTERM once the stop step's checkpoint is written; exits with status 143.

    A `SystemExit`, so that every command and script that trains ends cleanly (no traceback,
    `finally` blocks run) with the status schedulers read as "terminated by SIGTERM".
    """

    def __init__(self, step: int, directory: str):
        super().__init__(EXIT_STATUS)
        self.step = step
        self.message = (
            f"stopped by SIGTERM after step {step}; its checkpoint is in {directory}. Rerun the "
            "same command to resume."
        )

    def __str__(self) -> str:
        return self.message


class StopRequest:
    """Whether SIGTERM asked the run to stop, decided once per step and the same on every process.

    `due(step)` must be called at every step in increasing order (it is `loop.fit`'s `log_at`,
    which the loop calls at every step); it returns True at exactly one step after a SIGTERM.
    """

    def __init__(self, *, multi_process: bool | None = None):
        self.multi_process = jax.process_count() > 1 if multi_process is None else multi_process
        self.signalled = threading.Event()  # the single-process handler sets it
        self.step: int | None = None

    def _requested(self, step: int) -> bool:
        if not self.multi_process:
            return self.signalled.is_set()
        try:  # True at the agreed sync step only, on every process
            return multihost_utils.reached_preemption_sync_point(step)
        except RuntimeError:  # the preemption service is off (jax_enable_preemption_service)
            return False

    def due(self, step: int) -> bool:
        if self.step is None and self._requested(step):
            self.step = step
            logger.warning("SIGTERM: saving a checkpoint at step %d, then stopping", step)
        return self.step == step


@contextlib.contextmanager
def handle_sigterm(request: StopRequest, *, grace_s: float = 300.0) -> Iterator[StopRequest]:
    """Routes SIGTERM to `request` for the duration of the block (one process, main thread).

    In a multi-process run, or off the main thread (where Python cannot install handlers), the
    signal is left as it is: JAX's preemption notifier handles it in the former.

    Args:
        request: what the training loop polls.
        grace_s: after the first SIGTERM, the process exits (status 143) if still alive after
            this many seconds; a second SIGTERM exits at once.
    """
    if request.multi_process or threading.current_thread() is not threading.main_thread():
        yield request
        return

    def force_exit(reason: str) -> None:
        os.write(2, f"modjax: {reason}; exiting with status {EXIT_STATUS}\n".encode())
        os._exit(EXIT_STATUS)

    timers: list[threading.Timer] = []

    def on_sigterm(signum, frame) -> None:
        if request.signalled.is_set():
            force_exit("second SIGTERM")
        request.signalled.set()
        timer = threading.Timer(grace_s, force_exit, args=(f"no exit {grace_s:g} s after SIGTERM",))
        timer.daemon = True
        timer.start()
        timers.append(timer)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield request
    finally:  # the stop is done (or the run ended): no watchdog beyond the block
        signal.signal(signal.SIGTERM, previous)
        for timer in timers:
            timer.cancel()
