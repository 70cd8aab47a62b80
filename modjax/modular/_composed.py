"""The values of a composition: `Group` (one pruned network) and `Composed` (the classifier).

Defined apart from `compose` (which builds them) so that `_compose_data` (which runs them over
data) can use them; `modjax.modular.compose` re-exports all three names.
"""

import json
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import numpy as np


class Group(NamedTuple):
    """One pruned network of a composition: the union of one parent's modules.

    Attributes:
        key: `parent_key(parent)`, the group's identity.
        parent: the parent description (`describe_parent`).
        method: `"mwt"` or `"moda"`.
        classes: parent class ids the group outputs, in output order (sorted).
        model: the pruned zoo model.
        variables: its `{"params", "batch_stats"}`.
        columns: positions of `classes` in the pruned model's logits.
        size: `params`, `macs` (pruned network) and `parent_params`, `parent_macs` (the parent
            without MwT generators), for one example (METHODS §10.9).
    """

    key: str
    parent: dict[str, Any]
    method: str
    classes: tuple[int, ...]
    model: nn.Module
    variables: dict[str, Any]
    columns: tuple[int, ...]
    size: dict[str, int]


class Composed(NamedTuple):
    """A composed classifier.

    Attributes:
        apply_fn: jitted `x float32 [B, H, W, C] -> logits float32 [B, len(classes)]`.
        classes: output class ids in output order (the parents' ids, or `relabel`'s new ids).
        groups: the pruned networks, in output order (one per parent for `compose`, one per
            module for `compose_one_by_one`).
        sources: `(dataset, parent class id)` of every output.
        calibration: `{parent key: (min [k], max [k])}` applied before the argmax, or None.
        preprocess_by_parent: per-parent input transforms inside `apply_fn` (see `compose`).
    """

    apply_fn: Callable[[jax.Array], jax.Array]
    classes: tuple[int, ...]
    groups: tuple[Group, ...]
    sources: tuple[tuple[str | None, int], ...]
    calibration: dict[str, tuple[np.ndarray, np.ndarray]] | None
    preprocess_by_parent: Mapping[str, Callable[[jax.Array], jax.Array]] | None = None


def parent_key(parent: Mapping[str, Any]) -> str:
    """The identity of a parent: its canonical JSON (keys sorted, tuples as lists)."""
    return json.dumps(json.loads(json.dumps(parent, default=str)), sort_keys=True)
