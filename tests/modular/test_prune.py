"""Tests for modjax.prune: pruned form == masked form, residual/MobileNet rules, sizes, errors."""

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import models
from modjax.modular.prune import masked_equivalent, prune

W = 0.125
B = 3
N = 7
SHAPE = (32, 32, 3)


def _random_variables(model, shape, seed: int) -> tuple[dict, dict[str, int]]:
    """Random parameters and non-trivial BN running statistics, and the act channel counts.

    Kernels are N(0, 4/fan_in): He scaling doubled, so activations stay O(1) with about half of
    the channels masked.
    """
    x = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
    (_, acts), abstract = jax.eval_shape(
        lambda x: model.init_with_output({"params": jax.random.key(0)}, x), x
    )
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        key, shape = path[-1].key, leaf.shape
        if key == "kernel":
            a = rng.normal(0.0, math.sqrt(4.0 / math.prod(shape[:-1])), shape)
        elif key in ("bias", "mean"):
            a = rng.normal(0.0, 0.2, shape)
        else:  # BN scale, running var
            a = rng.uniform(0.5, 1.5, shape)
        return jnp.asarray(a, jnp.float32)

    variables = jax.tree_util.tree_map_with_path(fill, dict(abstract))
    return variables, {name: a.shape[-1] for name, a in acts.items()}


def _random_keep(points: dict[str, int], seed: int, rate: float = 0.5) -> dict[str, np.ndarray]:
    """Random keep-masks with at least one kept and (for C > 1) one dropped channel per layer."""
    rng = np.random.default_rng(seed)
    keep = {}
    for name, c in points.items():
        k = rng.random(c) < rate
        k[rng.integers(c)] = True
        if c > 1 and k.all():
            k[rng.integers(c)] = False
            k[np.flatnonzero(k)[:1]] = True
        keep[name] = k
    return keep


class Case(NamedTuple):
    name: str
    mg: bool
    method: str
    classes: tuple[int, ...] | None
    extra: tuple[tuple[str, object], ...] = ()  # further get_model options (hashable)


# CIFAR ResNet-v1 at depth 8, width 0.25 (4/8/16 channels) on 16×16 inputs (8/4 px stages 2, 3).
_RESNET_CIFAR = (("depth", 8), ("width", 0.25))
_RESNET_CIFAR_NOBN = (*_RESNET_CIFAR, ("batch_norm", False))


CASES = [
    Case("mlp", False, "moda", (1, 4)),
    Case("lenet5", True, "mwt", None),
    Case("simcnn", True, "mwt", None),
    Case("rescnn", True, "mwt", None),
    Case("vgg16", False, "moda", (6, 0, 3)),
    Case("vgg16_moda", False, "moda", (2, 5)),
    Case("resnet18", True, "mwt", None),
    Case("resnet18", False, "moda", (0, 1, 6)),
    Case("mobilenet", True, "mwt", None),
    Case("mobilenet", False, "moda", (3, 4)),
    Case("mlp", True, "mwt", None),  # neuron-level MwT: every hidden dense layer masked
    # CIFAR ResNet-v1: MwT with BN (mask on the BN output), without BN (on the conv output),
    # and MODA keep-masks (stem, conv1, block outputs) on the no-BN parent.
    Case("resnet_cifar", True, "mwt", None, _RESNET_CIFAR),
    Case("resnet_cifar", True, "mwt", None, _RESNET_CIFAR_NOBN),
    Case("resnet_cifar", False, "moda", (2, 0, 5), _RESNET_CIFAR_NOBN),
]


def _kwargs(case: Case) -> dict:
    return {"num_classes": N, "width": W, "mask_generators": case.mg, **dict(case.extra)}


def _shape(name: str) -> tuple[int, ...]:
    return {"mlp": (28, 28, 1), "resnet_cifar": (16, 16, 3)}.get(name, SHAPE)


class Built(NamedTuple):
    parent: object
    variables: dict
    keep: dict
    x: jax.Array


@functools.cache
def _build(case: Case, seed: int = 0) -> Built:
    kw = _kwargs(case)
    parent = models.get_model(case.name, **kw)
    variables, acts = _random_variables(parent, _shape(case.name), seed)
    if case.method == "mwt" and case.mg:  # the MwT-masked layers
        points = {n.removesuffix("/mask"): c for n, c in acts.items() if n.endswith("/mask")}
    else:  # the MODA-tracked layers
        points = {n: c for n, c in acts.items() if not n.endswith("/mask")}
    keep = _random_keep(points, seed)
    x = jax.random.normal(jax.random.key(seed + 1), (B, *_shape(case.name)))
    return Built(parent, variables, keep, x)


