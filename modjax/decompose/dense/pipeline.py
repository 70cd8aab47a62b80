"""One call from a trained MLP and its training data to one `DenseModule` per class."""

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from modjax.decompose.dense.decompose import make_decompose, variant
from modjax.decompose.dense.module import DenseModule, unstack
from modjax.decompose.dense.parent import forward, to_layers
from modjax.decompose.samples import select_samples


def parent_probs(params: Mapping[str, Any], images: np.ndarray, *, batch: int = 4096) -> np.ndarray:
    """The parent's softmax outputs `[N, K]` (its real forward pass, with ReLU)."""
    layers = to_layers(params)
    fn = jax.jit(lambda x: jax.nn.softmax(forward(layers, x), axis=-1))
    return np.concatenate(
        [np.asarray(fn(images[i : i + batch])) for i in range(0, len(images), batch)]
    )


def decompose(
    params: Mapping[str, Any],
    images: np.ndarray,
    labels: np.ndarray,
    *,
    ti: str = "sne",
    cm: str = "rie",
    parity: bool = False,
    paper_constants: bool = False,
    confidence: float = 0.9,
    allow_fewer: bool = False,
    num_positives: int | None = None,
    negatives_per_class: int | None = None,
    parent: Mapping[str, Any] | None = None,
) -> list[DenseModule]:
    """Decomposes a trained zoo MLP into one module per class (Pan & Rajan FSE'20).

    Args:
        params: the parent's `params`.
        images: `[N, ...]` training images, preprocessed as in training.
        labels: `[N]` labels.
        ti: `sne` (default), `i`, `pn` or `hp`.
        cm: `rie` (default), `c` or `none`.
        parity: the reference code's quirks (METHODS §12 rows 16–18).
        paper_constants: the paper's TI constants instead of the code's.
        confidence: a CI positive needs p_c > confidence (0.9).
        allow_fewer: use the confident positives there are when a class has fewer than the
            variant's count (the reference code's behaviour) instead of raising.
        num_positives: overrides the variant's positives per class.
        negatives_per_class: overrides the variant's negatives per class.
        parent: the parent description stored in every module.

    Returns:
        The modules, class 0 first.

    Raises:
        ValueError: a class with too few confident positives (naming it and the count found),
            an unknown variant or an unsupported parameter tree.

    Example:
        >>> from modjax import models
        >>> m = models.get_model("mlp", depth=1, hidden=4, num_classes=2)
        >>> p = m.init(jax.random.key(0), jnp.ones((1, 3)))["params"]
        >>> x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
        >>> y = np.argmax(np.asarray(m.apply({"params": p}, x)[0]), 1)
        >>> mods = decompose(p, x, y, confidence=0.0, num_positives=2, negatives_per_class=1)
        >>> [mod.class_id for mod in mods]
        [0, 1]
    """
    v = variant(ti, paper_constants=paper_constants)
    num_p = v.num_positives if num_positives is None else num_positives
    num_n = v.negatives_per_class if negatives_per_class is None else negatives_per_class
    images = np.asarray(images, np.float32).reshape(len(images), -1)
    probs = parent_probs(params, images)
    samples = select_samples(
        images,
        labels,
        probs,
        num_positives=num_p,
        negatives_per_class=num_n,
        confidence=confidence,
        allow_fewer=allow_fewer,
    )
    fn = make_decompose(ti=ti, cm=cm, parity=parity, paper_constants=paper_constants)
    stacked = fn(
        params,
        jnp.asarray(samples.positives),
        jnp.asarray(samples.negatives),
        jnp.asarray(samples.valid),
    )
    settings = {
        "ti": ti,
        "cm": cm,
        "parity": parity,
        "paper_constants": paper_constants,
        "confidence": confidence,
        "num_positives": num_p,
        "negatives_per_class": num_n,
    }
    modules = unstack(stacked, parent=dict(parent or {}), settings=settings)
    return [
        m._replace(metrics={**m.metrics, "num_confident": int(samples.num_confident[m.class_id])})
        for m in modules
    ]
