"""Parent identity: one content hash, one key, one description, for every family.

A module names the network it was cut from (its *parent*) by a JSON description
(`describe_parent`): the zoo model and its options, the dataset, the input shape, the step and
the content hash of its weights (`parent_hash`). `parent_key` is the identity modules are grouped
and compared by: two parents are the same parent exactly when their keys are equal, whatever
family cut the modules and whatever path or step label the checkpoint had.
"""

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import traverse_util

from modjax import models
from modjax.modules import jsonrules

COLLECTIONS = ("params", "batch_stats")
"""The variable collections a parent's hash covers."""

KEY_FIELDS = ("model", "model_kwargs", "dataset", "input_shape", "hash")
"""The description fields `parent_key` compares (without a hash, also `step` and `checkpoint`)."""


def flat_variables(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """`{"collection/path/leaf": host array}` of `params` and `batch_stats`, sorted by name."""
    out = {}
    for col in COLLECTIONS:
        if col in variables:
            tree = jax.device_get(dict(variables[col]))
            for path, leaf in traverse_util.flatten_dict(tree).items():
                out["/".join((col, *map(str, path)))] = np.asarray(leaf)
    return dict(sorted(out.items()))


def parent_hash(variables: Mapping[str, Any]) -> str:
    """`"sha256:<hex>"` over a network's `params` and `batch_stats` (MwT generators included).

    Leaves are visited in sorted path order; each contributes its path, dtype, shape and C-order
    bytes, so the hash names the weights, not the pytree's container types.

    Example:
        >>> v = {"params": {"w": np.zeros(2, np.float32)}}
        >>> parent_hash(v) == parent_hash({"params": {"w": np.zeros(2, np.float32)}})
        True
        >>> parent_hash(v) == parent_hash({"params": {"w": np.ones(2, np.float32)}})
        False
    """
    h = hashlib.sha256()
    for name, leaf in flat_variables(variables).items():
        leaf = np.ascontiguousarray(leaf)
        h.update(f"{name}|{leaf.dtype.str}|{list(leaf.shape)}|".encode())
        h.update(leaf.tobytes())
    return "sha256:" + h.hexdigest()


def parent_key(parent: Mapping[str, Any]) -> str:
    """The identity of a parent description: canonical JSON of its `KEY_FIELDS`.

    With a content hash, the hash decides (a checkpoint path or step label does not); without
    one (an in-memory parent described by hand), the step and checkpoint fields count too.

    Example:
        >>> a = {"model": "mlp", "model_kwargs": {}, "dataset": "mnist", "hash": "sha256:1",
        ...      "step": 5, "checkpoint": "runs/a"}
        >>> parent_key(a) == parent_key({**a, "step": 6, "checkpoint": "elsewhere"})
        True
        >>> parent_key(a) == parent_key({**a, "hash": "sha256:2"})
        False
    """
    fields = KEY_FIELDS if parent.get("hash") else (*KEY_FIELDS, "step", "checkpoint")
    return jsonrules.canonical({k: parent.get(k) for k in fields})


def describe_parent(
    model: str,
    *,
    dataset: str | None = None,
    checkpoint: str | None = None,
    input_shape: Sequence[int] | None = None,
    step: int | None = None,
    hash: str | None = None,  # noqa: A002 - the manifest's field name
    **model_kwargs,
) -> dict[str, Any]:
    """A JSON-able description of a zoo parent model, stored in every module of every family.

    Args:
        model: zoo name (`models.MODEL_NAMES`).
        dataset: dataset name the parent was trained on.
        checkpoint: where the parent came from (a path, for people; not its identity).
        input_shape: one example's shape `(H, W, C)` as the network sees it.
        step: the checkpoint step.
        hash: `parent_hash` of its variables: its identity.
        **model_kwargs: `models.get_model` keyword arguments; `num_classes`, `width` and
            `mask_generators` are always recorded (with their defaults).

    Raises:
        ValueError: whatever `models.get_model` rejects.
    """
    kwargs = {"num_classes": 10, "width": 1.0, "mask_generators": False, **model_kwargs}
    models.get_model(model, **kwargs)  # validates
    return {
        "model": model,
        "model_kwargs": kwargs,
        "dataset": dataset,
        "checkpoint": checkpoint,
        "input_shape": None if input_shape is None else [int(d) for d in input_shape],
        "step": None if step is None else int(step),
        "hash": hash,
    }


def describe(parent: Mapping[str, Any]) -> str:
    """A one-line human description of a parent, for error messages."""
    h = parent.get("hash") or "no hash"
    return (
        f"{parent.get('model')} on {parent.get('dataset')!r} (step {parent.get('step')}, {h[:19]})"
    )


__all__ = [
    "COLLECTIONS",
    "KEY_FIELDS",
    "describe",
    "describe_parent",
    "flat_variables",
    "parent_hash",
    "parent_key",
]
