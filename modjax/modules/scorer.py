"""The scoring seam: every module of every family becomes `inputs -> per-class scores`.

A `Scorer` is a pure function `score_fn(variables, x) -> float32 [B, len(classes)]` with its
variables as an explicit pytree, the parent class ids it scores, its parent's identity and its
size. It is what composition, calibration, evaluation and export work on, so they never ask
which family a module came from:

- a MwT/MODA module (or the fused union of one parent's modules): the pruned network's logits
  at the classes' columns (`network_scorer`);
- a Pan & Rajan module: its vote score, 2 + p_own when it votes for its class, p_own otherwise
  (METHODS §7.5), so the argmax over modules of one parent is the paper's vote;
- a DeepArc-shrunk or repaired network: its logits (`network_scorer`).

`preprocess`, when set, maps the composition's input (raw pixels) to what `score_fn` reads; it
runs inside the composed, jitted function.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import numpy as np

from modjax import models

ScoreFn = Callable[[Any, jax.Array], jax.Array]


class Network(NamedTuple):
    """A scorer that is columns of one zoo network's logits (fine-tuning reads it).

    Attributes:
        model: the (pruned, shrunk or whole) zoo model.
        columns: positions of the scorer's classes in the model's logits.
    """

    model: nn.Module
    columns: tuple[int, ...]


class Scorer(NamedTuple):
    """One scoring function of a composition (see the module docstring).

    Attributes:
        key: the parent's identity (`identity.parent_key`), which keys calibration and
            per-parent preprocessing.
        parent: the parent description (`identity.describe_parent`).
        method: the method that made the module (`registry.family_of(method)` is its family).
        classes: parent class ids scored, in output order.
        score_fn: pure `(variables, x) -> float32 [B, len(classes)]`.
        variables: its pytree of arrays.
        size: `params`, `macs` (what runs) and `parent_params`, `parent_macs` (the parent
            without MwT generators), for one example (METHODS §10.9).
        preprocess: optional `x -> score_fn's input`, applied inside the composition.
        network: set when the scores are columns of one zoo network's logits.
    """

    key: str
    parent: dict[str, Any]
    method: str
    classes: tuple[int, ...]
    score_fn: ScoreFn
    variables: Any
    size: dict[str, int]
    preprocess: Callable[[jax.Array], jax.Array] | None = None
    network: Network | None = None


def network_size(
    parent: Mapping[str, Any], model: nn.Module, variables: Mapping[str, Any]
) -> dict[str, int]:
    """Params and MACs of `model` and of its parent (MwT generators excluded)."""
    size = {"params": models.count_params(variables["params"])}
    shape = parent.get("input_shape")
    if shape:
        summary = models.summarize(
            models.get_model(parent["model"], **parent["model_kwargs"]), tuple(shape)
        )
        size.update(
            macs=models.count_macs(model, tuple(shape)),
            parent_params=summary["params"] - summary["generator_params"],
            parent_macs=summary["macs"],
        )
    return size


def network_scorer(
    *,
    key: str,
    parent: Mapping[str, Any],
    method: str,
    classes: Sequence[int],
    model: nn.Module,
    variables: Mapping[str, Any],
    columns: Sequence[int],
    preprocess: Callable[[jax.Array], jax.Array] | None = None,
    size: Mapping[str, int] | None = None,
) -> Scorer:
    """A `Scorer` from a zoo network: its logits at `columns` (one per class of `classes`).

    Raises:
        ValueError: `columns` and `classes` of different lengths.
    """
    if len(columns) != len(classes):
        raise ValueError(f"columns {list(columns)} and classes {list(classes)} differ in length")
    cols = np.asarray(columns, np.int32)

    def score_fn(v, x):
        return model.apply(v, x, train=False)[0][:, cols]

    return Scorer(
        key,
        dict(parent),
        method,
        tuple(int(c) for c in classes),
        score_fn,
        dict(variables),
        dict(size) if size is not None else network_size(parent, model, variables),
        preprocess,
        Network(model, tuple(int(c) for c in columns)),
    )


def restrict(s: Scorer, classes: Sequence[int]) -> Scorer:
    """The same scorer, scoring only `classes` (a subset of `s.classes`, in the given order).

    Raises:
        ValueError: a class `s` does not score, naming it and the module's classes.
    """
    classes = tuple(int(c) for c in classes)
    missing = [c for c in classes if c not in s.classes]
    if missing or not classes or len(set(classes)) != len(classes):
        raise ValueError(
            f"classes {list(classes)} must be distinct classes of the module, which scores "
            f"{list(s.classes)} ({s.method} module of {s.parent.get('model')})"
        )
    idx = np.asarray([s.classes.index(c) for c in classes], np.int32)
    inner = s.score_fn

    def score_fn(variables, x):
        return inner(variables, x)[:, idx]

    network = None
    if s.network is not None:
        network = Network(s.network.model, tuple(s.network.columns[i] for i in idx))
    return s._replace(classes=classes, score_fn=score_fn, network=network)


__all__ = ["Network", "ScoreFn", "Scorer", "network_scorer", "network_size", "restrict"]
