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
    """One-hot of the voting composition's label (`decompose.predict_groups`), for the eval step."""
    groups, k = variables
    x = x.reshape(x.shape[0], -1)
    return jax.nn.one_hot(decompose.predict_groups(groups, x), k.shape[0])


def composed_acc(modules, x, y, labels=None) -> float:
    """Accuracy of the voting composition of `modules` (any depths) on `x`, `y`.

    `labels[i]` is what module i's win predicts (default: its class id, so modules of several
    parents of one dataset, e.g. after `decompose.replace`, vote in its label space), e.g.
    `[0, 1]` for a two-module task relabelled 0/1.
    """
    labels = [int(m.class_id) for m in modules] if labels is None else labels
    groups = decompose.compose_groups(modules, labels=labels)
    k = int(max(max(labels), int(np.max(y)))) + 1
    variables = (groups, jnp.zeros(k))  # k as a shape
    return loop.evaluate_predict(_vote, x, y, num_classes=k, batch_size=1000, variables=variables)[
        "accuracy"
    ]


def mean_ji(modules, fn=metrics.value_jaccard) -> float:
    """Mean pairwise Jaccard index `fn` (value- or edge-based) of the modules' kernels."""
    kernels = [[m.params[k]["kernel"] for k in m.params] for m in modules]
    pairs = itertools.combinations(range(len(kernels)), 2)
    return float(np.mean([fn(kernels[a], kernels[b]) for a, b in pairs]))


__all__ = ["composed_acc", "logits_of", "mean_ji"]