@functools.cache
def _parent_macs(case: Case) -> int:
    return models.count_macs(_build(case).parent, _shape(case.name))


def _logits(model, variables, x, masks=None):
    return jax.jit(lambda v, x, m: model.apply(v, x, masks=m)[0])(variables, x, masks)


def _backbone_params(params) -> int:
    return models.count_params(params) - models.count_generator_params(params)


# ----------------------------------------------------------------------------- pruned == masked


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.name}-{c.method}")
def test_pruned_equals_masked_and_is_smaller(case):
    built = _build(case)
    kw, shape = _kwargs(case), _shape(case.name)
    kw_shape = {"method": case.method, "input_shape": shape}
    pruned, pv = prune(case.name, kw, built.variables, built.keep, classes=case.classes, **kw_shape)
    masked_model, masks = masked_equivalent(case.name, kw, built.keep, **kw_shape)
    assert not pruned.mask_generators and not masked_model.mask_generators
    assert pruned.num_classes == (len(case.classes) if case.classes else N)
    assert "generator" not in str(jax.tree_util.tree_structure(pv))

    got = _logits(pruned, pv, built.x)
    want = _logits(masked_model, built.variables, built.x, masks)
    if case.classes is not None:
        want = want[:, np.asarray(case.classes)]
    assert float(jnp.abs(want).max()) > 0.1  # a meaningful comparison scale
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

    assert models.count_params(pv["params"]) < _backbone_params(built.variables["params"])
    assert models.count_macs(pruned, shape) < _parent_macs(case)


# ----------------------------------------------------------------------------- residual rules


def _positions(sub, layout) -> tuple[int, ...]:
    where = {v: i for i, v in enumerate(np.flatnonzero(layout))}
    return tuple(where.get(v, -1) for v in np.flatnonzero(sub))


def test_resnet18_union_rule_with_downsample():
    case = CASES[6]
    built = _build(case)
    keep = built.keep
    pruned, pv = prune(case.name, _kwargs(case), built.variables, keep, method="mwt")
    # Downsample block: R_add = R_conv2 ∪ R_shortcut, each side zero-padded at its own indices.
    r_add = keep["layer2.0.conv2"] | keep["layer2.0.shortcut"]
    assert not np.array_equal(r_add, keep["layer2.0.conv2"])  # the union is exercised
    branch, shortcut = pruned.residual["layer2.0"]
    assert branch == _positions(r_add, keep["layer2.0.conv2"])
    assert shortcut == _positions(r_add, keep["layer2.0.shortcut"])
    assert -1 in branch and -1 in shortcut
    # Identity block: the shortcut is the previous R_add.
    r_next = keep["layer2.1.conv2"] | r_add
    assert pruned.residual["layer2.1"] == (
        _positions(r_next, keep["layer2.1.conv2"]),
        _positions(r_next, r_add),
    )
    # The next layers' input slices are R_add.
    p = pv["params"]
    assert p["layer2_1"]["conv1"]["conv"]["kernel"].shape[2] == r_add.sum()
    assert p["layer3_0"]["shortcut"]["conv"]["kernel"].shape[2] == r_next.sum()
    # The first identity block adds onto all stem channels (the stem is unmasked in MwT).
    assert pruned.residual["layer1.0"][1] == tuple(range(keep["layer1.0.conv2"].size))


def test_resnet18_moda_identity_intersection():
    case = CASES[7]
    built = _build(case)
    keep = built.keep
    pruned, pv = prune(case.name, _kwargs(case), built.variables, keep, method="moda")
    # Identity block layer1.1: out set = relu2 mask; only (input ∩ relu2) gets the residual.
    r_in, r_out = keep["layer1.0"], keep["layer1.1"]
    branch, shortcut = pruned.residual["layer1.1"]
    assert branch == tuple(range(r_out.sum()))  # conv2 keeps exactly the relu2 set
    assert shortcut == _positions(r_out, r_in)
    assert (r_out & ~r_in).any() and (r_in & ~r_out).any()  # both exclusions exercised
    assert -1 in shortcut
    assert pv["params"]["layer1_1"]["conv2"]["conv"]["kernel"].shape[-1] == r_out.sum()
    # Downsample block: conv2 and the shortcut both keep the relu2 set.
    n = keep["layer2.0"].sum()
    assert pv["params"]["layer2_0"]["shortcut"]["conv"]["kernel"].shape[2:] == (
        keep["layer1.1"].sum(),
        n,
    )
    assert pruned.residual.get("layer2.0", (tuple(range(n)),) * 2) == (tuple(range(n)),) * 2


