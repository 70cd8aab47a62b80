"""One (row, seed) of a paper table as a resumable submitit job (`submit.py` submits them).

A `SeedJob` runs the same call as the in-process command (`measure.measure_seed` or
`replace.run_seed`), whose stages resume from the seed's workdir: each training run from its
last checkpoint, each later stage from its cached file. Resuming is therefore rerunning, and
`checkpoint()` (submitit's `Checkpointable`) hands submitit the same job to requeue.

Signals inside a submitit job (Slurm sends SIGTERM on preemption; submitit's own signal, USR2 by
default, `signal_delay_s` before the time limit):

- SIGTERM during training: `modjax.runs.preemption` saves a checkpoint at the next step and
  raises `Preempted`; the job then asks submitit to requeue it (its USR2 handler, which calls
  `checkpoint()` and `scontrol requeue`), so the requeued job resumes at that step.
- USR2 during training in one process: forwarded as SIGTERM, so the time-limit requeue also
  saves the current step first. Outside training (extracting, measuring), or in a multi-process
  job (where JAX's preemption service owns SIGTERM), USR2 requeues at once; the job resumes from
  the last periodic checkpoint and the stages already cached.

Out of a submitit job (`--submit debug` runs in the caller's process) `Preempted` propagates, as
in the in-process command: rerunning resumes.
"""

import logging
import os
import platform
import signal
import sys
import time
from collections.abc import Callable

import submitit

from modjax.modules import atomic
from modjax.runs import preemption


class SeedJob(submitit.helpers.Checkpointable):
    """Calls `fn()` (one seed of a row) inside a submitit job; see the module docstring.

    Args:
        fn: a picklable call returning the seed's result, e.g. a `functools.partial` of
            `measure.measure_seed` (its results are also cached in the seed's workdir).
        record: where process 0 writes the job's device, host and wall time when `fn` returns
            (the results file names the devices the jobs ran on).
        distributed: call `modjax.runs.cluster.initialize()` first (Slurm auto-detection).
        env: environment variables set (None: unset) before JAX starts its backend, e.g.
            LocalExecutor's CUDA_VISIBLE_DEVICES="" undone (`submit.job_env`).
    """

    def __init__(
        self,
        fn: Callable[[], dict],
        *,
        record: str,
        distributed: bool = False,
        env: dict[str, str | None] | None = None,
    ):
        self.fn = fn
        self.record = record
        self.distributed = distributed
        self.env = dict(env or {})

    def __call__(self) -> dict:
        for key, value in self.env.items():  # JAX reads them when its backend starts
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if self.distributed:
            from modjax.runs import cluster

            cluster.initialize()  # before any device is touched
        usr = getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG)
        requeue = signal.getsignal(usr)  # submitit's checkpoint-and-requeue, in a submitit job
        if not callable(requeue):  # --submit debug: no submitit signal handling
            return self._run()
        idle = signal.getsignal(signal.SIGTERM)

        def on_usr(signum, frame):
            # A training loop listening (one process) replaces `idle` until it returns.
            if signal.getsignal(signal.SIGTERM) is idle:
                _requeue_and_exit(requeue, signum, frame)
            else:
                signal.raise_signal(signal.SIGTERM)  # save the next step, then `Preempted`

        signal.signal(usr, on_usr)
        try:
            return self._run()
        except preemption.Preempted as stopped:
            print(f"{stopped}; requeueing the job through submitit", flush=True)
            _requeue_and_exit(requeue, usr, None)  # process 0; the others return here
            raise
        finally:
            signal.signal(usr, requeue)

    def _run(self) -> dict:
        import jax

        start = time.perf_counter()
        result = self.fn()
        if jax.process_index() == 0:
            device = jax.devices()[0]
            try:
                job_id = submitit.JobEnvironment().job_id
            except RuntimeError:  # not in a submitit job
                job_id = None
            value = {
                "device": f"{device.platform} ({device.device_kind}) x {jax.device_count()}",
                "processes": jax.process_count(),
                "host": platform.node(),
                "job_id": job_id,
                "wall_s": time.perf_counter() - start,
                "pid": os.getpid(),
            }
            atomic.write_json(self.record, value)
        return result


def _requeue_and_exit(requeue, signum, frame) -> None:
    """Runs submitit's checkpoint-and-requeue handler, then leaves without interpreter teardown.

    The handler calls `checkpoint()`, requeues the job and exits with the status submitit reads
    (144 for LocalExecutor's requeue). Once the checkpoint is on disk nothing is left to clean
    up, and a normal exit with JAX's threads alive can abort in C++ ("terminate called ...
    FATAL: exception not rethrown", seen once in three LocalExecutor requeues), turning the
    requeue status into SIGABRT and the job into a failure: hence `os._exit`.
    """
    try:
        requeue(signum, frame)
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
