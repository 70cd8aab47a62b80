"""Bad inputs to the objectives: labels, `where` and per-layer batch sizes give clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import objectives

N, B = 3, 4
LOGITS = jnp.zeros((B, N))
ACTS = {"fc_0": jnp.ones((B, 5)), "fc_1": jnp.ones((B, 2))}


@pytest.mark.parametrize("labels", [np.array([0, 1, 3, 0]), np.array([0, -1, 1, 2])])
@pytest.mark.parametrize(
    "call",
    [
        lambda y: objectives.cross_entropy(LOGITS, y),
        lambda y: objectives.standard(LOGITS, ACTS, y),
        lambda y: objectives.affinity(ACTS, y, num_classes=N),
        lambda y: objectives.dispersion(ACTS, y, num_classes=N),
        lambda y: objectives.cohesion(ACTS, y, num_classes=N),
        lambda y: objectives.coupling(ACTS, y, num_classes=N),
        lambda y: objectives.moda_objective(num_classes=N)(LOGITS, ACTS, y),
    ],
)
def test_out_of_range_labels_are_a_value_error_on_host(call, labels):
    with pytest.raises(ValueError, match=r"labels must lie in \[0, num_classes=3\)"):
        call(labels)
    with pytest.raises(ValueError, match="out-of-range"):
        call(jnp.asarray(labels))  # concrete device arrays are checked too


def test_padded_rows_may_hold_any_label():
    labels = np.array([0, 1, 2, 99])
    where = np.array([True, True, True, False])
    loss = objectives.cross_entropy(LOGITS, labels, where=where)
    np.testing.assert_allclose(np.asarray(loss), [np.log(3)] * 3 + [0.0], rtol=1e-6)


def test_labels_inside_jit_are_not_checked_by_value():
    # Values are unknown at trace time; the train step counts them instead (no error here).
    out = jax.jit(objectives.cross_entropy)(LOGITS, jnp.array([0, 1, 2, 0]))
    assert out.shape == (B,)


@pytest.mark.parametrize("where", [np.ones(B + 1, bool), np.ones((B, 1), bool)])
def test_wrong_where_shape(where):
    with pytest.raises(ValueError, match=r"where must be a \[batch\]=\(4,\) bool mask"):
        objectives.cross_entropy(LOGITS, np.zeros(B, np.int32), where=where)
    with pytest.raises(ValueError, match="where must be"):
        objectives.affinity(ACTS, np.zeros(B, np.int32), num_classes=N, where=where)


def test_wrong_label_shape():
    with pytest.raises(ValueError, match=r"labels must be \[batch\]"):
        objectives.cross_entropy(LOGITS, np.zeros((B, 1), np.int32))


def test_layer_with_another_batch_size_is_named():
    acts = {"fc_0": jnp.ones((B, 5)), "fc_1": jnp.ones((B - 1, 2))}
    with pytest.raises(ValueError, match=r"acts\['fc_1'\] has shape \(3, 2\) but the batch has 4"):
        objectives.affinity(acts, np.zeros(B, np.int32), num_classes=N)
    masks = [jnp.ones((B, 5)), jnp.ones((B + 2, 5))]
    with pytest.raises(ValueError, match=r"masks\['1'\] has shape \(6, 5\)"):
        objectives.cohesion(masks, np.zeros(B, np.int32), num_classes=N)
    # Through the objectives, which pick the layers out of a model's acts: the key, not a position.
    objective = objectives.moda_objective(num_classes=N)
    with pytest.raises(ValueError, match=r"acts\['fc_1'\] has shape \(3, 2\)"):
        objective(LOGITS, acts, np.zeros(B, np.int32))


def test_out_of_range_labels_inside_jit_stop_the_loop_naming_the_step():
    from modjax import loop, train
    from tests.tiny import TinyNet, synthetic, to_float

    model = TinyNet()
    tx = train.make_optimizer(learning_rate=0.05, steps_per_epoch=3, num_epochs=1)
    state = train.create_train_state(model=model, tx=tx, seed=0, image_shape=(8, 8, 1))
    step = train.make_train_step(
        model=model, tx=tx, objective=objectives.standard, preprocess=to_float
    )
    images, labels = synthetic(num=48)
    labels = labels.copy()
    labels[40] = 99  # in the third batch of 16

    def epoch_batches(epoch):
        del epoch
        return [{"image": images[i : i + 16], "label": labels[i : i + 16]} for i in (0, 16, 32)]

    with pytest.raises(ValueError, match=r"the batch of step 3 holds 1 labels outside \[0, "):
        loop.fit(
            train_step=step,
            state=state,
            epoch_batches=epoch_batches,
            steps_per_epoch=3,
            num_epochs=1,
            callbacks=[loop.check_labels()],
            log_every=1,
        )
