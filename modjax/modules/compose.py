"""Composition of any scorers: outputs side by side, relabelling, calibration, evaluation.

    composed = compose_scorers([s_moda, s_panrajan, s_mwt], relabel={("fashion_mnist", 3): 13})
    cal = {s.key: fit_calibration(s, train_batches_of(s)) for s in composed.groups}
    composed = calibrate(composed, cal)           # min-max normalized scores, then argmax
    scores = composed.apply_fn(x)                 # [B, len(composed.classes)]
    result = evaluate_composed(composed, images, labels, batch_size=256)

The scorers may come from any family and any parent (`scorer.Scorer`); the prediction is the
argmax over all outputs. Calibration (METHODS §5.7 step 5) maps each output to
`(z − min) / (max − min)` over its parent's training samples of the composed classes, which is
what makes the scores of different parents, and of different families, comparable.
"""

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from modjax import loop, train
from modjax.modules import identity
from modjax.modules.scorer import Scorer
from modjax.typing import Batch

log = logging.getLogger(__name__)

CALIBRATION_EPS = 1e-12
"""A class whose calibration max equals its min is divided by 1 instead of 0 (a constant score)."""


class Composed(NamedTuple):
    """A composed classifier.

    Attributes:
        apply_fn: jitted `x float32 [B, ...] -> scores float32 [B, len(classes)]`.
        classes: output class ids in output order (the parents' ids, or `relabel`'s new ids).
        groups: the scorers, in output order.
        sources: `(dataset, parent class id)` of every output.
        calibration: `{parent key: (min [k], max [k])}` applied before the argmax, or None.
        preprocess_by_parent: per-parent input transforms given to `compose_scorers`.
    """

    apply_fn: Callable[[jax.Array], jax.Array]
    classes: tuple[int, ...]
    groups: tuple[Scorer, ...]
    sources: tuple[tuple[str | None, int], ...]
    calibration: dict[str, tuple[np.ndarray, np.ndarray]] | None
    preprocess_by_parent: Mapping[str, Callable[[jax.Array], jax.Array]] | None = None


def _output_ids(
    groups: Sequence[Scorer], relabel: Mapping[tuple[str, int], int] | None
) -> tuple[tuple[int, ...], tuple[tuple[str | None, int], ...]]:
    """Output ids in group order after `relabel`; raises naming any clash."""
    relabel = {(d, int(c)): int(v) for (d, c), v in (relabel or {}).items()}
    sources = tuple((g.parent.get("dataset"), int(c)) for g in groups for c in g.classes)
    unused = sorted(set(relabel) - set(sources), key=str)
    if unused:
        raise ValueError(
            f"relabel keys {unused} name no composed (dataset, class id); composed: {list(sources)}"
        )
    ids, seen = [], {}
    for g in groups:
        for c in g.classes:
            src = (g.parent.get("dataset"), int(c))
            new = relabel.get(src, src[1])
            if new in seen:
                other, og = seen[new]
                who = f"{g.method} module of {_describe(g)}"
                was = f"{og.method} module of {_describe(og)}"
                if other == src:  # relabelling maps a (dataset, class), so it cannot split it
                    raise ValueError(
                        f"class {src[1]} of dataset {src[0]!r} is claimed twice: by a {was} and "
                        f"by a {who}; one class of one dataset is scored by one module: leave it "
                        "out of one of them (DIR:C1,C2 keeps only some classes of a module; "
                        "compose --replace swaps a module in). Relabelling (--relabel "
                        "DATASET:CLASS=NEW) separates classes of different datasets only"
                    )
                if other[0] != src[0] and new == src[1] and other == (other[0], new):
                    raise ValueError(
                        f"class id {new} clashes: dataset {other[0]!r} class {other[1]} ({was}) "
                        f"and dataset {src[0]!r} class {src[1]} ({who}); give one of them "
                        f"another id with --relabel {src[0]}:{src[1]}=NEW (in Python: "
                        "relabel={(dataset, class_id): new_id})"
                    )
                raise ValueError(
                    f"output id {new} clashes: (dataset, class) {other} and {src} both map to "
                    f"it (relabel={relabel}); give them distinct ids"
                )
            seen[new] = (src, g)
            ids.append(new)
    return tuple(ids), sources


def _describe(g: Scorer) -> str:
    """Model, dataset, step and the parent's hash: two parents differ by their hash."""
    return identity.describe(g.parent)


