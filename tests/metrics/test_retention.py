"""Tests for modjax.metrics kernel and weight retention: hand-computed cases and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import metrics, models
from tests.metrics._cases import U3

# ----------------------------------------------------------------------------- kernel retention


def test_kernel_retention_hand():
    krr = metrics.kernel_retention(U3)
    np.testing.assert_allclose(krr.per_class, [3 / 6, 2 / 6, 2 / 6])
    assert krr.mean == pytest.approx(7 / 18)


def test_task_kernel_retention_hand():
    assert metrics.task_kernel_retention(U3, [0, 1]) == pytest.approx(4 / 6)  # {0, 1, 2, 3}
    assert metrics.task_kernel_retention(U3, [2, 1]) == pytest.approx(4 / 6)  # {0, 2, 3, 5}
    assert metrics.task_kernel_retention(U3, [0, 1, 2]) == pytest.approx(5 / 6)
    assert metrics.task_kernel_retention(U3, [1]) == pytest.approx(2 / 6)
    with pytest.raises(ValueError, match="distinct"):
        metrics.task_kernel_retention(U3, [1, 1])
    with pytest.raises(ValueError, match=r"lie in \[0, 3\)"):
        metrics.task_kernel_retention(U3, [0, 3])


def test_composition_kernel_retention_hand_and_totals():
    assert metrics.RESCNN_TOTAL_KERNELS == models.count_conv_kernels(models.get_model("rescnn"))
    assert metrics.RESCNN_TOTAL_KERNELS_PARITY == 4228
    counts = [1000, 1144]
    assert metrics.composition_kernel_retention(counts, metrics.RESCNN_TOTAL_KERNELS) == 0.5
    parity = metrics.composition_kernel_retention(counts, metrics.RESCNN_TOTAL_KERNELS_PARITY)
    assert parity == pytest.approx(2144 / 4228)
    # Shared kernels count once per module, so the rate can exceed 1.
    assert metrics.composition_kernel_retention([4000, 4000], 4224) == pytest.approx(8000 / 4224)
    with pytest.raises(ValueError, match="must lie in"):
        metrics.composition_kernel_retention([5000], 4288)
    with pytest.raises(ValueError, match="total_kernels"):
        metrics.composition_kernel_retention([1], 0)


def test_kernel_retention_errors():
    with pytest.raises(TypeError, match="boolean"):
        metrics.kernel_retention(U3.astype(np.int32))
    with pytest.raises(ValueError, match="2 dimensions"):
        metrics.kernel_retention(U3[0])


# ----------------------------------------------------------------------------- weight retention


def _params_and_keep():
    """conv 1×1 2→3 (+BN), fc 3→2; the module keeps conv outputs {0, 2} and both classes."""
    params = {
        "conv": {"kernel": np.zeros((1, 1, 2, 3)), "bias": np.zeros(3)},
        "bn": {"scale": np.zeros(3), "bias": np.zeros(3)},
        "fc": {"kernel": np.zeros((3, 2)), "bias": np.zeros(2)},
        "conv_g": {"generator": {"fc1": {"kernel": np.zeros((2, 3))}}},
    }
    out = np.array([1, 0, 1], bool)
    keep = {
        "conv": {"kernel": np.broadcast_to(out, (1, 1, 2, 3)).copy(), "bias": out},
        "bn": {"scale": out, "bias": out},
        "fc": {"kernel": np.repeat(out[:, None], 2, axis=1), "bias": np.ones(2, bool)},
        "conv_g": {"generator": {"fc1": {"kernel": np.zeros((2, 3), bool)}}},
    }
    return params, keep


def test_weight_retention_hand():
    params, keep = _params_and_keep()
    # kept: conv kernel 4/6, conv bias 2/3, bn 4/6, fc kernel 4/6, fc bias 2/2 -> 16/23.
    assert metrics.weight_retention(keep, params) == pytest.approx(16 / 23)
    # The generator's 6 scalars (all dropped) join the denominator only on request.
    assert metrics.weight_retention(keep, params, include_generators=True) == pytest.approx(16 / 29)
    # Linear only: fc kernel 4/6 + fc bias 2/2 = 6/8 (conv, BN and the generator are ignored).
    assert metrics.linear_weight_retention(keep, params) == pytest.approx(6 / 8)
    assert metrics.linear_weight_retention(keep, params, include_generators=True) == pytest.approx(
        6 / 14
    )


def test_weight_retention_full_model_is_one():
    model = models.get_model("mlp", depth=2)
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
    keep = jax.tree.map(lambda p: np.ones(p.shape, bool), params)
    assert metrics.weight_retention(keep, params) == 1.0
    assert metrics.linear_weight_retention(keep, params) == 1.0


def test_weight_retention_errors():
    params, keep = _params_and_keep()
    bad = {**keep, "fc": {**keep["fc"], "bias": np.ones(3, bool)}}
    with pytest.raises(ValueError, match=r"keep_tree\['fc'\]\['bias'\] has shape \(3,\)"):
        metrics.weight_retention(bad, params)
    bad = {**keep, "fc": {**keep["fc"], "bias": np.ones(2, np.float32)}}
    with pytest.raises(TypeError, match="must be boolean"):
        metrics.weight_retention(bad, params)
    bad = {k: v for k, v in keep.items() if k != "bn"}
    with pytest.raises(ValueError, match="tree structure"):
        metrics.weight_retention(bad, params)
    conv_only = {"conv": params["conv"]}
    with pytest.raises(ValueError, match="no Linear"):
        metrics.linear_weight_retention({"conv": keep["conv"]}, conv_only)
