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

A `Module` is the *masked* form (STYLE §2): the parent's shapes with one boolean keep-mask per
layer, so modules of one parent stack and compose in one pass. `as_masks` turns it into the
`masks=` argument of the zoo's `apply`.
"""

import json
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

from modjax import models, parallel
from modjax.typing import Batch

logger = logging.getLogger(__name__)

METHODS = ("mwt", "moda")
"""Extraction methods: MwT generator masks (§4.5) and MODA activations (§5.4)."""

MWT_STEP = 0.05
"""MwT fallback: the per-layer threshold is lowered by this much until a kernel survives."""
MODA_MIN_FRACTION = 0.005
"""MODA (ICSE'26) fallback: a class needs at least max(1, ⌊0.005·n_l⌋) units in layer l."""

_MASK_SUFFIX = "/mask"
# Zoo models whose BatchNorm follows `mask_generators` by default (METHODS §4.2, quirk 5).
_BN_FOLLOWS_GENERATORS = ("lenet5", "simcnn", "rescnn")


class Counts(NamedTuple):
    """Per-class activity counts over real (unpadded) samples; sums over batches add up.

    Attributes:
        per_class_active: `{layer: int32 [num_classes, C]}`: samples of class c whose binary
            indicator of unit u is 1.
        per_class_count: int32 `[num_classes]`: samples of each class.
    """

    per_class_active: dict[str, Any]
    per_class_count: Any


class FallbackEvent(NamedTuple):
    """One use of a method's fallback rule for an empty (or too small) layer of one class.

    Attributes:
        layer: layer name.
        class_id: the class.
        threshold: MwT: the final lowered threshold of the layer; MODA: None.
        k: units kept after the fallback (MODA: the top-k size).
    """

    layer: str
    class_id: int
    threshold: float | None
    k: int


class Module(NamedTuple):
    """An extracted module in masked form: one keep-mask per layer of the parent model.

    Attributes:
        keep: `{layer: bool [C]}` in forward order; for MwT the masked convs, for MODA the
            tracked layers.
        classes: parent class ids the module covers (sorted).
        parent: JSON-able description of the parent (see `describe_parent`): `model`,
            `model_kwargs` (with `num_classes`, `width`, `mask_generators`), `dataset`,
            `checkpoint`, `input_shape`.
        method: `"mwt"` or `"moda"`.
        threshold: τ used by `extract`.
        fallbacks: the fallback events of these classes.
        metrics: JSON-able scalars, e.g. `kernel_rate` (KRR, METHODS §10.1), `num_samples`.
    """

    keep: dict[str, np.ndarray]
    classes: tuple[int, ...]
    parent: dict[str, Any]
    method: str
    threshold: float
    fallbacks: tuple[FallbackEvent, ...]
    metrics: dict[str, Any]


class Extraction(NamedTuple):
    """What `extract_modules` returns.

    Attributes:
        modules: one `Module` per class, in class order.
        counts: the summed `Counts`, as NumPy arrays.
        fallbacks: every fallback event.
        timing: seconds: `compile_s`, `count_s` (the pass, compile excluded), `extract_s`,
            `total_s`; and `num_batches`.
    """

    modules: tuple[Module, ...]
    counts: Counts
    fallbacks: tuple[FallbackEvent, ...]
    timing: dict[str, float]


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method={method!r} must be one of {list(METHODS)}")
    return method


def _check_threshold(threshold: float) -> float:
    ok = isinstance(threshold, int | float) and not isinstance(threshold, bool)
    if not ok or not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold={threshold!r} must be in (0, 1] (τ = 0.9 in MwT and MODA)")
    return float(threshold)


def _indicators(
    acts: Mapping[str, jax.Array], method: str, layers: tuple[str, ...] | None
) -> dict[str, jax.Array]:
    """Binary indicators `{layer: bool [B, C]}` of one forward pass (forward order)."""
    if method == "mwt":
        found = {
            n.removesuffix(_MASK_SUFFIX): a for n, a in acts.items() if n.endswith(_MASK_SUFFIX)
        }
        if not found:
            raise ValueError(
                "method='mwt' needs generator masks: the model's acts have no "
                f"'<conv>{_MASK_SUFFIX}' entries; build it with mask_generators=True"
            )
    else:
        found = {n: a for n, a in acts.items() if not n.endswith(_MASK_SUFFIX)}
    if layers is not None:
        missing = [n for n in layers if n not in found]
        if missing:
            raise ValueError(
                f"layers {missing} are not {method} layers of the model; valid: {list(found)}"
            )
        found = {n: found[n] for n in layers}
    out = {}
    for name, a in found.items():
        if method == "mwt":
            out[name] = a > 0  # kernel k relevant to sample i ⇔ m_ik > 0 (§4.1)
        elif a.ndim > 2:
            # A[s, u] = mean |a| ≠ 0 ⇔ some position is non-zero (> 0 after ReLU) (§5.4).
            out[name] = jnp.any(a != 0, axis=tuple(range(1, a.ndim - 1)))
        else:
            out[name] = a != 0
    return out


def make_count_step(
    *,
    model: nn.Module,
    preprocess: Callable[[jax.Array, jax.Array], jax.Array],
    num_classes: int,
    method: str,
    layers: Sequence[str] | None = None,
    mesh: Mesh | None = None,
) -> Callable[[dict[str, Any], Batch], Counts]:
    """Builds the jitted `(variables, batch) -> Counts` pass of module extraction.

    Runs the model in eval mode (BN running statistics) and counts, for every layer and every
    class at once, the real samples whose binary indicator is 1:

    - MwT: generator mask m > 0 (METHODS §4.5 step 2).
    - MODA: post-ReLU activation non-zero at any spatial position (conv) or the unit itself
      (dense) (METHODS §5.4 step 2).

    Per-class sums use `jax.ops.segment_sum` with the static `num_classes`, so one pass over
    the training set serves all classes; shapes are fixed, so the step compiles once. Rows with
    `batch["mask"]` False (padding from `data.eval_batches`) are ignored, as are labels outside
    `[0, num_classes)`. Under `mesh` the batch is sharded on "data" and `variables` replicated;
    XLA reduces the class sums over the global batch.

    Args:
        model: a zoo model (`apply(variables, x, train=False) -> (logits, acts)`).
        preprocess: `(uint8 images, rng) -> float32`; use the test transform (no augmentation,
            METHODS §12 row 2). It receives a fixed key.
        num_classes: N.
        method: `"mwt"` or `"moda"`.
        layers: the layers to count (MwT: masked conv names without `"/mask"`); default all.
        mesh: device mesh for data parallelism, or None.

    Returns:
        A jitted function `(variables, batch) -> Counts` with int32 `per_class_active
        {layer: [N, C]}` and `per_class_count [N]`. `batch` holds `"image"`, `"label"` and
        optionally `"mask"` (bool `[B]`).

    Raises:
        ValueError: bad `method` or `num_classes`; at the first call, unknown `layers`, or MwT
            on a model without generators.
    """
    _check_method(method)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} must be an int >= 1")
    selected = None if layers is None else tuple(n.removesuffix(_MASK_SUFFIX) for n in layers)

    def count_fn(variables, batch):
        images = preprocess(batch["image"], jax.random.PRNGKey(0))
        labels = batch["label"].astype(jnp.int32)
        valid = batch["mask"] if "mask" in batch else jnp.ones(labels.shape, bool)
        _, acts = model.apply(variables, images, train=False)

        def per_class(x):  # [B, ...] int32 -> [N, ...]; invalid rows contribute 0
            x = x * valid.reshape(valid.shape + (1,) * (x.ndim - 1)).astype(jnp.int32)
            return jax.ops.segment_sum(x, labels, num_segments=num_classes)

        active = {
            name: per_class(b.astype(jnp.int32))
            for name, b in _indicators(acts, method, selected).items()
        }
        return Counts(active, per_class(jnp.ones(labels.shape, jnp.int32)))

    kwargs = {}
    if mesh is not None:
        rep = parallel.replicated(mesh)
        kwargs.update(in_shardings=(rep, parallel.batch_sharding(mesh)), out_shardings=rep)
    return jax.jit(count_fn, **kwargs)


