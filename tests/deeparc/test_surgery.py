"""Block removal/addition as new models with carried parameters; compression search (§8.4)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import models
from modjax.deeparc import surgery

X = jnp.asarray(np.random.default_rng(0).uniform(size=(4, 8, 8, 3)), jnp.float32)


def _model_with_identity_block(index_key, batch_norm=False):
    """ResNet-20 (tiny) whose block `index_key` has a zero residual branch: an identity map."""
    model = models.get_model("resnet20", width=0.125, batch_norm=batch_norm)
    variables = model.init(jax.random.key(1), X)
    params = jax.tree.map(lambda a: a, variables["params"])
    conv2 = dict(params[index_key]["conv2"])
    conv2["conv"] = jax.tree.map(jnp.zeros_like, conv2["conv"])
    if batch_norm:
        conv2["bn"] = jax.tree.map(jnp.zeros_like, conv2["bn"])
    params[index_key] = {**params[index_key], "conv2": conv2}
    return model, {**variables, "params": params}


@pytest.mark.parametrize("batch_norm", [False, True])
def test_removing_an_identity_block_keeps_the_logits(batch_norm):
    # relu(0 + x) = x for the post-ReLU input x, so the block is the identity.
    model, variables = _model_with_identity_block("layer2_1", batch_norm)
    small, small_vars = surgery.remove_blocks(model, variables, [4])  # layer2.1 = block 4
    assert small.blocks == (3, 2, 3)
    np.testing.assert_allclose(
        small.apply(small_vars, X)[0], model.apply(variables, X)[0], rtol=1e-5, atol=1e-5
    )
    # The following block moved to layer2_1 with its parameters.
    chex_equal = jax.tree.map(
        np.array_equal, small_vars["params"]["layer2_1"], variables["params"]["layer2_2"]
    )
    assert all(jax.tree.leaves(chex_equal))


def test_adding_a_duplicate_of_an_identity_block_keeps_the_logits():
    model, variables = _model_with_identity_block("layer3_2")
    big, big_vars = surgery.add_blocks(model, variables, [8])
    assert big.blocks == (3, 3, 4)
    np.testing.assert_allclose(big.apply(big_vars, X)[0], model.apply(variables, X)[0], atol=1e-5)
    assert set(big_vars["params"]) >= {"layer3_2", "layer3_3"}


def test_cumulative_removal_and_removed_model_trains_shape():
    model = models.get_model("resnet20", width=0.125)
    variables = model.init(jax.random.key(0), X)
    m, v = surgery.remove_blocks(model, variables, [1, 2, 7])
    assert m.blocks == (1, 3, 2)
    logits, acts = m.apply(v, X)
    assert logits.shape == (4, 10) and "layer3.1" in acts and "layer3.2" not in acts
    assert set(v["batch_stats"]) == {k for k in v["params"] if k != "head"}
    rows = surgery.apply_cumulatively([1, 2], lambda removed: 1.0 - 0.1 * len(removed))
    assert [(r["removed"], r["accuracy"]) for r in rows] == [([], 1.0), ([1], 0.9), ([1, 2], 0.8)]


def test_compression_search_keeps_the_best_subset():
    calls = []

    def evaluate(removed):
        calls.append(removed)
        return 1.0 - 0.01 * sum(removed)

    rows = surgery.compression_search([2, 4, 6, 8], evaluate, max_remove=3, num_subsets=5, seed=0)
    assert [r["num_removed"] for r in rows] == [1, 2, 3]
    assert rows[0]["removed"] == [2] and len(rows[0]["tried"]) == 4  # all 4 singletons
    assert len(rows[1]["tried"]) == 5  # 5 of the 6 pairs
    for r in rows:
        assert r["accuracy"] == max(t["accuracy"] for t in r["tried"])
    assert rows[2]["tried"] and len(calls) == 4 + 5 + 4


@pytest.mark.parametrize(
    "remove,error,match",
    [
        ([3], ValueError, "block 3 \\(layer2.0\\): it is the first block of stage 2"),
        ([0], ValueError, "first block of stage 1"),
        ([9], ValueError, "block index 9 is out of range: the model has 9 blocks"),
        ([-1], ValueError, "block index -1 is out of range"),
        ([1, 1], ValueError, "repeats a block index"),
        ([1.0], TypeError, "index 1.0 must be an int"),
    ],
)
def test_bad_removals(remove, error, match):
    model = models.get_model("resnet20", width=0.125)
    variables = model.init(jax.random.key(0), X)
    with pytest.raises(error, match=match):
        surgery.remove_blocks(model, variables, remove)


def test_non_residual_model_and_bad_search_args():
    with pytest.raises(ValueError, match="model=LeNet5 has no residual blocks"):
        surgery.remove_blocks(models.get_model("lenet5"), {}, [1])
    with pytest.raises(ValueError, match="max_remove=0"):
        surgery.compression_search([1], lambda r: 0.0, max_remove=0)


def test_removable_blocks_exclude_each_stage_first():
    model = models.get_model("resnet20", width=0.125)
    assert surgery.removable(model) == [1, 2, 4, 5, 7, 8]  # blocks 0, 3, 6 start the stages
    variables = model.init(jax.random.key(0), X)
    for index in surgery.removable(model):
        surgery.remove_blocks(model, variables, [index])  # each is accepted
    with pytest.raises(ValueError, match="first block of stage 2"):
        surgery.remove_blocks(model, variables, [3])
