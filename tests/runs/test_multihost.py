"""2 CPU processes on localhost train like 1 process, and their checkpoint restores in one."""

import json
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from benchmarks.stress_multihost import cpu_env, free_port
from modjax.runs import cluster
from tests.conftest import REPO
from tests.test_checkpoint import TERM_CHILD

SMOKE = str(REPO / "experiments" / "configs" / "smoke.py")
MLP_MNIST = str(REPO / "experiments" / "configs" / "mlp_mnist.py")
SMOKE_FLAGS = ["--config", SMOKE]
FLAGS = ["--no-progress", "--num-epochs", "2", "--checkpoint-every", "8"]


def _train(workdir, *extra, devices, env_extra=None, flags=FLAGS, code=None):
    head = [sys.executable, "-c", code] if code else [sys.executable, "-m", "modjax"]
    cmd = [*head, "train", "--workdir", str(workdir)]
    return subprocess.Popen(
        [*cmd, *flags, *extra],
        env={**cpu_env(devices), **(env_extra or {})},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc, returncode=0) -> str:
    try:
        out, _ = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:  # a hang: dump the stacks (SIGUSR1), then kill
        proc.send_signal(signal.SIGUSR1)
        time.sleep(2)
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError("the process hung; its stacks:\n" + out[-6000:]) from None
    assert proc.returncode == returncode, out[-3000:]
    return out


