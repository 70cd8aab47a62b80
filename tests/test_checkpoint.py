"""Tests of modjax.checkpoint: round trip, damaged checkpoints, and kill -9 then resume."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from modjax import checkpoint, train
from modjax.runs import config as config_lib
from modjax.runs import training
from tests.tiny import TinyNet, tree_max_diff

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE = REPO / "experiments" / "configs" / "smoke.py"


def _tiny_state(seed=0):
    model = TinyNet()
    tx = train.make_optimizer(learning_rate=0.1, steps_per_epoch=1, num_epochs=1)
    state = train.create_train_state(model=model, tx=tx, seed=seed, image_shape=(8, 8, 1))
    return model, tx, state


def test_round_trip_keeps_last_k(tmp_path):
    model, tx, state = _tiny_state()
    manager = checkpoint.make_manager(tmp_path, save_every=2, keep=2)
    for step in range(1, 7):
        checkpoint.save(manager, step, state._replace(step=state.step + step), meta={"s": step})
    manager.wait_until_finished()
    assert sorted(manager.all_steps()) == [4, 6]
    abstract = train.abstract_train_state(model=model, tx=tx, image_shape=(8, 8, 1))
    restored, meta = checkpoint.restore(manager, abstract)
    assert int(restored.step) == 6 and meta["s"] == 6
    assert set(meta) == {"s", checkpoint.CHECKSUMS}
    assert tree_max_diff(restored.params, state.params) == 0
    assert isinstance(restored, train.TrainState)


def test_no_checkpoint_and_bad_arguments(tmp_path):
    model, tx, _ = _tiny_state()
    manager = checkpoint.make_manager(tmp_path, save_every=1, keep=1)
    abstract = train.abstract_train_state(model=model, tx=tx, image_shape=(8, 8, 1))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoint.restore(manager, abstract)
    with pytest.raises(ValueError, match="save_every=0"):
        checkpoint.make_manager(tmp_path, save_every=0, keep=1)


def test_damaged_checkpoint_gives_a_clear_error(tmp_path):
    model, tx, state = _tiny_state()
    manager = checkpoint.make_manager(tmp_path, save_every=1, keep=1)
    checkpoint.save(manager, 1, state)
    manager.wait_until_finished()
    damaged = 0
    for path in (tmp_path / "1" / "state").rglob("*"):
        if path.is_file() and path.stat().st_size > 0:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
            damaged += 1
    assert damaged > 0
    abstract = train.abstract_train_state(model=model, tx=tx, image_shape=(8, 8, 1))
    manager = checkpoint.make_manager(tmp_path, save_every=1, keep=1)
    with pytest.raises(checkpoint.CheckpointError, match="step 1 .* could not be restored"):
        checkpoint.restore(manager, abstract)


def test_wrong_model_checkpoint_gives_a_clear_error(tmp_path):
    _, _, state = _tiny_state()
    manager = checkpoint.make_manager(tmp_path, save_every=1, keep=1)
    checkpoint.save(manager, 1, state)
    manager.wait_until_finished()
    other = TinyNet(width=4)
    tx = train.make_optimizer(learning_rate=0.1, steps_per_epoch=1, num_epochs=1)
    abstract = train.abstract_train_state(model=other, tx=tx, image_shape=(8, 8, 1))
    with pytest.raises(checkpoint.CheckpointError, match="could not be restored"):
        checkpoint.restore(manager, abstract)


def _tree_snapshot(root: pathlib.Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
    }


def test_read_only_manager_restores_without_touching_the_directory(tmp_path):
    model, tx, state = _tiny_state()
    manager = checkpoint.make_manager(tmp_path / "ckpt", save_every=1, keep=2)
    for step in (1, 2):
        checkpoint.save(manager, step, state._replace(step=state.step + step), meta={"s": step})
    manager.wait_until_finished()
    manager.close()
    (tmp_path / "ckpt" / "3.orbax-checkpoint-tmp").mkdir()  # an interrupted save's leftovers
    before = _tree_snapshot(tmp_path)
    abstract = train.abstract_train_state(model=model, tx=tx, image_shape=(8, 8, 1))
    with checkpoint.open_read_only(tmp_path / "ckpt") as reader:
        assert checkpoint.latest_step(reader) == 2
        restored, meta = checkpoint.restore(reader, abstract)
        assert not checkpoint.save(reader, 5, state)
        reader.delete(1)
    assert int(restored.step) == 2 and meta["s"] == 2
    assert tree_max_diff(restored.params, state.params) == 0
    assert _tree_snapshot(tmp_path) == before
    with pytest.raises(FileNotFoundError, match="no checkpoint in .*missing"):
        with checkpoint.open_read_only(tmp_path / "missing"):
            pass
    assert not (tmp_path / "missing").exists()


# The child trains the smoke config and SIGKILLs itself right after step KILL_AT's save call
# (mid-epoch, between checkpoints): a real crash of a real process.
CHILD = """
import os, signal, sys
from modjax import checkpoint
from modjax.cli import main
real_save = checkpoint.save
def save(manager, step, state, **kw):
    out = real_save(manager, step, state, **kw)
    if step == int(os.environ["KILL_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return out
checkpoint.save = save
sys.exit(main(sys.argv[1:]))
"""


def _modjax(args, env_extra=None, code=None):
    env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu", **(env_extra or {}))
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "modjax"]
    return subprocess.run(
        cmd + args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def _final_params(workdir):
    config = config_lib.load_json(workdir / "config.json")
    run = training.build_run(config)
    abstract = train.abstract_train_state(
        model=run.model, tx=run.tx, image_shape=run.input_shape, mesh=run.mesh
    )
    with checkpoint.open_read_only(workdir / "checkpoints") as manager:
        state, _ = checkpoint.restore(manager, abstract)
    return jax.device_get(state)


RESUME_ARGS = ["train", "--config", str(SMOKE), "--num-epochs", "3", "--checkpoint-every", "5",
               "--log-every", "1", "--num-devices", "1", "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The run the interrupted ones must end equal to (trained once for both tests)."""
    workdir = tmp_path_factory.mktemp("resume") / "full"
    full = _modjax(RESUME_ARGS + ["--workdir", str(workdir)])
    assert full.returncode == 0, full.stderr[-3000:]
    return workdir


def test_killed_run_resumes_to_the_same_parameters(tmp_path, uninterrupted):
    args = RESUME_ARGS
    (tmp_path / "full").symlink_to(uninterrupted)

    killed = _modjax(args + ["--workdir", str(tmp_path / "killed")], {"KILL_AT": "13"}, CHILD)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not (tmp_path / "killed" / "summary.json").exists()
    steps = sorted(
        int(p.name) for p in (tmp_path / "killed" / "checkpoints").iterdir() if p.name.isdigit()
    )
    assert steps and max(steps) <= 13

    resumed = _modjax(args + ["--workdir", str(tmp_path / "killed")])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = _final_params(tmp_path / "full"), _final_params(tmp_path / "killed")
    assert int(a.step) == int(b.step) == 24
    assert tree_max_diff(a.params, b.params) < 1e-6
    assert tree_max_diff(a.opt_state, b.opt_state) < 1e-6
    np.testing.assert_array_equal(a.rng, b.rng)
    # metrics.jsonl: the lines of steps 11-13 (logged after checkpoint 10, before the kill) are
    # dropped on resume, so every step has exactly one line, as in the uninterrupted run.
    for run in ("full", "killed"):
        text = (tmp_path / run / "metrics.jsonl").read_text()
        lines = [json.loads(line) for line in text.splitlines()]
        assert [r["step"] for r in lines if r["kind"] == "train"] == list(range(1, 25)), run
        assert [r["epoch"] for r in lines if r["kind"] == "epoch"] == [1, 2, 3], run


# The child sends itself SIGTERM right after step TERM_AT's save call, as a scheduler would.
TERM_CHILD = CHILD.replace("KILL_AT", "TERM_AT").replace("signal.SIGKILL", "signal.SIGTERM")


def test_sigterm_saves_the_next_step_and_exits_143_then_resumes(tmp_path, uninterrupted):
    args = list(RESUME_ARGS)
    args[args.index("--log-every") + 1] = "4"  # so the stop step's log line is a forced one
    (tmp_path / "full").symlink_to(uninterrupted)

    stopped = _modjax(args + ["--workdir", str(tmp_path / "term")], {"TERM_AT": "13"}, TERM_CHILD)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert "stopped by SIGTERM after step 14; its checkpoint is in" in stopped.stderr
    assert not (tmp_path / "term" / "summary.json").exists()
    steps = {int(p.name) for p in (tmp_path / "term" / "checkpoints").iterdir() if p.name.isdigit()}
    assert max(steps) == 14  # the step after the signal, not a checkpoint-every multiple
    lines = (tmp_path / "term" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 14  # the stop step was logged (and NaN-checked)

    resumed = _modjax(args + ["--workdir", str(tmp_path / "term")])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = _final_params(tmp_path / "full"), _final_params(tmp_path / "term")
    assert int(a.step) == int(b.step) == 24
    assert tree_max_diff(a.params, b.params) < 1e-6
    np.testing.assert_array_equal(a.rng, b.rng)


def test_too_little_free_space_is_one_error_before_a_write(tmp_path, monkeypatch):
    monkeypatch.setattr(
        checkpoint.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(0, 0, 0)
    )
    cfg = config_lib.from_dict(config_lib.load_config_file(str(SMOKE)) | {"num_epochs": 1})
    old_umask = os.umask(0o077)  # the workdir and checkpoints/ are shared: 0755 regardless
    try:
        with pytest.raises(OSError, match=r"no space left on the device of .*checkpoints for the "
                           r"checkpoint of step 1 \(1\.\d MiB needed, 0\.0 MiB free\)") as err:  # fmt: skip
            training.train_and_evaluate(cfg, tmp_path / "w", progress=False)
    finally:
        os.umask(old_umask)
    assert err.value.errno == 28 and not list((tmp_path / "w" / "checkpoints").iterdir())
    for d in (tmp_path / "w", tmp_path / "w" / "checkpoints"):
        assert d.stat().st_mode & 0o777 == 0o755, d
    assert (tmp_path / "w" / "config.json").stat().st_mode & 0o777 == 0o644


FULL_DISK_CHILD = """
import sys
from modjax import checkpoint
checkpoint._check_free_space = lambda *a: None  # let the write itself fail
from modjax.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_write_that_fills_the_disk_is_one_line_without_orbax_tracebacks(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=150k", "tmpfs", str(disk)],
                             capture_output=True)  # fmt: skip
    if mounted.returncode:
        pytest.skip(f"a small tmpfs cannot be mounted here (needs root): {mounted.stderr!r}")
    try:
        for _ in range(3):  # Orbax's threads fail in a different order each time
            proc = subprocess.run(
                [sys.executable, "-c", FULL_DISK_CHILD, "train", "--config", str(SMOKE),
                 "--workdir", str(disk / "w"), "--no-progress", "--num-epochs", "4"],
                capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"},
                cwd=REPO, timeout=300,
            )  # fmt: skip
            assert proc.returncode == 2
            assert proc.stderr.strip().splitlines() == [
                f"modjax train: error: [Errno 28] no space left on the device of {disk}/w. "
                "Free space there (or use another --workdir); the run resumes from its last "
                "complete checkpoint"
            ], proc.stderr[-6000:]
    finally:
        subprocess.run(["umount", str(disk)], check=True)
