"""Zero-width layers (parity extraction, `--no-fallback`): valid modules in both forms.

The 2024 MwT code keeps a layer whose every channel is masked; such a layer propagates zeros, so
what follows it sees only biases (and BN shifts). modjax's pruned form builds it with 0 channels
and must equal the masked form on every zoo model.
"""

import functools

import jax.numpy as jnp
import numpy as np
import pytest

from modjax import models
from modjax.modular.prune import masked_equivalent, prune
from modjax.modules import identity
from tests.modular.test_prune import CASES, _build, _kwargs, _logits, _parent_macs, _shape

# The last mask point feeds the head directly (no residual shortcut around it).
_LAST_FEEDS_HEAD = {"mlp", "lenet5", "simcnn", "vgg16", "vgg16_moda", "mobilenet"}


def _emptied(keep: dict, name: str) -> dict:
    out = {k: v.copy() for k, v in keep.items()}
    out[name][:] = False
    return out


def _both_forms(case, keep):
    built = _build(case)
    kw = _kwargs(case)
    pruned, pv = prune(
        case.name, kw, built.variables, keep, classes=case.classes, method=case.method
    )
    masked_model, masks = masked_equivalent(case.name, kw, keep, method=case.method)
    got = _logits(pruned, pv, built.x)
    want = _logits(masked_model, built.variables, built.x, masks)
    if case.classes is not None:
        want = want[:, np.asarray(case.classes)]
    return pruned, pv, got, want


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.name}-{c.method}")
def test_middle_layer_of_zero_width_prunes_and_equals_masked(case):
    keep = _build(case).keep
    # MobileNet: a pointwise set is intersected with the next depthwise set and never left empty
    # (§4.6 rule), so empty a depthwise layer (not block 0's, which MwT keeps whole).
    name = "block5.dw" if case.name == "mobilenet" else list(keep)[len(keep) // 2]
    pruned, pv, got, want = _both_forms(case, _emptied(keep, name))
    assert float(jnp.abs(want).max()) > 0.1
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.isfinite(np.asarray(got)).all()
    shapes = [np.shape(x) for x in _leaves(pv["params"])]
    assert any(0 in s for s in shapes), f"no zero-width tensor in the pruned {case.name}"
    assert models.count_macs(pruned, _shape(case.name)) < _parent_macs(case)


def _leaves(tree):
    for v in tree.values():
        if isinstance(v, dict):
            yield from _leaves(v)
        else:
            yield v


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.name in _LAST_FEEDS_HEAD], ids=lambda c: f"{c.name}-{c.method}"
)
def test_last_layer_of_zero_width_gives_input_independent_logits(case):
    keep = _build(case).keep
    _, pv, got, want = _both_forms(case, _emptied(keep, list(keep)[-1]))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # Every row equals the first: the class logits come from biases downstream only.
    np.testing.assert_allclose(got, np.broadcast_to(got[:1], got.shape), atol=1e-6)
    if case.name in ("mlp", "vgg16"):  # the head reads the empty layer directly: logits = bias
        np.testing.assert_allclose(got[0], pv["params"]["head"]["bias"], atol=1e-6)


@functools.cache
def _all_empty(case):
    return {k: np.zeros_like(v) for k, v in _build(case).keep.items()}


@pytest.mark.parametrize("case", [CASES[0], CASES[6], CASES[9]], ids=lambda c: c.name)
def test_every_layer_empty(case):
    _, _, got, want = _both_forms(case, _all_empty(case))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_module_with_an_empty_layer_composes_and_travels(tmp_path):
    from modjax import modular as mz
    from modjax.modular import compose as cp
    from modjax.modular import io as module_io
    from modjax.modular import portable
    from tests.modular.test_compose import _masked_logits, _modules, _parent, _x

    _, variables, parent = _parent()
    modules = _modules(parent)
    empty = modules[1]._replace(
        keep={**modules[1].keep, "dense_1": np.zeros_like(modules[1].keep["dense_1"])}
    )
    x = _x()
    alone = cp.compose([empty], {cp.parent_key(parent): variables})
    want = _masked_logits(parent, variables, empty.keep, x)[:, [1]]
    np.testing.assert_allclose(alone.apply_fn(x), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(alone.apply_fn(x), np.broadcast_to(want[:1], want.shape), atol=1e-6)
    both = cp.compose([empty, modules[2]], {cp.parent_key(parent): variables})
    want = _masked_logits(parent, variables, mz.union([empty, modules[2]]).keep, x)[:, [1, 2]]
    np.testing.assert_allclose(both.apply_fn(x), want, rtol=1e-5, atol=1e-5)

    # Saved with its kept units alone, the module rebuilds to the same pruned network.
    parent = {**parent, "step": 3, "hash": identity.parent_hash(variables)}
    empty = empty._replace(parent=parent)
    kw = {"classes": [1], "method": "moda", "input_shape": parent["input_shape"]}
    units = portable.kept_units("mlp", parent["model_kwargs"], variables, empty.keep, **kw)
    arrays = {"units": units.values, "unit_index": units.index}
    module_io.save_module(empty, tmp_path / "m", arrays=arrays)
    saved = module_io.load(tmp_path / "m")
    assert not saved.module.keep["dense_1"].any()
    back = portable.Units(index=saved.arrays["unit_index"], values=saved.arrays["units"])
    model, rebuilt = portable.rebuild(
        [back], "mlp", parent["model_kwargs"], saved.module.keep, **kw
    )
    np.testing.assert_allclose(model.apply(rebuilt, x)[0], alone.apply_fn(x), atol=1e-6)
