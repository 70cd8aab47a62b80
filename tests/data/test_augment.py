"""Tests for modjax.data.augment: normalisation, flips and crops."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import data

# ---------------------------------------------------------------------------------------------
# Preprocessing


def _cifar_like(batch=16):
    rng = np.random.default_rng(5)
    return jnp.asarray(rng.integers(1, 256, (batch, 32, 32, 3), dtype=np.uint8))


def test_preprocess_without_augmentation_is_deterministic_normalization():
    info = data.get_info("cifar10")
    images = _cifar_like()
    fn = jax.jit(data.make_preprocess(info, augment=False))
    out = fn(images, jax.random.key(0))
    assert out.shape == images.shape and out.dtype == jnp.float32
    expected = (np.asarray(images, np.float32) / 255 - np.float32(info.mean)) / np.float32(info.std)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out, fn(images, jax.random.key(1)))
    raw = data.make_preprocess(info, augment=False, normalize=False)(images, jax.random.key(0))
    np.testing.assert_allclose(raw, np.asarray(images) / 255, atol=1e-7)


def test_preprocess_flip_only_mirrors_some_images():
    images = _cifar_like(32)
    fn = jax.jit(
        data.make_preprocess(data.get_info("cifar10"), augment=True, normalize=False, crop_pad=0)
    )
    out = np.asarray(fn(images, jax.random.key(0)))
    source = np.asarray(images, np.float32) / 255
    same = np.all(np.isclose(out, source, atol=1e-6), axis=(1, 2, 3))
    mirrored = np.all(np.isclose(out, source[:, :, ::-1], atol=1e-6), axis=(1, 2, 3))
    assert np.all(same | mirrored)
    assert 0 < mirrored.sum() < 32


def test_preprocess_crop_shifts_with_zero_padding():
    images = _cifar_like(32)  # pixels >= 1, so zeros in the output come from padding
    preprocess_fn = data.make_preprocess(
        data.get_info("cifar10"), augment=True, normalize=False, flip=False
    )
    fn = jax.jit(chex.assert_max_traces(preprocess_fn, n=1))
    key = jax.random.key(0)
    with jax.transfer_guard("disallow"):  # no hidden host<->device copies
        out = fn(images, key)
    out = np.asarray(out)
    np.testing.assert_array_equal(out, fn(images, jax.random.key(0)))  # fixed key, fixed crop
    assert not np.array_equal(out, fn(images, jax.random.key(1)))
    source = np.pad(np.asarray(images, np.float32) / 255, ((0, 0), (4, 4), (4, 4), (0, 0)))
    moved = 0
    for i in range(32):  # each output is some 32x32 window of the zero-padded image
        matches = [
            (dy, dx)
            for dy in range(9)
            for dx in range(9)
            if np.allclose(out[i], source[i, dy : dy + 32, dx : dx + 32], atol=1e-6)
        ]
        assert matches, i
        moved += matches != [(4, 4)]
    assert moved > 20


def test_preprocess_does_not_flip_or_crop_grey_mnist_by_default():
    info = data.get_info("mnist")
    images = jnp.asarray(np.random.default_rng(6).integers(0, 256, (8, 28, 28, 1), np.uint8))
    train_fn = data.make_preprocess(info, augment=True)
    test_fn = data.make_preprocess(info, augment=False)
    np.testing.assert_array_equal(
        train_fn(images, jax.random.key(0)), test_fn(images, jax.random.key(0))
    )
    with pytest.raises(ValueError, match=r"images.shape=\(8, 28, 28, 1\); expected .*32, 32, 3"):
        data.make_preprocess(data.get_info("cifar10"), augment=False)(images, jax.random.key(0))


def test_normalized_digits_have_zero_mean_unit_std():
    info = data.get_info("digits")
    images, _ = data.load("digits", "train")
    out = data.make_preprocess(info, augment=False)(images, jax.random.key(0))
    assert float(jnp.mean(out)) == pytest.approx(0.0, abs=2e-3)
    assert float(jnp.std(out)) == pytest.approx(1.0, abs=2e-3)
