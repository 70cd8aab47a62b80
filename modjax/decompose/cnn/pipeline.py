"""One call from a trained no-BN CIFAR ResNet and its training data to one `CnnModule` per class."""

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from modjax.decompose.cnn.channel import BLN_DELTA
from modjax.decompose.cnn.decompose import make_decompose
from modjax.decompose.cnn.module import CnnModule, unstack
from modjax.decompose.cnn.parent import layout, run
from modjax.decompose.samples import select_samples


def parent_probs(params: Mapping[str, Any], images: np.ndarray, *, batch: int = 500) -> np.ndarray:
    """The parent's softmax outputs `[N, K]` on preprocessed images `[N, H, W, C]`."""
    fn = jax.jit(lambda x: jax.nn.softmax(run(params, x)[0], axis=-1))
    return np.concatenate(
        [np.asarray(fn(jnp.asarray(images[i : i + batch]))) for i in range(0, len(images), batch)]
    )


def class_groups(images: np.ndarray, labels: np.ndarray, *, num_classes: int, per_class: int):
    """`[C, per_class, ...]`: the first `per_class` images of every class (TI's negatives).

    Raises:
        ValueError: a class with fewer images, naming it and the count.
    """
    labels = np.asarray(labels)
    out = []
    for k in range(num_classes):
        idx = np.flatnonzero(labels == k)[:per_class]
        if idx.size < per_class:
            raise ValueError(f"class {k} has {idx.size} samples; TI needs {per_class} per class")
        out.append(images[idx])
    return np.stack(out)


def decompose(
    params: Mapping[str, Any],
    images: np.ndarray,
    labels: np.ndarray,
    *,
    cm: str = "bln",
    delta: float = BLN_DELTA,
    confidence: float = 0.9,
    num_positives: int = 1000,
    negatives_per_class: int | None = None,
    allow_fewer: bool = False,
    chunk: int = 64,
    parent: Mapping[str, Any] | None = None,
) -> list[CnnModule]:
    """Decomposes a trained CIFAR ResNet without BN into one module per class (ICSE'22).

    Args:
        params: the parent's `params` (BatchNorm is refused, naming the layer).
        images: `[N, H, W, C]` training images, preprocessed as for evaluation.
        labels: `[N]` labels.
        cm: `bln` (channelling + MC-BLN, default), `c` (channelling) or `none`.
        delta: MC-BLN's δ (0.5).
        confidence: a CI positive needs p_c > confidence (0.9).
        num_positives: CI positives per class (1000 in the paper).
        negatives_per_class: TI images from each other class; None: TI at 1:1,
            round(num_positives / (C − 1)).
        allow_fewer: use the confident positives there are when a class has fewer than
            `num_positives`, instead of raising.
        chunk: images per monitoring forward pass.
        parent: the parent description stored in every module.

    Returns:
        The modules, class 0 first.

    Raises:
        ValueError: BatchNorm or another architecture; a class with too few confident
            positives (naming it and the count found) or too few images for TI.
    """
    layout(params)  # BatchNorm / architecture errors before any forward pass
    num_classes = int(params["head"]["kernel"].shape[-1])
    if num_classes < 2:
        raise ValueError(f"the parent has {num_classes} output; decomposition needs >= 2 classes")
    per_class = negatives_per_class
    if per_class is None:
        per_class = max(1, round(num_positives / (num_classes - 1)))
    images = np.asarray(images, np.float32)
    probs = parent_probs(params, images)
    samples = select_samples(
        images,
        labels,
        probs,
        num_positives=num_positives,
        negatives_per_class=0,
        confidence=confidence,
        allow_fewer=allow_fewer,
    )
    groups = class_groups(images, labels, num_classes=num_classes, per_class=per_class)
    fn = make_decompose(cm=cm, delta=delta, chunk=chunk)
    stacked = fn(
        params,
        jnp.asarray(samples.positives),
        jnp.asarray(groups),
        jnp.asarray(samples.valid),
    )
    settings = {
        "cm": cm,
        "delta": delta,
        "confidence": confidence,
        "num_positives": num_positives,
        "negatives_per_class": per_class,
    }
    modules = unstack(params, stacked, parent=dict(parent or {}), settings=settings)
    return [
        m._replace(metrics={**m.metrics, "num_confident": int(samples.num_confident[m.class_id])})
        for m in modules
    ]
