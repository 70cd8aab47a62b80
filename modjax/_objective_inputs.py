"""Input checks of the objectives: labels, `where` masks and per-layer batch sizes (private).

Shapes and dtypes are checked at trace time; label values only when they are known at trace time
(NumPy or concrete JAX arrays). Inside `jit` the train step counts out-of-range labels instead.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def concrete(x) -> np.ndarray | None:
    """`x` as a host array when its values are known at trace time (not a jit tracer)."""
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


def check_where(where, batch: int) -> None:
    if where is None:
        return
    shape = tuple(np.shape(where))
    if shape != (batch,):
        raise ValueError(f"where must be a [batch]=({batch},) bool mask; got shape {shape}")
    if not (jnp.issubdtype(where.dtype, jnp.bool_) or jnp.issubdtype(where.dtype, jnp.integer)):
        raise TypeError(f"where must be bool; got dtype {where.dtype}")


def check_labels(logits, labels, num_classes: int | None, where=None) -> None:
    """Shape, dtype and (outside `jit`) value checks of `labels` and `where`.

    Values are checked only when they are known at trace time (NumPy or concrete JAX arrays);
    inside `jit` the train step counts out-of-range labels instead (`train.make_train_step`).
    """
    labels_shape = tuple(np.shape(labels))
    if len(labels_shape) != 1 or tuple(logits.shape[:1]) != labels_shape:
        raise ValueError(f"labels must be [batch]={logits.shape[:1]}; got shape {labels_shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integer class ids; got dtype {labels.dtype}")
    check_where(where, labels_shape[0])
    if num_classes is None:
        return
    if logits.shape[-1] != num_classes:
        raise ValueError(f"logits must be [batch, num_classes={num_classes}]; got {logits.shape}")
    check_label_values(labels, num_classes, where)


def check_label_values(labels, num_classes: int, where=None) -> None:
    """Outside `jit`: labels of valid rows must lie in `[0, num_classes)` (ValueError)."""
    if len(np.shape(labels)) != 1:
        raise ValueError(f"labels must be [batch]; got shape {tuple(np.shape(labels))}")
    check_where(where, np.shape(labels)[0])
    host = concrete(labels)
    if host is None:
        return
    if where is not None:
        host_where = concrete(where)
        if host_where is None:
            return
        host = host[host_where.astype(bool)]
    bad = host[(host < 0) | (host >= num_classes)]
    if bad.size:
        raise ValueError(
            f"labels must lie in [0, num_classes={num_classes}); got {bad.size} out-of-range "
            f"value(s), e.g. {sorted(set(bad.tolist()))[:5]}"
        )


def check_batch(arrays: Sequence[jax.Array], names: Sequence[str], batch: int, what: str):
    for name, a in zip(names, arrays):
        if a.shape[:1] != (batch,):
            raise ValueError(
                f"{what}[{name!r}] has shape {tuple(a.shape)} but the batch has {batch} rows "
                f"(labels shape ({batch},))"
            )