def test_rescnn_union_rule():
    case = CASES[3]
    built = _build(case)
    keep = built.keep
    pruned, pv = prune(case.name, _kwargs(case), built.variables, keep, method="mwt")
    r_1 = keep["conv_1"]
    r_add = r_1 | keep["conv_3"]
    assert pruned.residual["conv_3"] == (_positions(r_add, keep["conv_3"]), _positions(r_add, r_1))
    assert pv["params"]["conv_4"]["conv"]["kernel"].shape[2] == r_add.sum()
    assert pv["params"]["conv_2"]["conv"]["kernel"].shape[2] == r_1.sum()
    r_last = keep["conv_9"] | keep["conv_11"]
    assert pv["params"]["head"]["kernel"].shape == (r_last.sum(), N)  # 1×1 map, all N outputs


@pytest.mark.parametrize("case", [CASES[11], CASES[12]], ids=("bn", "nobn"))
def test_resnet_cifar_mwt_union_rule_with_projection_shortcut(case):
    built = _build(case)
    keep = built.keep
    masked = ["layer1.0.conv1", "layer1.0.conv2"]  # identity shortcut: unmasked
    masked += [f"layer{s}.0.{c}" for s in (2, 3) for c in ("conv1", "conv2", "shortcut")]
    assert list(keep) == masked
    kw = _kwargs(case)
    pruned, pv = prune(case.name, kw, built.variables, keep, input_shape=_shape(case.name))
    assert isinstance(pruned, models.ResNetCIFAR) and pruned.depth == 8
    # Identity block layer1.0 adds onto all stem channels (the stem is never masked).
    r_1 = keep["layer1.0.conv2"] | np.ones(4, bool)
    assert pruned.residual["layer1.0"] == (_positions(r_1, keep["layer1.0.conv2"]), tuple(range(4)))
    # Projection block: R_add = R_conv2 ∪ R_shortcut, each side zero-padded at its own indices.
    r_add = keep["layer2.0.conv2"] | keep["layer2.0.shortcut"]
    assert pruned.residual["layer2.0"] == (
        _positions(r_add, keep["layer2.0.conv2"]),
        _positions(r_add, keep["layer2.0.shortcut"]),
    )
    p = pv["params"]
    assert p["layer2_0"]["shortcut"]["conv"]["kernel"].shape == (
        1,
        1,
        4,
        keep["layer2.0.shortcut"].sum(),
    )
    assert p["layer3_0"]["conv1"]["conv"]["kernel"].shape[2] == r_add.sum()
    assert "bn" not in p["layer2_0"]["shortcut"]  # the projection has no BN in either variant
    assert ("bn" in p["layer2_0"]["conv1"]) == dict(case.extra).get("batch_norm", True)
    r_last = keep["layer3.0.conv2"] | keep["layer3.0.shortcut"]
    assert p["head"]["kernel"].shape == (r_last.sum(), N)  # MwT keeps all N outputs


# ----------------------------------------------------------------------------- MobileNet rule


