"""`modjax arch|shrink|repair` on a tiny trained ResNet workdir (digits): files and contents."""

import argparse
import csv
import json

import pytest

from modjax.cli import deeparc_cmd
from modjax.runs import config as config_lib
from modjax.runs import training


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("deeparc_run")
    config = config_lib.TrainConfig(
        model="resnet14",
        dataset="digits",
        width=0.125,
        num_epochs=1,
        global_batch_size=64,
        train_examples=256,
        num_devices=1,
        log_every=10,
        checkpoint_every=10,
    )
    training.train_and_evaluate(config, path, progress=False)
    return path


def _run(argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    deeparc_cmd.add_commands(sub)
    args = parser.parse_args(argv)
    return deeparc_cmd.HANDLERS[args.command](args)


def test_arch_shrink_repair(workdir, capsys):
    out = workdir / "arch"
    argv = ["--workdir", str(workdir), "--out", str(out), "--examples", "64"]
    assert (
        _run(["arch", *argv, "--batch-size", "32", "--passes", "1", "--thresholds", "0.5", "0.99"])
        == 0
    )
    with (out / "cka.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0][1:] == ["layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1"]
    assert all(float(rows[i][i]) == pytest.approx(1.0) for i in range(1, 7))
    modules = json.loads((out / "modules.json").read_text())
    assert [r["threshold"] for r in modules["sweep"]] == [0.5, 0.99]
    assert (out / "cka.png").stat().st_size > 0 and (out / "modularity.png").is_file()
    assert "modularity=" in capsys.readouterr().out

    shrink_out = workdir / "shrink"
    assert (
        _run(
            [
                "shrink",
                "--workdir",
                str(workdir),
                "--out",
                str(shrink_out),
                "--examples",
                "64",
                "--remove",
                "1 5",
                "--search",
                "1",
                "--candidates",
                "1,2,3",  # block 2 (layer2.0) starts stage 2: skipped, not an error
                "--subsets",
                "2",
            ]
        )
        == 0
    )
    result = json.loads((shrink_out / "shrink.json").read_text())
    assert [r["removed"] for r in result["cumulative"]] == [[], [1], [1, 5]]
    assert result["search"][0]["removed"] in ([1], [3])
    assert result["skipped_candidates"] == [2]
    assert "skipped candidates [2]" in capsys.readouterr().out
    assert (shrink_out / "shrink.png").is_file()

    repair_out = workdir / "repair"
    assert (
        _run(
            [
                "repair",
                "--workdir",
                str(workdir),
                "--out",
                str(repair_out),
                "--examples",
                "32",
                "--test-examples",
                "32",
                "--top-k",
                "2",
                "--epochs",
                "1",
                "--steps",
                "2",
                "--learning-rate",
                "0.01",
                "--max-trained-share",
                "0.3",
            ]
        )
        == 0
    )
    rep = json.loads((repair_out / "repair.json").read_text())
    assert 1 <= len(rep["selected"]) <= 2 and 0 < rep["trained_share"] <= 0.3
    assert rep["max_share"] == 0.3 and rep["top_k"] == 2
    assert set(rep["after"]) == {"mixed", "error_only", "clean_test", "error_test"}


def test_shrink_errors(workdir):
    with pytest.raises(ValueError, match="first block of stage 2"):
        _run(
            [
                "shrink",
                "--workdir",
                str(workdir),
                "--out",
                str(workdir / "x"),
                "--examples",
                "16",
                "--remove",
                "2",
            ]
        )
    with pytest.raises(ValueError, match="needs --remove and/or --search"):
        _run(["shrink", "--workdir", str(workdir), "--out", str(workdir / "y"), "--examples", "16"])
