"""CIFAR ResNet-v1 (METHODS §3.8): sizes against Keras, act names, BN on/off, blocks per stage."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import models
from modjax.models import resnet_cifar


def _sizes(model):
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
    params = sum(x.size for x in jax.tree.leaves(v["params"]))
    stats = sum(x.size for x in jax.tree.leaves(v.get("batch_stats", {})))
    return params, stats


def _by_hand(depth: int, batch_norm: bool, num_classes: int = 10) -> tuple[int, int]:
    """Trainable and BN-statistics counts of the Keras model, layer by layer."""
    n = (depth - 2) // 6
    params = stats = 0

    def conv(k, cin, cout, bn):
        nonlocal params, stats
        params += k * k * cin * cout + cout + (2 * cout if bn else 0)
        stats += 2 * cout if bn else 0

    conv(3, 3, 16, batch_norm)
    cin = 16
    for c in (16, 32, 64):
        for _b in range(n):
            conv(3, cin, c, batch_norm)
            conv(3, c, c, batch_norm)
            if cin != c:
                conv(1, cin, c, False)
            cin = c
    params += 64 * num_classes + num_classes
    return params, stats


# Keras `model.summary()` totals of the ResNet-v1 CIFAR example (trainable + BN moving stats).
KERAS_TOTALS = {20: 274_442, 56: 861_770, 110: 1_742_762}


@pytest.mark.parametrize("depth", [14, 20, 32, 44, 56, 86, 110, 152])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_parameter_counts(depth, batch_norm):
    model = models.get_model(f"resnet{depth}", batch_norm=batch_norm)
    assert _sizes(model) == _by_hand(depth, batch_norm)
    if batch_norm and depth in KERAS_TOTALS:
        assert sum(_sizes(model)) == KERAS_TOTALS[depth]


def test_generic_name_and_fixed_names_agree():
    a = models.get_model("resnet_cifar", depth=32, width=0.25)
    b = models.get_model("resnet32", width=0.25)
    assert _sizes(a) == _sizes(b)
    assert resnet_cifar.blocks_for_depth(110) == (18, 18, 18)


def test_acts_shapes_and_block_names():
    model = models.get_model("resnet14", width=0.5, num_classes=7)
    x = jnp.ones((2, 32, 32, 3))
    variables = model.init(jax.random.key(0), x)
    logits, acts = model.apply(variables, x)
    assert logits.shape == (2, 7)
    order = list(models.tracked_layers(model))
    assert order[0] == "stem" and len(order) == 1 + 2 * 6
    blocks = [n for n in order if n.count(".") == 1]
    assert blocks == [f"layer{s}.{b}" for s in (1, 2, 3) for b in (0, 1)]
    assert acts["layer1.1"].shape == (2, 32, 32, 8)
    assert acts["layer2.0"].shape == (2, 16, 16, 16)
    assert acts["layer3.1.conv1"].shape == (2, 8, 8, 32)
    assert all(float(a.min()) >= 0 for a in acts.values())  # post-ReLU


def test_without_batch_norm_has_no_batch_stats():
    model = models.get_model("resnet20", batch_norm=False, width=0.25)
    variables = model.init(jax.random.key(0), jnp.ones((1, 32, 32, 3)))
    assert set(variables) == {"params"}
    assert set(variables["params"]["layer2_0"]) == {"conv1", "conv2", "shortcut"}
    assert set(variables["params"]["layer2_1"]) == {"conv1", "conv2"}


def test_blocks_per_stage_override_and_train_mode():
    model = models.get_model("resnet20", width=0.25, blocks=[1, 2, 4])
    assert model.blocks == (1, 2, 4)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 32, 32, 3)), jnp.float32)
    variables = model.init(jax.random.key(0), x)
    assert sorted(k for k in variables["params"] if k.startswith("layer3")) == [
        f"layer3_{b}" for b in range(4)
    ]
    (logits, _), updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    assert np.isfinite(np.asarray(logits)).all()
    before = variables["batch_stats"]["stem"]["bn"]["mean"]
    assert not np.allclose(updates["batch_stats"]["stem"]["bn"]["mean"], before)


def test_keep_mask_on_a_block_output():
    model = models.get_model("resnet14", width=0.25)
    x = jnp.ones((1, 32, 32, 3))
    variables = model.init(jax.random.key(0), x)
    mask = np.ones(4, np.float32)
    mask[1] = 0.0
    _, acts = model.apply(variables, x, masks={"layer1.1": mask})
    assert float(jnp.abs(acts["layer1.1"][..., 1]).max()) == 0.0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"name": "resnet_cifar", "depth": 21}, "depth=21 must be 6n \\+ 2"),
        ({"name": "resnet20", "blocks": (3, 0, 3)}, "blocks=\\(3, 0, 3\\) must be three ints"),
        ({"name": "resnet20", "blocks": (3, 3)}, "must be three ints"),
        ({"name": "resnet20", "depth": 32}, "unknown options \\['depth'\\]"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.get_model(**kwargs)


def test_zero_init_residual_only_without_batch_norm_by_default():
    x = jnp.ones((1, 8, 8, 1))
    for name, kwargs, zeroed in (
        ("resnet20_nobn", {}, True),
        ("resnet20", {}, False),
        ("resnet20", {"batch_norm": False}, True),  # follows batch_norm, not the name
        ("resnet20_nobn", {"zero_init_residual": False}, False),
        ("resnet20", {"zero_init_residual": True}, True),
        ("resnet_cifar", {"depth": 8, "batch_norm": False, "mask_generators": True}, True),
    ):
        model = models.get_model(name, width=0.25, **kwargs)
        params = model.init(jax.random.key(0), x)["params"]
        blocks = [k for k in params if k.startswith("layer")]
        for block in blocks:
            conv2 = params[block]["conv2"]["conv"]["kernel"]
            assert bool(jnp.all(conv2 == 0)) == zeroed, (name, kwargs, block)
            assert not bool(jnp.all(params[block]["conv1"]["conv"]["kernel"] == 0))
            if "shortcut" in params[block]:  # the projection is not a branch's last conv
                assert not bool(jnp.all(params[block]["shortcut"]["conv"]["kernel"] == 0))
    with pytest.raises(TypeError, match="zero_init_residual=1 must be a bool or None"):
        models.get_model("resnet20", zero_init_residual=1)


def test_fixup_scales_conv1_by_inverse_sqrt_blocks():
    """Fixup's rule for two-conv branches: conv1 starts at He init times L^(-1/2)."""
    x = jnp.ones((1, 8, 8, 1))
    for depth, blocks in ((20, 9), (56, 27)):
        stds = {}
        for zeroed in (True, False):
            model = models.get_model(
                "resnet_cifar", depth=depth, width=1.0, batch_norm=False, zero_init_residual=zeroed
            )
            params = model.init(jax.random.key(0), x)["params"]
            kernels = [
                params[b]["conv1"]["conv"]["kernel"] for b in params if b.startswith("layer")
            ]
            stds[zeroed] = float(jnp.std(jnp.concatenate([k.ravel() for k in kernels])))
            shortcut = params["layer2_0"]["shortcut"]["conv"]["kernel"]  # never rescaled
            he_std = (2.0 / shortcut.shape[2]) ** 0.5  # 1x1 kernel: fan_in = input channels
            assert abs(float(jnp.std(shortcut)) / he_std - 1) < 0.1, (depth, zeroed)
        np.testing.assert_allclose(stds[True] / stds[False], blocks**-0.5, rtol=0.05)


