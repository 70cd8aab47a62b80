"""experiments/moda_replace.py and the `moda_replace` table: §5.7 protocol, caches, the table."""

import csv
import json
import pathlib
import re
import sys

import jax
import numpy as np
import pytest

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[2] / "experiments"
sys.path.insert(0, str(EXPERIMENTS))

import moda_replace  # noqa: E402
import reproduce  # noqa: E402
import reproduce_replace  # noqa: E402

SMOKE = str(EXPERIMENTS / "configs" / "reproduce_smoke.py")


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"underfit_epoch": 5, "overfit_epoch": 3}, r"underfit_epoch=5, overfit_epoch=3"),
        ({"overfit_epoch": 201}, r"overfit_epoch=201, weak_epochs=200"),
        ({"weak_fraction": 0.0}, r"weak_fraction=0.0 must be in \(0, 1\]"),
        ({"target_classes": (2, 7)}, r"target_classes \[7\] are not strong classes"),
        ({"tau": 0.9}, r"unknown replacement settings \['tau'\]"),
    ],
)
def test_config_names_the_bad_value(overrides, match):
    with pytest.raises(ValueError, match=match):
        moda_replace.config(**overrides)


def test_cells_average_targets_per_seed_then_seeds():
    def seed(*pairs):
        return {
            "classes": [
                {"tc": i, "ove": {"moda": dict(tc=a, non_tc=b)}} for i, (a, b) in enumerate(pairs)
            ]
        }

    cells = reproduce_replace.cells(
        [seed((0.1, 0.0), (0.3, 0.02)), seed((0.2, -0.02), (0.0, 0.0))], "ove", "moda"
    )
    np.testing.assert_allclose(cells[0]["tc"], [10.0, 20.0])
    np.testing.assert_allclose(cells[1]["non_tc"], [2.0, 0.0])
    np.testing.assert_allclose(cells[2]["tc"], [20.0, 10.0])  # mean over TCs, per seed
    np.testing.assert_allclose(cells[2]["non_tc"], [1.0, -1.0])


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the guard is for CPU backends")
def test_paper_scale_on_cpu_needs_yes(tmp_path):
    with pytest.raises(SystemExit, match=r"meant for accelerators\. Pass --yes"):
        reproduce.main(["moda_replace", "--scale", "paper", "--workdir", str(tmp_path)])
    assert not (tmp_path / "settings.json").exists()


@pytest.mark.slow
def test_smoke_table_and_its_caches(tmp_path):
    work, out = tmp_path / "work", tmp_path / "res"
    args = ["moda_replace", "--scale-config", SMOKE, "--seeds", "1", "--no-progress"]
    args += ["--workdir", str(work), "--out", str(out)]
    assert reproduce.main(args) == 0
    seed_dir = work / "mlp_s0"
    results = [json.loads((seed_dir / "replace_tc2.json").read_text())]
    for r in results:
        assert r["test_samples"] > 0 and r["weak_train_samples"] >= 6
        for weak in ("und", "ove"):
            acc = {n: np.asarray(a) for n, a in r[weak]["per_class_accuracy"].items()}
            assert all(a.shape == (6,) and np.all((a >= 0) & (a <= 1)) for a in acc.values())
            for approach in ("cnns", "moda"):  # the changes are the per-class differences
                diff = acc[approach] - acc["weak"]
                assert r[weak][approach]["tc"] == pytest.approx(diff[5])
                assert r[weak][approach]["non_tc"] == pytest.approx(diff[:5].mean())
    assert (seed_dir / "strong.json").exists()
    text = out.with_suffix(".md").read_text()
    assert re.search(r"Strong model test accuracy .*: mlp \d+\.\d%", text)
    assert "| ove w/ mlp | MODA adapter | 1/1 |" in text and "| und w/ mlp | CNNSplitter" in text
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert len(rows) == 2 * 2 * 2 * 2  # weak states × approaches × (1 TC + mean) × tc/non_tc

    # Without the per-TC results, the cached networks give the same numbers (no training).
    weights = {p: p.stat().st_mtime for p in seed_dir.glob("*.msgpack")}
    assert len(weights) == 2  # strong + one weak model per TC
    (seed_dir / "replace_tc2.json").unlink()
    assert reproduce.main(args) == 0
    again = [json.loads((seed_dir / "replace_tc2.json").read_text())]
    assert again == results
    assert {p: p.stat().st_mtime for p in seed_dir.glob("*.msgpack")} == weights

    with pytest.raises(SystemExit, match=r"other settings \(differing: \['replace'\]\)"):
        other = str(tmp_path / "other.py")
        pathlib.Path(other).write_text(
            pathlib.Path(SMOKE).read_text().replace("strong_epochs=3", "strong_epochs=2")
        )
        reproduce.main(["moda_replace", "--scale-config", other, *args[3:]])
