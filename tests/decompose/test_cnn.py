"""CNN decomposition (ICSE'22): the forward pass, CI/TI maps and MC against a literal reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.panrajan_ref import cnn as ref
from modjax import decompose as dc
from modjax import models
from modjax.decompose.cnn.decompose import make_decompose

NUM_CLASSES = 3


@pytest.fixture(scope="module")
def parent():
    model = models.get_model(
        "resnet_cifar", depth=8, width=0.25, batch_norm=False, num_classes=NUM_CLASSES
    )
    x = np.asarray(jax.random.normal(jax.random.key(1), (3, 5, 8, 8, 3)), np.float32)
    params = model.init(jax.random.key(0), jnp.asarray(x[0]))["params"]
    return model, jax.device_get(params), x


def test_run_is_the_zoo_forward(parent):
    model, params, x = parent
    logits, pre = jax.jit(dc.run)(params, x[0])
    expected, acts = model.apply({"params": params}, x[0])
    np.testing.assert_allclose(np.asarray(logits), np.asarray(expected), rtol=1e-4, atol=1e-5)
    assert sorted(pre) == sorted(acts)  # jit returns dicts key-sorted
    assert dc.cnn.parent.relu_points(params) == list(acts) == list(dc.run(params, x[0, :1])[1])
    for name, z in pre.items():
        np.testing.assert_allclose(np.maximum(np.asarray(z), 0), acts[name], atol=1e-5)


def test_inactive_and_chunks_and_padding(parent):
    _, params, x = parent
    flat = x.reshape(-1, 8, 8, 3)
    valid = np.arange(len(flat)) % 4 != 1
    got = jax.jit(lambda p, s, v: dc.cnn.identify.inactive_and(p, s, valid=v, chunk=4))(
        params, flat, valid
    )
    _, pre = dc.run(params, jnp.asarray(flat[valid]))
    for name, z in pre.items():
        np.testing.assert_array_equal(np.asarray(got[name]), np.all(np.asarray(z) <= 0, axis=0))


@pytest.mark.parametrize("cm,delta", [("none", 0.5), ("c", 0.5), ("bln", 0.05)])
def test_decompose_matches_literal_reference(parent, cm, delta):
    _, params, x = parent
    positives, groups = x[:, :3], x[:, 3:]
    out = make_decompose(cm=cm, delta=delta, chunk=2)(params, positives, groups)
    expected = ref.decompose(params, positives, groups, cm=cm, delta=delta)
    some_inactive = some_active = 0
    for c, (keep, (w, b)) in enumerate(expected):
        for name, k in keep.items():
            np.testing.assert_array_equal(np.asarray(out["keep"][name][c]), k, err_msg=name)
            some_inactive += int((~k).sum())
            some_active += int(k.sum())
        np.testing.assert_allclose(np.asarray(out["head"]["kernel"][c]), w, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(np.asarray(out["head"]["bias"][c]), b, rtol=1e-6, atol=1e-7)
        keep_c = {k: np.asarray(v[c]) for k, v in out["keep"].items()}
        head_c = (out["head"]["kernel"][c], out["head"]["bias"][c])
        got = dc.run(params, jnp.asarray(x[c, :1]), keep=keep_c, head=head_c)[0][0]
        np.testing.assert_allclose(
            np.asarray(got), ref.forward(params, x[c, 0], keep, (w, b))[0], rtol=1e-4, atol=1e-5
        )
    assert some_inactive > 0 and some_active > 0  # the maps are not trivial


def test_bln_marks_features_of_the_last_block(parent):
    _, params, x = parent
    c_out = make_decompose(cm="c", chunk=5)(params, x[:, :3], x[:, 3:])
    b_out = make_decompose(cm="bln", delta=0.05, chunk=5)(params, x[:, :3], x[:, 3:])
    last = dc.cnn.parent.relu_points(params)[-1]
    marked = 0
    for c in range(NUM_CLASSES):
        marks = np.asarray(dc.cnn.channel.bln_marks(c_out["head"]["kernel"][c], c, delta=0.05))
        dropped = np.asarray(c_out["keep"][last][c]) & ~np.asarray(b_out["keep"][last][c])
        np.testing.assert_array_equal(np.any(dropped, axis=(0, 1)), marks & np.any(
            np.asarray(c_out["keep"][last][c]), axis=(0, 1)))  # fmt: skip
        assert not np.any(np.asarray(b_out["keep"][last][c])[..., marks])
        marked += int(marks.sum())
    assert marked > 0


def test_batchnorm_parent_is_refused_naming_the_layer():
    model = models.get_model("resnet_cifar", depth=8, width=0.25, num_classes=3)
    variables = model.init(jax.random.key(0), jnp.ones((1, 8, 8, 3)))
    with pytest.raises(ValueError, match=r"layer stem has BatchNorm"):
        dc.cnn.parent.layout(variables["params"])
    with pytest.raises(ValueError, match=r"resnet20.*BatchNorm.*resnet20_nobn"):
        dc.check_cnn_parent("resnet20")
    with pytest.raises(ValueError, match=r"unsupported architecture 'vgg16'"):
        dc.check_cnn_parent("vgg16")
    dc.check_cnn_parent("resnet56_nobn")
    with pytest.raises(ValueError, match=r"dense_0.*stem"):
        dc.cnn.parent.layout({"dense_0": {}, "head": {}})


def test_bad_arguments_are_named(parent):
    _, params, x = parent
    with pytest.raises(ValueError, match=r"cm='rie' must be one of"):
        make_decompose(cm="rie")
    with pytest.raises(ValueError, match=r"chunk=0"):
        make_decompose(chunk=0)
    with pytest.raises(ValueError, match=r"positives has 3 classes and negatives 2"):
        make_decompose()(params, x, x[:2])
