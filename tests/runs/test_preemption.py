"""SIGTERM handling of one-process runs: the flag, the grace watchdog, the restored handler."""

import os
import signal
import subprocess
import sys
import time

from modjax.runs import preemption
from tests.conftest import REPO

HUNG = """
import os, signal, sys, time
from modjax.runs import preemption
request = preemption.StopRequest(multi_process=False)
with preemption.handle_sigterm(request, grace_s=float(sys.argv[1])):
    os.kill(os.getpid(), signal.SIGTERM)
    assert request.signalled.is_set() and request.due(7) and request.step == 7
    if sys.argv[2] == "twice":
        os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(60)  # a run that never reaches its stop step
"""


def _hung(grace: str, mode: str):
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", HUNG, grace, mode], cwd=REPO, capture_output=True, text=True,
        timeout=120, env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )  # fmt: skip
    return proc, time.monotonic() - t0


def test_a_hung_run_exits_143_after_the_grace_period_or_a_second_sigterm():
    proc, seconds = _hung("2", "once")
    assert proc.returncode == 143 and "no exit 2 s after SIGTERM" in proc.stderr, proc.stderr
    assert seconds < 30
    proc, seconds = _hung("600", "twice")
    assert proc.returncode == 143 and "second SIGTERM" in proc.stderr, proc.stderr
    assert seconds < 30


def test_the_request_is_due_at_one_step_and_the_handler_is_restored():
    request = preemption.StopRequest(multi_process=False)
    before = signal.getsignal(signal.SIGTERM)
    with preemption.handle_sigterm(request, grace_s=600):
        assert signal.getsignal(signal.SIGTERM) is not before
        assert not request.due(1)
        request.signalled.set()  # what the handler does
        assert request.due(2) and not request.due(3)
    assert signal.getsignal(signal.SIGTERM) is before
    stopped = preemption.Preempted(2, "/w/checkpoints")
    assert stopped.code == 143 and "after step 2; its checkpoint is in /w/checkpoints" in str(
        stopped
    )