def _check_calibration(groups: Sequence[Scorer], calibration: Mapping) -> tuple[list, dict]:
    """Validates `{parent key: (min, max)}` over each parent's composed classes (sorted) and
    returns one `(min, max)` per group, restricted to that group's classes."""
    classes: dict[str, list[int]] = {}
    for g in groups:
        classes.setdefault(g.key, []).extend(g.classes)
    classes = {k: sorted(set(v)) for k, v in classes.items()}
    stray = set(calibration) - set(classes)
    if stray:
        raise ValueError(
            f"calibration has {len(stray)} key(s) that name no parent of this composition "
            "(keys: the scorers' `key`, i.e. identity.parent_key(parent))"
        )
    checked = {}
    for key, cls in classes.items():
        if key not in calibration:
            g = next(g for g in groups if g.key == key)
            raise ValueError(
                f"calibration has no entry for the parent of classes {cls} "
                f"({_describe(g)}); use fit_calibration"
            )
        lo, hi = (np.asarray(a, np.float32) for a in calibration[key])
        if lo.shape != (len(cls),) or hi.shape != lo.shape:
            raise ValueError(
                f"calibration of classes {cls} has shapes {lo.shape}, {hi.shape}; expected "
                f"({len(cls)},) each"
            )
        if not (np.isfinite(lo).all() and np.isfinite(hi).all() and (hi >= lo).all()):
            raise ValueError(f"calibration of classes {cls} needs finite min <= max")
        checked[key] = (lo, hi)
    out = []
    for g in groups:
        idx = [classes[g.key].index(c) for c in g.classes]
        lo, hi = checked[g.key]
        out.append((lo[idx], hi[idx]))
    return out, checked


def _pure_apply(groups, cal_list, preprocess_by_parent) -> Callable:
    pre = dict(preprocess_by_parent or {})
    plan = []
    for i, g in enumerate(groups):
        scale = None
        if cal_list is not None:  # min-max normalization (§5.7 step 5), constants on the host
            lo, hi = cal_list[i]
            rng = hi - lo
            scale = (lo, np.where(rng > CALIBRATION_EPS, rng, 1.0).astype(np.float32))
        plan.append((g.score_fn, scale, pre.get(g.key, g.preprocess)))

    def apply_fn(variables, x):
        outs = []
        for (score_fn, scale, fn), v in zip(plan, variables):
            z = score_fn(v, x if fn is None else fn(x)).astype(jnp.float32)
            if scale is not None:
                z = (z - scale[0]) / scale[1]
            outs.append(z)
        return jnp.concatenate(outs, axis=-1)

    return apply_fn


def pure_apply(composed: Composed) -> tuple[Callable, list[Any]]:
    """`(fn, variables)` with `fn(variables, x) == composed.apply_fn(x)`, not jitted.

    The variables travel as an argument (one pytree per scorer), e.g. for `jax.export` or
    `train.make_eval_step(predict_fn=fn)`; calibration and preprocessing are constants in `fn`.
    """
    groups = list(composed.groups)
    cal_list = None
    if composed.calibration is not None:
        cal_list, _ = _check_calibration(groups, composed.calibration)
    fn = _pure_apply(groups, cal_list, composed.preprocess_by_parent)
    return fn, [g.variables for g in groups]


def compose_scorers(
    scorers: Sequence[Scorer],
    *,
    relabel: Mapping[tuple[str, int], int] | None = None,
    calibration: Mapping[str, tuple[Any, Any]] | None = None,
    preprocess_by_parent: Mapping[str, Callable[[jax.Array], jax.Array]] | None = None,
) -> Composed:
    """One classifier from scorers of any families and parents: outputs concatenated.

    Args:
        scorers: `Scorer`s, in output order.
        relabel: `{(dataset, class_id): new_id}`; required when scorers of different datasets
            share class ids. Unmapped outputs keep their parent ids.
        calibration: `{parent key: (min [k], max [k])}` over each parent's composed classes,
            sorted (`fit_calibration`); None: raw scores.
        preprocess_by_parent: `{parent key: f(x) -> x}`, overriding the scorers' `preprocess`.

    Raises:
        ValueError: no scorers, one class claimed twice (naming both modules and the class),
            clashing ids across datasets without `relabel`, bad `relabel` keys or calibration.
        TypeError: an entry that is not a `Scorer`.
    """
    if not scorers:
        raise ValueError("scorers is empty; expected at least one module scorer to compose")
    for s in scorers:
        if not isinstance(s, Scorer):
            raise TypeError(f"compose_scorers takes Scorer values; got {type(s).__name__}")
    groups = list(scorers)
    ids, sources = _output_ids(groups, relabel)
    cal_list, checked = (None, None)
    if calibration is not None:
        cal_list, checked = _check_calibration(groups, calibration)
    jitted = jax.jit(_pure_apply(groups, cal_list, preprocess_by_parent))
    variables = [g.variables for g in groups]
    return Composed(
        lambda x: jitted(variables, x),
        ids,
        tuple(groups),
        sources,
        checked,
        preprocess_by_parent,
    )