def _five_sgd_steps(zero_init_residual: bool) -> tuple[list[float], dict]:
    from modjax import objectives, train

    shape = (16, 16, 3)
    model = models.get_model(
        "resnet20_nobn", width=0.25, num_classes=10, zero_init_residual=zero_init_residual
    )
    tx = train.make_optimizer(learning_rate=0.05, steps_per_epoch=5, num_epochs=1)
    state = train.create_train_state(model=model, tx=tx, seed=0, image_shape=shape)
    step = train.make_train_step(
        model=model,
        tx=tx,
        objective=objectives.standard,
        preprocess=lambda images, rng: (images.astype(jnp.float32) - 127.5) / 64.0,
    )
    rs = np.random.RandomState(0)
    losses = []
    for _ in range(5):
        batch = {
            "image": rs.randint(0, 256, (32, *shape)).astype(np.uint8),
            "label": rs.randint(0, 10, 32).astype(np.int32),
        }
        state, metrics = step(state, jax.device_put(batch))
        losses.append(float(metrics["loss"]))
    return losses, state.params


def test_nobn_resnet20_trains_at_a_high_rate_with_zero_init_residual():
    """METHODS §3.8: without BN a He-initialized ResNet-20 diverges under SGD (NaN by step 3–4 at
    lr 0.02); zero-init residual branches (the `_nobn` default) keep 5 steps at lr 0.05 finite."""
    losses, params = _five_sgd_steps(True)
    assert np.all(np.isfinite(losses)), losses
    assert losses[0] < 5.0, losses  # starts near log(10)
    conv2 = params["layer1_0"]["conv2"]["conv"]["kernel"]
    assert float(jnp.abs(conv2).max()) > 0  # the zeroed branches train
    # The He-initialized branches start far off (loss ~70 here; NaN a few steps later).
    he_losses, _ = _five_sgd_steps(False)
    assert he_losses[0] > 10.0, he_losses
