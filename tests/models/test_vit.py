"""Tests for the zoo's ViT: sizes and width rule, NumPy-reference forward, masks, MACs, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import models
from modjax.models.attention import token_mean_norm
from modjax.models.vit import ViTDims, vit_dims
from modjax.modular import drop_generators
from tests.models._vit import KW, SHAPE, B, images, model, random_variables, reference, run


def test_sizes_names_and_width_rule():
    assert vit_dims(size="tiny", width=1.0) == ViTDims(192, 12, 3, 64, 768)
    assert vit_dims(size="small", width=1.0) == ViTDims(384, 12, 6, 64, 1536)
    # D and the MLP scale, the head count does not: d = D / heads shrinks.
    assert vit_dims(size="tiny", width=0.25) == ViTDims(48, 12, 3, 16, 192)
    assert vit_dims(size="small", width=0.25) == ViTDims(96, 12, 6, 16, 384)
    assert vit_dims(size="small", width=1.0, num_heads=12, depth=2) == ViTDims(384, 2, 12, 32, 1536)
    for name, size in (("vit", "tiny"), ("vit_tiny", "tiny"), ("vit_small", "small")):
        assert models.get_model(name).size == size and name in models.MODEL_NAMES
    assert models.get_model("vit", size="small", width=0.5).dims().dim == 192


def test_param_count_of_vit_tiny_at_cifar_size():
    # Written out: patch Dense(4·4·3 → 192), cls, 65 positions, 12 blocks, final LN, head.
    d, m, t = 192, 768, 65
    block = 2 * 2 * d + 3 * (d * d + d) + (d * d + d) + (d * m + m) + (m * d + d)
    expected = (48 * d + d) + d + t * d + 12 * block + 2 * d + (d * 10 + 10)
    summary = models.summarize(models.get_model("vit_tiny"), (32, 32, 3))
    assert summary["params"] == expected == 5_362_762
    assert summary["conv_kernels"] == 0 and summary["generator_params"] == 0


@pytest.mark.parametrize("pool,tokens", [("cls", 5), ("mean", 4)])
def test_macs_count_projections_and_attention_matmuls(pool, tokens):
    """MACs = T·p²C·D + per block [3·T·D·Hd + 2·T²·H·d + T·Hd·D + 2·T·D·M] + D·N."""
    m = model(pool=pool)
    d, heads, hd, mlp, t = 24, 3, 8, 96, tokens
    per_block = 3 * t * d * heads * hd + 2 * t * t * heads * hd + t * heads * hd * d
    per_block += 2 * t * d * mlp
    expected = 4 * (48 * d) + 2 * per_block + d * 5
    assert models.count_macs(m, SHAPE) == expected
    # The generators are counted apart: per block Dense(D → H) → Dense(H → H) and D → M → M.
    gen = 2 * (d * heads + heads * heads + d * mlp + mlp * mlp)
    assert models.count_macs(model(mask_generators=True), SHAPE, part="generators") == gen


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_forward_matches_numpy_reference(pool):
    m = model(pool=pool)
    variables = random_variables(m)
    x = images()
    logits, acts = run(m, variables, x)
    ref_logits, ref_acts = reference(variables["params"], x, patch=4, heads=3, pool=pool)
    assert logits.shape == (B, 5) and float(np.std(ref_logits)) > 0.1
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-4)
    assert list(acts) == ["block0.attn", "block0.mlp", "block1.attn", "block1.mlp"]
    for name, a in acts.items():
        np.testing.assert_allclose(a, ref_acts[name], rtol=1e-4, atol=1e-5)
    assert ("cls_token" in variables["params"]) == (pool == "cls")


def test_masks_multiply_head_outputs_and_hidden_activations():
    m = model()
    variables, x = random_variables(m), images()
    rng = np.random.default_rng(3)
    masks = {
        "block0.attn": np.array([1.0, 0.0, 1.0], np.float32),  # head 1 off
        "block1.attn": rng.uniform(size=(B, 3)).astype(np.float32),  # soft, per example
        "block0.mlp": (rng.random(96) < 0.5).astype(np.float32),
        "block1.mlp": rng.uniform(size=(B, 96)).astype(np.float32),
    }
    logits, acts = run(m, variables, x, masks)
    ref_logits, ref_acts = reference(variables["params"], x, patch=4, heads=3, masks=masks)
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-4)
    assert np.all(np.asarray(acts["block0.attn"])[:, 1] == 0.0)
    assert np.all(np.asarray(acts["block0.mlp"])[:, masks["block0.mlp"] == 0] == 0.0)
    for name in masks:
        np.testing.assert_allclose(acts[name], ref_acts[name], rtol=1e-4, atol=1e-5)
    unmasked = reference(variables["params"], x, patch=4, heads=3)[0]
    assert float(np.max(np.abs(unmasked - np.asarray(logits)))) > 1e-2


def test_head_activation_gradient_is_zero_not_nan_at_a_switched_off_head():
    c = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 3, 8)), jnp.float32)
    c = c.at[:, :, 1].set(0.0)  # head 1 off on every token
    grad = jax.grad(lambda c: jnp.sum(token_mean_norm(c)))(c)
    assert bool(jnp.all(jnp.isfinite(grad))) and float(jnp.abs(grad[:, :, 1]).max()) == 0.0
    # Elsewhere it is the gradient of the mean norm: c / (T·‖c‖).
    expected = c[:, :, 0] / (4 * jnp.linalg.norm(c[:, :, 0], axis=-1, keepdims=True))
    np.testing.assert_allclose(grad[:, :, 0], expected, rtol=1e-5)


def test_mwt_form_records_generator_masks_and_drops_to_the_plain_tree():
    # Real values (masks in [0, 1), near tanh(1) at init) are checked by the zoo's contract tests.
    m = model(mask_generators=True)
    found = models.trace(m, SHAPE)
    assert list(found.acts)[:4] == [
        "block0.attn/mask",
        "block0.attn",
        "block0.mlp/mask",
        "block0.mlp",
    ]
    assert found.acts["block0.attn/mask"] == (1, 3) and found.acts["block1.mlp/mask"] == (1, 96)
    assert models.masked_layers(m, input_shape=SHAPE) == models.mask_points(m, input_shape=SHAPE)
    gen = found.variables["params"]["block_1"]["mlp"]["generator"]
    assert gen["fc1"]["kernel"].shape == (24, 96) and gen["fc2"]["kernel"].shape == (96, 96)
    dropped = drop_generators({"params": found.variables["params"]})["params"]
    plain = models.trace(model(), SHAPE).variables["params"]
    assert jax.tree.map(lambda a: a.shape, dropped) == jax.tree.map(lambda a: a.shape, plain)


def test_image_size_is_inferred_or_checked():
    m = model(image_size=None)
    v = jax.eval_shape(m.init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    assert v["params"]["pos_embed"].shape == (1, 17, 24)  # 16 patches + class token
    assert models.trace(model(image_size=16), (16, 16, 3)).points["block1.mlp"] == 96


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (
            {"name": "vit", "size": "huge"},
            r"unknown size='huge'; expected one of \['tiny', 'small'\]",
        ),
        ({"name": "vit_tiny", "size": "small"}, r"unknown options \['size'\]"),
        ({"name": "vit_tiny", "image_size": 30}, "patch_size=4 does not divide image_size=30"),
        ({"name": "vit_tiny", "patch_size": 0}, "patch_size=0 must be an int >= 1"),
        ({"name": "vit_tiny", "width": 1 / 12}, r"heads=3 does not divide dim=16 \(round\(192"),
        ({"name": "vit_small", "num_heads": 5}, "heads=5 does not divide dim=384"),
        ({"name": "vit_tiny", "pool": "max"}, r"pool='max' must be one of \['cls', 'mean'\]"),
        ({"name": "vit_tiny", "depth": 0}, "depth=0 must be an int >= 1"),
    ],
)
def test_bad_configurations(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.get_model(**kwargs)


def test_bad_inputs_and_masks():
    with pytest.raises(ValueError, match=r"patch_size=4 does not divide the input size 10x10"):
        models.trace(model(), (10, 10, 3))
    with pytest.raises(ValueError, match=r"built with image_size=32; got inputs of shape"):
        models.trace(model(image_size=32), (16, 16, 3))
    m = model()
    variables = random_variables(m)
    with pytest.raises(ValueError, match=r"masks\['block0.attn'\] has shape \(4,\).*3 channels"):
        run(m, variables, images(), {"block0.attn": np.ones(4, np.float32)})
    with pytest.raises(ValueError, match=r"keys \['block0.qkv'\] that name no mask point of vit"):
        run(m, variables, images(), {"block0.qkv": np.ones(3, np.float32)})
    assert KW["depth"] == 2  # the helpers' tiny configuration
