"""Dense-module helpers shared by `fse20` and `kmnist`: composed accuracy and mean Jaccard."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from modjax import decompose, loop, metrics


@jax.jit
def _module_logits(params, x):
    return decompose.forward(decompose.dense_layers(params), x)


def logits_of(modules, x) -> jax.Array:
    """`[M, B, K]` logits of dense modules of any shapes (one compiled forward per shape)."""
    return jnp.stack([_module_logits(m.params, jnp.asarray(x)) for m in modules])


def _vote(variables, x):
    """One-hot of the voting composition's label (`decompose.vote.vote`), for the eval step."""
    params, own, labels, k = variables
    logits = jnp.stack([_module_logits(p, x) for p in params])
    return jax.nn.one_hot(labels[decompose.vote.vote(logits, own)], k.shape[0])


def composed_acc(modules, x, y, labels=None) -> float:
    """Accuracy of the voting composition (`decompose.vote.vote`) of `modules` on `x`, `y`.

    `labels[i]` is what module i's win predicts (default: its class id), e.g. `[0, 1]` for a
    two-module task relabelled 0/1.
    """
    labels = jnp.asarray([m.class_id for m in modules] if labels is None else labels)
    own = jnp.asarray([m.class_id for m in modules])
    k = int(max(int(labels.max()), int(np.max(y)))) + 1
    variables = ([m.params for m in modules], own, labels, jnp.zeros(k))  # k as a shape
    return loop.evaluate_predict(_vote, x, y, num_classes=k, batch_size=1000, variables=variables)[
        "accuracy"
    ]


def mean_ji(modules, fn=metrics.value_jaccard) -> float:
    """Mean pairwise Jaccard index `fn` (value- or edge-based) of the modules' kernels."""
    kernels = [[m.params[k]["kernel"] for k in m.params] for m in modules]
    pairs = itertools.combinations(range(len(kernels)), 2)
    return float(np.mean([fn(kernels[a], kernels[b]) for a, b in pairs]))


__all__ = ["composed_acc", "logits_of", "mean_ji"]
