"""`modjax compare`: the methods on one network, measured alike, resumable, one table."""

import json

import pytest

from modjax.cli import main
from modjax.runs import compare

CONFIG = """
def get_config():
    return dict(
        train=dict(model="mlp", depth=2, dataset="digits", num_epochs=1,
                   global_batch_size=64, log_every=10, checkpoint_every=1000),
        methods=("standard", "panrajan", "moda"),
        tasks=2,
        cut_args={"panrajan": ("--allow-fewer",)},
    )
"""


def test_sample_tasks_are_one_list_for_every_method():
    tasks = compare.sample_tasks(10, 5)
    assert tasks == compare.sample_tasks(10, 5) and len(tasks) == len(set(tasks)) == 5
    assert all(len(t) >= 2 and list(t) == sorted(t) for t in tasks)
    assert len(compare.sample_tasks(3, 100)) == 4  # every subset of size >= 2


def test_bad_configs_are_refused_before_any_work(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("def get_config():\n    return dict(train=dict(), methods=('nemo',))\n")
    with pytest.raises(ValueError, match=r"methods \['nemo'\] are not comparable; known"):
        compare.load_config(path)
    path.write_text("def get_config():\n    return dict(methods=('moda',))\n")
    with pytest.raises(ValueError, match=r"needs 'train'"):
        compare.load_config(path)


def test_compare_end_to_end_and_resume(tmp_path, capsys):
    config = tmp_path / "tiny.py"
    config.write_text(CONFIG)
    results = tmp_path / "results"
    argv = ["compare", "--config", str(config), "--seeds", "1", "--workdir",
            str(tmp_path / "w"), "--results", str(results)]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    record = json.loads((results / "seed_0.json").read_text())
    rows = {r["method"]: r for r in record["rows"]}
    assert list(rows) == ["standard", "panrajan", "moda"]
    assert record["command"].startswith("modjax compare") and len(record["tasks"]) == 2
    moda, pr = rows["moda"], rows["panrajan"]
    assert 0 < moda["module_params"] < pr["module_params"] <= 1  # MODA modules are smaller
    assert 0 <= moda["overlap"] <= 1 and 0 <= pr["overlap"] <= 1
    for r in (moda, pr):
        assert len(r["per_task"]) == 2 and 0 < r["task_accuracy"] <= 1 and r["cut_s"] > 0
    assert (
        pr["time_vs_standard"] == 1.0 and pr["model_accuracy"] == rows["standard"]["model_accuracy"]
    )
    table = (results.with_suffix(".md")).read_text()
    assert "| moda |" in table and record["config_hash"] in table
    # A hand-written reading survives; a rerun trains nothing and rewrites the same table.
    (results.with_suffix(".md")).write_text(table + "\n## Reading\n\nkept\n")
    mtime = (results / "seed_0.json").stat().st_mtime
    assert main(argv) == 0
    assert (results / "seed_0.json").stat().st_mtime == mtime
    assert (results.with_suffix(".md")).read_text().endswith("## Reading\n\nkept\n")
