"""Block surgery: remove or duplicate residual blocks as a new model; compression search (§8.4)."""

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import numpy as np

from modjax.deeparc.blocks import block_positions, param_key
from modjax.models.resnet_cifar import ResNetCIFAR, block_name

Sources = list[list[int]]
"""Per stage, the original (global) block index each new block copies, in order."""


def _check_index(model: ResNetCIFAR, index: Any, what: str) -> tuple[int, int]:
    positions = block_positions(model)
    if isinstance(index, bool) or not isinstance(index, int | np.integer):
        raise TypeError(f"{what} index {index!r} must be an int block index")
    if not 0 <= index < len(positions):
        raise ValueError(
            f"{what} block index {index} is out of range: the model has {len(positions)} blocks "
            f"(0..{len(positions) - 1})"
        )
    stage, b = positions[int(index)]
    if b == 0:
        raise ValueError(
            f"cannot {what} block {index} ({block_name(stage, 0)}): it is the first block of "
            f"stage {stage} and changes the shape (stride / shortcut conv); pick a later block"
        )
    return stage, b


def removable(model: nn.Module) -> list[int]:
    """The blocks `remove_blocks` accepts: every block but the first of each stage.

    A CKA module may span a stage boundary, so `architecture.redundant` can name a stage's first
    block (it changes the shape); compression candidates are the redundant blocks among these.
    """
    return [i for i, (_, b) in enumerate(block_positions(model)) if b > 0]


def rebuild(model: nn.Module, variables: dict, sources: Sources) -> tuple[ResNetCIFAR, dict]:
    """A model of the same class whose stage s has one block per entry of `sources[s - 1]`.

    Each new block takes the parameters (and BN statistics) of the original block it names; the
    stem and the head are carried over unchanged. Only the first block of a stage may be a
    stage's first block again (shapes).

    Args:
        model: a `ResNetCIFAR`.
        variables: its Flax variables (`params`, optional `batch_stats`).
        sources: per stage, global indices of the original blocks to copy, in order.

    Returns:
        `(new_model, new_variables)`; `new_model.blocks` gives the blocks per stage.
    """
    positions = block_positions(model)
    if len(sources) != 3 or any(not src for src in sources):
        raise ValueError(f"sources={sources!r} must list >= 1 block for each of the 3 stages")
    out = {}
    for collection, tree in variables.items():
        tree = dict(tree)
        new = {k: v for k, v in tree.items() if not k.startswith("layer")}
        for s, src in enumerate(sources, start=1):
            for j, g in enumerate(src):
                stage, b = positions[g]
                if stage != s or (j == 0) != (b == 0):
                    raise ValueError(
                        f"block {g} ({block_name(stage, b)}) cannot be block {j} of stage {s}"
                    )
                if param_key(stage, b) in tree:
                    new[param_key(s, j)] = tree[param_key(stage, b)]
        out[collection] = new
    blocks = tuple(len(src) for src in sources)
    return model.clone(blocks=blocks), out


def _sources(model: ResNetCIFAR) -> Sources:
    out: Sources = [[], [], []]
    for g, (s, _) in enumerate(block_positions(model)):
        out[s - 1].append(g)
    return out


def remove_blocks(
    model: nn.Module, variables: dict, remove: Sequence[int]
) -> tuple[ResNetCIFAR, dict]:
    """Drops blocks (global forward indices): block k − 1's output feeds block k + 1.

    Args:
        model: a `ResNetCIFAR`; `variables` its variables.
        variables: Flax variables.
        remove: block indices of `model` (forward order from 0), none the first of its stage.

    Returns:
        `(new_model, new_variables)` with fewer blocks and the remaining parameters.

    Raises:
        ValueError: an out-of-range or repeated index, the first block of a stage, or a model
            without residual blocks.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from modjax import models
        >>> m = models.get_model("resnet20", width=0.125)
        >>> v = m.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
        >>> m2, v2 = remove_blocks(m, v, [1, 2])
        >>> m2.blocks, sorted(k for k in v2["params"] if k.startswith("layer1"))
        ((1, 3, 3), ['layer1_0'])
    """
    for k in remove:
        _check_index(model, k, "remove")
    if len(set(remove)) != len(remove):
        raise ValueError(f"remove={list(remove)!r} repeats a block index")
    drop = {int(k) for k in remove}
    return rebuild(model, variables, [[g for g in src if g not in drop] for src in _sources(model)])


