"""CNN modules as values: pipeline, top-k voting, replacement, save/load, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import decompose as dc
from modjax import models, modular
from modjax.modular import io as module_io
from modjax.modular.io import ModuleFileError
from modjax.modules import directory, registry

KW = {"depth": 8, "width": 0.25, "batch_norm": False, "num_classes": 3}


def _parent(seed):
    model = models.get_model("resnet_cifar", **KW)
    return jax.device_get(model.init(jax.random.key(seed), jnp.ones((1, 8, 8, 3)))["params"])


@pytest.fixture(scope="module")
def data():
    x = np.asarray(jax.random.normal(jax.random.key(1), (48, 8, 8, 3)), np.float32)
    y = np.arange(48) % 3
    return x, y


@pytest.fixture(scope="module")
def modules(data):
    x, y = data
    desc = modular.describe_parent("resnet_cifar", input_shape=(8, 8, 3), dataset="toy", **KW)
    return dc.decompose_cnn(_parent(0), x, y, confidence=0.0, num_positives=4, chunk=4, parent=desc)


def test_pipeline_gives_one_module_per_class(modules, data):
    x, _ = data
    params = _parent(0)
    assert [m.class_id for m in modules] == [0, 1, 2]
    assert list(modules[0].keep) == dc.cnn.parent.relu_points(params)  # forward order
    for m in modules:
        assert m.settings["kind"] == "cnn" and m.settings["negatives_per_class"] == 2
        assert 0 < m.metrics["position_rate"] <= 1 and m.metrics["num_confident"] == 16
        np.testing.assert_array_equal(m.masks["head"], m.params["head"]["kernel"] != 0)
        # channelled head: only the positive and the negative output have edges
        assert np.count_nonzero(np.any(m.masks["head"], axis=0)) == 2
    got = np.asarray(dc.cnn.module.logits(modules[1], jnp.asarray(x[:4])))
    head = (modules[1].params["head"]["kernel"], modules[1].params["head"]["bias"])
    want = dc.run(params, jnp.asarray(x[:4]), keep=modules[1].keep, head=head)[0]
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-6)
    assert 0 < dc.cnn.module.mean_jaccard(modules) <= 1


def test_vote_top1_and_topk(modules, data):
    x, _ = data
    stacked, own, labels = dc.compose(modules)
    logits = np.stack([np.asarray(dc.cnn.module.logits(m, jnp.asarray(x))) for m in modules])
    np.testing.assert_allclose(
        np.asarray(dc.vote.module_logits(stacked, jnp.asarray(x))), logits, rtol=1e-5, atol=1e-6
    )
    top1 = np.asarray(dc.predict(stacked, own, labels, jnp.asarray(x)))
    np.testing.assert_array_equal(top1, np.asarray(dc.vote.vote(jnp.asarray(logits), own)))
    top3 = np.asarray(dc.predict_topk(stacked, own, labels, jnp.asarray(x), k=3))
    np.testing.assert_array_equal(top3[:, 0], top1)
    assert all(sorted(row) == [0, 1, 2] for row in top3.tolist())
    with pytest.raises(ValueError, match=r"k=4 must be in \[1, 3\]"):
        dc.predict_topk(stacked, own, labels, jnp.asarray(x), k=4)


def test_replacement_uses_the_other_parents_module(modules, data):
    x, y = data
    desc = modular.describe_parent("resnet_cifar", input_shape=(8, 8, 3), dataset="toy2", **KW)
    other = dc.decompose_cnn(
        _parent(5), x, y, confidence=0.0, num_positives=4, chunk=4, parent=desc
    )
    mixed = [modules[0], other[1], modules[2]]
    with pytest.raises(ValueError, match=r"2 different parents .*class 1 of toy2"):
        dc.compose(mixed)
    stacked, own, labels = dc.compose(mixed, labels=[0, 1, 2])
    logits = np.stack([np.asarray(dc.cnn.module.logits(m, jnp.asarray(x))) for m in mixed])
    want = np.asarray(dc.vote.vote(jnp.asarray(logits), own))
    np.testing.assert_array_equal(np.asarray(dc.predict(stacked, own, labels, x)), want)
    with pytest.raises(ValueError, match="mix dense"):
        dense = dc.DenseModule({}, {}, 0, {}, {}, {})
        dc.compose([modules[0], dense], labels=[0, 1])


def test_save_load_round_trip_through_modular_io(modules, tmp_path):
    m = modules[2]
    path = dc.save_decomposed(m, tmp_path / "class_2")
    back = dc.load_decomposed(path)
    assert isinstance(back, dc.CnnModule) and back.class_id == 2
    assert list(back.keep) == list(m.keep)
    for name in m.keep:
        np.testing.assert_array_equal(back.keep[name], m.keep[name])
    for a, b in zip(jax.tree.leaves(back.params), jax.tree.leaves(m.params)):
        np.testing.assert_array_equal(a, b)
    saved = directory.load(path)  # the shared format, read by the family-neutral layer
    assert saved.method == "panrajan" and saved.info["kind"] == "cnn"
    assert registry.family_of(saved.method).name == "panrajan"
    assert registry.family_of(saved.method).units(saved)["layer1.0"].shape == (4,)
    with pytest.raises(ModuleFileError, match="MwT/MODA modules have one of"):
        module_io.load(path)  # the MwT/MODA view refuses another family's module, naming it
    entry = next(e for e in saved_manifest(path)["arrays"]["positions"] if e["name"] == "stem")
    np.save(path / entry["file"], ~m.keep["stem"], allow_pickle=False)
    with pytest.raises(ModuleFileError, match="edited or damaged"):
        dc.load_decomposed(path)


def saved_manifest(path):
    import json

    return json.loads((path / module_io.MANIFEST).read_text())


def test_bad_input_is_named(data):
    x, y = data
    with pytest.raises(ValueError, match=r"class 0 has \d+ training samples .* needs 100"):
        dc.decompose_cnn(_parent(0), x, y, confidence=0.0, num_positives=100)
    bn = models.get_model("resnet_cifar", depth=8, width=0.25, num_classes=3)
    params = bn.init(jax.random.key(0), jnp.ones((1, 8, 8, 3)))["params"]
    with pytest.raises(ValueError, match="layer stem has BatchNorm"):
        dc.decompose_cnn(params, x, y, confidence=0.0, num_positives=2)
    with pytest.raises(ValueError, match=r"class 0 has 16 samples; TI needs 20"):
        dc.decompose_cnn(_parent(0), x, y, confidence=0.0, num_positives=2, negatives_per_class=20)
