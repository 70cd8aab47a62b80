"""`python -m experiments.reproduce --submit/--collect`: the smoke table as submitit jobs, a job
stopped by SIGTERM mid-training and resumed from its checkpoint, the table rebuilt by --collect,
the sbatch script a Slurm submission writes, and the flag checks.

One seed each: `--submit debug` (the job in this process, ~15 s on 2 busy cores) and `--submit
local` (LocalExecutor: a process per job, SIGTERM, requeued by submitit, ~35 s).
"""

import csv
import importlib
import json
import os
import signal
import sys

import pytest

pytest.importorskip("submitit", reason="the extra modjax[cluster] (in [test]) is not installed")

from experiments import run as run_experiment  # noqa: E402
from experiments.reproduce import seed_job, submit  # noqa: E402
from modjax import checkpoint  # noqa: E402
from modjax.runs import training  # noqa: E402
from tests.conftest import REPO  # noqa: E402

reproduce = importlib.import_module("experiments.reproduce.__main__")
PROG = "python -m experiments.reproduce"


def _args(tmp_path, *flags, seeds=2):
    return ["moda", "--scale", "smoke", "--seeds", str(seeds), "--tasks", "3", "--no-progress",
            "--workdir", str(tmp_path / "work"), "--out", str(tmp_path / "res"), *flags]  # fmt: skip


def _sigterm_after_save(monkeypatch, at_step: int) -> list:
    """SIGTERM to this process right after the first save call of step `at_step`, as a
    scheduler would send it; returns the list of steps it fired at."""
    real, fired = checkpoint.save, []

    def save(manager, step, state, **kw):
        out = real(manager, step, state, **kw)
        if step == at_step and not fired:
            fired.append(step)
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(checkpoint, "save", save)
    return fired


def _train_steps(run_dir) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["step"] for x in lines if json.loads(x)["kind"] == "train"]


def test_debug_jobs_resume_after_sigterm_and_collect_rebuilds_the_table(
    tmp_path, monkeypatch, capsys
):
    args = _args(tmp_path, "--submit", "debug", seeds=1)
    standard = tmp_path / "work" / "mlp_s0" / "standard"
    fired = _sigterm_after_save(monkeypatch, at_step=10)
    with pytest.raises(SystemExit) as stopped:  # modjax.runs.preemption.Preempted, status 143
        reproduce.main(args)
    assert stopped.value.code == 143 and fired == [10]
    assert "stopped by SIGTERM after step 11" in str(stopped.value)
    assert (standard / "checkpoints" / "11").is_dir() and not (standard / "summary.json").exists()
    assert not (tmp_path / "res.md").exists()  # no seed finished yet

    # Submitting again resumes the stopped run at its checkpoint and finishes the seed.
    restored = []  # the step each training run starts from (its state is donated later)
    real_restore = training.restore_or_create

    def restore(run, manager, **kw):
        state = real_restore(run, manager, **kw)
        restored.append(int(state.step))
        return state

    monkeypatch.setattr(training, "restore_or_create", restore)
    assert reproduce.main(args) == 0
    assert restored == [11, 0]  # mlp_s0/standard from its checkpoint, mlp_s0/moda anew
    # Logged steps: 1 and 10, the stop step 11, the resumed run's first step 12, then 20 and 22.
    assert _train_steps(standard) == [1, 10, 11, 12, 20, 22]
    assert json.loads((standard / "summary.json").read_text())["steps"] == 22
    record = json.loads((tmp_path / "work" / "mlp_s0" / "job_moda.json").read_text())
    assert record["device"].startswith("cpu") and record["job_id"].startswith("DEBUG_")
    out = capsys.readouterr().out
    assert "1 job(s) submitted" in out and "mlp seed 0 done" in out
    table = (tmp_path / "res.md").read_text()
    assert "| mlp | 1/1 |" in table and "--submit debug" in table and "(jobs)" in table
    rows = {r["metric"]: r for r in csv.DictReader((tmp_path / "res.csv").open())}
    assert int(rows["method_accuracy"]["seeds"]) == 1
    assert 0.5 < float(rows["method_accuracy"]["mean"]) / 100 <= 1.0

    # --collect rebuilds the same table from the per-seed files, running nothing.
    before = (tmp_path / "res.csv").read_text()
    (tmp_path / "res.csv").unlink()
    monkeypatch.setattr(reproduce.measure, "measure_seed", lambda *a, **k: pytest.fail("ran"))
    assert reproduce.main(_args(tmp_path, "--collect", seeds=1)) == 0
    assert (tmp_path / "res.csv").read_text() == before
    assert "collected 1/1 seeds" in capsys.readouterr().out
    # Asked for 2 seeds, it writes the finished one and names the other.
    assert reproduce.main(_args(tmp_path, "--collect", seeds=2)) == 0
    assert "collected 1/2 seeds; not finished: ['mlp s1']" in capsys.readouterr().out
    assert "| mlp | 1/2 |" in (tmp_path / "res.md").read_text()


