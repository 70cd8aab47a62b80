"""Tests of module extraction: counts, thresholds, fallbacks, modules (save/load: test_io.py)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import metrics, models, parallel
from modjax import modular as mz
from modjax.data import eval_batches

N = 3
LENET_SHAPE = (16, 16, 3)


def to_float(images, rng):
    del rng
    return images.astype(jnp.float32) / 255.0


def _data(num, shape=LENET_SHAPE, seed=0):
    rs = np.random.RandomState(seed)
    labels = np.arange(num, dtype=np.int32) % N
    rs.shuffle(labels)
    return rs.randint(0, 256, (num, *shape)).astype(np.uint8), labels


def _init(model, shape, seed=0):
    return model.init(jax.random.key(seed), jnp.zeros((1, *shape)), train=False)


def _perturb_generators(variables, seed=1):
    """Random generator output biases, so MwT masks differ between samples and kernels."""
    key = jax.random.key(seed)

    def f(path, leaf):
        names = [getattr(k, "key", None) for k in path]
        if "generator" in names and names[-2:] == ["fc2", "bias"]:
            return 0.3 * jax.random.normal(jax.random.fold_in(key, leaf.size), leaf.shape)
        return leaf

    return jax.tree_util.tree_map_with_path(f, variables)


@pytest.fixture(scope="module")
def lenet_mwt():
    model = models.get_model("lenet5", width=0.5, num_classes=N, mask_generators=True)
    variables = _perturb_generators(_init(model, LENET_SHAPE))
    step = mz.make_count_step(model=model, preprocess=to_float, num_classes=N, method="mwt")
    parent = mz.describe_parent(
        "lenet5",
        dataset="synthetic",
        checkpoint="test:0",
        input_shape=LENET_SHAPE,
        num_classes=N,
        width=0.5,
        mask_generators=True,
    )
    return model, variables, step, parent


def _naive_counts(model, variables, images, labels, valid, method):
    """Per-sample NumPy loop over the reference definitions (METHODS §4.5, §5.4)."""
    _, acts = model.apply(variables, to_float(jnp.asarray(images), None), train=False)
    acts = {k: np.asarray(v) for k, v in acts.items()}
    if method == "mwt":
        layers = {k.removesuffix("/mask"): acts[k] for k in acts if k.endswith("/mask")}
    else:
        layers = {k: a for k, a in acts.items() if not k.endswith("/mask")}
    counts = {k: np.zeros((N, a.shape[-1]), np.int64) for k, a in layers.items()}
    n = np.zeros(N, np.int64)
    for s in range(len(labels)):
        if not valid[s]:
            continue
        n[labels[s]] += 1
        for k, a in layers.items():
            if method == "mwt":
                ind = a[s] > 0
            else:
                ind = (np.abs(a[s]).reshape(-1, a.shape[-1]).mean(axis=0)) != 0
            counts[k][labels[s]] += ind
    return counts, n


def _assert_counts(counts, expected, n):
    np.testing.assert_array_equal(np.asarray(counts.per_class_count), n)
    assert set(counts.per_class_active) == set(expected)
    for k, v in expected.items():
        np.testing.assert_array_equal(np.asarray(counts.per_class_active[k]), v, err_msg=k)


def test_count_step_matches_naive_loop_mwt(lenet_mwt):
    model, variables, step, _ = lenet_mwt
    images, labels = _data(12)
    valid = np.ones(12, bool)
    valid[[3, 7]] = False
    counts = step(variables, {"image": images, "label": labels, "mask": valid})
    expected, n = _naive_counts(model, variables, images, labels, valid, "mwt")
    assert set(expected) == set(models.masked_layers(model, input_shape=LENET_SHAPE))
    # The perturbed generators give a non-trivial pattern (neither all on nor all off).
    assert 0 < expected["conv_1"].sum() < n.sum() * expected["conv_1"].shape[1]
    _assert_counts(counts, expected, n)


def _mwt_extract_then_prune(name, kw, variables, layers, check_pruned):
    """Count → τ → modules → pruned form == masked form, for one MwT model; `check_pruned(
    module, pruned_model, pruned_variables, masked_logits)` adds the model's own checks."""
    model = models.get_model(name, **kw)
    parent = mz.describe_parent(name, dataset="synthetic", input_shape=LENET_SHAPE, **kw)
    images, labels = _data(20)
    assert list(models.masked_layers(model, input_shape=LENET_SHAPE)) == layers
    with jax.transfer_guard("disallow"):
        result = mz.extract_modules(
            eval_batches(images, labels, global_batch_size=8),
            variables=variables,
            parent=parent,
            preprocess=to_float,
            method="mwt",
            threshold=0.5,
            disable=True,
        )
    expected, n = _naive_counts(model, variables, images, labels, np.ones(20, bool), "mwt")
    total = n.sum() * sum(v.shape[1] for v in expected.values())
    assert 0 < sum(v.sum() for v in expected.values()) < total  # non-trivial
    _assert_counts(result.counts, expected, n)
    x = to_float(jnp.asarray(_data(5, seed=3)[0]), None)
    plain = mz.masked_form_model(result.modules[0])
    assert not plain.mask_generators
    stripped = mz.drop_generators(variables)
    assert jax.tree.structure(stripped) == jax.tree.structure(_init(plain, LENET_SHAPE))
    dropped = 0
    for m in result.modules:
        assert list(m.keep) == layers
        want, _ = plain.apply(stripped, x, masks=mz.as_masks(m))
        pruned, pv = mz.prune.prune(
            name, kw, variables, m.keep, method="mwt", input_shape=LENET_SHAPE
        )
        assert "generator" not in str(jax.tree.structure(pv))
        check_pruned(m, pruned, pv, want)
        got, _ = pruned.apply(pv, x)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        dropped += sum(int((~k).sum()) for k in m.keep.values())
    assert dropped > 0  # some module drops units: the pruned form is really narrower


