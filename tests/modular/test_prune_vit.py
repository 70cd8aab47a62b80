"""Tests for modjax.modular.prune_vit: pruned ViT == masked ViT, smaller sizes, errors."""

import numpy as np
import pytest

from modjax import metrics, models
from modjax.modular import prune, prune_vit
from tests.models._vit import KW, SHAPE, images, random_variables, reference, run

KW3 = {**KW, "depth": 3}  # D = 24, 3 heads of 8, MLP 96, 5 classes


def _keep(seed: int) -> dict[str, np.ndarray]:
    """Block 0 keeps every head, block 1 one head, block 2 none; random MLP neurons (block 1's
    MLP whole, block 2's empty)."""
    rng = np.random.default_rng(seed)
    single = np.zeros(3, bool)
    single[rng.integers(3)] = True
    return {
        "block0.attn": np.ones(3, bool),
        "block1.attn": single,
        "block2.attn": np.zeros(3, bool),
        "block0.mlp": rng.random(96) < 0.4,
        "block1.mlp": np.ones(96, bool),
        "block2.mlp": np.zeros(96, bool),
    }


@pytest.mark.parametrize(
    "name,extra,seed,classes",
    [
        ("vit_tiny", {}, 0, None),
        ("vit", {"pool": "mean", "mask_generators": True}, 1, (4, 1)),
    ],
)
def test_pruned_equals_masked(name, extra, seed, classes):
    kw = {**KW3, **extra}
    parent = models.get_model(name, **kw)
    variables, x = random_variables(parent, seed=seed), images(seed)
    keep = _keep(seed)
    pruned, pruned_vars = prune_vit.prune(
        name, kw, variables, keep, classes=classes, input_shape=SHAPE
    )
    model, masks = prune_vit.masked_equivalent(name, kw, keep, input_shape=SHAPE)
    assert not model.mask_generators and not pruned.mask_generators
    kept = int(keep["block0.mlp"].sum())
    assert dict(pruned.channels) == {
        "block1.attn": 1,
        "block2.attn": 0,
        "block0.mlp": kept,
        "block2.mlp": 0,
    }
    got = run(pruned, pruned_vars, x)[0]
    want = run(model, variables, x, masks)[0]
    if classes is not None:
        want = want[:, list(classes)]
    assert got.shape == (x.shape[0], 5 if classes is None else 2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    pool = extra.get("pool", "cls")
    full = reference(variables["params"], x, patch=4, heads=3, pool=pool)[0]
    full = full if classes is None else full[:, list(classes)]
    assert float(np.max(np.abs(full - np.asarray(got)))) > 1e-2  # the masks matter


def test_sliced_parameters_and_sizes_drop():
    parent = models.get_model("vit_tiny", **KW3)
    variables = random_variables(parent)
    keep = _keep(0)
    head = int(np.flatnonzero(keep["block1.attn"])[0])
    pruned, pv = prune_vit.prune("vit_tiny", KW3, variables, keep, input_shape=SHAPE)
    q, q0 = (v["params"]["block_1"]["attn"]["query"] for v in (pv, variables))
    np.testing.assert_array_equal(q["kernel"], q0["kernel"][:, 8 * head : 8 * head + 8])
    out, out0 = (v["params"]["block_1"]["attn"]["out"] for v in (pv, variables))
    np.testing.assert_array_equal(out["kernel"], out0["kernel"][8 * head : 8 * head + 8])
    np.testing.assert_array_equal(out["bias"], out0["bias"])  # the residual width D stays
    assert pv["params"]["block_2"]["attn"]["value"]["kernel"].shape == (24, 0)
    assert pv["params"]["ln"]["scale"].shape == (24,)
    # Params and MACs drop by exactly the removed units (written out per head and neuron).
    d, t, hd = 24, 5, 8
    heads_removed, neurons_removed = 0 + 2 + 3, int((~keep["block0.mlp"]).sum()) + 96
    per_head_params = 3 * (d * hd + hd) + hd * d
    per_head_macs = 3 * t * d * hd + 2 * t * t * hd + t * hd * d
    per_neuron_params, per_neuron_macs = d + 1 + d, 2 * t * d
    size = metrics.module_macs_and_params(
        (pruned, pv["params"], SHAPE), (parent, variables["params"], SHAPE)
    )
    assert size.parent_params - size.params == (
        heads_removed * per_head_params + neurons_removed * per_neuron_params
    )
    assert size.parent_macs - size.macs == (
        heads_removed * per_head_macs + neurons_removed * per_neuron_macs
    )
    assert size.relative_macs < 0.6 and size.relative_params < 0.6


def test_prune_errors():
    parent = models.get_model("vit_tiny", **KW3)
    variables = random_variables(parent)
    with pytest.raises(
        ValueError, match=r"keep\['block0.attn'\] has shape \(4,\).*expected \(3,\)"
    ):
        prune_vit.prune(
            "vit_tiny", KW3, variables, {"block0.attn": np.ones(4, bool)}, input_shape=SHAPE
        )
    with pytest.raises(ValueError, match=r"keep\['block7.mlp'\] names no mask point"):
        prune_vit.masked_equivalent(
            "vit_tiny", KW3, {"block7.mlp": np.ones(96, bool)}, input_shape=SHAPE
        )
    with pytest.raises(ValueError, match=r"keep\['block0.mlp'\] must be boolean"):
        prune_vit.prune(
            "vit_tiny", KW3, variables, {"block0.mlp": np.full(96, 0.5)}, input_shape=SHAPE
        )
    with pytest.raises(ValueError, match="model_name='resnet20' is not a ViT"):
        prune_vit.prune("resnet20", {"width": 0.125}, variables, {})
    with pytest.raises(ValueError, match="'vit_tiny' is a ViT: prune its heads and MLP neurons"):
        prune.prune("vit_tiny", KW3, variables, {}, input_shape=SHAPE)  # the CNN pruner
    with pytest.raises(ValueError, match="already pruned"):
        prune_vit.prune("vit_tiny", {**KW3, "channels": {"block0.mlp": 3}}, variables, {})
    with pytest.raises(
        ValueError, match=r"pos_embed has shape \(1, 5, 24\); the model expects \(1, 17, 24\)"
    ):
        prune_vit.prune("vit_tiny", KW3, variables, {}, input_shape=(16, 16, 3))
    with pytest.raises(ValueError, match=r"classes=\[5\] must be distinct ints in \[0, 5\)"):
        prune_vit.prune("vit_tiny", KW3, variables, {}, classes=[5], input_shape=SHAPE)
