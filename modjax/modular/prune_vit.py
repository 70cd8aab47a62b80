"""Head and neuron pruning of a ViT: a module's pruned form as a smaller ViT, and its masked form.

The ViT counterpart of `modjax.modular.prune` (STYLE §2: a module's masked form is the parent
with keep-masks, its pruned form a narrower instance of the same class, and the two agree):

    pruned_model, pruned_vars = prune_vit.prune("vit_tiny", kw, variables, keep)
    model, masks = prune_vit.masked_equivalent("vit_tiny", kw, keep)
    pruned_model.apply(pruned_vars, x)[0] == model.apply(variables, x, masks=masks)[0]

`keep` holds bool masks over the units of `models.mask_points`: `block{i}.attn` `[heads]` and
`block{i}.mlp` `[mlp_dim]`; unlisted points keep every unit. Rules:

- A removed head h of block i removes its columns h·d … h·d+d−1 of the query, key and value
  kernels and biases and the same rows of the output-projection kernel; the output bias stays.
  A block keeping no head is a zero-head attention layer that adds only that bias, exactly as
  the masked form, whose zeroed heads reach the projection as zeros.
- A removed MLP neuron removes its fc1 column and bias entry and its fc2 row.
- The residual width D, the patch and position embeddings, every LayerNorm and the head's input
  are unchanged: the units live inside the residual branches, so nothing on the residual stream
  is removed (NeMo resizes LayerNorms because it also prunes the stream, METHODS §6).
- NeMo's q/k intersection: NeMo masks single q, k and v neurons, and a q neuron only matters
  together with the k neuron it multiplies in q·kᵀ, so it keeps the intersection of the q and k
  masks. With head units one keep bit covers a head's q, k and v columns together, so the
  intersection is that bit itself and there is nothing left to intersect. Removing only a
  head's q and k would not remove the head (softmax of zero scores is uniform attention, and
  the head would still emit the mean of its values); removing the head is masking its output.
- The head keeps the rows of `classes` (MODA slicing), or all N outputs.

MwT mask generators are dropped from both forms, as for CNNs (METHODS §4.6).
"""

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from modjax import models
from modjax.modular.masked import drop_generators, without_generators
from modjax.modular.prune import _check_classes, _check_keep, _check_shapes, _parent_kwargs


def _parent(
    model_name: str, model_kwargs: Mapping[str, Any], input_shape: Sequence[int] | None
) -> tuple[dict[str, Any], Any, Any]:
    """The parent's kwargs, its `ViTDims` and its abstract trace."""
    kwargs = _parent_kwargs(model_name, model_kwargs)
    parent = models.get_model(model_name, **kwargs)
    if not isinstance(parent, models.ViT):
        raise ValueError(
            f"model_name={model_name!r} is not a ViT; prune it with modjax.modular.prune.prune"
        )
    shape = (32, 32, 3) if input_shape is None else tuple(input_shape)
    return kwargs, parent.dims(), models.trace(parent, shape)


def _head_columns(heads: np.ndarray, head_dim: int) -> np.ndarray:
    """The q/k/v columns (= output-projection rows) of `heads`, head-major."""
    return (heads[:, None] * head_dim + np.arange(head_dim)[None, :]).reshape(-1)


