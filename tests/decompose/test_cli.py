"""`modjax decompose` end to end on the smoke MLP run (handler called directly)."""

import argparse
import json

import jax
import numpy as np
import pytest

from modjax import decompose as dc
from modjax import models
from modjax.cli import main
from modjax.cli.decompose_cmd import add_parser, decompose
from modjax.modules import identity
from modjax.runs import decompose as decompose_run
from modjax.runs import training
from tests.conftest import REPO

SMOKE = str(REPO / "experiments" / "configs" / "smoke.py")


def _args(*argv):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["decompose", *argv])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pr") / "run"
    assert main(["train", "--config", SMOKE, "--workdir", str(workdir), "--no-progress"]) == 0
    return workdir


def test_decompose_writes_one_module_per_class(run, tmp_path, capsys):
    out = tmp_path / "mods"
    flags = ["--confidence", "0", "--positives", "3", "--negatives", "2", "--ti", "i"]
    assert decompose(_args("--workdir", str(run), "--out", str(out), *flags)) == 0
    summary = json.loads((out / "modules.json").read_text())
    assert len(summary["classes"]) == 10 and summary["settings"]["ti"] == "i"
    assert 0 <= summary["composed_accuracy"] <= 1
    printed = capsys.readouterr().out
    assert "edge_rate" in printed and "voting-composed" in printed
    assert (out / "modules.png").read_bytes()[:4] == b"\x89PNG"  # plots.module_overview
    module = dc.load_decomposed(out / "class_4")
    assert module.class_id == 4
    # No absolute (user) path in the manifest: the workdir's last two parts (tmp is not below cwd).
    assert module.parent["checkpoint"] == f"{run.parent.name}/run"
    assert str(run.resolve()) not in (out / "class_4" / "manifest.json").read_text()
    channels, pruned = dc.load_pruned(out / "class_4")
    x = np.asarray(jax.random.uniform(jax.random.key(0), (7, 8, 8, 1)))
    full = models.get_model("mlp", depth=2).apply({"params": module.params}, x)[0]
    small = models.get_model("mlp", depth=2, channels=channels).apply({"params": pruned}, x)[0]
    np.testing.assert_allclose(np.asarray(small), np.asarray(full), rtol=1e-5, atol=1e-5)
    # Both accuracies against a one-shot reference: the vote and the parent's argmax over the
    # whole preprocessed test split (the summary's come from padded eval-step batches).
    restored = training.load_run(run)
    images, labels = restored.test_data
    x = np.asarray(restored.preprocess(images, jax.random.key(0))).reshape(len(labels), -1)
    stacked, own, task = dc.compose([dc.load_decomposed(out / f"class_{c}") for c in range(10)])
    vote = np.asarray(dc.predict(stacked, own, task, x))
    parent = np.asarray(dc.forward(dc.dense_layers(restored.variables["params"]), x)).argmax(-1)
    assert summary["composed_accuracy"] == pytest.approx(np.mean(vote == labels), abs=1e-12)
    assert summary["model_accuracy"] == pytest.approx(np.mean(parent == labels), abs=1e-12)
    assert summary["method"] == "panrajan"


def test_decompose_names_its_parent_by_the_one_content_hash(run, tmp_path):
    out = tmp_path / "mods"
    flags = ["--confidence", "0", "--positives", "3", "--negatives", "2", "--cm", "c"]
    assert decompose(_args("--workdir", str(run), "--out", str(out), *flags)) == 0
    restored = training.load_run(run)
    expected = identity.parent_hash(restored.variables)
    summary = json.loads((out / "modules.json").read_text())
    assert summary["parent"]["hash"] == expected and summary["step"] == restored.step
    for c in (0, 7):
        manifest = json.loads((out / f"class_{c}" / "manifest.json").read_text())
        assert manifest["parent"]["hash"] == expected
        assert manifest["parent"]["step"] == restored.step
        assert identity.parent_key(manifest["parent"]) == identity.parent_key(restored.describe())
        assert manifest["info"]["class_names"] == [str(c)]
        assert manifest["info"]["preprocess"] == restored.preprocess_spec()
    assert not list(tmp_path.glob(".mods.tmp-*"))  # written through one atomic directory


