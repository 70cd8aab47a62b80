"""Module extraction: per-class activity counts in one jitted pass, thresholds, class modules.

Pipeline (METHODS §4.5 MwT, §5.4 MODA)::

    step = make_count_step(model=model, preprocess=test_preprocess, num_classes=N, method="moda")
    counts = sum over batches of step(variables, batch)          # one pass, all classes
    keep, events = extract(class_frequencies(counts), method="moda")
    modules = [module_for_class(keep, c, parent=parent, method="moda") for c in range(N)]
    logits, acts = masked_form_model(modules[3]).apply(variables, x, masks=as_masks(modules[3]))

`extract_modules` runs all of it over an iterator of batches. Extraction uses the training set
with the *test* transform by default (METHODS §12 row 2): pass `make_preprocess(info,
augment=False)`.

The counting pass (`make_count_step`, `class_frequencies`, `Counts`) lives in
`modjax.modular.counting`; `Module`, the extracted value in *masked* form (STYLE §2), in
`modjax.modular.module`; `modjax.modular` re-exports every public name.
"""

import functools
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from tqdm.auto import tqdm

from modjax import metrics, models, parallel
from modjax.modular.counting import Counts, class_frequencies, make_count_step
from modjax.modular.module import (
    FallbackEvent,
    Module,
    check_method,
    check_threshold,
    kernel_rate,
    module_for_class,
)
from modjax.typing import Batch

logger = logging.getLogger(__name__)

MWT_STEP = 0.05
"""MwT fallback: the per-layer threshold is lowered by this much until a kernel survives."""
MODA_MIN_FRACTION = 0.005
"""MODA (ICSE'26) fallback: a class needs at least max(1, ⌊0.005·n_l⌋) units in layer l."""


class Extraction(NamedTuple):
    """What `extract_modules` returns.

    Attributes:
        modules: one `Module` per class, in class order.
        counts: the summed `Counts`, as NumPy arrays.
        fallbacks: every fallback event.
        timing: seconds: `compile_s`, `count_s` (the pass, compile excluded), `extract_s`,
            `total_s`; and `num_batches`.
        jaccard: with `jaccard=True`, `{"cohesion": JaccardCohesion, "coupling":
            JaccardCoupling}` of the modules on the extraction samples (METHODS §10.4); else None.
    """

    modules: tuple[Module, ...]
    counts: Counts
    fallbacks: tuple[FallbackEvent, ...]
    timing: dict[str, float]
    jaccard: dict[str, Any] | None = None


@functools.partial(jax.jit, donate_argnums=0)
def _add(a, b):
    """Running per-class counts: `a + b` leaf by leaf, in place of `a`."""
    return jax.tree.map(jnp.add, a, b)


def _host_rows(x: jax.Array) -> np.ndarray:
    """This process's rows of a batch-sharded array, on the host."""
    if x.is_fully_addressable:
        return np.asarray(jax.device_get(x))
    shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
    return np.concatenate([np.asarray(s.data) for s in shards])


def _module_jaccard(keep, packed, labels, num_kernels):
    """Cohesion and coupling of class modules `keep` over packed per-sample masks (§10.4)."""

    U = np.concatenate([np.asarray(keep[n], bool) for n in sorted(keep)], axis=1)
    masks = np.unpackbits(np.concatenate(packed), axis=1, count=num_kernels).astype(bool)
    return {
        "cohesion": metrics.jaccard_cohesion(masks, np.concatenate(labels), U),
        "coupling": metrics.jaccard_coupling(U),
    }


def _mwt_fallback(f: np.ndarray, threshold: float, layer: str, c: int) -> tuple[np.ndarray, float]:
    step = 1
    while True:
        # Rounded so that τ − k·0.05 is the decimal it means (0.85, not 0.8500000000000001).
        t = round(threshold - MWT_STEP * step, 12)
        if t <= 0:
            raise ValueError(
                f"MwT fallback: layer {layer!r} of class {c} keeps no kernel at any threshold > 0 "
                f"(max frequency {f.max():.3g}, reached threshold {t:g})"
            )
        keep = f >= t
        if keep.any():
            return keep, t
        step += 1


