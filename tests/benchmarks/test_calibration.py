"""The harness refuses ratios its PyTorch side does not earn (issue 23)."""

import pytest

from benchmarks import _compare_report, torch_calibration

torch = pytest.importorskip("torch")


def _row(model, method, threads, torch_ms, modjax_ms=10.0):
    timing = {
        "modjax": {"median_s": modjax_ms / 1e3, "rounds_s": [modjax_ms / 1e3]},
        "torch": {"median_s": torch_ms / 1e3, "ratio_to_modjax": torch_ms / modjax_ms},
    }
    return {"model": model, "method": method, "threads": threads, "batch": 128, "failed": {},
            "timing": timing, "peak_mib": {}, "compile_s": {}, "memory_kind": "rss"}  # fmt: skip


def test_a_slow_in_harness_torch_withholds_every_ratio_of_its_model_and_threads():
    rows = [_row("lenet5", "standard", 2, 24.1), _row("lenet5", "moda", 2, 27.0),
            _row("lenet5", "standard", 1, 11.5), _row("simcnn", "standard", 1, 400.0)]  # fmt: skip
    info = {"calibration": {"lenet5@2": {"ms": 7.2}, "lenet5@1": {"ms": 11.2},
                            "simcnn@1": {"failed": "calibration of simcnn ... failed: boom"}}}  # fmt: skip
    status = _compare_report.calibration_status(rows, info)
    assert "24.1 ms is 3.35x plain PyTorch's 7.2 ms" in status[("lenet5", 2)]
    assert status[("lenet5", 1)] is None  # 11.5 / 11.2 is within 10%
    assert status[("simcnn", 1)].startswith("calibration failed: ")
    cells = [_compare_report._ratio_cell(status, r, r["timing"]["torch"]["ratio_to_modjax"])
             for r in rows]  # fmt: skip
    assert cells == ["withheld (uncalibrated)", "withheld (uncalibrated)", "**1.15**",
                     "withheld (uncalibrated)"]  # fmt: skip
    goals = "\n".join(_compare_report._goals(rows, info, status))
    assert "3 of 4 cases have no ratio" in goals and "met in 1 of 1" in goals


def test_calibration_runs_plain_pytorch_without_jax():
    got = torch_calibration.measure(dict(model="lenet5", width=0.25, threads=1, batch=16,
                                         rounds=3, steps=1, warmup=1))  # fmt: skip
    assert got["ms"] > 0 and len(got["rounds_ms"]) == 3 and not got["jax_loaded"]
    with pytest.raises(RuntimeError, match="calibration of nosuch at 1 threads failed"):
        torch_calibration.measure(dict(model="nosuch", width=0.25, threads=1, batch=16,
                                       rounds=3, steps=1, warmup=1))  # fmt: skip