def test_mlp_mwt_extraction_then_pruning_equals_the_masked_form():
    """Neuron-level MwT on the MLP: count → τ → modules → pruned form == masked form."""
    kw = {"num_classes": N, "depth": 3, "hidden": 8, "mask_generators": True}
    variables = _perturb_generators(_init(models.get_model("mlp", **kw), LENET_SHAPE))

    def check(m, pruned, pv, want):
        del pv, want
        assert pruned.channels == {n: int(k.sum()) for n, k in m.keep.items() if not k.all()}

    _mwt_extract_then_prune("mlp", kw, variables, ["dense_0", "dense_1", "dense_2"], check)


@pytest.mark.parametrize("batch_norm", [True, False], ids=("bn", "nobn"))
def test_resnet_cifar_mwt_extraction_then_pruning_equals_the_masked_form(batch_norm):
    """MwT on the CIFAR ResNet-v1: count → τ → modules → pruned form == masked form."""
    kw = {"num_classes": N, "depth": 8, "width": 0.25, "mask_generators": True}
    kw["batch_norm"] = batch_norm
    variables = _perturb_generators(_init(models.get_model("resnet_cifar", **kw), LENET_SHAPE))
    if not batch_norm:  # conv2 starts at zero without BN: give the branches weights
        variables = jax.tree_util.tree_map_with_path(
            lambda path, leaf: (
                0.3 * jax.random.normal(jax.random.key(leaf.size), leaf.shape)
                if "conv2" in jax.tree_util.keystr(path) and path[-1].key == "kernel"
                else leaf
            ),
            variables,
        )
    layers = [
        "layer1.0.conv1",
        "layer1.0.conv2",
        *[f"layer{s}.0.{c}" for s in (2, 3) for c in ("conv1", "conv2", "shortcut")],
    ]

    def check(m, pruned, pv, want):
        del m, pruned
        assert ("batch_stats" in pv) == batch_norm
        assert float(jnp.abs(want).max()) > 0.01

    _mwt_extract_then_prune("resnet_cifar", kw, variables, layers, check)


@pytest.mark.parametrize("name", ["lenet5", "mlp"])
def test_count_step_matches_naive_loop_moda(name):
    kwargs = {"depth": 2, "hidden": 6} if name == "mlp" else {"width": 0.5}
    model = models.get_model(name, num_classes=N, **kwargs)
    variables = _init(model, LENET_SHAPE)
    images, labels = _data(10)
    step = mz.make_count_step(model=model, preprocess=to_float, num_classes=N, method="moda")
    counts = step(variables, {"image": images, "label": labels})
    expected, n = _naive_counts(model, variables, images, labels, np.ones(10, bool), "moda")
    assert list(expected) == list(models.tracked_layers(model, input_shape=LENET_SHAPE))
    _assert_counts(counts, expected, n)