def test_decompose_errors_name_the_problem(run, tmp_path):
    with pytest.raises(ValueError, match=r"class \d+ has \d+ training samples .*--confidence"):
        decompose(_args("--workdir", str(run), "--out", str(tmp_path / "a")))
    assert not (tmp_path / "a").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text((run / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="checkpoints not found"):
        decompose(_args("--workdir", str(empty), "--out", str(tmp_path / "b")))


def test_compose_and_eval_take_panrajan_modules(run, tmp_path, capsys):
    out = tmp_path / "mods"
    flags = ["--confidence", "0", "--positives", "3", "--negatives", "2", "--cm", "c"]
    assert decompose(_args("--workdir", str(run), "--out", str(out), *flags)) == 0
    parent = json.loads((out / "modules.json").read_text())["parent"]
    capsys.readouterr()
    result = tmp_path / "composed.json"
    argv = ["compose", "--modules", str(out / "class_1"), str(out / "class_4")]
    assert main([*argv, "--out", str(result)]) == 0
    value = json.loads(result.read_text())
    assert value["classes"] == [1, 4] and 0 <= value["accuracy"] <= 1
    assert [r["class"] for r in value["per_class"]] == [1, 4]
    assert [(g["method"], g["hash"]) for g in value["groups"]] == [("panrajan", parent["hash"])]
    capsys.readouterr()
    assert main(["eval", "--module", str(out / "class_4"), "--json"]) == 0
    one = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert one["method"] == "panrajan" and one["classes"] == [4] and one["count"] == 36
    assert one["parent"]["hash"] == parent["hash"]
    with pytest.raises(ValueError, match="--cm bln is the CNN method's"):
        decompose(_args("--workdir", str(run), "--out", str(tmp_path / "x"), "--cm", "bln"))
    with pytest.raises(ValueError, match=r"--out .*mods exists"):
        decompose(_args("--workdir", str(run), "--out", str(out)))


@pytest.mark.parametrize(
    "model, options, match",
    [
        ("mlp", {"cm": "bln"}, "--cm bln is the CNN method's; an MLP parent takes rie"),
        ("resnet20_nobn", {"cm": "rie"}, r"--cm rie is the dense method's; a CNN parent"),
        ("resnet20_nobn", {"ti": "i", "parity": True}, "--ti, --parity: options of the dense"),
        ("resnet20", {}, "BatchNorm"),
        ("lenet5", {}, "unsupported architecture 'lenet5'"),
    ],
)
def test_check_options_refuses_the_other_methods_options(model, options, match):
    kwargs = {"ti": "sne", "cm": None, "parity": False, "paper_constants": False, **options}
    with pytest.raises(ValueError, match=match):
        decompose_run.check_options(model, **kwargs)


def test_check_options_defaults_per_method():
    kwargs = {"ti": "sne", "cm": None, "parity": False, "paper_constants": False}
    assert decompose_run.check_options("mlp", **kwargs) == "rie"
    assert decompose_run.check_options("resnet20_nobn", **kwargs) == "bln"
    assert decompose_run.check_options("mlp", **{**kwargs, "cm": "none"}) == "none"


def test_replacement_across_depths_from_the_cli_equals_the_library_vote(run, tmp_path, capsys):
    """FSE'20 replacement: class 4's module of a 1-hidden-layer MLP replaces the smoke MLP's (2
    layers). `compose --replace` and `decompose.replace` + `compose_groups` agree exactly."""
    shallow = tmp_path / "shallow"
    assert main(["train", "--config", SMOKE, "--depth", "1", "--workdir", str(shallow),
                 "--no-progress"]) == 0  # fmt: skip
    flags = ["--confidence", "0", "--positives", "3", "--negatives", "2", "--cm", "c"]
    deep_mods, shallow_mods = tmp_path / "deep_mods", tmp_path / "shallow_mods"
    assert decompose(_args("--workdir", str(run), "--out", str(deep_mods), *flags)) == 0
    assert decompose(_args("--workdir", str(shallow), "--out", str(shallow_mods), *flags)) == 0
    capsys.readouterr()
    result = tmp_path / "replaced.json"
    argv = ["compose", "--modules", str(deep_mods), "--replace", str(shallow_mods / "class_4")]
    assert main([*argv, "--out", str(result)]) == 0, capsys.readouterr().err
    value = json.loads(result.read_text())
    assert sorted(value["classes"]) == list(range(10))  # output ids are the class ids
    assert [g["classes"] for g in value["groups"]] == [[0, 1, 2, 3, 5, 6, 7, 8, 9], [4]]

    from modjax.decompose.io import from_dir
    from modjax.modules import directory, transform
    from modjax.runs.compose import load_split

    deep = [from_dir(directory.load(deep_mods / f"class_{c}")) for c in range(10)]
    donor = from_dir(directory.load(shallow_mods / "class_4"))
    with pytest.raises(ValueError, match="different shapes"):
        dc.compose(dc.replace(deep, [donor]), labels=list(range(10)))  # one stack cannot hold both
    mods = dc.replace(deep, [donor])
    assert [m.class_id for m in mods] == list(range(10)) and mods[4] is donor
    groups = dc.compose_groups(mods, labels=list(range(10)))
    assert [len(g.own) for g in groups] == [9, 1]
    images, labels = load_split("digits", "test", None)
    spec = directory.section(directory.load(deep_mods / "class_0"), "preprocess")
    x = np.asarray(transform.eval_transform(spec)(images.astype(np.float32)))
    pred = np.asarray(dc.predict_groups(groups, x.reshape(len(x), -1)))
    assert np.mean(pred == labels) == pytest.approx(value["accuracy"])
    capsys.readouterr()
    bad = ["compose", "--modules", str(deep_mods / "class_0"), "--replace", str(shallow_mods)]
    assert main(bad) == 2
    assert "no module of --modules scores it" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"donor classes \[4\] have no module to replace"):
        dc.replace(deep[:3], [donor])


@pytest.mark.parametrize("confidence", [1.0, 1.5, -0.1, float("nan")])
def test_decompose_workdir_refuses_a_confidence_outside_the_cli_range(tmp_path, confidence):
    """The library keeps the range `--confidence` states in its help, [0, 1), before any work."""
    with pytest.raises(ValueError, match=r"--confidence=.* must be in \[0, 1\)"):
        decompose_run.decompose_workdir(
            tmp_path / "no_run", tmp_path / "out", confidence=confidence
        )
    assert list(tmp_path.iterdir()) == []
