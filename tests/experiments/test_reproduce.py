"""python -m experiments.reproduce: table names, the accelerator guard, scale configs, a smoke
table, the settings lock, and the sub-task sample every committed result used."""

import csv
import importlib

import jax
import pytest

from experiments.reproduce import measure
from modjax.runs import config as config_lib
from tests.conftest import REPO

reproduce = importlib.import_module("experiments.reproduce.__main__")
CONFIGS = REPO / "experiments" / "reproduce" / "configs"


def test_unknown_table_lists_the_valid_ones(capsys):
    with pytest.raises(SystemExit):
        reproduce.main(["mwt_table_9"])
    err = capsys.readouterr().err
    assert (
        "table 'mwt_table_9' does not exist" in err
        and "['moda', 'moda_replace', 'mwt', 'mwt_reuse']" in err
    )


def test_help_names_the_scales(capsys):
    with pytest.raises(SystemExit) as exit_:
        reproduce.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "python -m experiments.reproduce" in out and "{cpu,digits,paper,smoke}" in out


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the guard is for CPU backends")
def test_paper_scale_on_cpu_needs_yes(tmp_path):
    with pytest.raises(SystemExit, match=r"estimated [\d,]+ h of CPU time.*Pass --yes"):
        reproduce.main(["mwt", "--scale", "paper", "--seeds", "1", "--workdir", str(tmp_path)])
    assert not (tmp_path / "settings.json").exists()  # refused before anything is written


def test_cpu_scale_rows_are_the_committed_recipe():
    """The rows behind benchmarks/results/reproduce_*_cpu.md (their workdirs' settings.json)."""
    cfg = reproduce.load_scale(CONFIGS / "cpu.py", "mwt")
    common = dict(dataset="fashion_mnist", image_size=32, width=0.125, train_examples=20000,
                  global_batch_size=128, learning_rate=0.05, log_every=50, checkpoint_every=100)  # fmt: skip
    assert reproduce.row(cfg, "vgg16", "mwt") == {
        **common, "num_epochs": 8, "model": "vgg16", "method": "mwt"
    }  # fmt: skip
    assert reproduce.row(cfg, "vgg16_moda", "standard") == {
        **common, "num_epochs": 4, "model": "vgg16_moda", "method": "standard"
    }  # fmt: skip
    assert cfg["tasks"] == {"mwt": 60, "mwt_reuse": 4, "moda": 60} and cfg["finetune_epochs"] == 2
    for path in sorted(CONFIGS.glob("*.py")):  # every scale's rows are valid training runs
        cfg = config_lib.load_config_file(path)
        for table, models in cfg["models"].items():
            if table != "moda_replace":
                config_lib.from_dict(reproduce.row(cfg, models[0], "mwt"))


def test_subtasks_are_the_seeded_sample_of_earlier_results():
    every = measure.subtasks(10, None)
    assert len(every) == 2**10 - 1 - 10 == 1013
    # `reproduce_tables.subtasks(10, 4)` before the move to `modjax.runs.compare.sample_tasks`:
    assert measure.subtasks(10, 4) == [(1, 3, 6), (0, 2, 3, 7, 9), (0, 1, 3, 4, 5, 6),
                                       (1, 2, 4, 7, 8, 9)]  # fmt: skip
    sample = measure.subtasks(10, 60)
    assert len(set(sample)) == 60 and set(sample) <= set(every)


@pytest.mark.slow
def test_smoke_table_resumes_from_cache_and_refuses_other_settings(tmp_path):
    work, out = tmp_path / "work", tmp_path / "res"
    args = ["moda", "--scale", "smoke", "--seeds", "2", "--tasks", "3", "--no-progress"]
    args += ["--workdir", str(work), "--out", str(out)]
    assert reproduce.main(args) == 0
    text = out.with_suffix(".md").read_text()
    assert "| mlp | 2/2 |" in text and "`python -m experiments.reproduce moda --scale smoke" in text
    rows = {r["metric"]: r for r in csv.DictReader(out.with_suffix(".csv").open())}
    assert int(rows["method_accuracy"]["seeds"]) == 2
    assert 0.5 < float(rows["method_accuracy"]["mean"]) / 100 <= 1.0
    assert 0.0 < float(rows["module_size"]["mean"]) < 1.0
    assert len(rows["reuse_accuracy"]["values"].split()) == 2

    # A second run reads the cached seeds: same numbers, no training; a hand-written reading
    # appended to the results file survives it.
    before = out.with_suffix(".csv").read_text()
    md = out.with_suffix(".md")
    md.write_text(md.read_text() + "\n## Reading\nThe gap is noise.\n")
    mtime = (work / "mlp_s0" / "measured.json").stat().st_mtime
    assert reproduce.main(args) == 0
    assert out.with_suffix(".csv").read_text() == before
    assert md.read_text().count("## Reading\nThe gap is noise.\n") == 1
    assert md.read_text().startswith(text.split("- Wall time")[0])
    assert (work / "mlp_s0" / "measured.json").stat().st_mtime == mtime

    with pytest.raises(SystemExit, match=r"other settings \(differing: \['tasks'\]\)"):
        reproduce.main([*args[:6], "4", *args[7:]])


@pytest.mark.slow
def test_mwt_reuse_shares_the_mwt_runs(tmp_path):
    work = tmp_path / "work"
    common = ["--scale", "smoke", "--seeds", "1", "--no-progress", "--workdir", str(work)]
    reuse = ["mwt_reuse", *common, "--tasks", "1", "--finetune-epochs", "1"]
    assert reproduce.main([*reuse, "--out", str(tmp_path / "reuse")]) == 0
    rows = {r["metric"]: r for r in csv.DictReader((tmp_path / "reuse.csv").open())}
    for metric in ("restricted_accuracy", "finetuned_accuracy", "cnnsplitter_accuracy"):
        assert 0.0 <= float(rows[metric]["mean"]) <= 100.0
    assert 0.0 < float(rows["task_krr"]["mean"]) <= 100.0
    # The mwt table reads the same training runs: nothing is trained again.
    summary = work / "lenet5_s0" / "mwt" / "summary.json"
    mtime = summary.stat().st_mtime
    assert reproduce.main(["mwt", *common, "--out", str(tmp_path / "mwt")]) == 0
    assert summary.stat().st_mtime == mtime
    assert (work / "settings_mwt.json").exists() and (work / "settings_mwt_reuse.json").exists()