def test_one_pass_equals_per_class_passes_and_order_is_irrelevant(lenet_mwt):
    _, variables, step, _ = lenet_mwt
    images, labels = _data(12)
    full = step(variables, {"image": images, "label": labels})
    perm = np.random.RandomState(3).permutation(12)
    permuted = step(variables, {"image": images[perm], "label": labels[perm]})
    jax.tree.map(np.testing.assert_array_equal, full, permuted)
    for c in range(N):
        # Class c alone, padded back to the batch size with masked-out rows.
        valid = labels == c
        only = step(variables, {"image": images, "label": labels, "mask": valid})
        assert int(only.per_class_count[c]) == int(valid.sum())
        for k, v in full.per_class_active.items():
            np.testing.assert_array_equal(only.per_class_active[k][c], v[c])
            assert int(np.asarray(only.per_class_active[k]).sum()) == int(v[c].sum())


def test_padded_rows_are_ignored_and_the_step_compiles_once(lenet_mwt):
    model, variables, _, _ = lenet_mwt
    step = mz.make_count_step(model=model, preprocess=to_float, num_classes=N, method="mwt")
    # One jitted function per configuration (shared with the other tests of this model), so
    # count the compiles this loop adds.
    assert mz.make_count_step(model=model, preprocess=to_float, num_classes=N, method="mwt") is step
    compiled_before = step._cache_size()
    images, labels = _data(13)
    total = None
    for batch in eval_batches(images, labels, global_batch_size=8):  # 8 + 5 real, 3 padding
        counts = step(variables, batch)
        total = counts if total is None else jax.tree.map(jnp.add, total, counts)
    empty = step(variables, {"image": images[:8], "label": labels[:8], "mask": np.zeros(8, bool)})
    assert step._cache_size() <= compiled_before + 1
    expected, n = _naive_counts(model, variables, images, labels, np.ones(13, bool), "mwt")
    _assert_counts(total, expected, n)
    assert all(int(np.asarray(v).sum()) == 0 for v in jax.tree.leaves(empty))


def test_count_step_on_an_8_device_mesh_equals_one_device(lenet_mwt):
    model, variables, step, _ = lenet_mwt
    mesh = parallel.make_mesh(8)
    sharded = mz.make_count_step(
        model=model, preprocess=to_float, num_classes=N, method="mwt", mesh=mesh
    )
    images, labels = _data(16)
    valid = np.arange(16) < 13
    batch = {"image": images, "label": labels, "mask": valid}
    got = sharded(parallel.replicate(variables, mesh), parallel.shard_batch(batch, mesh))
    jax.tree.map(np.testing.assert_array_equal, got, step(variables, batch))


def test_class_frequencies_and_empty_class_error():
    counts = mz.Counts({"l": np.array([[9, 10], [0, 1], [0, 0]])}, np.array([10, 4, 2]))
    freq = mz.class_frequencies(counts)
    np.testing.assert_allclose(freq["l"], [[0.9, 1.0], [0.0, 0.25], [0.0, 0.0]])
    keep, _ = mz.extract(freq, method="moda", fallback=False)
    assert keep["l"][0].tolist() == [True, True]  # 9/10 >= 0.9 exactly
    with pytest.raises(ValueError, match=r"class 1 has no samples"):
        mz.class_frequencies(mz.Counts({"l": np.zeros((3, 2))}, np.array([4, 0, 2])))


@pytest.mark.parametrize("method", ["mwt", "moda"])
def test_thresholds_on_hand_built_frequencies(method):
    freq = {
        "a": np.array([[1.0, 0.9, 0.89], [0.5, 0.95, 0.9], [0.91, 0.0, 0.0]]),
        "b": np.array([[0.99], [0.9], [0.95]]),
    }
    keep, events = mz.extract(freq, method=method)
    assert events == []
    assert keep["a"].tolist() == [[True, True, False], [False, True, True], [True, False, False]]
    assert keep["b"].tolist() == [[True], [True], [True]]
    strict, _ = mz.extract(freq, method=method, threshold=1.0, fallback=False)
    assert strict["a"].tolist() == [[True, False, False], [False] * 3, [False] * 3]
    loose, _ = mz.extract(freq, method=method, threshold=0.5)
    assert loose["a"][1].tolist() == [True, True, True]


