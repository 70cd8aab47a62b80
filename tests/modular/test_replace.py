"""Module replacement (METHODS §5.7): adapter inputs, adapter training, baseline patch, metric."""

import jax.numpy as jnp
import numpy as np
import pytest

from modjax import loop
from modjax.modular import replace


def test_adapter_inputs_put_strong_logit_at_target_column():
    weak = jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    strong = jnp.array([[9.0], [8.0]])
    x = replace.make_adapter_inputs(weak, strong, target_index=1)
    np.testing.assert_array_equal(x, [[1.0, 9.0, 3.0], [4.0, 8.0, 6.0]])
    # TC last (the paper's layout): [weak non-TC logits..., strong TC logit].
    x = replace.make_adapter_inputs(weak, jnp.array([7.0, 0.5]), target_index=2)
    np.testing.assert_array_equal(x, [[1.0, 2.0, 7.0], [4.0, 5.0, 0.5]])
    with pytest.raises(ValueError, match="target_index"):
        replace.make_adapter_inputs(weak, strong, target_index=3)


def test_init_adapter_matches_spec():
    p = replace.init_adapter(6, seed=0)
    assert p["kernel"].shape == (6, 6) and p["bias"].shape == (6,)
    assert not np.any(p["bias"]) and 0.003 < float(np.std(p["kernel"])) < 0.02


def test_adapter_training_reduces_loss_on_separable_data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300).astype(np.int32)
    x = np.eye(3, dtype=np.float32)[y] * 3 + 0.3 * rng.normal(size=(300, 3)).astype(np.float32)
    before = float(replace.adapter_loss(replace.init_adapter(3, seed=0), x, y))
    params = replace.fit_adapter(x, y, num_epochs=5, batch_size=64, seed=0)
    after = float(replace.adapter_loss(params, x, y))
    assert after < 0.5 * before
    acc = np.mean(np.argmax(replace.adapter_apply(params, x), -1) == y)
    assert acc > 0.95


def test_train_adapter_and_replaced_apply_use_frozen_networks():
    # Weak model: logits = the image's first 3 pixels; strong: 5 * indicator of class 2.
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 256).astype(np.int32)
    images = np.zeros((256, 2, 2, 1), np.float32)
    images[:, 0, 0, 0] = (y == 0) * 2.0
    images[:, 0, 1, 0] = (y == 1) * 2.0  # the weak model is blind to class 2 ...
    images[:, 1, 1, 0] = (y == 2) * 1.0  # ... which only the strong module sees

    def weak(x):
        return x.reshape(len(x), -1)[:, :3]

    def strong(x):
        return 5.0 * x[:, 1, 1, 0]

    batches = [{"image": images[i : i + 64], "label": y[i : i + 64]} for i in range(0, 256, 64)]
    params = replace.train_adapter(weak, strong, batches, target_index=2, num_epochs=10)
    logits = replace.replaced_apply(weak, strong, params, target_index=2)(jnp.asarray(images))
    assert logits.shape == (256, 3)
    assert np.mean(np.argmax(logits, -1) == y) > 0.95
    acc = loop.evaluate_predict(
        replace.replaced_apply(weak, strong, params, target_index=2),
        images,
        y,
        num_classes=3,
        batch_size=100,
    )["per_class_accuracy"]
    assert acc.shape == (3,) and np.all(acc > 0.9)


def test_cnnsplitter_patch_by_hand():
    weak = jnp.log(jnp.array([[0.5, 0.25, 0.25]]))
    out = replace.cnnsplitter_patch(weak, jnp.array([3.0]), 1.0, 5.0, target_index=1)
    np.testing.assert_allclose(out, [[0.5, 0.5, 0.25]], rtol=1e-6)
    out = replace.cnnsplitter_patch(weak, jnp.array([[5.0]]), 1.0, 5.0, target_index=2)
    np.testing.assert_allclose(out, [[0.5, 0.25, 1.0]], rtol=1e-6)
    # A constant strong output (max == min) divides by 1, not 0.
    out = replace.cnnsplitter_patch(weak, jnp.array([2.0]), 2.0, 2.0, target_index=0)
    np.testing.assert_allclose(out, [[0.0, 0.25, 0.25]], atol=1e-7)


def test_per_class_change_by_hand():
    before = [0.5, 0.8, 0.6, 0.9]
    after = [0.9, 0.7, 0.6, 0.8]
    tc, rest = replace.per_class_change(before, after, target_index=0)
    assert tc == pytest.approx(0.4) and rest == pytest.approx((-0.1 + 0.0 - 0.1) / 3)
    tc, rest = replace.per_class_change(before, [0.5, np.nan, 0.7, 1.0], target_index=3)
    assert tc == pytest.approx(0.1) and rest == pytest.approx((0.0 + 0.1) / 2)
    with pytest.raises(ValueError):
        replace.per_class_change([0.1, 0.2], [0.1], target_index=0)