def calibrate(composed: Composed, calibration: Mapping[str, tuple[Any, Any]] | None) -> Composed:
    """The same composition with min-max calibrated outputs (None: raw scores)."""
    relabel = {src: new for src, new in zip(composed.sources, composed.classes) if src[1] != new}
    return compose_scorers(
        composed.groups,
        relabel=relabel,
        calibration=calibration,
        preprocess_by_parent=composed.preprocess_by_parent,
    )


def _scores(g: Scorer, batches: Iterable[Batch], preprocess) -> tuple[np.ndarray, np.ndarray]:
    """`(scores [n, k], labels [n])` of a scorer over the valid rows of `batches` (host)."""

    def step(variables, images):
        if preprocess is not None:
            x = preprocess(images, jax.random.PRNGKey(0))
        else:
            x = images.astype(jnp.float32)
            x = x if g.preprocess is None else g.preprocess(x)
        return g.score_fn(variables, x)

    step = jax.jit(step)
    zs, ys = [], []
    for batch in batches:
        images = jnp.asarray(batch["image"])
        mask = np.asarray(batch.get("mask", np.ones(images.shape[0], bool)))
        z = np.asarray(jax.device_get(step(g.variables, images)), np.float64)
        zs.append(z[mask])
        ys.append(np.asarray(batch.get("label", np.zeros(len(mask), np.int64)))[mask])
    if not zs or not sum(len(z) for z in zs):
        raise ValueError("fit_calibration saw no valid rows in batches")
    return np.concatenate(zs), np.concatenate(ys)


def platt(z: np.ndarray, positive: np.ndarray, *, iters: int = 50) -> tuple[float, float]:
    """`(a, b)` of Platt scaling: `sigmoid(a·z + b)` fitted to `positive` (bool) by damped
    Newton steps on the logistic loss of the standardized scores, with an L2 penalty of
    `1e-3 · n` on the slope, so separable data gives a large but finite slope.

    Example:
        >>> a, b = platt(np.array([-2.0, -1.0, 1.0, 2.0]), np.array([0, 1, 0, 1]))
        >>> a > 0
        True
    """
    z, y = np.asarray(z, np.float64), np.asarray(positive, np.float64)
    mean, scale = float(np.mean(z)), float(np.std(z)) or 1.0
    u = (z - mean) / scale
    lam = 1e-3 * len(u)

    def loss(w):
        t = w[0] * u + w[1]
        return float(np.sum(np.logaddexp(0.0, t) - y * t) + 0.5 * lam * w[0] ** 2)

    w = np.zeros(2)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(w[0] * u + w[1], -35, 35)))
        r, h = p - y, p * (1 - p)
        grad = np.array([np.sum(r * u) + lam * w[0], np.sum(r)])
        hess = np.array(
            [[np.sum(h * u * u) + lam, np.sum(h * u)], [np.sum(h * u), np.sum(h) + 1e-9]]
        )
        step = np.linalg.solve(hess, grad)
        t, before = 1.0, loss(w)
        while loss(w - t * step) > before - 1e-4 * t * grad @ step and t > 1e-8:
            t /= 2  # backtracking: every step lowers the loss
        w = w - t * step
        if np.max(np.abs(t * step)) < 1e-10:
            break
    a = w[0] / scale
    return float(a), float(w[1] - a * mean)


