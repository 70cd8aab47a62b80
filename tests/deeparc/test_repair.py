"""Repair (METHODS §8.5): PGD, deviation scores, partitioned fine-tuning of the top-k blocks."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import models, objectives, train
from modjax.deeparc import pipeline, repair


def _pre(images, rng):
    del rng
    return images.astype(jnp.float32) / 255.0


@pytest.fixture(scope="module")
def tiny():
    model = models.get_model("resnet14", width=0.125, num_classes=3)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, 8, 8, 3)).astype(np.uint8)
    labels = rng.integers(0, 3, 24).astype(np.int32)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
    return model, variables, images, labels


def test_pgd_stays_in_the_ball_and_raises_the_loss(tiny):
    model, variables, images, labels = tiny
    attack = repair.make_pgd(model=model, preprocess=_pre, eps=8.0, step_size=2.0, steps=5)
    adv = np.asarray(attack(variables, images, labels, jax.random.key(0)))
    assert np.abs(adv - images).max() <= 8.0 + 1e-4 and adv.min() >= 0 and adv.max() <= 255

    def loss(x):
        logits, _ = model.apply(variables, _pre(jnp.asarray(x), None))
        return float(objectives.cross_entropy(logits, labels).mean())

    assert loss(adv) > loss(images)


def test_deviation_scores_and_selection():
    sims = np.array([[1.0, 0.9, 0.5, 0.45], [1.0, 0.8, 0.7, 0.1]])
    np.testing.assert_allclose(repair.deviation_scores(sims), [0.3, 0.5, 0.65])
    assert repair.select_blocks(repair.deviation_scores(sims), 2) == [2, 1]
    with pytest.raises(ValueError, match="k=4 must be in 1..3"):
        repair.select_blocks(np.zeros(3), 4)


def test_selection_within_a_parameter_budget(tiny):
    model, variables, _, _ = tiny
    shares = repair.block_shares(model, variables["params"])
    sizes = {k: sum(np.size(a) for a in jax.tree.leaves(v)) for k, v in variables["params"].items()}
    assert shares[0] == pytest.approx(sizes["layer1_0"] / sum(sizes.values()))
    assert shares[-1] > shares[0] and sum(shares) < 1  # stem and head are outside the blocks
    scores = np.arange(len(shares), dtype=float)  # the last (largest) blocks score highest
    budget = shares[-1] - 1e-9  # the top block alone is over budget
    chosen = repair.select_blocks(scores, 3, shares=shares, max_share=budget)
    assert len(chosen) <= 3 and len(shares) - 1 not in chosen
    assert chosen == sorted(chosen, key=lambda b: -scores[b])  # still in score order
    assert sum(shares[b] for b in chosen) <= budget
    labels_tree = repair.partition_labels(model, variables["params"], chosen)
    assert repair.trained_share(variables["params"], labels_tree) <= budget
    # Without a budget the top block comes first.
    assert repair.select_blocks(scores, 3)[0] == len(shares) - 1
    with pytest.raises(ValueError, match=r"max_share=0.001: no block fits; the smallest block"):
        repair.select_blocks(scores, 2, shares=shares, max_share=0.001)
    with pytest.raises(ValueError, match=r"max_share=1.5 must be in \(0, 1\]"):
        repair.select_blocks(scores, 2, shares=shares, max_share=1.5)
    with pytest.raises(ValueError, match="needs one parameter share per block"):
        repair.select_blocks(scores, 2, max_share=0.5)


def test_partitioned_step_changes_only_selected_blocks(tiny):
    model, variables, images, labels = tiny
    params = variables["params"]
    labels_tree = repair.partition_labels(model, params, [1, 4])  # layer1_1, layer3_0
    share = repair.trained_share(params, labels_tree)
    sizes = {k: sum(np.size(a) for a in jax.tree.leaves(v)) for k, v in params.items()}
    assert share == pytest.approx((sizes["layer1_1"] + sizes["layer3_0"]) / sum(sizes.values()))
    tx = repair.make_repair_optimizer(labels_tree, learning_rate=0.1)
    step = repair.make_repair_step(
        model=model,
        tx=tx,
        target_layer="layer3.0",
        preprocess=_pre,
        bn_train=("layer1_1", "layer3_0"),
    )
    # The activations the step sees: those blocks' BN in training mode.
    (_, acts), _ = repair.apply_bn_train(
        model, variables, _pre(images, None), ("layer1_1", "layer3_0")
    )
    state = train.TrainState(
        step=jnp.int32(0),
        params=params,
        batch_stats=variables["batch_stats"],
        opt_state=tx.init(params),
        rng=jax.random.key(0),
    )
    batch = {"image": images, "label": labels, "target": acts["layer3.0"] + 1.0}
    new, metrics = step(jax.tree.map(jnp.array, state), batch)
    assert set(metrics) == {"loss", "mse", "ce", "accuracy", "finite"}
    assert float(metrics["mse"]) == pytest.approx(1.0, rel=1e-4)
    for key in params:
        same = all(jax.tree.leaves(jax.tree.map(np.array_equal, new.params[key], params[key])))
        assert same == (key not in ("layer1_1", "layer3_0")), key
    # The retrained blocks' BN statistics move; every other BN keeps its statistics.
    stats = variables["batch_stats"]
    for key in stats:
        same = all(jax.tree.leaves(jax.tree.map(np.array_equal, new.batch_stats[key], stats[key])))
        assert same == (key not in ("layer1_1", "layer3_0")), key


def test_bn_train_switches_only_the_named_blocks(tiny):
    model, variables, images, _ = tiny
    x = _pre(images, None)
    keys = tuple(variables["params"])
    # Every key named: the same outputs and statistics as the model in training mode.
    (logits, _), stats = repair.apply_bn_train(model, variables, x, keys)
    (want, _), updated = model.apply(variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_close(stats, updated["batch_stats"], rtol=1e-5, atol=1e-6)
    # None named: inference mode, statistics untouched.
    (logits, _), stats = repair.apply_bn_train(model, variables, x, ())
    np.testing.assert_allclose(logits, model.apply(variables, x)[0], rtol=1e-6)
    chex.assert_trees_all_equal(stats, variables["batch_stats"])
    # One block named: only its statistics change, and the logits differ from inference mode.
    (logits, _), stats = repair.apply_bn_train(model, variables, x, ("layer2_0",))
    changed = {k for k in stats if not chex_equal(stats[k], variables["batch_stats"][k])}
    assert changed == {"layer2_0"}
    assert not np.allclose(logits, model.apply(variables, x)[0])


def chex_equal(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))


def test_run_repair_end_to_end(tiny):
    model, variables, images, labels = tiny
    result = pipeline.run_repair(
        model,
        variables,
        images,
        labels,
        preprocess=_pre,
        test_images=images[:8],
        test_labels=labels[:8],
        num_classes=3,
        attacks=({"eps": 8.0, "step_size": 4.0, "steps": 2},),
        top_k=2,
        epochs=1,
        learning_rate=0.01,
        batch_size=8,
    )
    assert len(result.scores) == 6 and len(result.selected) == 2
    assert result.target_layer == f"layer{1 + result.selected[0] // 2}.{result.selected[0] % 2}"
    assert 0 < result.trained_share < 1
    assert (
        set(result.before)
        == set(result.after)
        == {"mixed", "error_only", "clean_test", "error_test"}
    )


def test_repair_needs_residual_blocks():
    lenet = models.get_model("lenet5")
    with pytest.raises(ValueError, match="model=LeNet5 has no residual blocks"):
        repair.repair_blocks(lenet)
    with pytest.raises(ValueError, match="model=LeNet5 has no residual blocks"):
        pipeline.run_repair(
            lenet,
            {},
            np.zeros((4, 32, 32, 1), np.uint8),
            np.zeros(4, np.int32),
            preprocess=_pre,
            test_images=None,
            test_labels=None,
            num_classes=10,
        )


def test_recalibrate_bn_recomputes_only_the_named_blocks(tiny):
    model, variables, images, _ = tiny
    keys = ("layer2_0",)
    small = repair.recalibrate_bn(model, variables, images, _pre, keys, batch_size=8)
    whole = repair.recalibrate_bn(model, variables, images, _pre, keys, batch_size=24)
    # The block's first BN sees inputs that do not depend on the batching (everything before
    # it runs in inference mode): three pooled batches of 8 give the statistics of all 24.
    first_small, first_whole = small["batch_stats"]["layer2_0"], whole["batch_stats"]["layer2_0"]
    np.testing.assert_allclose(first_small["conv1"]["bn"]["mean"], first_whole["conv1"]["bn"]["mean"], rtol=1e-4, atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(first_small["conv1"]["bn"]["var"], first_whole["conv1"]["bn"]["var"], rtol=1e-4, atol=1e-6)  # fmt: skip
    # They are the statistics of the conv's outputs on these images, not the old ones.
    assert not np.allclose(
        first_whole["conv1"]["bn"]["var"],
        variables["batch_stats"]["layer2_0"]["conv1"]["bn"]["var"],
    )
    for key in variables["batch_stats"]:
        if key not in keys:
            chex.assert_trees_all_equal(small["batch_stats"][key], variables["batch_stats"][key])
    chex.assert_trees_all_equal(small["params"], variables["params"])
    with pytest.raises(ValueError, match="24 images are fewer than one batch of 32"):
        repair.recalibrate_bn(model, variables, images, _pre, keys, batch_size=32)
    with pytest.raises(ValueError, match=r"no BatchNorm statistics under \['head'\]"):
        repair.recalibrate_bn(model, variables, images, _pre, ("head",), batch_size=8)


def test_run_repair_bn_modes(tiny):
    model, variables, images, labels = tiny
    kwargs = dict(
        preprocess=_pre, test_images=images[:8], test_labels=labels[:8], num_classes=3,
        attacks=({"eps": 8.0, "step_size": 4.0, "steps": 2},), top_k=1, epochs=1,
        learning_rate=0.01, batch_size=8,
    )  # fmt: skip
    runs = {
        (bn, recal): pipeline.run_repair(
            model, variables, images, labels, bn=bn, recalibrate=recal, **kwargs
        )
        for bn, recal in (("frozen", False), ("train", False), ("train", True))
    }
    selected = runs["frozen", False].selected[0]
    key = f"layer{1 + selected // 2}_{selected % 2}"
    stats = {k: r.variables["batch_stats"][key] for k, r in runs.items()}
    old = variables["batch_stats"][key]
    chex.assert_trees_all_equal(stats["frozen", False], old)  # inference mode: untouched
    assert not chex_equal(stats["train", False], old)  # training mode: the batches move them
    # Recalibration replaces them with the benign images' statistics under the new weights.
    for bn in ("train",):
        assert not chex_equal(stats[bn, True], stats[bn, False])
        want = repair.recalibrate_bn(model, runs[bn, False].variables, images, _pre, [key], batch_size=8)  # fmt: skip
        chex.assert_trees_all_close(runs[bn, True].variables["batch_stats"], want["batch_stats"], rtol=1e-5, atol=1e-6)  # fmt: skip
        chex.assert_trees_all_equal(runs[bn, True].variables["params"], runs[bn, False].variables["params"])  # fmt: skip
    with pytest.raises(ValueError, match=r"bn='keras' must be one of \('frozen', 'train'\)"):
        pipeline.run_repair(model, variables, images, labels, bn="keras", **kwargs)
