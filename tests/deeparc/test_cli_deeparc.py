"""`modjax arch|shrink|repair` on a tiny trained ResNet workdir (digits): files and contents;
the shrunk and repaired networks as module directories that `modjax eval --module` reads."""

import argparse
import csv
import json

import numpy as np
import pytest

from modjax.cli import deeparc_cmd, main
from modjax.deeparc import network, pipeline, surgery
from modjax.modules import directory, identity
from modjax.runs import config as config_lib
from modjax.runs import training


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("deeparc_run")
    config = config_lib.TrainConfig(
        model="resnet14",
        dataset="digits",
        width=0.125,
        num_epochs=4,
        global_batch_size=64,
        train_examples=1024,
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
    printed = capsys.readouterr().out
    assert "skipped candidates [2]" in printed
    assert f"saved in {shrink_out / 'network'}" in printed
    assert (shrink_out / "shrink.png").is_file()
    # with --remove, the saved network is the parent without every listed block
    saved = directory.load(shrink_out / "network")
    assert saved.method == "deeparc" and list(saved.classes) == list(range(10))
    assert saved.info["deeparc"]["operation"] == "shrink"
    assert saved.info["deeparc"]["removed"] == [1, 5] == result["network"]["removed"]
    assert saved.metrics["accuracy"] == result["cumulative"][-1]["accuracy"]
    model, _ = network.load_network(saved)
    assert model.stage_blocks() == (1, 2, 1) == tuple(result["network"]["blocks"])

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
    saved = directory.load(repair_out / "network")
    assert saved.info["deeparc"]["operation"] == "repair"
    assert saved.info["deeparc"]["blocks"] == rep["selected"] == rep["network"]["blocks"]
    assert saved.metrics["accuracy"] == rep["after"]["clean_test"]
    restored = training.load_run(workdir)
    assert saved.parent["hash"] == identity.parent_hash(restored.variables)
    assert saved.metrics["hash"] != saved.parent["hash"]  # retrained blocks: new weights


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
    # Out-of-range indices are named with the valid range, before any evaluation or file.
    for flag in ("--remove", "--candidates"):
        out = workdir / f"z{flag}"
        argv = ["shrink", "--workdir", str(workdir), "--out", str(out), "--search", "1"]
        with pytest.raises(ValueError, match=rf"{flag} 99: no such block; the model has 6 blocks"):
            _run([*argv, flag, "3 99"])
        assert not out.exists()


def test_repair_refuses_a_budget_no_block_fits_and_an_attack_that_fools_nothing(workdir):
    base = ["repair", "--workdir", str(workdir), "--examples", "32", "--test-examples", "32"]
    out = workdir / "r1"
    with pytest.raises(ValueError, match=r"max_share=1e-05: no block fits"):
        _run([*base, "--out", str(out), "--max-trained-share", "0.00001"])
    assert not (out / "repair.json").exists()
    # A radius far below one grey level rounds every error image back to its original.
    out = workdir / "r2"
    with pytest.raises(ValueError, match="no successful attack"):
        _run([*base, "--out", str(out), "--eps", "0.001", "--steps", "1"])
    assert not (out / "repair.json").exists() and not (out / "network").exists()


def test_shrink_network_evaluates_alone_with_the_same_accuracy(workdir, tmp_path, capsys):
    out = tmp_path / "shrink"
    argv = ["shrink", "--workdir", str(workdir), "--out", str(out), "--remove", "1"]
    assert _run(argv) == 0
    result = json.loads((out / "shrink.json").read_text())
    shrunk = result["cumulative"][-1]
    assert shrunk["removed"] == [1] and result["examples"] == 360  # every test image
    capsys.readouterr()
    assert main(["eval", "--module", str(out / "network"), "--json"]) == 0
    value = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert value["method"] == "deeparc" and value["count"] == 360
    assert value["classes"] == list(range(10))
    assert np.isfinite(value["accuracy"])
    assert value["accuracy"] == pytest.approx(shrunk["accuracy"], abs=1e-6)
    # ... and a direct evaluation of the same surgery on the restored run agrees
    restored = training.load_run(workdir)
    model, variables = surgery.remove_blocks(restored.model, restored.variables, [1])
    images, labels = restored.test_data
    direct = pipeline.accuracy(
        model,
        variables,
        images,
        labels,
        preprocess=restored.preprocess,
        num_classes=restored.num_classes,
    )
    assert value["accuracy"] == pytest.approx(direct, abs=1e-6)
    assert value["parent"]["hash"] == identity.parent_hash(restored.variables)
    assert value["parent"]["step"] == restored.step
    assert main(["eval", "--module", str(out / "network")]) == 0
    printed = capsys.readouterr().out
    assert "deeparc module" in printed and f"accuracy {value['accuracy']:.4f}" in printed
    assert main(["eval", "--module", str(out / "network"), "--split", "train"]) == 2
    assert "--split train applies to --workdir" in capsys.readouterr().err


def test_shrink_finetune_rows_and_the_full_retraining_repair_baseline(workdir, capsys):
    out = workdir / "shrink_ft"
    argv = ["shrink", "--workdir", str(workdir), "--out", str(out), "--examples", "64",
            "--remove", "1", "--finetune-epochs", "1", "--finetune-examples", "256"]  # fmt: skip
    assert _run(argv) == 0
    result = json.loads((out / "shrink.json").read_text())
    tuned = result["finetune"]["accuracy"]
    assert set(tuned) == {"", "1"} and result["finetune"]["examples"] == 256
    assert all(0 <= a <= 1 for a in tuned.values())
    assert "after fine-tuning" in capsys.readouterr().out
    # The saved network stays the one without fine-tuning.
    assert (
        directory.load(out / "network").metrics["accuracy"] == result["cumulative"][-1]["accuracy"]
    )
    base = ["repair", "--workdir", str(workdir), "--examples", "32", "--test-examples", "32",
            "--top-k", "1", "--epochs", "1", "--steps", "2", "--learning-rate", "0.01"]  # fmt: skip
    assert _run([*base, "--out", str(workdir / "rep_all"), "--train-all", "--mse-weight", "0"]) == 0
    rep = json.loads((workdir / "rep_all" / "repair.json").read_text())
    assert rep["trained_share"] == 1.0 and rep["train_all"] and rep["mse_weight"] == 0.0
    with pytest.raises(SystemExit):
        _run([*base, "--mse-weight", "1.5"])