def test_mobilenet_effective_sets():
    case = CASES[9]
    built = _build(case)
    keep = {k: v.copy() for k, v in built.keep.items()}
    # block1.dw shares nothing with block0.pw: E is forced to the first index of block1.dw.
    keep["block0.pw"][:] = False
    keep["block0.pw"][[6, 7]] = True
    keep["block1.dw"][:] = False
    keep["block1.dw"][[1, 5]] = True
    # block2.dw overlaps block1.pw partly.
    keep["block1.pw"][:] = False
    keep["block1.pw"][[0, 1, 2]] = True
    keep["block2.dw"][:] = False
    keep["block2.dw"][[1, 2, 4]] = True
    kw, v = _kwargs(case), built.variables
    masked_model, masks = masked_equivalent(case.name, kw, keep, method="moda")
    np.testing.assert_array_equal(masks["block0.pw"], np.eye(8)[1])  # forced E = {1}
    np.testing.assert_array_equal(masks["block1.pw"], np.isin(np.arange(16), [1, 2]))
    np.testing.assert_array_equal(masks["block1.dw"], keep["block1.dw"])  # dw keeps its own set
    np.testing.assert_array_equal(masks["stem"], keep["stem"] & keep["block0.dw"])

    pruned, pv = prune(case.name, kw, v, keep, classes=case.classes, method="moda")
    assert pruned.dw_inputs["block1.dw"] == (0, -1)  # 1 ← E's only channel, 5 ← zero
    assert pruned.dw_inputs["block2.dw"] == (0, 1, -1)
    assert pruned.channels["block0.pw"] == 1 and pruned.channels["block1.pw"] == 2
    assert pv["params"]["block1"]["dw"]["conv"]["kernel"].shape == (3, 3, 1, 2)

    def forward(model, variables, masks=None):
        return jax.jit(lambda v, x, m: model.apply(v, x, masks=m))(variables, built.x, masks)

    (got, got_acts), (want, want_acts) = forward(pruned, pv), forward(masked_model, v, masks)
    np.testing.assert_allclose(got, want[:, np.asarray(case.classes)], rtol=1e-5, atol=1e-5)
    # Depthwise channel 1 reads the forced E channel; channel 5 reads a zero input.
    np.testing.assert_allclose(
        got_acts["block1.dw"], want_acts["block1.dw"][..., [1, 5]], atol=1e-5
    )
    np.testing.assert_allclose(got_acts["block0.pw"], want_acts["block0.pw"][..., [1]], atol=1e-5)
    # The raw keep-masks are not the masked form: they leave the forced channel off.
    raw = {k: jnp.asarray(m, jnp.float32) for k, m in keep.items()}
    _, raw_acts = forward(masked_model, v, raw)
    assert float(jnp.abs(want_acts["block0.pw"][..., 1]).max()) > 0.1
    assert float(jnp.abs(raw_acts["block0.pw"][..., 1]).max()) == 0.0
    assert not np.allclose(raw_acts["block1.dw"][..., 1], want_acts["block1.dw"][..., 1])


def test_mobilenet_mwt_keeps_first_depthwise_whole():
    kw = {"num_classes": N, "width": W, "mask_generators": True}
    keep = {"block0.dw": np.arange(4) < 2, "block0.pw": np.ones(8, bool)}
    masks = masked_equivalent("mobilenet", kw, keep, method="mwt")[1]
    np.testing.assert_array_equal(masks["block0.dw"], np.ones(4))
    moda = masked_equivalent("mobilenet", kw, keep, method="moda")[1]
    np.testing.assert_array_equal(moda["block0.dw"], keep["block0.dw"])


# ----------------------------------------------------------------------------- all-ones keep


@pytest.mark.parametrize(
    "case",
    [CASES[1], CASES[3], CASES[6], CASES[9], CASES[10], CASES[11], CASES[12]],
    ids=lambda c: f"{c.name}-{dict(c.extra).get('batch_norm', 'bn')}",
)
def test_all_ones_keep_is_the_parent(case):
    built = _build(case)
    kw = _kwargs(case)
    ones = {k: np.ones_like(v) for k, v in built.keep.items()}
    pruned, pv = prune(case.name, kw, built.variables, ones, method=case.method)
    masked_model, _ = masked_equivalent(case.name, kw, ones, method=case.method)
    assert pruned == masked_model  # same class and options, no channel overrides or wiring
    for field in ("channels", "residual", "dw_inputs"):
        assert getattr(pruned, field, None) is None
    assert models.count_params(pv["params"]) == _backbone_params(built.variables["params"])
    assert models.count_macs(pruned, _shape(case.name)) == _parent_macs(case)

    def strip(tree):
        return (
            {k: strip(v) for k, v in tree.items() if k != "generator"}
            if isinstance(tree, dict)
            else tree
        )

    expected = {col: strip(dict(built.variables[col])) for col in pv}
    jax.tree.map(np.testing.assert_array_equal, pv, expected)


def test_all_ones_forward_equals_parent():
    case = CASES[1]  # lenet5 with generators: the parent without generators, BN kept
    built = _build(case)
    kw = _kwargs(case)
    ones = {k: np.ones_like(v) for k, v in built.keep.items()}
    pruned, pv = prune(case.name, kw, built.variables, ones)
    parent = models.get_model("lenet5", num_classes=N, width=W, batch_norm=True)
    np.testing.assert_allclose(
        _logits(pruned, pv, built.x), _logits(parent, built.variables, built.x), atol=1e-6
    )


