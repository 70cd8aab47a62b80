"""Dense-module helpers shared by `fse20` and `kmnist`: composed accuracy and mean Jaccard."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from modjax import decompose, loop, metrics


def logits_of(modules, x) -> jax.Array:
    """`[M, B, K]` logits of dense modules of any shapes (one jitted forward per shape)."""
    fn = jax.jit(lambda p, x: decompose.forward(decompose.dense_layers(p), x))
    return jnp.stack([fn(m.params, jnp.asarray(x)) for m in modules])


def composed_acc(modules, x, y, labels=None) -> float:
    """Accuracy of the voting composition (`decompose.vote.vote`) of `modules` on `x`, `y`.

    `labels[i]` is what module i's win predicts (default: its class id), e.g. `[0, 1]` for a
    two-module task relabelled 0/1.
    """
    labels = jnp.asarray([m.class_id for m in modules] if labels is None else labels)
    own = jnp.asarray([m.class_id for m in modules])
    k = int(max(int(labels.max()), int(np.max(y)))) + 1

    def predict(xb):
        return jax.nn.one_hot(labels[decompose.vote.vote(logits_of(modules, xb), own)], k)

    return loop.evaluate_predict(predict, x, y, num_classes=k, batch_size=1000)["accuracy"]


def mean_ji(modules, fn=metrics.value_jaccard) -> float:
    """Mean pairwise Jaccard index `fn` (value- or edge-based) of the modules' kernels."""
    kernels = [[m.params[k]["kernel"] for k in m.params] for m in modules]
    pairs = itertools.combinations(range(len(kernels)), 2)
    return float(np.mean([fn(kernels[a], kernels[b]) for a, b in pairs]))


__all__ = ["composed_acc", "logits_of", "mean_ji"]
