"""A decomposed CNN module as a value: parent params, channelled head and position keep-maps.

A Pan & Rajan CNN module of class c is the parent's parameter tree with its head channelled
(`params`, parent-shaped) and one keep-map per ReLU point (`keep`, bool `[H, W, C]`): positions
outside the map are zeroed after their ReLU. Convolutions share their weights across positions,
so no conv edge is removed and there is no smaller pruned network; the module's size is its
position and channel retention (a channel with no kept position is dead), and its edge mask is
that of the head (`masks["head"]`, the kernel's non-zero entries).
"""

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from modjax.decompose.cnn.parent import relu_points, run

KIND = "cnn"
"""`settings["kind"]` of CNN modules and the `kind` their directories record (`io`)."""


class CnnModule(NamedTuple):
    """One decomposed CNN module (host arrays).

    Attributes:
        params: the parent's params with the module's (channelled) head.
        keep: `{point: bool [H, W, C]}` kept positions per ReLU point, in forward order.
        masks: `{"head": bool [F, K]}` the head's kept edges (kernel != 0).
        class_id: the module's class (its positive output).
        parent: JSON-able parent description (`modular.describe_parent` plus step and hash).
        settings: `{"kind": "cnn", "cm", "delta", "confidence", ...}`.
        metrics: JSON-able scalars (`sizes(...)` and whatever the caller adds).
    """

    params: dict[str, Any]
    keep: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    class_id: int
    parent: dict[str, Any]
    settings: dict[str, Any]
    metrics: dict[str, Any]


def sizes(keep: Mapping[str, np.ndarray], head_kernel: np.ndarray) -> dict[str, float]:
    """Position, channel and head-edge retention of a module (fractions of the parent's).

    Example:
        >>> sizes({"a": np.array([[[True, False]], [[True, False]]])}, np.ones((2, 3)))
        {'position_rate': 0.5, 'channel_rate': 0.5, 'head_edge_rate': 1.0}
    """
    positions = sum(int(np.count_nonzero(k)) for k in keep.values())
    total = sum(int(np.size(k)) for k in keep.values())
    live = sum(int(np.count_nonzero(np.any(k, axis=(0, 1)))) for k in keep.values())
    channels = sum(int(np.shape(k)[-1]) for k in keep.values())
    head = np.asarray(head_kernel)
    return {
        "position_rate": positions / total,
        "channel_rate": live / channels,
        "head_edge_rate": float(np.count_nonzero(head) / head.size),
    }


def unstack(
    params: Mapping[str, Any],
    stacked: Mapping[str, Any],
    *,
    parent: Mapping[str, Any],
    settings: Mapping[str, Any],
) -> list[CnnModule]:
    """Splits `decompose.make_decompose`'s `[C, ...]` output into one `CnnModule` per class."""
    host = jax.device_get(dict(stacked))
    base = jax.device_get(dict(params))
    num = host["head"]["kernel"].shape[0]
    order = relu_points(base)  # jit returns dicts key-sorted; modules keep forward order
    out = []
    for c in range(num):
        head = {k: np.asarray(v[c]) for k, v in host["head"].items()}
        keep = {k: np.asarray(host["keep"][k][c], bool) for k in order}
        out.append(
            CnnModule(
                params={**jax.tree.map(np.asarray, base), "head": head},
                keep=keep,
                masks={"head": head["kernel"] != 0},
                class_id=c,
                parent=dict(parent),
                settings={"kind": KIND, **settings},
                metrics=sizes(keep, head["kernel"]),
            )
        )
    return out


def logits(module: CnnModule, x: Any) -> Any:
    """The module's `[B, K]` outputs on `x` (library maths, jit it at the call site)."""
    head = (module.params["head"]["kernel"], module.params["head"]["bias"])
    return run(module.params, x, keep=module.keep, head=head)[0]


def position_jaccard(a: CnnModule, b: CnnModule) -> float:
    """Jaccard index of two modules' kept positions and kept head edges (position-based JI).

    Example:
        >>> m = CnnModule({}, {"a": np.array([True, True])}, {"head": np.array([True])},
        ...               0, {}, {}, {})
        >>> position_jaccard(m, m._replace(keep={"a": np.array([True, False])}))
        0.6666666666666666
    """
    inter = union = 0
    for name in a.keep:
        x, y = np.asarray(a.keep[name], bool), np.asarray(b.keep[name], bool)
        inter, union = inter + int(np.sum(x & y)), union + int(np.sum(x | y))
    x, y = np.asarray(a.masks["head"], bool), np.asarray(b.masks["head"], bool)
    inter, union = inter + int(np.sum(x & y)), union + int(np.sum(x | y))
    return inter / union if union else 1.0


def mean_jaccard(modules: Sequence[CnnModule]) -> float:
    """Mean `position_jaccard` over all module pairs (the paper's JI column)."""
    pairs = list(itertools.combinations(modules, 2))
    if not pairs:
        raise ValueError("mean_jaccard needs at least two modules")
    return float(np.mean([position_jaccard(a, b) for a, b in pairs]))
