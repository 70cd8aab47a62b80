"""Tests of modjax.runs.wandb_log: the checks before a run, and an offline run's logged scalars."""

import re
import sys

import pytest

from modjax.runs import wandb_log
from tests import event_files

pytest.importorskip("wandb")  # the `test` extra installs it; a plain install skips this file


@pytest.fixture
def wandb_home(tmp_path, monkeypatch):
    """wandb's own cache, config and data dirs in `tmp_path`, no key, no mode in the env."""
    for name in ("CACHE", "CONFIG", "DATA"):
        monkeypatch.setenv(f"WANDB_{name}_DIR", str(tmp_path / f"wandb_{name.lower()}"))
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))
    return tmp_path


def test_check_names_the_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    with pytest.raises(ValueError, match=r"--wandb proj needs the wandb package .*modjax\[wandb\]"):
        wandb_log.check("proj", mode="offline")


def test_online_mode_needs_a_key_from_the_environment_or_netrc(tmp_path):
    none = {"NETRC": str(tmp_path / "absent")}
    with pytest.raises(ValueError, match="online mode needs a W&B API key: set WANDB_API_KEY"):
        wandb_log.check("proj", environ=none)
    assert wandb_log.check("proj", environ={**none, "WANDB_API_KEY": "k" * 40}) == "online"
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    assert wandb_log.check("proj", environ={"NETRC": str(netrc)}) == "online"
    other_host = {"NETRC": str(netrc), "WANDB_BASE_URL": "https://wandb.example.com"}
    with pytest.raises(ValueError, match="needs a W&B API key"):
        wandb_log.check("proj", environ=other_host)  # the login is for another server
    assert wandb_log.check("proj", mode="offline", environ=none) == "offline"
    assert wandb_log.check("proj", environ={**none, "WANDB_MODE": "offline"}) == "offline"
    assert wandb_log.check("proj", environ={**none, "WANDB_MODE": "dryrun"}) == "offline"


@pytest.mark.parametrize(
    "project,environ,message",
    [
        ("", {}, "--wandb '' is not a W&B project name"),
        ("team/proj", {}, "--wandb 'team/proj' is not a W&B project name"),
        ("proj", {"WANDB_MODE": "offlin"}, "WANDB_MODE='offlin' is invalid: expected one of"),
    ],
)
def test_check_refuses_bad_names_and_modes(project, environ, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        wandb_log.check(project, environ=environ)


def test_offline_run_writes_the_scalars_under_the_workdir_and_a_resume_keeps_the_run(
    wandb_home,
):
    workdir = wandb_home / "run"
    config = {"model": "mlp", "learning_rate": 0.05}
    with wandb_log.open_run("modjax-test", mode="offline", workdir=workdir, config=config) as log:
        log(1, {"train/loss": 2.5, "train/learning_rate": 0.05})
        log(4, {"train/loss": 1.5})
        log(4, {"epoch/test_accuracy": 0.75})
    run_id = (workdir / "wandb" / wandb_log.RUN_ID_FILE).read_text().strip()
    (first,) = (workdir / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    rows = event_files.wandb_history(first)
    assert [(r["_step"], r["train/loss"]) for r in rows] == [(1, 2.5), (4, 1.5)]
    assert rows[0]["train/learning_rate"] == 0.05 and rows[1]["epoch/test_accuracy"] == 0.75

    with wandb_log.open_run("modjax-test", mode="offline", workdir=workdir, config=config) as log:
        log(6, {"train/loss": 1.0})
    runs = sorted((workdir / "wandb").glob("offline-run-*"))
    # The same W&B run, resumed (a second folder opened within the same second gets "-1").
    assert all(re.fullmatch(rf"offline-run-\d{{8}}_\d{{6}}-{run_id}(-\d+)?", p.name) for p in runs)
    newest = max((p / f"run-{run_id}.wandb" for p in runs), key=lambda p: p.stat().st_mtime)
    assert [(r["_step"], r["train/loss"]) for r in event_files.wandb_history(newest)] == [(6, 1.0)]


def test_other_processes_start_no_run(wandb_home):
    with wandb_log.open_run(
        "modjax-test", mode="offline", workdir=wandb_home / "run", config={}, enabled=False
    ) as log:
        assert log is None
    assert not (wandb_home / "run").exists()


def test_a_run_wandb_refuses_to_start_is_one_line(wandb_home, monkeypatch):
    import wandb

    def refuse(**kwargs):
        raise wandb.errors.AuthenticationError("API key rejected")

    monkeypatch.setattr(wandb, "init", refuse)
    with pytest.raises(RuntimeError, match=r"--wandb proj: W&B could not start the run \("):
        with wandb_log.open_run("proj", mode="online", workdir=wandb_home / "run", config={}):
            pass
