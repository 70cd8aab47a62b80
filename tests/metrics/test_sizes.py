"""Tests for modjax.metrics module MACs and parameters relative to the parent."""

import jax
import jax.numpy as jnp
import pytest

from modjax import metrics, models

# ---------------------------------------------------------------------------- MACs and params


def _mlp(hidden):
    model = models.get_model("mlp", depth=1, hidden=hidden)
    params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
    return model, params, (28, 28, 1)


def test_module_macs_and_params_hand():
    module, parent = _mlp(7), _mlp(49)
    s = metrics.module_macs_and_params(module, parent)
    # MACs: 784·h + h·10; params: 784·h + h + h·10 + 10.
    assert (s.macs, s.parent_macs) == (784 * 7 + 70, 784 * 49 + 490)
    assert (s.params, s.parent_params) == (5575, 38965)
    assert s.relative_macs == pytest.approx(5558 / 38906)
    assert s.relative_params == pytest.approx(5575 / 38965)


def test_module_macs_and_params_errors():
    module, parent = _mlp(7), _mlp(49)
    with pytest.raises(ValueError, match="module params have 38965 scalars"):
        metrics.module_macs_and_params((module[0], parent[1], module[2]), parent)
    with pytest.raises(ValueError, match="differs from the parent"):
        small = models.get_model("mlp", depth=1, hidden=7)
        p = small.init(jax.random.key(0), jnp.zeros((1, 14, 14, 1)))["params"]
        metrics.module_macs_and_params((small, p, (14, 14, 1)), parent)
    with pytest.raises(ValueError, match="triple"):
        metrics.module_macs_and_params(module[:2], parent)


def test_module_macs_and_params_with_compiled_flops():
    module, parent = _mlp(7), _mlp(49)
    s = metrics.module_macs_and_params(module, parent, flops=True)
    # XLA: 2 FLOPs per MAC, plus bias add and ReLU per hidden unit and a bias add per logit
    # (exact on XLA:CPU, tests/metrics/test_flops.py; 1% leaves other backends their fusion).
    assert s.flops == pytest.approx(2 * s.macs + 2 * 7 + 10, rel=0.01)
    assert s.parent_flops == pytest.approx(2 * s.parent_macs + 2 * 49 + 10, rel=0.01)
    assert s.relative_flops == pytest.approx(s.flops / s.parent_flops)
    assert metrics.module_macs_and_params(module, parent).flops is None  # opt-in
    mwt = models.get_model("mlp", depth=1, mask_generators=True)
    p = mwt.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
    with pytest.raises(ValueError, match="parent MLP has MwT mask generators"):
        metrics.module_macs_and_params(module, (mwt, p, (28, 28, 1)), flops=True)
    s = metrics.module_macs_and_params(
        module, (mwt, p, (28, 28, 1)), flops=True, include_generators=True
    )
    assert s.parent_flops > 2 * s.parent_macs  # generator MACs counted: their work is compiled
