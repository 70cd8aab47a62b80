"""`validation_split`: a stratified, seeded hold-out of the training examples, used to select."""

import dataclasses

import numpy as np
import pytest

from modjax.runs import build, restore
from modjax.runs.config import TrainConfig


def test_the_split_is_held_out_stratified_and_seeded():
    whole = build.build_run(TrainConfig())
    run = build.build_run(TrainConfig(validation_split=0.2, seed=3))
    (tx, ty), (vx, vy) = run.train_data, run.validation_data
    assert len(ty) + len(vy) == len(whole.train_data[1])
    # Every class gives its share (±1 image) to the validation set.
    for c in range(10):
        n = np.sum(whole.train_data[1] == c)
        assert abs(np.sum(vy == c) - 0.2 * n) <= 1, c
    # Disjoint: no validation image is a training image.
    rows = {x.tobytes() for x in tx}
    assert not any(x.tobytes() in rows for x in vx)
    again = build.build_run(TrainConfig(validation_split=0.2, seed=3))
    np.testing.assert_array_equal(again.validation_data[1], vy)
    other = build.build_run(TrainConfig(validation_split=0.2, seed=4))
    assert not np.array_equal(other.validation_data[0], vx)
    assert whole.validation_data is None
    with pytest.raises(ValueError, match=r"split='validation': this run has \['test', 'train'\]"):
        build.evaluate(whole, None, split="validation")


def test_selection_data_is_the_validation_split_else_training_images():
    run = build.build_run(TrainConfig(validation_split=0.1))
    restored = restore.RestoredRun(
        workdir=None, config=run.config, run=run, variables=None, step=0, preprocess=None
    )
    (x, y), source = restored.selection_data()
    assert source == f"{len(run.validation_data[1])} validation split"
    np.testing.assert_array_equal(y, run.validation_data[1])
    (x, y), source = restored.selection_data(50, seed=1)
    assert len(y) == 50 and source == "50 validation split"
    plain = dataclasses.replace(restored, run=build.build_run(TrainConfig()))
    (_, y), source = plain.selection_data(100)
    assert source == "100 training examples (the run has no validation split)"


def test_a_run_written_before_the_field_resumes():
    old = {k: v for k, v in TrainConfig().to_json().items() if k != "validation_split"}
    assert restore.differing_settings(TrainConfig().to_json(), old) == []
    diff = restore.differing_settings(TrainConfig(validation_split=0.1).to_json(), old)
    assert diff == [("validation_split", 0.1)]