def class_frequencies(counts: Counts) -> dict[str, np.ndarray]:
    """Per-class activity frequencies f_c[u] = count_c[u] / |S_c| (host NumPy).

    Frequencies are float64 so that a ratio equal to a decimal threshold (e.g. 9/10 vs 0.9)
    compares as it does in exact arithmetic.

    Args:
        counts: `Counts` summed over the whole training set (device or host arrays).

    Returns:
        `{layer: float64 [N, C]}` in [0, 1].

    Raises:
        ValueError: if a class has no samples (its module is undefined).

    Example:
        >>> c = Counts({"fc": np.array([[3, 0], [1, 2]])}, np.array([3, 4]))
        >>> class_frequencies(c)["fc"].tolist()
        [[1.0, 0.0], [0.25, 0.5]]
    """
    counts = jax.device_get(counts)
    n = np.asarray(counts.per_class_count)
    empty = np.flatnonzero(n <= 0)
    if empty.size:
        raise ValueError(
            f"class {int(empty[0])} has no samples (per_class_count={n.tolist()}); every class "
            "needs training samples to extract its module"
        )
    out = {}
    for name, c in counts.per_class_active.items():
        c = np.asarray(c)
        if c.ndim != 2 or c.shape[0] != n.shape[0]:
            raise ValueError(
                f"counts for layer {name!r} have shape {c.shape}; expected ({n.shape[0]}, C)"
            )
        out[name] = c.astype(np.float64) / n[:, None]
    return out


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
    _check_method(method)
    threshold = _check_threshold(threshold)
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