def test_mwt_fallback_lowers_threshold_in_005_steps_and_records_events():
    freq = {
        "a": np.array([[0.62, 0.6, 0.1], [0.95, 0.0, 0.0], [0.85, 0.3, 0.0]]),
        "b": np.array([[0.9, 0.0], [0.2, 0.05], [1.0, 1.0]]),
    }
    keep, events = mz.extract(freq, method="mwt", threshold=0.9)
    assert keep["a"].tolist() == [[True, True, False], [True, False, False], [True, False, False]]
    assert keep["b"].tolist() == [[True, False], [True, False], [True, True]]
    assert events == [
        mz.FallbackEvent("a", 0, 0.6, 2),  # 0.9 → 0.85 → … → 0.6 keeps 0.62 and 0.6
        mz.FallbackEvent("a", 2, 0.85, 1),  # exactly at the lowered threshold
        mz.FallbackEvent("b", 1, 0.2, 1),
    ]
    off, none = mz.extract(freq, method="mwt", fallback=False)
    assert none == [] and not off["a"][0].any()
    with pytest.raises(ValueError, match=r"layer 'z' of class 1 keeps no kernel"):
        mz.extract({"z": np.array([[1.0, 0.0], [0.04, 0.0]])}, method="mwt")


def test_moda_fallback_picks_top_k():
    c = 400  # min_req = max(1, floor(0.005 * 400)) = 2
    f = np.zeros((3, c))
    f[0, :5] = 0.95  # 5 kept: k = max(5, 2) = 5
    f[1, 10] = 0.97  # 1 kept < min_req: top-5 of the row
    f[1, [20, 21, 22, 23, 24, 25]] = [0.8, 0.7, 0.6, 0.5, 0.5, 0.5]
    f[2, 30:33] = 0.9
    keep, events = mz.extract({"l": f}, method="moda")
    assert np.flatnonzero(keep["l"][1]).tolist() == [10, 20, 21, 22, 23]  # ties: lower index
    assert keep["l"][0].sum() == 5 and keep["l"][2].sum() == 3
    assert events == [mz.FallbackEvent("l", 1, None, 5)]
    small = np.array([[0.95, 0.5, 0.0, 0.0], [0.1, 0.6, 0.2, 0.0]])  # min_req = 1, k = 1
    keep, events = mz.extract({"s": small}, method="moda")
    assert keep["s"].tolist() == [[True, False, False, False], [False, True, False, False]]
    assert events == [mz.FallbackEvent("s", 1, None, 1)]
    off, none = mz.extract({"l": f}, method="moda", fallback=False)
    assert none == [] and off["l"][1].sum() == 1


@pytest.mark.parametrize("threshold", [0, 0.0, -0.1, 1.5, math.nan, True, "0.9"])
def test_bad_threshold_and_method_raise(threshold):
    freq = {"l": np.ones((2, 3))}
    with pytest.raises(ValueError, match=r"threshold=.* must be in \(0, 1\]"):
        mz.extract(freq, method="mwt", threshold=threshold)
    with pytest.raises(ValueError, match=r"method='nemo' must be one of"):
        mz.extract(freq, method="nemo")


def _module(parent, keep, classes=(0,), method="moda"):
    return mz.Module(
        keep=keep,
        classes=classes,
        parent=parent,
        method=method,
        threshold=0.9,
        fallbacks=(),
        metrics={"kernel_rate": mz.kernel_rate(keep)},
    )