def fit_calibration(
    composed_or_scorer: Composed | Scorer,
    batches: Iterable[Batch],
    *,
    preprocess: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    rule: str = "minmax",
    positive: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray] | dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-class `(min, max)` of a scorer's outputs for `calibrate`: outputs become
    `(z − min) / (max − min)`.

    Two rules:
    - `"minmax"` (METHODS §5.7 step 5): the range of each output over `batches`, which should
      be the scorer's own training samples of its classes (its parent's).
    - `"platt"`: Platt scaling, the affine map `a·z + b` of a logistic fit of "the sample is
      this output's class" on `batches`, which should hold the training samples of *every*
      composed class (positives and negatives), labelled with the values in `positive`. It puts
      the outputs of different parents and families on one scale (log-odds), which min-max over
      positives alone does not; an output whose fit does not rank its class higher (a ≤ 0)
      falls back to min-max.

    Args:
        composed_or_scorer: a `Scorer`, or a `Composed` with one scorer.
        batches: batches `{"image", optional "mask", "label" (platt)}`; padding rows with mask
            False are ignored.
        preprocess: `(images, rng) -> the scorer's input` (default: cast to float32, then the
            scorer's own `preprocess`).
        rule: `"minmax"` or `"platt"`.
        positive: platt: for each output, the label value of its positive samples (default:
            the scorer's classes).

    Returns:
        For a `Scorer`: `(min [k], max [k])` float32 NumPy; for a `Composed`: `{key: (min, max)}`.

    Raises:
        ValueError: a `Composed` with several scorers, an unknown rule, a `positive` of the
            wrong length, or no valid rows in `batches`.
    """
    if rule not in ("minmax", "platt"):
        raise ValueError(f"rule={rule!r} must be 'minmax' or 'platt'")
    if isinstance(composed_or_scorer, Composed):
        if len(composed_or_scorer.groups) != 1:
            raise ValueError(
                f"fit_calibration of a Composed needs exactly one scorer, got "
                f"{len(composed_or_scorer.groups)}; calibrate each of composed.groups on its "
                "own parent's training data"
            )
        g = composed_or_scorer.groups[0]
        fitted = fit_calibration(g, batches, preprocess=preprocess, rule=rule, positive=positive)
        return {g.key: fitted}
    g = composed_or_scorer
    z, labels = _scores(g, batches, preprocess)
    lo, hi = z.min(0), z.max(0)
    if rule == "platt":
        positive = list(g.classes if positive is None else positive)
        if len(positive) != len(g.classes):
            raise ValueError(f"positive has {len(positive)} labels for {len(g.classes)} outputs")
        for j, label in enumerate(positive):
            a, b = platt(z[:, j], labels == label)
            if a > 0 and np.isfinite(a) and np.isfinite(b):
                lo[j], hi[j] = -b / a, -b / a + 1 / a
            else:
                log.warning(
                    "platt calibration of class %s of the %s module of %s does not rank the class "
                    "higher (a=%.3g); using min-max for it",
                    g.classes[j],
                    g.method,
                    _describe(g),
                    a,
                )
    return lo.astype(np.float32), hi.astype(np.float32)


def evaluate_composed(
    composed: Composed,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    preprocess: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
) -> dict[str, Any]:
    """Accuracy of a composition on the test samples of its classes (METHODS §10.6).

    Samples whose label is not in `composed.classes` are dropped; the rest are remapped to output
    positions and predicted by the argmax over all outputs, with `train.make_eval_step` and
    `loop.evaluate` (fixed batches, the last padded and masked, so the step compiles once).

    Args:
        composed: from `compose_scorers` / `calibrate`.
        images: `[n, ...]` (uint8 or float).
        labels: `[n]` int, in the composition's output id space (`composed.classes`).
        batch_size: examples per step.
        preprocess: `(images, rng) -> float32` producing `apply_fn`'s input (default: a cast
            to float32, for compositions whose scorers carry their own transforms).

    Returns:
        `{"accuracy", "count", "correct", "per_class_accuracy": {id: acc}, "per_class_count":
        {id: n}}` (classes without test samples get NaN accuracy).

    Raises:
        ValueError: `batch_size` < 1, mismatched lengths, or no sample of the composed classes.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be an int >= 1")
    images, labels = np.asarray(images), np.asarray(labels)
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    ids = np.asarray(composed.classes)
    k = len(ids)
    keep = np.isin(labels, ids)
    if not keep.any():
        raise ValueError(f"no test sample has a label in the composed classes {list(ids)}")
    images, labels = images[keep], labels[keep]
    order = np.argsort(ids)
    position = order[np.searchsorted(ids[order], labels)].astype(np.int32)
    fn, variables = pure_apply(composed)
    eval_step = train.make_eval_step(
        predict_fn=fn,
        preprocess=preprocess or (lambda x, rng: x.astype(jnp.float32)),
        num_classes=k,
        loss=False,
    )
    result = loop.evaluate(
        eval_step=eval_step,
        variables=variables,
        images=images,
        labels=position,
        global_batch_size=batch_size,
        prefetch=0,
    )
    count = np.bincount(position, minlength=k)
    correct = np.rint(np.nan_to_num(result["per_class_accuracy"]) * count).astype(np.int64)
    per_class = result["per_class_accuracy"]
    return {
        "accuracy": float(correct.sum() / count.sum()),
        "correct": int(correct.sum()),
        "count": int(count.sum()),
        "per_class_accuracy": {int(c): float(a) for c, a in zip(ids, per_class)},
        "per_class_count": {int(c): int(m) for c, m in zip(ids, count)},
    }


__all__ = [
    "CALIBRATION_EPS",
    "Composed",
    "calibrate",
    "compose_scorers",
    "evaluate_composed",
    "fit_calibration",
    "platt",
    "pure_apply",
]