def describe_parent(
    model: str,
    *,
    dataset: str | None = None,
    checkpoint: str | None = None,
    input_shape: Sequence[int] | None = None,
    **model_kwargs,
) -> dict[str, Any]:
    """A JSON-able description of a zoo parent model, stored in every `Module`.

    Args:
        model: zoo name (`models.MODEL_NAMES`).
        dataset: dataset name the parent was trained on.
        checkpoint: identity of the parent checkpoint (e.g. path and step, or a hash).
        input_shape: one example's shape `(H, W, C)`, used to trace channel counts.
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
    }


def kernel_rate(keep: Mapping[str, np.ndarray]) -> float:
    """Fraction of kept units over all layers of `keep` (KRR for MwT, METHODS §10.1)."""
    total = sum(np.asarray(k).size for k in keep.values())
    return float(sum(int(np.asarray(k).sum()) for k in keep.values()) / max(total, 1))


def module_for_class(
    keep_masks: Mapping[str, np.ndarray],
    class_id: int,
    *,
    parent: Mapping[str, Any],
    method: str,
    threshold: float = 0.9,
    fallbacks: Sequence[FallbackEvent] = (),
    metrics: Mapping[str, Any] | None = None,
) -> Module:
    """The module of one class: row `class_id` of every `[N, C]` keep-mask from `extract`.

    `fallbacks` may hold every class's events; only `class_id`'s are kept. `metrics` defaults
    to `{"kernel_rate": KRR_c}`.
    """
    _check_method(method)
    keep = {}
    for name, m in keep_masks.items():
        m = np.asarray(m, bool)
        if m.ndim != 2 or not 0 <= class_id < m.shape[0]:
            raise ValueError(
                f"class_id={class_id} is not a row of keep_masks[{name!r}] with shape {m.shape}"
            )
        keep[name] = m[class_id].copy()
    events = tuple(e for e in fallbacks if e.class_id == class_id)
    return Module(
        keep=keep,
        classes=(int(class_id),),
        parent=dict(parent),
        method=method,
        threshold=_check_threshold(threshold),
        fallbacks=events,
        metrics=dict(metrics) if metrics is not None else {"kernel_rate": kernel_rate(keep)},
    )


def _canonical(x: Any) -> str:
    """A comparable form of JSON-like metadata (tuples and lists compare equal)."""
    return json.dumps(x, sort_keys=True, default=str)


def union(modules: Sequence[Module]) -> Module:
    """The module of a set of classes: OR of the keep-masks (METHODS §4.6 u_T, §5.5 M[l]).

    Raises:
        ValueError: no modules, or modules of different parents, methods, thresholds or
            layers.
    """
    if not modules:
        raise ValueError("union needs at least one module")
    first = modules[0]
    for m in modules[1:]:
        for field in ("parent", "method", "threshold"):
            a, b = getattr(first, field), getattr(m, field)
            if _canonical(a) != _canonical(b):
                raise ValueError(
                    f"cannot unite modules of classes {first.classes} and {m.classes}: "
                    f"{field} differs ({a!r} vs {b!r})"
                )
        if list(m.keep) != list(first.keep):
            raise ValueError(
                f"cannot unite modules with layers {list(first.keep)} and {list(m.keep)}"
            )
    keep = {
        n: np.logical_or.reduce([np.asarray(m.keep[n], bool) for m in modules]) for n in first.keep
    }
    events = tuple(dict.fromkeys(e for m in modules for e in m.fallbacks))
    return first._replace(
        keep=keep,
        classes=tuple(sorted({c for m in modules for c in m.classes})),
        fallbacks=events,
        metrics={"kernel_rate": kernel_rate(keep)},
    )


def _mobilenet_effective(keep: dict[str, np.ndarray], method: str) -> dict[str, np.ndarray]:
    """MobileNet's depthwise rule in masked form (METHODS §4.6 fork, §5.5).

    For each depthwise layer with a masked predecessor p (the previous pointwise conv, or for
    MODA the stem before block 0): E = keep[p] ∧ keep[dw]; if E is empty it is the first index
    of keep[dw]. The predecessor's output set becomes E; the depthwise layer keeps its own set,
    so its channels outside E get a zero input and emit ReLU(BN(0)), exactly as the pruned form
    (which zero-pads the block input into the depthwise layout). The MwT fork keeps block 0's
    depthwise layer intact (all channels).
    """
    keep = dict(keep)
    i = 0
    while f"block{i}.dw" in keep:
        dw = f"block{i}.dw"
        prev = "stem" if i == 0 else f"block{i - 1}.pw"
        if method == "mwt" and i == 0:
            keep[dw] = np.ones_like(keep[dw])
        elif prev in keep:
            e = keep[prev] & keep[dw]
            if not e.any() and keep[dw].any():
                e[np.argmax(keep[dw])] = True
            keep[prev] = e
        i += 1
    return keep


def effective_keep(module: Module) -> dict[str, np.ndarray]:
    """The keep-masks the masked form applies: `module.keep` after architecture rules.

    Only MobileNet differs from `module.keep` (see `_mobilenet_effective`); VGG and ResNet18
    need no rule because masked inputs are exact zeros (METHODS §5.5).
    """
    keep = {n: np.asarray(k, bool) for n, k in module.keep.items()}
    if module.parent.get("model") == "mobilenet":
        keep = _mobilenet_effective(keep, module.method)
    return keep


def as_masks(module: Module) -> dict[str, jax.Array]:
    """The masked form: float32 keep-masks `{layer: [C]}` for `model.apply(..., masks=...)`.

    Keys are mask points of the parent (`models.mask_points`): for MwT the masked convs, whose
    keep-mask multiplies the BN output in place of the dropped generator (apply with
    `masked_form_model(module)` and `drop_generators(variables)`); for MODA the tracked
    layers (ReLU outputs; ResNet18 block outputs `layer{s}.{b}`). MobileNet uses the effective
    sets of `effective_keep`.
    """
    return {n: jax.device_put(k.astype(np.float32)) for n, k in effective_keep(module).items()}


def masked_form_model(module_or_parent: Module | Mapping[str, Any]) -> nn.Module:
    """The zoo model that applies a module's masked form.

    For an MwT module the generators are dropped (METHODS §4.6, §12 row 4): the parent is built
    with `mask_generators=False`, keeping its BatchNorm (`batch_norm=True` for models whose BN
    otherwise follows the generators). Pair it with `drop_generators(variables)`. For MODA it
    is the parent model itself.
    """
    if isinstance(module_or_parent, Module):
        parent, method = module_or_parent.parent, module_or_parent.method
    else:
        parent, method = module_or_parent, "moda"
    name, kwargs = parent["model"], dict(parent["model_kwargs"])
    if method == "mwt" and kwargs.get("mask_generators"):
        kwargs["mask_generators"] = False
        if name in _BN_FOLLOWS_GENERATORS and kwargs.get("batch_norm") is None:
            kwargs["batch_norm"] = True
    return models.get_model(name, **kwargs)


def drop_generators(variables: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `variables` without MwT mask-generator subtrees (keys named `generator`)."""

    def strip(tree):
        if isinstance(tree, Mapping):
            return {k: strip(v) for k, v in tree.items() if k != "generator"}
        return tree

    return {col: strip(tree) for col, tree in variables.items()}