def test_all_ones_keep_reproduces_the_unmasked_model_moda():
    model = models.get_model("lenet5", width=0.5, num_classes=N)
    variables = _init(model, LENET_SHAPE)
    parent = mz.describe_parent("lenet5", num_classes=N, width=0.5, input_shape=LENET_SHAPE)
    layers = models.tracked_layers(model, input_shape=LENET_SHAPE)
    ones = _module(parent, {n: np.ones(c, bool) for n, c in layers.items()})
    x = to_float(jnp.asarray(_data(4)[0]), None)
    ref, _ = model.apply(variables, x)
    out, _ = mz.masked_form_model(ones).apply(variables, x, masks=mz.as_masks(ones))
    np.testing.assert_array_equal(out, ref)
    # A partial keep zeroes exactly the dropped units of every tracked act.
    rs = np.random.RandomState(0)
    some = _module(parent, {n: rs.rand(c) < 0.5 for n, c in layers.items()})
    _, acts = model.apply(variables, x, masks=mz.as_masks(some))
    for n, k in some.keep.items():
        assert np.all(np.asarray(acts[n])[..., ~k] == 0), n


def test_all_ones_keep_reproduces_the_generator_free_model_mwt(lenet_mwt):
    model, variables, _, parent = lenet_mwt
    layers = models.masked_layers(model, input_shape=LENET_SHAPE)
    ones = _module(parent, {n: np.ones(c, bool) for n, c in layers.items()}, method="mwt")
    masks = mz.as_masks(ones)
    assert list(masks) == ["conv_1"]
    plain = mz.masked_form_model(ones)
    assert not plain.mask_generators and plain.batch_norm  # generators dropped, BN kept
    stripped = mz.drop_generators(variables)
    expected_tree = jax.tree.structure(_init(plain, LENET_SHAPE))
    assert jax.tree.structure(stripped) == expected_tree
    x = to_float(jnp.asarray(_data(4)[0]), None)
    out, acts = plain.apply(stripped, x, masks=masks)
    ref, _ = plain.apply(stripped, x)
    np.testing.assert_array_equal(out, ref)
    assert not any(k.endswith("/mask") for k in acts)


def test_mobilenet_effective_sets():
    parent = mz.describe_parent("mobilenet", num_classes=N, width=0.125, input_shape=(8, 8, 3))
    points = models.mask_points("mobilenet", num_classes=N, width=0.125, input_shape=(8, 8, 3))
    keep = {n: np.ones(c, bool) for n, c in points.items()}
    keep["stem"] = np.array([1, 1, 0, 0], bool)
    keep["block0.dw"] = np.array([0, 1, 1, 0], bool)
    keep["block0.pw"] = np.array([1, 0, 0, 0, 0, 0, 0, 0], bool)
    keep["block1.dw"] = np.array([0, 0, 1, 1, 0, 0, 0, 0], bool)  # disjoint from block0.pw
    eff = mz.effective_keep(_module(parent, keep))
    assert eff["stem"].tolist() == [False, True, False, False]  # E = stem ∧ block0.dw
    assert eff["block0.dw"].tolist() == keep["block0.dw"].tolist()  # own set kept
    assert np.flatnonzero(eff["block0.pw"]).tolist() == [2]  # empty E → first own index
    assert eff["block1.dw"].tolist() == keep["block1.dw"].tolist()
    mwt = {n: k for n, k in keep.items() if n != "stem"}
    eff = mz.effective_keep(_module(parent, mwt, method="mwt"))
    assert eff["block0.dw"].all()  # MwT fork: first depthwise layer intact
    assert np.flatnonzero(eff["block0.pw"]).tolist() == [2]


def test_union_ors_keeps_and_rejects_other_parents(lenet_mwt):
    _, _, _, parent = lenet_mwt
    a = _module(parent, {"conv_1": np.array([1, 0, 0, 0, 1, 0, 0, 0], bool)}, (2,), "mwt")
    b = _module(parent, {"conv_1": np.array([0, 1, 0, 0, 1, 0, 0, 0], bool)}, (0,), "mwt")
    u = mz.union([a, b])
    assert u.classes == (0, 2)
    assert np.flatnonzero(u.keep["conv_1"]).tolist() == [0, 1, 4]
    assert u.metrics["kernel_rate"] == pytest.approx(3 / 8)
    other = b._replace(parent={**parent, "checkpoint": "test:1"})
    with pytest.raises(ValueError, match=r"parent differs"):
        mz.union([a, other])


