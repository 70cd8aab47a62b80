"""`training.load_run`: a workdir's checkpoint restored as one `RestoredRun`."""

import dataclasses
import json
import shutil

import jax
import numpy as np
import pytest

from modjax import checkpoint
from modjax.modules import identity, transform
from modjax.runs import config as config_lib
from modjax.runs import training


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("load_run") / "run"
    config = config_lib.TrainConfig(
        model="mlp",
        depth=2,
        dataset="digits",
        num_epochs=1,
        global_batch_size=64,
        train_examples=512,
        log_every=4,
        checkpoint_every=4,
        num_devices=1,
    )
    summary = training.train_and_evaluate(config, workdir, progress=False)
    return workdir, summary


def test_load_run_restores_the_latest_checkpoint(trained):
    workdir, summary = trained
    restored = training.load_run(workdir)
    assert isinstance(restored, training.RestoredRun)
    assert dataclasses.is_dataclass(restored) and restored.step == summary["steps"] == 8
    with pytest.raises(dataclasses.FrozenInstanceError):
        restored.step = 1
    leaves = jax.tree.leaves(restored.variables)
    assert leaves and all(isinstance(v, np.ndarray) for v in leaves)  # host arrays
    # the restored variables are the trained ones: the same test accuracy as the run's summary
    result = training.evaluate(restored.run, restored.variables)
    assert result["accuracy"] == pytest.approx(summary["test_accuracy"])
    assert restored.model is restored.run.model and restored.num_classes == 10
    assert restored.info.name == "digits" and restored.input_shape == (8, 8, 1)
    assert len(restored.train_data[1]) == 512 and len(restored.test_data[1]) == 360
    assert restored.class_names == [str(c) for c in range(10)]
    assert restored.workdir == workdir and restored.config.depth == 2
    x = restored.preprocess(restored.test_data[0][:3], None)
    assert x.dtype == np.float32 and x.shape == (3, 8, 8, 1)
    assert restored.preprocess_spec() == transform.preprocess_spec(
        restored.info, normalize=restored.config.normalize, image_size=None
    )
    parent = restored.describe(checkpoint="here")
    assert parent["hash"] == identity.parent_hash(restored.variables)
    assert parent["step"] == 8 and parent["checkpoint"] == "here" and parent["model"] == "mlp"
    assert parent["model_kwargs"]["depth"] == 2 and parent["input_shape"] == [8, 8, 1]


def test_load_run_at_an_earlier_step_and_with_a_data_dir(trained, tmp_path):
    workdir, _ = trained
    latest = training.load_run(workdir)
    early = training.load_run(workdir, str(tmp_path), step=4)
    assert early.step == 4 and early.config.data_dir == str(tmp_path)
    assert identity.parent_hash(early.variables) != identity.parent_hash(latest.variables)
    with checkpoint.open_read_only(workdir / "checkpoints") as manager:
        assert 4 in manager.all_steps()


def test_load_run_names_what_is_missing(trained, tmp_path):
    workdir, _ = trained
    with pytest.raises(FileNotFoundError, match=r"config\.json not found"):
        training.load_run(tmp_path)
    (tmp_path / "config.json").write_text(
        json.dumps(json.loads((workdir / "config.json").read_text()))
    )
    with pytest.raises(FileNotFoundError, match="checkpoints not found.*modjax train"):
        training.load_run(tmp_path)
    shutil.copytree(workdir / "checkpoints", tmp_path / "checkpoints")
    with pytest.raises(checkpoint.CheckpointError, match="step 3"):
        training.load_run(tmp_path, step=3)