def extract(
    frequencies: Mapping[str, np.ndarray],
    *,
    method: str,
    threshold: float = 0.9,
    fallback: bool = True,
) -> tuple[dict[str, np.ndarray], list[FallbackEvent]]:
    """Per-class keep-masks m_c[l, u] = f_c[l, u] ≥ τ, with the method's fallback.

    Fallbacks (applied per layer and class; each use is recorded):

    - MwT (METHODS §4.5): if layer l keeps nothing, lower τ for that layer only by 0.05 until
      at least one kernel survives; error once it reaches ≤ 0.
    - MODA, ICSE'26 code (§5.4; on by default, §12 row 12): min_req = max(1, ⌊0.005·n_l⌋); if
      |m_c[l]| < min_req, keep the top-k units of f_c[l] with k = max(max_c′ |m_c′[l]|,
      min_req) (ties: lower unit index first).

    Args:
        frequencies: `{layer: [N, C]}` from `class_frequencies`.
        method: `"mwt"` or `"moda"`.
        threshold: τ in (0, 1].
        fallback: apply the fallback rule (False: MODA 2024 parity; MwT layers may be empty).

    Returns:
        `(keep, events)`: `keep` `{layer: bool [N, C]}`, `events` a list of `FallbackEvent`.

    Raises:
        ValueError: bad `method` or `threshold`, inconsistent shapes, or the MwT fallback
            reaching τ ≤ 0.

    Example:
        >>> keep, events = extract({"l": np.array([[0.95, 0.5], [0.2, 0.1]])}, method="mwt")
        >>> keep["l"].tolist(), events[0].threshold
        ([[True, False], [True, False]], 0.2)
    """
    check_method(method)
    threshold = check_threshold(threshold)
    if not frequencies:
        raise ValueError("frequencies is empty; expected {layer: [num_classes, C]}")
    num_classes = None
    keep, events = {}, []
    for layer, f in frequencies.items():
        f = np.asarray(f, np.float64)
        if f.ndim != 2 or (num_classes is not None and f.shape[0] != num_classes):
            raise ValueError(
                f"frequencies[{layer!r}] has shape {f.shape}; expected ({num_classes or 'N'}, C)"
            )
        num_classes = f.shape[0]
        m = f >= threshold
        if fallback and method == "mwt":
            for c in np.flatnonzero(~m.any(axis=1)):
                m[c], t = _mwt_fallback(f[c], threshold, layer, int(c))
                events.append(FallbackEvent(layer, int(c), t, int(m[c].sum())))
        elif fallback:
            min_req = max(1, math.floor(MODA_MIN_FRACTION * f.shape[1]))
            sizes = m.sum(axis=1)
            k = max(int(sizes.max()), min_req)
            for c in np.flatnonzero(sizes < min_req):
                m[c] = False
                m[c, np.argsort(-f[c], kind="stable")[:k]] = True
                events.append(FallbackEvent(layer, int(c), None, k))
        keep[layer] = m
    for e in events:
        logger.info("%s fallback: %s", method, e)
    return keep, events


