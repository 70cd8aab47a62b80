"""Block-level CKA of a model: one compile over minibatches, 8-device sharding equals 1 device."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import models, parallel
from modjax.deeparc import block_names, similarity


def _to_float(images, rng):
    del rng
    return images.astype(jnp.float32) / 255.0


@pytest.fixture(scope="module")
def tiny():
    model = models.get_model("resnet14", width=0.125, num_classes=3)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
    images = np.random.default_rng(0).integers(0, 256, (48, 8, 8, 3)).astype(np.uint8)
    return model, variables, images


def test_eight_devices_give_the_same_h_as_one(tiny):
    model, variables, images = tiny
    assert jax.device_count() == 8
    layers = block_names(model)
    h = {}
    for n in (1, 8):
        mesh = parallel.make_mesh(n)
        step = similarity.make_hsic_step(
            model=model, layers=layers, preprocess=_to_float, mesh=mesh
        )
        acc = jnp.zeros((len(layers), len(layers)))
        rep = parallel.replicate(variables, mesh)
        for batch in (images[:16], images[16:32]):
            acc = step(acc, rep, parallel.shard_batch({"image": batch}, mesh)["image"])
        h[n] = np.asarray(jax.device_get(acc))
    np.testing.assert_allclose(h[8], h[1], rtol=1e-5, atol=1e-6)
    assert (np.diag(h[1]) > 0).all()


def test_one_compile_for_all_minibatches(tiny):
    model, variables, images = tiny
    traces = []
    step = similarity.make_hsic_step(
        model=model,
        layers=["stem", *block_names(model)],
        preprocess=lambda x, r: (traces.append(1), _to_float(x, r))[1],
    )
    h = jnp.zeros((7, 7))
    for idx in similarity.minibatches(len(images), batch_size=8, passes=2, seed=0):
        h = step(h, variables, images[idx])
    assert len(traces) == 1  # 12 minibatches, one trace
    assert h.shape == (7, 7)


def test_layer_cka_matrix_and_row_chunks(tiny):
    model, variables, images = tiny
    kwargs = {
        "model": model,
        "variables": variables,
        "images": images,
        "layers": block_names(model),
        "preprocess": _to_float,
        "batch_size": 8,
        "passes": 1,
    }
    s = similarity.layer_cka(**kwargs)
    np.testing.assert_allclose(np.diag(s), 1.0, atol=1e-6)
    np.testing.assert_allclose(s, s.T, atol=1e-6)
    np.testing.assert_allclose(similarity.layer_cka(**kwargs, row_chunk=2), s, atol=1e-5)
    mesh = parallel.make_mesh(8)
    np.testing.assert_allclose(similarity.layer_cka(**kwargs, mesh=mesh), s, atol=1e-5)


def test_errors(tiny):
    model, variables, images = tiny
    with pytest.raises(ValueError, match="minibatch size n=2 is too small"):
        similarity.layer_cka(
            model=model,
            variables=variables,
            images=images,
            layers=["layer1.0"],
            preprocess=_to_float,
            batch_size=2,
        )
    with pytest.raises(ValueError, match="batch_size=64 exceeds the 48 examples"):
        list(similarity.minibatches(48, batch_size=64, passes=1, seed=0))
    step = similarity.make_hsic_step(model=model, layers=["nope"], preprocess=_to_float)
    with pytest.raises(ValueError, match="layers \\['nope'\\] are not acts"):
        step(jnp.zeros((1, 1)), variables, images[:8])