def _two_processes(workdir, *, flags=FLAGS, code=None, env_extra=None):
    """Process 0 takes flags, process 1 its settings from the environment, as BUILD.md says."""
    port = free_port()
    return [
        _train(workdir, "--distributed", "--coordinator", f"127.0.0.1:{port}",
               "--num-processes", "2", "--process-id", "0", devices=2, flags=flags),
        _train(workdir, "--distributed", devices=2, flags=flags, code=code,
               env_extra={"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                          "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1", **(env_extra or {})}),
    ]  # fmt: skip


def _same_parameters(a, b):
    from modjax.runs.training import load_run

    a, b = load_run(a), load_run(b)
    assert a.step == b.step
    for x, y in zip(jax.tree.leaves(a.variables), jax.tree.leaves(b.variables), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_two_processes_match_one_and_restore_in_one(tmp_path):
    for p in _two_processes(tmp_path / "two", flags=[*SMOKE_FLAGS, *FLAGS]):
        _finish(p)
    _finish(_train(tmp_path / "one", devices=4, flags=[*SMOKE_FLAGS, *FLAGS]))
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert two["devices"] == one["devices"] == 4
    assert two["test_accuracy"] == pytest.approx(one["test_accuracy"], abs=1e-9)
    assert two["steps"] == one["steps"]
    # The 2-process checkpoint restores in this single process (8 devices), no target tree.
    _same_parameters(tmp_path / "two", tmp_path / "one")


@pytest.mark.slow
def test_moda_mnist_with_eval_every_epoch_finishes_twice(tmp_path, real_data_dir):
    """The configuration that deadlocked in loop.evaluate (device-side sums of in-flight evals)."""
    flags = ["--config", MLP_MNIST, "--method", "moda", "--data-dir", str(real_data_dir),
             "--train-examples", "1024", "--num-epochs", "2", "--eval-every", "1",
             "--log-every", "8", "--checkpoint-every", "16", "--no-progress"]  # fmt: skip
    for attempt in ("a", "b"):
        for p in _two_processes(tmp_path / attempt, flags=flags):
            _finish(p)
    # Equal to each other; equality with 1 process is checked by the smoke-config test above and,
    # for this configuration, 20 times by benchmarks/stress_multihost.py.
    _same_parameters(tmp_path / "a", tmp_path / "b")


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_one_checkpointed_step(tmp_path):
    flags = [*SMOKE_FLAGS, "--no-progress", "--num-epochs", "6", "--checkpoint-every", "100"]
    t0 = time.monotonic()
    # Process 1 sends itself SIGTERM right after step 5's save call, as a scheduler would.
    procs = _two_processes(tmp_path / "w", flags=flags, code=TERM_CHILD, env_extra={"TERM_AT": "5"})
    outs = [_finish(p, returncode=143) for p in procs]
    steps = [int(re.search(r"stopped by SIGTERM after step (\d+)", out).group(1)) for out in outs]
    assert steps[0] == steps[1] > 5, outs[0][-2000:]
    saved = [int(p.name) for p in (tmp_path / "w" / "checkpoints").iterdir() if p.name.isdigit()]
    assert max(saved) == steps[0]  # the stop step, not a multiple of --checkpoint-every
    assert time.monotonic() - t0 < 240
    for p in _two_processes(tmp_path / "w", flags=flags):  # resumes and completes
        _finish(p)
    assert json.loads((tmp_path / "w" / "summary.json").read_text())["steps"] == 48


def test_settings_flags_win_over_environment():
    env = {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    assert cluster.settings(process_id=0, environ=env) == {
        "coordinator_address": "h:1",
        "num_processes": 4,
        "process_id": 0,
    }
    assert cluster.settings(environ={"SLURM_JOB_ID": "7"}) == {}  # JAX detects the rest


def test_settings_name_what_is_missing_and_a_portless_address(capsys):
    with pytest.raises(ValueError, match=r"needs --coordinator \(or JAX_COORDINATOR_ADDRESS\), "
                       r"--num-processes \(or JAX_NUM_PROCESSES\), --process-id"):  # fmt: skip
        cluster.settings(environ={})
    with pytest.raises(ValueError, match=r"needs --process-id \(or JAX_PROCESS_ID\):"):
        cluster.settings(coordinator_address="h:1", num_processes=2, environ={})
    with pytest.raises(ValueError, match="'localhost' from --coordinator: expected HOST:PORT"):
        cluster.settings(coordinator_address="localhost", environ={})
    env = {"JAX_NUM_PROCESSES": "2"}
    assert cluster.stray_variables(env) == ["JAX_NUM_PROCESSES"] and not cluster.stray_variables({})


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"environ": {"JAX_NUM_PROCESSES": "two"}}, "num_processes='two' from JAX_NUM_PROCESSES"),
        ({"num_processes": 2, "process_id": 2, "environ": {}}, r"process_id=2 must be in \[0, "),
        ({"num_processes": 0, "environ": {}}, "num_processes=0 must be >= 1"),
    ],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        cluster.settings(**kwargs)


def test_unreachable_coordinator_is_named_within_the_timeout():
    t0 = time.monotonic()
    with pytest.raises(
        cluster.CoordinatorError, match=r"127.0.0.1:\d+ did not answer within 1.5 s"
    ):
        cluster.wait_for_coordinator(f"127.0.0.1:{free_port()}", 1.5)
    assert 1.2 < time.monotonic() - t0 < 5


def test_coordinator_port_in_use_is_named():
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        s.listen()
        port = s.getsockname()[1]
        assert cluster.wait_for_coordinator(f"127.0.0.1:{port}", 5) < 1  # it answers
        with pytest.raises(cluster.CoordinatorError, match=f"coordinator port {port} .* in use"):
            cluster.check_port_free(f"127.0.0.1:{port}")


def test_missing_processes_stop_process_0_with_a_message_not_an_abort(tmp_path):
    """Process 0 of 2 alone: the watchdog ends it, naming the coordinator, at the deadline."""
    t0 = time.monotonic()
    proc = _train(tmp_path / "w", "--distributed", "--coordinator", f"127.0.0.1:{free_port()}",
                  "--num-processes", "2", "--process-id", "0", "--coordinator-timeout", "3",
                  devices=1, flags=[*SMOKE_FLAGS, "--no-progress"])  # fmt: skip
    out = _finish(proc, returncode=cluster.EXIT_TIMEOUT)
    assert "did not finish within 3 s: not all 2 processes joined the coordinator" in out
    assert "Check failure" not in out and "Traceback" not in out
    assert time.monotonic() - t0 < 60 and not (tmp_path / "w").exists()


@pytest.mark.slow
def test_different_workdirs_are_refused_before_anything_is_written(tmp_path):
    port = free_port()
    procs = [
        _train(tmp_path / f"w{i}", "--distributed", "--coordinator", f"127.0.0.1:{port}",
               "--num-processes", "2", "--process-id", str(i), devices=1,
               flags=[*SMOKE_FLAGS, "--no-progress"])
        for i in range(2)
    ]  # fmt: skip
    for i, p in enumerate(procs):
        out = _finish(p, returncode=2)
        assert f"--workdir {tmp_path / f'w{i}'} is not one shared directory for all 2" in out
        assert "process 1 does not see the files of process(es) [0]" in out
        assert "Traceback" not in out and not (tmp_path / f"w{i}").exists()