# ----------------------------------------------------------------------------- sizes by hand


def _zeros(model, shape):
    x = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
    abstract = jax.eval_shape(lambda x: model.init({"params": jax.random.key(0)}, x), x)
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), dict(abstract))


def test_sizes_by_hand():
    kw = {"num_classes": 10, "depth": 1}
    v = _zeros(models.get_model("mlp", **kw), (28, 28, 1))
    pruned, pv = prune("mlp", kw, v, {"dense_0": np.arange(49) < 7}, classes=[0, 5, 9])
    assert models.count_params(pv["params"]) == (784 * 7 + 7) + (7 * 3 + 3)
    assert models.count_macs(pruned, (28, 28, 1)) == 784 * 7 + 7 * 3

    kw = {"num_classes": 10}
    v = _zeros(models.get_model("lenet5", **kw), SHAPE)
    keep = {
        "conv_0": np.arange(6) < 3,
        "conv_1": np.arange(16) % 4 == 0,
        "fc_0": np.arange(120) < 10,
        "fc_1": np.arange(84) < 5,
    }
    pruned, pv = prune("lenet5", kw, v, keep, classes=[1, 2], method="moda")
    # conv_0 5·5·3·3 + 3, conv_1 5·5·3·4 + 4, fc_0 (4·25)·10 + 10, fc_1 10·5 + 5, head 5·2 + 2
    assert models.count_params(pv["params"]) == 228 + 304 + 1010 + 55 + 12
    macs = 28 * 28 * 25 * 3 * 3 + 10 * 10 * 25 * 3 * 4 + 100 * 10 + 10 * 5 + 5 * 2
    assert models.count_macs(pruned, SHAPE) == macs
    # The conv → fc flatten keeps channel-major rows c·25 + p of the kept channels.
    rows = (np.arange(0, 16, 4)[:, None] * 25 + np.arange(25)).ravel()
    fc0 = (
        v["params"]["fc_0"]["kernel"]
        .at[:, :10]
        .set(jnp.arange(400 * 10, dtype=jnp.float32).reshape(400, 10))
    )
    v["params"]["fc_0"]["kernel"] = fc0
    _, pv = prune("lenet5", kw, v, keep, classes=[1, 2], method="moda")
    np.testing.assert_array_equal(pv["params"]["fc_0"]["kernel"], fc0[rows][:, :10])


# ----------------------------------------------------------------------------- errors


def test_bad_inputs_raise():
    kw = {"num_classes": N, "width": W}
    v = _zeros(models.get_model("vgg16", **kw), SHAPE)
    ok = np.ones(8, bool)

    def run(keep, **kwargs):
        return prune("vgg16", kw, v, keep, **kwargs)

    with pytest.raises(ValueError, match=r"keep\['conv_99'\] names no mask point of vgg16"):
        run({"conv_99": ok})
    with pytest.raises(ValueError, match=r"keep\['head'\] names no mask point"):
        run({"head": np.ones(N, bool)})
    with pytest.raises(ValueError, match=r"keep\['conv_1'\] has shape \(9,\).*expected \(8,\)"):
        run({"conv_1": np.ones(9, bool)})
    with pytest.raises(ValueError, match=r"keep\['conv_1'\] has shape \(2, 8\)"):
        run({"conv_1": np.ones((2, 8), bool)})
    with pytest.raises(ValueError, match=r"keep\['conv_1'\] must be boolean"):
        run({"conv_1": np.full(8, 0.5)})
    with pytest.raises(ValueError, match=r"classes=\[3, 3\] must be distinct ints in \[0, 7\)"):
        run({"conv_1": ok}, classes=[3, 3])
    with pytest.raises(ValueError, match=r"classes=\[7\]"):
        run({"conv_1": ok}, classes=[7])
    with pytest.raises(ValueError, match="method='nemo' must be one of"):
        run({"conv_1": ok}, method="nemo")
    with pytest.raises(ValueError, match="unknown model name='vgg19'"):
        prune("vgg19", kw, v, {})
    with pytest.raises(ValueError, match="already pruned"):
        prune("vgg16", {**kw, "channels": {"conv_1": 3}}, v, {})
    with pytest.raises(ValueError, match=r"variables\['params'\] entry conv_0/.* has shape \(8,\)"):
        prune("vgg16", {**kw, "width": 0.25}, v, {})