def prune(
    model_name: str,
    model_kwargs: Mapping[str, Any],
    variables: Mapping[str, Any],
    keep: Mapping[str, Any],
    *,
    classes: Sequence[int] | None = None,
    input_shape: Sequence[int] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The pruned form of a ViT module: fewer heads and MLP neurons per block.

    Args:
        model_name: the parent's zoo name (`vit`, `vit_tiny`, `vit_small`).
        model_kwargs: the parent's `get_model` keyword arguments.
        variables: the parent's `{"params": ...}` (generator subtrees are dropped).
        keep: `{"block{i}.attn": bool [heads], "block{i}.mlp": bool [mlp_dim]}` (0/1 accepted);
            unlisted points keep every unit.
        classes: output rows to keep, in this order; None keeps all N.
        input_shape: one example's shape for checking `variables` (default `(32, 32, 3)`; the
            position embeddings depend on it).

    Returns:
        `(pruned_model, pruned_variables)`: the zoo ViT built with `mask_generators=False`,
        `channels` = the per-block head counts and MLP widths that differ from the parent's and
        `num_classes = len(classes)`; and its `{"params": ...}`. In eval mode its logits equal
        those of `masked_equivalent`'s model and masks on `variables`, restricted to `classes`.

    Raises:
        ValueError: a model that is no ViT or an already pruned one; a keep key that is no mask
            point, a keep of the wrong shape or with values other than 0/1; bad `classes`;
            variables that do not match the parent.

    Example:
        >>> kw = {"width": 0.125, "depth": 1}
        >>> v = models.get_model("vit_tiny", **kw).init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
        >>> keep = {"block0.attn": np.array([True, False, True])}
        >>> pruned, pv = prune("vit_tiny", kw, v, keep, input_shape=(8, 8, 3))
        >>> pv["params"]["block_0"]["attn"]["query"]["kernel"].shape, dict(pruned.channels)
        ((24, 16), {'block0.attn': 2})
    """
    kwargs, dims, found = _parent(model_name, model_kwargs, input_shape)
    keep = _check_keep(keep, found.points, model_name)
    if "params" not in variables:
        raise ValueError("variables must hold the parent's 'params'")
    _check_shapes(found.variables["params"], variables["params"], "variables['params']")
    params = jax.tree.map(np.asarray, drop_generators({"params": variables["params"]})["params"])
    cls = _check_classes(classes, params["head"]["kernel"].shape[1])
    channels = {}
    for i in range(dims.depth):
        block = params[f"block_{i}"]
        attn, mlp = f"block{i}.attn", f"block{i}.mlp"
        if attn in keep and not keep[attn].all():
            cols = _head_columns(np.flatnonzero(keep[attn]), dims.head_dim)
            for proj in ("query", "key", "value"):
                p = block["attn"][proj]
                block["attn"][proj] = {"kernel": p["kernel"][:, cols], "bias": p["bias"][cols]}
            out = block["attn"]["out"]
            block["attn"]["out"] = {"kernel": out["kernel"][cols], "bias": out["bias"]}
            channels[attn] = int(keep[attn].sum())
        if mlp in keep and not keep[mlp].all():
            idx = np.flatnonzero(keep[mlp])
            fc1, fc2 = block["mlp"]["fc1"], block["mlp"]["fc2"]
            block["mlp"]["fc1"] = {"kernel": fc1["kernel"][:, idx], "bias": fc1["bias"][idx]}
            block["mlp"]["fc2"] = {"kernel": fc2["kernel"][idx], "bias": fc2["bias"]}
            channels[mlp] = len(idx)
    head = params["head"]
    params["head"] = {"kernel": head["kernel"][:, cls], "bias": head["bias"][cls]}
    pruned_kwargs = without_generators(model_name, kwargs)
    pruned_kwargs["num_classes"] = len(cls)
    if channels:
        pruned_kwargs["channels"] = channels
    pruned = {"params": jax.tree.map(jnp.asarray, params)}
    return models.get_model(model_name, **pruned_kwargs), pruned


def masked_equivalent(
    model_name: str,
    model_kwargs: Mapping[str, Any],
    keep: Mapping[str, Any],
    *,
    input_shape: Sequence[int] | None = None,
) -> tuple[nn.Module, dict[str, jax.Array]]:
    """The masked form equal to `prune`'s pruned form: the parent model and full-shape masks.

    The masks are `keep` as float32: heads and MLP neurons are independent units inside the
    residual branches, so no effective-set rule applies (unlike MobileNet's, METHODS §5.5).

    Args:
        model_name, model_kwargs, keep, input_shape: as `prune`.

    Returns:
        `(model, masks)`: the parent built with `mask_generators=False`, and `{mask point:
        float32 [units]}` for the keys of `keep`; apply with the parent's variables.

    Raises:
        ValueError: as `prune`.
    """
    kwargs, _, found = _parent(model_name, model_kwargs, input_shape)
    keep = _check_keep(keep, found.points, model_name)
    masks = {name: jnp.asarray(k, jnp.float32) for name, k in keep.items()}
    return models.get_model(model_name, **without_generators(model_name, kwargs)), masks


__all__ = ["masked_equivalent", "prune"]
