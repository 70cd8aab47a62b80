"""Checks that need an accelerator (`pytest -m accelerator`; `benchmarks/device_check.sh` runs
them with `JAX_PLATFORMS=cuda`): the conv dispatcher hands every convolution to XLA on the device,
a bf16 train step, and the data-parallel mesh over the real devices. Each skips on CPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from modjax import models, objectives, parallel, train
from modjax.models import conv

BACKEND = jax.default_backend()
pytestmark = [
    pytest.mark.accelerator,
    pytest.mark.skipif(
        BACKEND == "cpu",
        reason="needs an accelerator: JAX's backend is cpu (tests/conftest.py defaults "
        "JAX_PLATFORMS to cpu; set JAX_PLATFORMS=cuda on a GPU machine)",
    ),
]


def _kernels(params) -> int:
    return sum(leaf.ndim == 4 for leaf in jax.tree.leaves(params))


@pytest.mark.parametrize("name", ["lenet5", "vgg16"])
def test_every_conv_is_an_xla_convolution_on_the_device(name):
    """LeNet5 w0.25's convs take the direct lowering on CPU and VGG16's 2x2-map convs im2col;
    on the accelerator each is one XLA convolution."""
    model = models.get_model(name, num_classes=10, width=0.25)
    x = jnp.zeros((8, 32, 32, 3), jnp.float32)
    variables = model.init(jax.random.key(0), x, train=False)
    text = jax.jit(lambda v, x: model.apply(v, x, train=False)[0]).lower(variables, x).as_text()
    assert text.count("stablehlo.convolution") == _kernels(variables["params"])
    shapes = {"lenet5": ((8, 32, 32, 3), (5, 5, 3, 2)), "vgg16": ((8, 2, 2, 128), (3, 3, 128, 128))}
    lhs, rhs = shapes[name]
    kw = dict(strides=(1, 1), dilated=False, groups=1)
    assert conv.conv_lowering(lhs, rhs, backend="cpu", **kw) in ("direct", "im2col")
    assert conv.conv_lowering(lhs, rhs, backend=BACKEND, **kw) == "xla"


def test_bf16_step_matches_float32_and_keeps_float32_masters():
    """bf16 params and inputs inside the loss (compare_torch's --bf16 recipe), float32 masters:
    the MODA loss is within bf16 rounding of the float32 one, and the device runs bf16 convs."""
    model = models.get_model("vgg16", num_classes=10, width=0.25)
    tx = optax.sgd(0.05)
    state = train.create_train_state(model=model, tx=tx, seed=0, image_shape=(32, 32, 3))
    rs = np.random.RandomState(0)
    x = jnp.asarray(rs.randn(64, 32, 32, 3).astype(np.float32))
    y = jnp.asarray((np.arange(64) % 10).astype(np.int32))
    objective = objectives.moda_objective(num_classes=10)

    def loss_fn(params, dtype):
        cast = jax.tree.map(lambda a: a.astype(dtype), params)
        (logits, acts), _ = model.apply(
            {"params": cast, "batch_stats": state.batch_stats},
            x.astype(dtype),
            train=True,
            rngs={"dropout": jax.random.key(1)},
            mutable=["batch_stats"],
        )
        return objective(logits.astype(jnp.float32), acts, y)[0]

    grad16 = jax.jit(jax.value_and_grad(lambda p: loss_fn(p, jnp.bfloat16)))
    loss16, grads = grad16(state.params)
    loss32 = jax.jit(lambda p: loss_fn(p, jnp.float32))(state.params)
    assert np.isfinite(float(loss16)) and float(loss16) == pytest.approx(float(loss32), rel=0.05)
    assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}
    hlo = grad16.lower(state.params).compile().as_text()
    assert "bf16[" in hlo and ("convolution" in hlo or "cudnn" in hlo)


def test_mesh_spans_the_real_devices_and_trains():
    mesh = parallel.make_mesh()
    assert list(mesh.devices.flat) == jax.devices() and mesh.devices.flat[0].platform == BACKEND
    model = models.get_model("lenet5", num_classes=10, width=0.5)
    tx = train.make_optimizer(learning_rate=0.05, steps_per_epoch=100, num_epochs=1)
    state = train.create_train_state(model=model, tx=tx, seed=0, image_shape=(32, 32, 3), mesh=mesh)
    step = train.make_train_step(
        model=model,
        tx=tx,
        objective=objectives.standard,
        preprocess=lambda x, rng: x.astype(jnp.float32) / 255.0,
        mesh=mesh,
    )
    n = 16 * jax.device_count()
    rs = np.random.RandomState(0)
    batch = {
        "image": rs.randint(0, 256, (n, 32, 32, 3)).astype(np.uint8),
        "label": (np.arange(n) % 10).astype(np.int32),
    }
    sharded = parallel.shard_batch(batch, mesh)
    assert sharded["image"].sharding.device_set == set(jax.devices())
    losses = []
    for _ in range(3):
        state, metrics = step(state, sharded)
        losses.append(float(metrics["loss"]))
    assert all(np.isfinite(losses)) and bool(metrics["finite"]), (losses, metrics)
    assert step._cache_size() == 1  # one compile for the three steps
    for leaf in jax.tree.leaves(state.params):  # replicated on every device
        assert leaf.sharding.device_set == set(jax.devices()) and leaf.sharding.is_fully_replicated
