"""modjax.runs.module_sizes: keep trees by the id-model method, and the size/overlap table."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import models
from modjax import modular as mz
from modjax.runs import module_sizes

SHAPE = (8, 8, 1)
N = 10


@pytest.fixture(scope="module")
def parent():
    model = models.get_model("mlp", num_classes=N, depth=2)
    variables = jax.device_get(model.init(jax.random.key(0), jnp.zeros((1, *SHAPE))))
    return variables, mz.describe_parent(
        "mlp", dataset="digits", input_shape=SHAPE, num_classes=N, depth=2
    )


def _module(parent, c, k0, k1, method="moda"):
    keep = {"dense_0": np.asarray(k0, bool), "dense_1": np.asarray(k1, bool)}
    return mz.Module(keep, (c,), parent, method, 0.9, (), {})


def _kept_by_hand(k0, k1, classes):
    """Scalars an MLP-2 module keeps: 64·|k0| + |k0| + |k0|·|k1| + |k1| + |k1|·|T| + |T|."""
    a, b = int(np.sum(k0)), int(np.sum(k1))
    return 64 * a + a + a * b + b + b * classes + classes


def test_keep_trees_follow_the_pruned_form(parent):
    variables, desc = parent
    rng = np.random.default_rng(0)
    k0, k1 = rng.random(49) < 0.3, rng.random(49) < 0.5
    moda = _module(desc, 3, k0, k1)
    (tree,) = module_sizes.keep_trees([moda], variables, input_shape=SHAPE)
    assert jax.tree.structure(tree) == jax.tree.structure(variables["params"])
    assert sum(int(np.sum(x)) for x in jax.tree.leaves(tree)) == _kept_by_hand(k0, k1, 1)
    head = tree["head"]["kernel"]
    assert head[:, 3].sum() == k1.sum() and head[:, [0, 1, 2, 4]].sum() == 0  # class 3's column
    np.testing.assert_array_equal(tree["dense_0"]["bias"], k0)
    mwt = _module(desc, 3, k0, k1, method="mwt")  # MwT keeps every output of the classifier
    (tree,) = module_sizes.keep_trees([mwt], variables, input_shape=SHAPE)
    assert sum(int(np.sum(x)) for x in jax.tree.leaves(tree)) == _kept_by_hand(k0, k1, N)


def test_size_table_by_hand(parent):
    variables, desc = parent
    total = sum(np.size(x) for x in jax.tree.leaves(variables["params"]))
    full, half = np.ones(49, bool), np.arange(49) < 20
    modules = [
        _module(desc, 0, full, full),
        _module(desc, 1, full, full),
        _module(desc, 2, half, half),
    ]
    table = module_sizes.size_table(modules, variables, input_shape=SHAPE)
    rows = table["rows"]
    assert [r["class"] for r in rows] == [0, 1, 2] and table["pairs"] == 3
    assert rows[0]["unit_retention"] == 1.0 and rows[2]["unit_retention"] == pytest.approx(20 / 49)
    assert rows[0]["weight_retention"] == pytest.approx(_kept_by_hand(full, full, 1) / total)
    assert rows[2]["weight_retention"] == pytest.approx(_kept_by_hand(half, half, 1) / total)
    assert table["weight_retention"] == pytest.approx(
        np.mean([r["weight_retention"] for r in rows])
    )
    # Modules 0 and 1 share everything but their head columns and biases.
    shared01 = _kept_by_hand(full, full, 1) - 49 - 1
    shared02 = _kept_by_hand(half, half, 1) - 20 - 1
    assert table["overlap"] == pytest.approx((shared01 + 2 * shared02) / 3 / total)
    assert 0 < table["jaccard"] < 1 and 0 < table["coupling"] <= 1
    with pytest.raises(ValueError, match="at least 2 modules"):
        module_sizes.size_table(modules[:1], variables, input_shape=SHAPE)


def test_size_table_macs_and_compiled_flops(parent):
    variables, desc = parent
    full, half = np.ones(49, bool), np.arange(49) < 20
    modules = [_module(desc, 0, full, full), _module(desc, 2, half, half)]
    table = module_sizes.size_table(modules, variables, input_shape=SHAPE, flops=True)
    parent_macs = 64 * 49 + 49 * 49 + 49 * N
    assert table["parent_macs"] == parent_macs
    # XLA: 2 FLOPs per MAC, plus bias add and ReLU per hidden unit and a bias add per logit
    # (exact on XLA:CPU, tests/metrics/test_flops.py; 1% leaves other backends their fusion).
    assert table["parent_flops"] == pytest.approx(2 * parent_macs + 2 * (49 + 49) + N, rel=0.01)
    row = table["rows"][1]  # MODA: the module keeps class 2's logit only
    macs = 64 * 20 + 20 * 20 + 20 * 1
    assert row["macs"] == macs
    assert row["flops"] == pytest.approx(2 * macs + 2 * (20 + 20) + 1, rel=0.01)
    assert row["relative_macs"] == pytest.approx(macs / parent_macs)
    assert row["relative_flops"] == pytest.approx(row["flops"] / table["parent_flops"])
    plain = module_sizes.size_table(modules, variables, input_shape=SHAPE)  # FLOPs are opt-in
    assert "flops" not in plain["rows"][0] and plain["rows"][0]["macs"] == table["rows"][0]["macs"]
