"""Voting composition of decomposed modules (METHODS §7.5), dense (FSE'20) and CNN (ICSE'22).

`compose` stacks modules of one architecture, `predict` is the vote (top-1) and `predict_topk`
its top-k extension (ICSE'22 reports top-5): classes are ranked voters first, each group by
the module's own-class probability, so `predict_topk(..., k=1)` equals `predict` [assumed: the
paper does not spell out its top-5 rule]."""

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from modjax.decompose.cnn.module import CnnModule
from modjax.decompose.cnn.parent import run
from modjax.decompose.dense.module import DenseModule
from modjax.decompose.dense.parent import forward, to_layers
from modjax.modules.identity import parent_key


class CnnStack(NamedTuple):
    """`compose`'s stack of CNN modules, each leaf with a leading module axis `[M, ...]`.

    Attributes:
        params: the parent's params with each module's channelled head.
        keep: `{point: bool [M, H, W, C]}` each module's position keep-maps.
    """

    params: dict[str, Any]
    keep: dict[str, Any]


def vote(logits: jax.Array, own: jax.Array) -> jax.Array:
    """Which module wins each sample under Pan & Rajan's vote.

    Module m votes iff the argmax of its output is its own class `own[m]`. One vote: that
    module. No votes: the module with the highest own-class probability p^{(m)}_{own[m]}.
    Several: the same argmax over the voters. Jit-able; works for any set of modules (of one
    parent or several, once the caller maps winners to task labels).

    Args:
        logits: `[M, B, K]` outputs of M modules on a batch.
        own: `[M]` each module's positive output index.

    Returns:
        `[B]` int, the winning module per sample.

    Example:
        >>> logits = jnp.array([[[2.0, 0.0], [0.0, 1.0]], [[0.0, 3.0], [0.0, 2.0]]])
        >>> vote(logits, jnp.array([0, 1])).tolist()
        [1, 1]
    """
    # Voters score 2 + p_own > 2 and the others p_own <= 1: the argmax is the most confident
    # voter, or the most confident module when none votes.
    return jnp.argmax(vote_scores(logits, own), axis=0)


def vote_scores(logits: jax.Array, own: jax.Array) -> jax.Array:
    """`[M, B]` ranking scores: 2 + p_own for a voting module, p_own otherwise.

    `argmax` over modules is `vote`; `top_k` ranks voters first (see the module docstring).

    Example:
        >>> logits = jnp.array([[[2.0, 0.0]], [[0.0, 3.0]], [[1.0, 0.0]]])
        >>> (vote_scores(logits, jnp.array([0, 1, 1])) > 2).tolist()
        [[True], [True], [False]]
    """
    if logits.ndim != 3 or own.shape != logits.shape[:1]:
        raise ValueError(
            f"logits has shape {logits.shape} and own {own.shape}; expected [M, B, K] and [M]"
        )
    probs = jax.nn.softmax(logits, axis=-1)
    own_b = jnp.broadcast_to(own[:, None, None], probs.shape[:2] + (1,))
    p_own = jnp.take_along_axis(probs, own_b, axis=-1)[..., 0]
    votes = jnp.argmax(logits, axis=-1) == own[:, None]
    return p_own + 2.0 * votes


def module_logits(stacked: Any, x: jax.Array) -> jax.Array:
    """`[M, B, K]` logits of M modules (`compose`'s stack: a `CnnStack` or dense params)."""
    if isinstance(stacked, CnnStack):
        return jax.vmap(lambda p, k: run(p, x, keep=k)[0])(stacked.params, stacked.keep)
    return jax.vmap(lambda p: forward(to_layers(p), x))(stacked)


def predict(stacked: Any, own: jax.Array, labels: jax.Array, x: jax.Array) -> jax.Array:
    """The composed model's labels: `labels[vote(...)]`; jit-able (see `compose` for checks).

    Args:
        stacked: `compose`'s stack, a leading module axis `[M, ...]` (one shape for all).
        own: `[M]` each module's positive output index.
        labels: `[M]` the task label each module stands for.
        x: `[B, ...]` inputs.

    Returns:
        `[B]` predicted task labels.
    """
    return labels[vote(module_logits(stacked, x), own)]


def predict_topk(
    stacked: Any, own: jax.Array, labels: jax.Array, x: jax.Array, *, k: int
) -> jax.Array:
    """`[B, k]` task labels ranked by the vote (voters first, then by own-class probability).

    `predict_topk(..., k=1)[:, 0]` equals `predict`; jit-able with a static `k` <= M.
    """
    if not 1 <= k <= own.shape[0]:
        raise ValueError(f"k={k} must be in [1, {own.shape[0]}] (the number of modules)")
    scores = vote_scores(module_logits(stacked, x), own)
    return labels[jax.lax.top_k(scores.T, k)[1]]