def test_extract_modules_end_to_end_without_implicit_transfers(lenet_mwt):
    model, variables, _, parent = lenet_mwt
    images, labels = _data(20)
    with jax.transfer_guard("disallow"):
        result = mz.extract_modules(
            eval_batches(images, labels, global_batch_size=8),
            variables=variables,
            parent=parent,
            preprocess=to_float,
            method="mwt",
            disable=True,
        )
    assert len(result.modules) == N
    assert set(result.timing) == {"compile_s", "count_s", "extract_s", "total_s", "num_batches"}
    assert result.timing["num_batches"] == 3
    expected, n = _naive_counts(model, variables, images, labels, np.ones(20, bool), "mwt")
    _assert_counts(result.counts, expected, n)
    keep, events = mz.extract(mz.class_frequencies(result.counts), method="mwt")
    assert list(result.fallbacks) == events
    for c, m in enumerate(result.modules):
        assert m.classes == (c,) and m.method == "mwt" and m.threshold == 0.9
        assert list(m.keep) == list(models.masked_layers(model, input_shape=LENET_SHAPE))
        np.testing.assert_array_equal(m.keep["conv_1"], keep["conv_1"][c])
        assert m.metrics["num_samples"] == n[c]
        assert m.fallbacks == tuple(e for e in events if e.class_id == c)


@pytest.mark.parametrize("name", ["resnet18", "vgg16", "mlp", "resnet20_nobn"])
def test_method_layers_are_mask_points_of_the_masked_form(name):
    for method, generators in (("moda", False), ("mwt", True)):
        parent = mz.describe_parent(name, num_classes=N, width=0.125, mask_generators=generators)
        layers = (models.masked_layers if generators else models.tracked_layers)(
            name, num_classes=N, width=0.125, mask_generators=generators
        )
        module = _module(parent, {n: np.ones(c, bool) for n, c in layers.items()}, method=method)
        mz.check_module(module)  # every key is a mask point with the parent's channel count
        points = models.mask_points(mz.masked_form_model(module))
        assert set(mz.as_masks(module)) <= set(points)
        if name.startswith("resnet"):  # MODA: block outputs; MwT: conv1/conv2/shortcut
            assert ("layer1.0" in layers) == (method == "moda")
            assert ("layer2.0.shortcut" in layers) == (method == "mwt")


def test_extract_modules_jaccard_equals_the_per_sample_definition(lenet_mwt):
    model, variables, _, parent = lenet_mwt

    def noisy(path, leaf):  # input-dependent generator masks: samples differ
        if "generator" in [getattr(k, "key", None) for k in path]:
            return leaf + 3.0 * jax.random.normal(jax.random.key(leaf.size), leaf.shape)
        return leaf

    variables = jax.tree_util.tree_map_with_path(noisy, variables)
    images, labels = _data(20)
    images = (images * np.linspace(0.0, 1.0, 20)[:, None, None, None]).astype(np.uint8)
    with jax.transfer_guard("disallow"):
        result = mz.extract_modules(
            eval_batches(images, labels, global_batch_size=8),  # 20 rows: padding in batch 3
            variables=variables,
            parent=parent,
            preprocess=to_float,
            method="mwt",
            threshold=0.05,  # kernels active on few samples join u_c: cohesion < 1
            disable=True,
            jaccard=True,
        )
    _, acts = model.apply(variables, to_float(jnp.asarray(images), None), train=False)
    names = sorted(k for k in acts if k.endswith("/mask"))
    masks = np.concatenate([np.asarray(acts[k]) > 0 for k in names], axis=1)
    U = np.stack(
        [np.concatenate([m.keep[k.removesuffix("/mask")] for k in names]) for m in result.modules]
    )
    want = metrics.jaccard_cohesion(masks, labels, U)
    got = result.jaccard["cohesion"]
    assert 0.0 < got.mean < 1.0  # masks differ between samples: a non-trivial value
    np.testing.assert_allclose(got.per_class, want.per_class, rtol=1e-12)
    assert result.jaccard["coupling"].mean == metrics.jaccard_coupling(U).mean
    assert "jaccard_s" in result.timing
    with pytest.raises(ValueError, match="jaccard=True is MwT's"):
        mz.extract_modules(
            [], variables=variables, parent=parent, preprocess=to_float, method="moda", jaccard=True
        )