class PreemptOnceJob(seed_job.SeedJob):
    """The LocalExecutor test's job: its first attempt sends itself SIGTERM after step 10's save
    (mid-training, as a scheduler would); `attempt` travels in the pickle submitit requeues."""

    attempt = 0

    def __call__(self):
        self.attempt += 1
        if self.attempt == 1:
            real = checkpoint.save

            def save(manager, step, state, **kw):
                out = real(manager, step, state, **kw)
                if step == 10:
                    os.kill(os.getpid(), signal.SIGTERM)
                return out

            checkpoint.save = save
        return super().__call__()


@pytest.mark.slow
def test_local_jobs_requeue_after_sigterm_and_resume(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(seed_job, "SeedJob", PreemptOnceJob)
    monkeypatch.setattr(submit, "POLL_S", {**submit.POLL_S, "local": 0.2})
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert reproduce.main(_args(tmp_path, "--submit", "local", seeds=1)) == 0
    standard = tmp_path / "work" / "mlp_s0" / "standard"
    logs = "".join(p.read_text() for p in (tmp_path / "work" / "submitit").glob("*_log.*"))
    assert "stopped by SIGTERM after step 11" in logs and "Requeued job" in logs
    assert (standard / "checkpoints" / "11").is_dir()
    assert _train_steps(standard) == [1, 10, 11, 12, 20, 22]  # 12: the requeued run's first
    metrics = [json.loads(x) for x in (standard / "metrics.jsonl").read_text().splitlines()]
    compiled = [m["step"] for m in metrics if "compile_time_s" in m]
    assert compiled == [1, 12]  # the requeued process compiled again and went on from step 11
    assert "| mlp | 1/1 |" in (tmp_path / "res.md").read_text()


def test_sbatch_script_asks_for_the_resources(tmp_path, monkeypatch):
    monkeypatch.setattr(submit.shutil, "which", lambda name: f"/usr/bin/{name}")
    args = reproduce._parse(_args(tmp_path, "--submit", "slurm", "--partition", "gpu",
                                  "--nodes", "2", "--gpus-per-node", "8", "--time", "1-00:00:00",
                                  "--slurm-arg", "account=abc"))[1]  # fmt: skip
    res = submit.check_args(args)
    assert res.distributed and res.tasks_per_node == 8 and res.time_min == 1440
    executor = submit.make_executor("slurm", tmp_path / "submitit", res)
    script = executor._make_submission_file_text("python -m submitit.core._submit X", "uid")
    for line in ("--nodes=2", "--ntasks-per-node=8", "--gpus-per-node=8", "--partition=gpu",
                 "--time=1440", "--account=abc", "--signal=USR2@90",
                 f"export PYTHONPATH={REPO}"):  # fmt: skip
        assert line in script, (line, script)

    one = submit.check_args(reproduce._parse(_args(tmp_path, "--submit", "slurm"))[1])
    assert (one.nodes, one.tasks_per_node, one.gpus_per_node, one.distributed) == (1, 1, 1, False)


def test_parse_time():
    assert [submit.parse_time(t) for t in ("90", "12:00:00", "1-00:30:01")] == [90, 720, 1471]
    for bad in ("2h", "0", "12:00"):
        with pytest.raises(ValueError, match="--time"):
            submit.parse_time(bad)


def test_missing_submitit_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` raises ImportError
    argv = _args(tmp_path, "--submit", "local")
    monkeypatch.setattr(sys, "argv", [PROG, *argv])
    assert run_experiment(reproduce.main, PROG) == 2
    err = capsys.readouterr().err
    assert err == (
        f"{PROG}: error: --submit local needs submitit, which is not installed: "
        'pip install "modjax[cluster]"\n'
    )
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_failed_job_is_reported_in_one_line():
    crashed = RuntimeError(
        "Job (task=0) failed during processing with trace:\n----\nTraceback (most recent call "
        "last):\n  File x\nValueError: dataset 'cifar10' not found\n\nsubmitit INFO - y"
    )
    killed = RuntimeError(
        "Job 7 (task: 0) with path /w/7_0_result.pkl\nhas not produced any output (state: "
        "FINISHED)\nError stream produced:\n----\nWARNING ..."
    )
    assert submit._why(crashed) == (
        "Job (task=0) failed during processing with trace: ... ValueError: dataset 'cifar10' "
        "not found"
    )
    assert submit._why(killed) == (
        "Job 7 (task: 0) with path /w/7_0_result.pkl ... has not produced any output "
        "(state: FINISHED)"
    )