def extract_modules(
    batches: Iterable[Batch],
    *,
    variables: Mapping[str, Any],
    parent: Mapping[str, Any],
    preprocess: Callable[[jax.Array, jax.Array], jax.Array],
    method: str,
    threshold: float = 0.9,
    fallback: bool = True,
    layers: Sequence[str] | None = None,
    model: nn.Module | None = None,
    mesh: Mesh | None = None,
    total: int | None = None,
    disable: bool = False,
    jaccard: bool = False,
) -> Extraction:
    """Extracts every class module in one pass over `batches` (METHODS §4.5, §5.4).

    Args:
        batches: an iterator of host batches (`data.eval_batches` over the training set: fixed
            shapes, padding marked by `"mask"`); each process passes its own rows.
        variables: the parent's `{"params", "batch_stats"}` on device (replicated under `mesh`).
        parent: `describe_parent(...)`; it builds the model unless `model` is given.
        preprocess: the test transform (no augmentation, METHODS §12 row 2).
        method: `"mwt"` or `"moda"`.
        threshold: τ.
        fallback: the method's fallback rule (`extract`).
        layers: layers to extract (default: all of the method's layers).
        model: the Flax model, if not `models.get_model(**parent)`.
        mesh: data-parallel mesh; batches are then sharded with `parallel.shard_batch`.
        total: number of batches, for the progress bar.
        disable: hide the progress bar (e.g. `jax.process_index() != 0`).
        jaccard: MwT only: keep every sample's binary masks (bit-packed on the host, n·K/8
            bytes) and compute the modules' Jaccard cohesion and coupling (METHODS §10.4).

    Returns:
        An `Extraction` with N modules (`metrics`: `kernel_rate`, `num_samples`), the counts,
        the fallback events and timings.
    """
    check_method(method)
    check_threshold(threshold)
    if jaccard and method != "mwt":
        raise ValueError(f"jaccard=True is MwT's modularization metric; method={method!r}")
    start = time.perf_counter()
    parent = dict(parent)
    if model is None:
        model = models.get_model(parent["model"], **parent["model_kwargs"])
    num_classes = int(parent["model_kwargs"]["num_classes"])
    step = make_count_step(
        model=model,
        preprocess=preprocess,
        num_classes=num_classes,
        method=method,
        layers=layers,
        mesh=mesh,
        sample_masks=jaccard,
    )
    packed, sample_labels, num_kernels = [], [], 0

    def put(batch):
        if mesh is not None:
            return parallel.shard_batch(batch, mesh)
        return jax.device_put(dict(batch))

    totals, compiled, compile_s, num_batches = None, None, 0.0, 0
    for batch in tqdm(batches, total=total, disable=disable, desc=f"{method} extraction"):
        host = batch
        batch = put(batch)
        if compiled is None:
            t0 = time.perf_counter()
            compiled = step.lower(variables, batch).compile()
            compile_s = time.perf_counter() - t0
            if parent.get("input_shape") is None:
                parent["input_shape"] = [int(d) for d in batch["image"].shape[1:]]
        counts = compiled(variables, batch)
        if jaccard:
            counts, masks = counts
            masks = _host_rows(masks)
            valid = np.asarray(host.get("mask", np.ones(len(masks), bool)), bool)
            num_kernels = masks.shape[1]
            packed.append(np.packbits(masks[valid], axis=1))
            sample_labels.append(np.asarray(host["label"])[valid])
        totals = counts if totals is None else _add(totals, counts)
        num_batches += 1
    if totals is None:
        raise ValueError("batches is empty; expected at least one batch of training data")
    # Replicated sums; in a multi-process run each process reads its own copy.
    totals = jax.tree.map(
        lambda x: jax.device_get(x if x.is_fully_addressable else x.addressable_data(0)), totals
    )
    count_s = time.perf_counter() - start - compile_s

    t0 = time.perf_counter()
    per_class_active = totals.per_class_active  # jit sorts keys; restore forward order
    if parent.get("model") in models.MODEL_NAMES:
        order = list(models.mask_points(model, input_shape=parent["input_shape"]))
        if all(n in order for n in per_class_active):
            per_class_active = {n: per_class_active[n] for n in order if n in per_class_active}
    totals = Counts(per_class_active, np.asarray(totals.per_class_count))
    keep, events = extract(
        class_frequencies(totals), method=method, threshold=threshold, fallback=fallback
    )
    modules = []
    for c in range(num_classes):
        metrics = {
            "kernel_rate": kernel_rate({n: k[c] for n, k in keep.items()}),
            "num_samples": int(totals.per_class_count[c]),
        }
        modules.append(
            module_for_class(
                keep,
                c,
                parent=parent,
                method=method,
                threshold=threshold,
                fallbacks=events,
                metrics=metrics,
            )
        )
    extract_s = time.perf_counter() - t0
    scores = None
    if jaccard:
        t1 = time.perf_counter()
        scores = _module_jaccard(keep, packed, sample_labels, num_kernels)
        extract_s_jaccard = time.perf_counter() - t1
    timing = {
        "compile_s": compile_s,
        "count_s": count_s,
        "extract_s": extract_s,
        "total_s": time.perf_counter() - start,
        "num_batches": num_batches,
    }
    if jaccard:
        timing["jaccard_s"] = extract_s_jaccard
    logger.info("extracted %d %s modules: %s", num_classes, method, timing)
    return Extraction(tuple(modules), totals, tuple(events), timing, scores)


__all__ = ["MODA_MIN_FRACTION", "MWT_STEP", "Extraction", "extract", "extract_modules"]