def compose(modules: Sequence[Any], *, labels: Sequence[int] | None = None):
    """Stacks modules for `predict`, checking that their task labels are well defined.

    Modules of one parent keep their classes as labels. Modules of different parents (another
    dataset or checkpoint) need explicit `labels` (e.g. `[0, 1]` for an MNIST-digit vs
    Fashion-MNIST-class task): their class ids live in different label spaces.

    Args:
        modules: `DenseModule`s or `CnnModule`s of one architecture.
        labels: the task label of each module, or None for their class ids.

    Returns:
        `(stacked, own [M], labels [M])`: the dense modules' params, or a `CnnStack`, with a
        leading module axis, and the arrays.

    Raises:
        ValueError: no modules, different parents without `labels`, repeated labels, a
            `labels` of the wrong length, or modules of different shapes.
    """
    if not modules:
        raise ValueError("compose needs at least one module")
    if labels is None:
        parents = {parent_key(m.parent) for m in modules}
        if len(parents) > 1:
            desc = ", ".join(
                f"class {m.class_id} of {m.parent.get('dataset')}@{m.parent.get('checkpoint')}"
                for m in modules
            )
            raise ValueError(
                f"modules come from {len(parents)} different parents ({desc}); pass labels=[...] "
                "to relabel them into one task"
            )
        labels = [m.class_id for m in modules]
    labels = list(labels)
    if len(labels) != len(modules):
        raise ValueError(f"labels has {len(labels)} entries for {len(modules)} modules")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels={labels} repeats a label; each module needs its own")
    kinds = {type(m) for m in modules}
    if not kinds <= {DenseModule, CnnModule}:
        raise TypeError(f"compose takes DenseModule or CnnModule values, not {kinds}")
    if len(kinds) > 1:
        raise ValueError("modules mix dense (FSE'20) and CNN (ICSE'22) modules; compose one kind")
    shapes = {str(jax.tree.map(np.shape, m.params)) for m in modules}
    if len(shapes) > 1:
        raise ValueError(f"modules have different shapes ({len(shapes)} kinds); stack one parent")
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *[m.params for m in modules])
    if kinds == {CnnModule}:  # CNN modules: parent params with their heads, and position keep-maps
        keep = jax.tree.map(lambda *a: jnp.stack(a), *[m.keep for m in modules])
        stacked = CnnStack(params=stacked, keep=keep)
    own = jnp.asarray([m.class_id for m in modules])
    return stacked, own, jnp.asarray(labels)


class VoteGroup(NamedTuple):
    """Modules of one shape, stacked (`compose`): `stacked`, `own [M]`, `labels [M]`."""

    stacked: Any
    own: jax.Array
    labels: jax.Array


def compose_groups(modules: Sequence[Any], *, labels: Sequence[int] | None = None):
    """Stacks modules of any shapes: one `VoteGroup` per parameter shape, in first-seen order.

    The vote is per module (`vote_scores` of a module depends on its own output only), so the
    vote over several groups is the argmax over their concatenated scores (`predict_groups`):
    modules of different depths vote together, as FSE'20's replacement needs (a module of a
    4-layer model replacing one of a 1-layer model).

    Args:
        modules: `DenseModule`s or `CnnModule`s.
        labels: the task label of each module (default: its class id; then the modules must
            come from one parent, as in `compose`, or share a label space: pass their class ids
            explicitly to vote in the parents' common label space).

    Raises:
        ValueError: as `compose` (repeated labels, different parents without `labels`).
    """
    if not modules:
        raise ValueError("compose_groups needs at least one module")
    if labels is None:
        if len({parent_key(m.parent) for m in modules}) > 1:
            raise ValueError(
                "modules come from several parents; pass labels=[...] (their class ids, for "
                "parents of one dataset) to vote in one label space"
            )
        labels = [m.class_id for m in modules]
    labels = [int(c) for c in labels]
    if len(labels) != len(modules):
        raise ValueError(f"labels has {len(labels)} entries for {len(modules)} modules")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels={labels} repeats a label; each module needs its own")
    shapes: dict[str, list[int]] = {}
    for i, m in enumerate(modules):
        kind = f"{type(m).__name__}:{jax.tree.map(np.shape, m.params)}"
        shapes.setdefault(kind, []).append(i)
    return [
        VoteGroup(*compose([modules[i] for i in idx], labels=[labels[i] for i in idx]))
        for idx in shapes.values()
    ]


def predict_groups(groups: Sequence[VoteGroup], x: jax.Array) -> jax.Array:
    """`[B]` task labels of the vote over every module of `compose_groups`' groups; jit-able."""
    scores = jnp.concatenate([vote_scores(module_logits(g.stacked, x), g.own) for g in groups])
    labels = jnp.concatenate([g.labels for g in groups])
    return labels[jnp.argmax(scores, axis=0)]


def replace(modules: Sequence[Any], donors: Sequence[Any]) -> list[Any]:
    """Pan & Rajan module replacement (FSE'20, METHODS §7.6): each donor takes its class's place.

    `replace(modules_of_mnist1, [module_5_of_mnist4])` is the composition whose class-5 module
    comes from the other (e.g. deeper, or better) model; vote it with `compose_groups` and
    `predict_groups`, passing the class ids as `labels`, since the donors come from another
    parent of the same label space.

    Raises:
        ValueError: a donor class that no module scores, or two donors of one class.
    """
    by_class: dict[int, Any] = {}
    for d in donors:
        if int(d.class_id) in by_class:
            raise ValueError(f"two donor modules of class {int(d.class_id)}; give one per class")
        by_class[int(d.class_id)] = d
    missing = sorted(set(by_class) - {int(m.class_id) for m in modules})
    if missing:
        raise ValueError(
            f"donor classes {missing} have no module to replace; the modules score "
            f"{sorted(int(m.class_id) for m in modules)}"
        )
    return [by_class.get(int(m.class_id), m) for m in modules]