def check_module(module: Module) -> None:
    """Checks a module's keep-masks against its parent's mask points and channel counts.

    Raises:
        ValueError: a layer that is no mask point of the parent, or a keep shape that differs
            from the parent's channel count (naming both).
    """
    parent = module.parent
    if parent.get("model") not in models.MODEL_NAMES:
        raise ValueError(f"module parent model={parent.get('model')!r} is not a zoo model")
    shape = parent.get("input_shape") or (32, 32, 3)
    points = models.mask_points(
        models.get_model(parent["model"], **parent["model_kwargs"]), input_shape=shape
    )
    desc = f"{parent['model']}({parent['model_kwargs']})"
    for name, k in module.keep.items():
        if name not in points:
            raise ValueError(f"module layer {name!r} is not a mask point of parent {desc}")
        if np.shape(k) != (points[name],):
            raise ValueError(
                f"module keep[{name!r}] has shape {np.shape(k)} but parent {desc} has "
                f"{points[name]} channels there"
            )


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

    Returns:
        An `Extraction` with N modules (`metrics`: `kernel_rate`, `num_samples`), the counts,
        the fallback events and timings.
    """
    _check_method(method)
    _check_threshold(threshold)
    start = time.perf_counter()
    parent = dict(parent)
    if model is None:
        model = models.get_model(parent["model"], **parent["model_kwargs"])
    num_classes = int(parent["model_kwargs"]["num_classes"])
    step = make_count_step(
        model=model, preprocess=preprocess, num_classes=num_classes, method=method,
        layers=layers, mesh=mesh,
    )
    add = jax.jit(lambda a, b: jax.tree.map(jnp.add, a, b), donate_argnums=0)

    def put(batch):
        if mesh is not None:
            return parallel.shard_batch(batch, mesh)
        return jax.device_put(dict(batch))

    totals, compiled, compile_s, num_batches = None, None, 0.0, 0
    for batch in tqdm(batches, total=total, disable=disable, desc=f"{method} extraction"):
        batch = put(batch)
        if compiled is None:
            t0 = time.perf_counter()
            compiled = step.lower(variables, batch).compile()
            compile_s = time.perf_counter() - t0
            if parent.get("input_shape") is None:
                parent["input_shape"] = [int(d) for d in batch["image"].shape[1:]]
        counts = compiled(variables, batch)
        totals = counts if totals is None else add(totals, counts)
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
                keep, c, parent=parent, method=method, threshold=threshold, fallbacks=events,
                metrics=metrics,
            )
        )
    extract_s = time.perf_counter() - t0
    timing = {
        "compile_s": compile_s,
        "count_s": count_s,
        "extract_s": extract_s,
        "total_s": time.perf_counter() - start,
        "num_batches": num_batches,
    }
    logger.info("extracted %d %s modules: %s", num_classes, method, timing)
    return Extraction(tuple(modules), totals, tuple(events), timing)


__all__ = [
    "METHODS",
    "Counts",
    "Extraction",
    "FallbackEvent",
    "Module",
    "as_masks",
    "check_module",
    "class_frequencies",
    "describe_parent",
    "drop_generators",
    "effective_keep",
    "extract",
    "extract_modules",
    "kernel_rate",
    "make_count_step",
    "masked_form_model",
    "module_for_class",
    "union",
]
