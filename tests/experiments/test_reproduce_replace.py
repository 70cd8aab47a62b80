"""The `moda_replace` table of experiments.reproduce: §5.7 settings, caches, the table, old caches."""

import csv
import importlib
import json
import re

import jax
import numpy as np
import pytest

from experiments.reproduce import replace, replace_table
from modjax.runs import config as config_lib
from tests.conftest import REPO

reproduce = importlib.import_module("experiments.reproduce.__main__")
CONFIGS = REPO / "experiments" / "reproduce" / "configs"


def _paper():
    return config_lib.load_config_file(CONFIGS / "paper.py")["replace"]


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"underfit_epoch": 5, "overfit_epoch": 3}, r"underfit_epoch=5, overfit_epoch=3"),
        ({"overfit_epoch": 201}, r"overfit_epoch=201, weak_epochs=200"),
        ({"weak_fraction": 0.0}, r"weak_fraction=0.0 must be in \(0, 1\]"),
        ({"target_classes": (2, 7)}, r"target_classes \[7\] are not strong classes"),
        ({"tau": 0.9}, r"unknown \['tau'\], missing \[\]"),
    ],
)
def test_settings_name_the_bad_value(overrides, match):
    with pytest.raises(ValueError, match=match):
        replace.settings_for({**_paper(), **overrides}, "vgg16_moda")


def test_settings_for_adds_the_strong_model_in_order():
    settings = replace.settings_for(_paper(), "resnet18")
    assert list(settings) == list(replace.SETTINGS)
    assert settings["strong_model"] == {"name": "resnet18", "width": 1.0}
    missing = {k: v for k, v in _paper().items() if k != "threshold"}
    with pytest.raises(ValueError, match=r"missing \['threshold'\]"):
        replace.settings_for(missing, "resnet18")


def test_cells_average_targets_per_seed_then_seeds():
    def seed(*pairs):
        return {
            "classes": [
                {"tc": i, "ove": {"change": {"moda_adapter": dict(tc=a, mean_non_tc=b)}}}
                for i, (a, b) in enumerate(pairs)
            ]
        }

    cells = replace_table.cells(
        [seed((0.1, 0.0), (0.3, 0.02)), seed((0.2, -0.02), (0.0, 0.0))], "ove", "moda_adapter"
    )
    np.testing.assert_allclose(cells[0]["tc"], [10.0, 20.0])
    np.testing.assert_allclose(cells[1]["mean_non_tc"], [2.0, 0.0])
    np.testing.assert_allclose(cells[2]["tc"], [20.0, 10.0])  # mean over TCs, per seed
    np.testing.assert_allclose(cells[2]["mean_non_tc"], [1.0, -1.0])


def test_results_cached_under_the_old_key_names_are_read():
    old = {"epoch": 1, "weak_accuracy": 0.5}
    old["per_class_accuracy"] = {"weak": [0.5, 0.5], "cnns": [0.6, 0.5], "moda": [0.4, 0.7]}
    old["cnns"], old["moda"] = {"tc": 0.0, "non_tc": 0.1}, {"tc": 0.2, "non_tc": -0.1}
    record = {"tc": 3, "und": old, "ove": json.loads(json.dumps(old))}
    new = replace.upgrade_result(record)["und"]
    assert new["accuracy"] == {"weak": 0.5}
    assert new["per_class_accuracy"]["moda_adapter"] == [0.4, 0.7]
    assert new["change"] == {
        "cnnsplitter": {"tc": 0.0, "mean_non_tc": 0.1},
        "moda_adapter": {"tc": 0.2, "mean_non_tc": -0.1},
    }
    assert replace.upgrade_result(json.loads(json.dumps(record))) == record  # idempotent


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the guard is for CPU backends")
def test_paper_scale_on_cpu_needs_yes(tmp_path):
    with pytest.raises(SystemExit, match=r"meant for accelerators\. Pass --yes"):
        reproduce.main(["moda_replace", "--scale", "paper", "--workdir", str(tmp_path)])
    assert not (tmp_path / "settings.json").exists()


@pytest.mark.slow
def test_smoke_table_and_its_caches(tmp_path):
    work, out = tmp_path / "work", tmp_path / "res"
    args = ["moda_replace", "--scale", "smoke", "--seeds", "1", "--no-progress"]
    args += ["--workdir", str(work), "--out", str(out)]
    assert reproduce.main(args) == 0
    seed_dir = work / "mlp_s0"
    results = [json.loads((seed_dir / "replace_tc2.json").read_text())]
    for r in results:
        assert r["test_samples"] > 0 and r["weak_train_samples"] >= 6
        for weak in ("und", "ove"):
            acc = {n: np.asarray(a) for n, a in r[weak]["per_class_accuracy"].items()}
            assert set(acc) == {"weak", "cnnsplitter", "moda_adapter"}
            assert all(a.shape == (6,) and np.all((a >= 0) & (a <= 1)) for a in acc.values())
            for approach in ("cnnsplitter", "moda_adapter"):  # changes = per-class differences
                diff = acc[approach] - acc["weak"]
                assert r[weak]["change"][approach]["tc"] == pytest.approx(diff[5])
                assert r[weak]["change"][approach]["mean_non_tc"] == pytest.approx(diff[:5].mean())
    assert (seed_dir / "strong.json").exists()
    text = out.with_suffix(".md").read_text()
    assert re.search(r"Strong model test accuracy .*: mlp \d+\.\d%", text)
    assert "| ove w/ mlp | MODA adapter | 1/1 |" in text and "| und w/ mlp | CNNSplitter" in text
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert len(rows) == 2 * 2 * 2 * 2  # weak states × approaches × (1 TC + mean) × tc/non-TC
    assert {r["approach"] for r in rows} == {"cnnsplitter", "moda_adapter"}

    # Without the per-TC results, the cached networks give the same numbers (no training).
    weights = {p: p.stat().st_mtime for p in seed_dir.glob("*.msgpack")}
    assert len(weights) == 2  # strong + one weak model per TC
    (seed_dir / "replace_tc2.json").unlink()
    assert reproduce.main(args) == 0
    again = [json.loads((seed_dir / "replace_tc2.json").read_text())]
    assert again == results
    assert {p: p.stat().st_mtime for p in seed_dir.glob("*.msgpack")} == weights

    with pytest.raises(SystemExit, match=r"other settings \(differing: \['replace'\]\)"):
        other = tmp_path / "other.py"
        smoke = (CONFIGS / "smoke.py").read_text()
        other.write_text(smoke.replace('"strong_epochs": 3', '"strong_epochs": 2'))
        (tmp_path / "paper.py").write_text((CONFIGS / "paper.py").read_text())  # its base
        reproduce.main(["moda_replace", "--scale-config", str(other), *args[3:]])
