"""2 CPU processes on localhost train like 1 process, and their checkpoint restores in one."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from modjax.runs import cluster
from tests.conftest import REPO

SMOKE = str(REPO / "experiments" / "configs" / "smoke.py")
FLAGS = ["--no-progress", "--num-epochs", "2", "--checkpoint-every", "8"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    return env


def _train(workdir, *extra, devices, env_extra=None):
    cmd = [sys.executable, "-m", "modjax", "train", "--config", SMOKE, "--workdir", str(workdir)]
    return subprocess.Popen(
        [*cmd, *FLAGS, *extra],
        env={**_env(devices), **(env_extra or {})},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    return out


@pytest.mark.slow
def test_two_processes_match_one_and_restore_in_one(tmp_path):
    port = _free_port()
    procs = [
        _train(
            tmp_path / "two",
            "--distributed",
            "--coordinator",
            f"127.0.0.1:{port}",
            "--num-processes",
            "2",
            "--process-id",
            "0",
            devices=2,
        ),
        # Process 1 takes its settings from the environment, as BUILD.md documents.
        _train(
            tmp_path / "two",
            "--distributed",
            devices=2,
            env_extra={
                "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                "JAX_NUM_PROCESSES": "2",
                "JAX_PROCESS_ID": "1",
            },
        ),
    ]
    for p in procs:
        _finish(p)
    _finish(_train(tmp_path / "one", devices=4))
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert two["devices"] == one["devices"] == 4
    assert two["test_accuracy"] == pytest.approx(one["test_accuracy"], abs=1e-9)
    assert two["steps"] == one["steps"]
    # The 2-process checkpoint restores in this single process (8 devices), no target tree.
    from modjax.runs.training import load_run

    two, one = load_run(tmp_path / "two"), load_run(tmp_path / "one")
    assert two.step == one.step
    for a, b in zip(jax.tree.leaves(two.variables), jax.tree.leaves(one.variables), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


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
