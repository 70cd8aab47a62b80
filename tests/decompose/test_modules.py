"""Module values: voting, composition checks, pruning, sizes, save/load, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.panrajan_ref import dense as ref
from modjax import decompose as dc
from modjax import models
from modjax.modular.io import ModuleFileError


@pytest.fixture(scope="module")
def parent():
    model = models.get_model("mlp", depth=2, hidden=6, num_classes=3)
    params = model.init(jax.random.key(0), jnp.ones((1, 5)))["params"]
    x = np.asarray(jax.random.normal(jax.random.key(1), (120, 5)), np.float32)
    y = np.argmax(np.asarray(model.apply({"params": params}, x)[0]), 1)
    return model, params, x, y


@pytest.fixture(scope="module")
def modules(parent):
    _, params, x, y = parent
    return dc.decompose_dense(
        params, x, y, confidence=0.0, num_positives=4, negatives_per_class=2,
        parent={"dataset": "toy", "checkpoint": "a"},
    )  # fmt: skip


def test_vote_matches_reference():
    logits = np.asarray(jax.random.normal(jax.random.key(2), (4, 64, 5)) * 3)
    own = np.array([3, 0, 4, 1])
    got = jax.jit(dc.vote.vote)(jnp.asarray(logits), jnp.asarray(own))
    np.testing.assert_array_equal(np.asarray(got), ref.vote(logits, own))


def test_compose_predicts_labels_and_checks_parents(modules, parent):
    _, _, x, _ = parent
    stacked, own, labels = dc.compose(modules)
    pred = jax.jit(dc.predict)(stacked, own, labels, jnp.asarray(x))
    logits = np.asarray(dc.vote.module_logits(stacked, jnp.asarray(x)))
    np.testing.assert_array_equal(np.asarray(pred), ref.vote(logits, np.arange(3)))
    other = modules[1]._replace(parent={"dataset": "other", "checkpoint": "b"})
    with pytest.raises(ValueError, match="different parents.*labels="):
        dc.compose([modules[0], other])
    _, _, relabelled = dc.compose([modules[0], other], labels=[0, 1])
    assert relabelled.tolist() == [0, 1]
    with pytest.raises(ValueError, match="repeats a label"):
        dc.compose([modules[0], modules[1]], labels=[1, 1])


def test_pruned_form_gives_the_same_logits_with_fewer_macs(modules, parent):
    model, _, x, _ = parent
    zeroed = jax.tree.map(np.array, modules[0].params)
    zeroed["dense_1"]["kernel"][:, :3] = 0.0  # three nodes lose every incoming edge
    zeroed["dense_1"]["bias"][:3] = [0.5, -0.2, 0.0]
    for p in (*[m.params for m in modules], zeroed):
        channels, pruned = dc.prune(p)
        small = models.get_model("mlp", depth=2, hidden=6, num_classes=3, channels=channels)
        np.testing.assert_allclose(
            np.asarray(small.apply({"params": pruned}, x)[0]),
            np.asarray(model.apply({"params": p}, x)[0]), rtol=1e-5, atol=1e-5,
        )  # fmt: skip
    assert dc.prune(zeroed)[0]["dense_1"] <= 3
    size = dc.sizes(zeroed, input_shape=(5,))
    assert size["mac_rate"] < 1 and size["node_rate"] < 1 and 0 < size["edge_rate"] < 1


@pytest.fixture(scope="module")
def described(parent):
    from modjax import modular

    _, params, x, y = parent
    desc = modular.describe_parent("mlp", depth=2, hidden=6, num_classes=3, input_shape=(5,))
    return dc.decompose_dense(
        params, x, y, confidence=0.0, num_positives=4, negatives_per_class=2, parent=desc
    )


def test_save_load_round_trip(described, modules, tmp_path):
    m = described[2]
    path = dc.save_decomposed(m, tmp_path / "class_2")
    back = dc.load_decomposed(path)
    assert back.class_id == 2 and back.settings == m.settings
    assert back.parent == {"hash": None, "step": None, **m.parent}
    for a, b in zip(jax.tree.leaves(back.params), jax.tree.leaves(m.params)):
        np.testing.assert_array_equal(a, b)
    channels, _ = dc.load_pruned(path)
    assert channels == dc.prune(m.params)[0]
    with pytest.raises(FileExistsError):
        dc.save_decomposed(m, path)
    with pytest.raises(ValueError, match=r"parent lacks \['model', 'model_kwargs', 'input_shape'"):
        dc.save_decomposed(modules[0], tmp_path / "no_parent")  # not a zoo description
    np.save(path / "edge_masks" / "00000.npy", ~back.masks["dense_0"], allow_pickle=False)
    with pytest.raises(ModuleFileError, match="edited or damaged"):
        dc.load_decomposed(path)


def test_too_few_confident_samples_names_the_class(parent):
    _, params, x, y = parent
    with pytest.raises(ValueError, match=r"class 0 has \d+ training samples .* needs 1000"):
        dc.decompose_dense(params, x, y)


def test_bad_parents_are_named():
    with pytest.raises(ValueError, match="unsupported architecture 'simcnn'"):
        dc.check_parent("simcnn")
    with pytest.raises(ValueError, match="dense_1 has activation 'tanh'"):
        dc.check_parent("mlp", activations=["relu", "tanh"])
    with pytest.raises(ValueError, match="unsupported architecture"):
        dc.dense.parent.to_layers({"conv_0": {"kernel": np.ones((3, 3, 1, 2)), "bias": np.ones(2)}})
    with pytest.raises(ValueError, match="ti='x'"):
        dc.dense.decompose.make_decompose(ti="x")


def test_directory_is_the_shared_format(described, tmp_path):
    """A decomposed module is a module directory of the shared layer: method "panrajan", edge
    masks as arrays, read by its family and refused by the MwT/MODA view."""
    from modjax.modular import io
    from modjax.modules import directory, registry

    m = described[1]
    path = dc.save_decomposed(m, tmp_path / "class_1")
    saved = directory.load(path)
    assert saved.method == "panrajan" and saved.classes == (1,)
    for name, mask in m.masks.items():
        np.testing.assert_array_equal(saved.arrays["edge_masks"][name], mask)
    assert saved.info["channels"] == dc.prune(m.params)[0] and saved.info["kind"] == "dense"
    units = registry.family_of(saved.method).units(saved)
    assert list(units) == ["dense_0", "dense_1"] and units["dense_0"].dtype == bool
    with pytest.raises(ModuleFileError, match=r"'panrajan'; MwT/MODA modules have one of"):
        io.load(path)