def add_blocks(
    model: nn.Module, variables: dict, duplicate: Sequence[int]
) -> tuple[ResNetCIFAR, dict]:
    """Inserts a copy of block k + 1 right after block k, for each k + 1 in `duplicate` (§8.4).

    Args:
        model: a `ResNetCIFAR`; `variables` its variables.
        variables: Flax variables.
        duplicate: global indices of the blocks to duplicate (none the first of its stage).

    Returns:
        `(new_model, new_variables)` with more blocks.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from modjax import models
        >>> m = models.get_model("resnet14", width=0.125)
        >>> v = m.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
        >>> add_blocks(m, v, [5])[0].blocks
        (2, 2, 3)
    """
    for k in duplicate:
        _check_index(model, k, "duplicate")
    extra = {int(k): list(duplicate).count(k) for k in duplicate}
    sources = [[h for g in src for h in [g] * (1 + extra.get(g, 0))] for src in _sources(model)]
    return rebuild(model, variables, sources)


def apply_cumulatively(
    steps: Sequence[int], evaluate_fn: Callable[[list[int]], float]
) -> list[dict[str, Any]]:
    """Accuracy after each step of a removal list: rows `{removed, accuracy}`, from none removed.

    `evaluate_fn(removed)` builds and evaluates the model without the blocks `removed`.
    """
    return [
        {"removed": list(steps[:i]), "accuracy": float(evaluate_fn(list(steps[:i])))}
        for i in range(len(steps) + 1)
    ]


def compression_search(
    candidates: Sequence[int],
    evaluate_fn: Callable[[list[int]], float],
    *,
    max_remove: int,
    num_subsets: int = 5,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """For i = 1..max_remove, the best of `num_subsets` random i-subsets of `candidates`.

    DeepArc's compression step (METHODS §8.4, no fine-tuning). When there are at most
    `num_subsets` i-subsets, all are tried. Subsets are sorted index lists.

    Args:
        candidates: removable block indices (e.g. `architecture.redundant(modules)`).
        evaluate_fn: `removed -> accuracy` of the model without those blocks.
        max_remove: largest subset size (capped at `len(candidates)`).
        num_subsets: k subsets per size.
        seed: sampling seed.

    Returns:
        Rows `{num_removed, removed, accuracy, tried: [{removed, accuracy}]}` for each i.

    Example:
        >>> rows = compression_search([3, 5, 7], lambda r: 1.0 - 0.1 * sum(r) / 10, max_remove=2)
        >>> [(r["num_removed"], r["removed"]) for r in rows]
        [(1, [3]), (2, [3, 5])]
    """
    if max_remove < 1:
        raise ValueError(f"max_remove={max_remove!r} must be >= 1")
    if num_subsets < 1:
        raise ValueError(f"num_subsets={num_subsets!r} must be >= 1")
    cands = sorted({int(c) for c in candidates})
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(1, min(max_remove, len(cands)) + 1):
        every = list(itertools.combinations(cands, i))
        if len(every) <= num_subsets:
            subsets = every
        else:
            subsets = [every[j] for j in sorted(rng.choice(len(every), num_subsets, replace=False))]
        tried = [{"removed": list(s), "accuracy": float(evaluate_fn(list(s)))} for s in subsets]
        best = max(tried, key=lambda r: r["accuracy"])
        rows.append({"num_removed": i, **best, "tried": tried})
    return rows
