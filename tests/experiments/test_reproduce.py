"""experiments/reproduce.py: table names, the paper-on-CPU guard, a smoke table, settings lock."""

import csv
import pathlib
import sys

import jax
import pytest

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[2] / "experiments"
sys.path.insert(0, str(EXPERIMENTS))

import reproduce  # noqa: E402
import reproduce_tables  # noqa: E402

SMOKE = str(EXPERIMENTS / "configs" / "reproduce_smoke.py")


def test_unknown_table_lists_the_valid_ones(capsys):
    with pytest.raises(SystemExit):
        reproduce.main(["mwt_table_9"])
    err = capsys.readouterr().err
    assert (
        "table 'mwt_table_9' does not exist" in err
        and "['moda', 'moda_replace', 'mwt', 'mwt_reuse']" in err
    )


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the guard is for CPU backends")
def test_paper_scale_on_cpu_needs_yes(tmp_path):
    with pytest.raises(SystemExit, match=r"estimated [\d,]+ h of CPU time.*Pass --yes"):
        reproduce.main(["mwt", "--scale", "paper", "--seeds", "1", "--workdir", str(tmp_path)])
    assert not (tmp_path / "settings.json").exists()  # refused before anything is written


def test_subtasks_enumeration():
    every = reproduce_tables.subtasks(10, None)
    assert len(every) == 2**10 - 1 - 10 == 1013
    sample = reproduce_tables.subtasks(10, 20)
    assert len(set(sample)) == 20 and set(sample) <= set(every)
    assert sample == reproduce_tables.subtasks(10, 20)  # seeded


@pytest.mark.slow
def test_smoke_table_resumes_from_cache_and_refuses_other_settings(tmp_path):
    work, out = tmp_path / "work", tmp_path / "res"
    args = ["moda", "--scale-config", SMOKE, "--seeds", "2", "--tasks", "3", "--no-progress"]
    args += ["--workdir", str(work), "--out", str(out)]
    assert reproduce.main(args) == 0
    text = out.with_suffix(".md").read_text()
    assert "| mlp | 2/2 |" in text and "python experiments/reproduce.py moda" in text
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
    common = ["--scale-config", SMOKE, "--seeds", "1", "--no-progress", "--workdir", str(work)]
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
