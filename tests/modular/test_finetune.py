"""MwT task modules (METHODS §4.6): stratified validation split, head, fine-tune with selection."""

import jax
import numpy as np
import pytest

from modjax import data, models, train
from modjax.modular import finetune
from modjax.modular.prune import prune


def test_stratified_split_proportions_disjoint_deterministic():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    tr, va = data.stratified_split(labels, fraction=0.1, seed=3)
    assert len(np.intersect1d(tr, va)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(100))
    assert np.bincount(labels[va]).tolist() == [5, 3, 2]
    tr2, va2 = data.stratified_split(labels, fraction=0.1, seed=3)
    np.testing.assert_array_equal(va, va2)
    np.testing.assert_array_equal(tr, tr2)
    _, va3 = data.stratified_split(labels, fraction=0.1, seed=4)
    assert not np.array_equal(va, va3)
    # A class of 2 keeps one sample on each side; a class of 1 stays in train.
    tr, va = data.stratified_split(np.array([0, 0, 1]), fraction=0.1, seed=0)
    assert np.bincount(np.array([0, 0, 1])[va], minlength=2).tolist() == [1, 0]
    with pytest.raises(ValueError, match="fraction"):
        data.stratified_split(labels, fraction=1.0)


def _pruned_mlp():
    model = models.get_model("mlp", num_classes=10, depth=1)
    variables = model.init(jax.random.PRNGKey(0), np.zeros((1, 8, 8, 1), np.float32))
    keep = {"dense_0": np.arange(49) % 2 == 0}
    return prune(
        "mlp", {"depth": 1}, variables, keep, classes=None, method="mwt", input_shape=(8, 8, 1)
    )


def test_task_head_shapes_and_init():
    pm, pv = _pruned_mlp()
    model, variables = finetune.make_task_head(pm, pv, num_outputs=3, seed=0)
    head = variables["params"]["head"]
    assert head["kernel"].shape == (10, 3) and head["bias"].shape == (3,)
    bound = 1 / np.sqrt(10)
    assert np.all(np.abs(head["kernel"]) <= bound) and np.all(np.abs(head["bias"]) <= bound)
    logits, acts = model.apply(variables, np.zeros((2, 8, 8, 1), np.float32))
    assert logits.shape == (2, 3) and acts["backbone_logits"].shape == (2, 10)
    # The backbone's own output is unchanged by the wrapper.
    ref, _ = pm.apply(pv, np.ones((2, 8, 8, 1), np.float32))
    _, acts = model.apply(variables, np.ones((2, 8, 8, 1), np.float32))
    np.testing.assert_allclose(acts["backbone_logits"], ref, rtol=1e-6)


def test_finetune_improves_validation_and_selects_best_epoch():
    pm, pv = _pruned_mlp()
    images, labels = data.load("digits", "train")
    classes = [1, 3, 7]
    sel = np.isin(labels, classes)
    images, labels = images[sel], np.searchsorted(classes, labels[sel]).astype(np.int32)
    tr, va = data.stratified_split(labels, fraction=0.2, seed=0)
    model, variables = finetune.make_task_head(pm, pv, num_outputs=3, seed=0)
    pre = data.make_preprocess(data.get_info("digits"), augment=False)
    evaluate = train.make_eval_step(model=model, preprocess=pre, num_classes=3)

    def accuracy(v):
        s = [
            evaluate(v, b) for b in data.eval_batches(images[va], labels[va], global_batch_size=64)
        ]
        return sum(int(x["correct"]) for x in s) / sum(int(x["count"]) for x in s)

    before = accuracy(variables)
    result = finetune.finetune_task_module(
        model,
        variables,
        (images[tr], labels[tr]),
        (images[va], labels[va]),
        num_classes=3,
        train_preprocess=pre,
        eval_preprocess=pre,
        num_epochs=3,
        t_max=6,
        batch_size=32,
    )
    accs = [h["val_accuracy"] for h in result.history]
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert result.best_epoch == int(np.argmax(accs)) + 1
    assert result.best_val_accuracy == max(accs) > before + 0.2
    assert result.last_val_accuracy == accs[-1]
    assert accuracy(result.best_variables) == pytest.approx(result.best_val_accuracy)
    assert accuracy(result.last_variables) == pytest.approx(result.last_val_accuracy)
