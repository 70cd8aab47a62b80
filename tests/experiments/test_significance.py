"""Welch's-test sections of the method-comparing tables (reproduction tables, `modjax compare`)."""

import json
import pathlib
import shutil

import pytest
from scipy import stats

from experiments.reproduce import significance
from modjax.runs import compare_table

RESULTS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def _p_cell(a, b) -> str:
    p = stats.ttest_ind(a, b, equal_var=False).pvalue
    return f"{p:.2g}"


def test_refresh_adds_the_section_to_a_committed_table(tmp_path):
    for suffix in (".md", ".csv"):
        shutil.copy(RESULTS / f"reproduce_mwt_cpu{suffix}", tmp_path / f"reproduce_mwt_cpu{suffix}")
    md = tmp_path / "reproduce_mwt_cpu.md"
    original = md.read_text()
    reading = original[original.index("## Reading") :]
    significance.refresh(md)
    once = md.read_text()
    significance.refresh(md)  # a second refresh replaces the section, it does not add one
    assert md.read_text() == once and once.count("## Differences over seeds") == 1
    assert once.endswith(reading)  # the hand-written reading stays
    # The p-value of MwT vs ST is SciPy's on the committed per-seed values.
    rows = {
        r.split(",")[1]: r.split(",")[-1].split()
        for r in (tmp_path / "reproduce_mwt_cpu.csv").read_text().splitlines()[1:]
    }
    st, mwt = (list(map(float, rows[k])) for k in ("standard_accuracy", "method_accuracy"))
    line = next(x for x in once.splitlines() if x.startswith("| vgg16 | MwT acc % − ST acc %"))
    assert f"| {_p_cell(mwt, st)} |" in line and "differ (p < 0.05)" in line


def test_refresh_names_the_tables_it_knows(tmp_path):
    md = tmp_path / "reproduce_nemo_cpu.md"
    md.write_text("# x\n")
    with pytest.raises(
        ValueError,
        match=r"reproduce_nemo_cpu.md: expected .* \['moda', 'moda_replace', 'mwt', 'mwt_reuse'\]",
    ):
        significance.refresh(md)


def _seed(seed, accs):
    rows = [
        {"method": m, "modules_accuracy": a, "task_accuracy": a + 0.01} for m, a in accs.items()
    ]
    return {
        "config_hash": "abc", "seed": seed, "wall_s": 60.0, "command": "modjax compare",
        "device": "cpu", "versions": "JAX", "commit": "c0ffee", "tasks": [[0, 1]],
        "config": {"train": {"model": "mlp", "dataset": "digits"}}, "rows": rows,
    }  # fmt: skip


def test_compare_table_tests_every_method_pair(tmp_path):
    a = [0.90, 0.91, 0.92]
    b = [0.80, 0.83, 0.81]
    for s in range(3):
        record = _seed(s, {"standard": a[s], "moda": b[s]})
        (tmp_path / f"seed_{s}.json").write_text(json.dumps(record))
    md = compare_table.write_table(tmp_path, "abc").read_text()
    line = next(x for x in md.splitlines() if x.startswith("| standard − moda | all modules"))
    assert f"| {_p_cell(a, b)} |" in line and "differ (p < 0.05)" in line
    # One seed: no variance to test against, and the table says so.
    for s in (1, 2):
        (tmp_path / f"seed_{s}.json").unlink()
    md = compare_table.write_table(tmp_path, "abc").read_text()
    assert "too few seeds to tell (1 and 1; at least 2 each)" in md
