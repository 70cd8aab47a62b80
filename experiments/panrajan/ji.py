"""Why ICSE'22 CNN modules overlap (JI ≈ 1.00): per layer, what CI leaves inactive and TI re-activates.

For a trained no-BN CIFAR ResNet (a `modjax train` workdir), each class's CI map (positions ≤ 0
for every confident positive) and its CI + TI map (also ≤ 0 for every negative at 1:1) are
formed with the library's closed form (`decompose.cnn.identify`), and reported per ReLU point:

- `ci_inactive`: the mean share of positions CI leaves inactive;
- `ti_reactivated`: the share of those that TI turns back on;
- `final_inactive`: what the module finally zeroes;
- `ji_positions`: the mean pairwise Jaccard index of the classes' *active* position sets;
- `channel_*`: the same counts read per channel (a channel is inactive when every position of it
  is), the other reading of "positions and nodes" in METHODS §7.7;
- `ci_inactive_by_count`: CI's inactive share with fewer positives (10, 100, ...), since an AND
  over N samples can only shrink as N grows.

    python -m experiments.panrajan ji --workdir runs/compare/.../seed_0/standard \\
        --data-dir ../shared/datasets --out benchmarks/results/panrajan_ji/fmnist_r20.json

Writes the JSON and a Markdown table beside it (`.md`).
"""

import itertools
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from modjax.decompose.cnn import identify
from modjax.decompose.cnn.pipeline import class_groups, parent_probs
from modjax.decompose.samples import select_samples
from modjax.modules import atomic
from modjax.runs import training


def add_arguments(p) -> None:
    p.add_argument("--workdir", required=True, help="a `modjax train` workdir of a no-BN ResNet")
    p.add_argument("--data-dir", help="dataset directory (default: the run's)")
    p.add_argument("--out", required=True, help="result JSON path (a .md table is written beside)")
    p.add_argument("--positives", type=int, default=1000, help="CI positives per class (1000)")
    p.add_argument("--confidence", type=float, default=0.9, help="a positive needs p_c > this")
    p.add_argument(
        "--counts",
        type=int,
        nargs="+",
        default=[10, 100],
        help="also report CI's inactive share with these fewer positives (default: 10 100)",
    )


def _mean_pairwise_ji(active: np.ndarray) -> float:
    """Mean Jaccard index of the classes' active sets; `active` is bool `[C, n]`."""
    values = []
    for a, b in itertools.combinations(range(active.shape[0]), 2):
        union = np.sum(active[a] | active[b])
        values.append(1.0 if union == 0 else np.sum(active[a] & active[b]) / union)
    return float(np.mean(values))


def _forward_order(point: str) -> tuple[int, ...]:
    """`stem`, then `layer{s}.{b}.conv1` before `layer{s}.{b}`."""
    if point == "stem":
        return (0,)
    parts = point.removeprefix("layer").split(".")
    return (int(parts[0]), int(parts[1]), 0 if len(parts) > 2 else 1)


def diagnose(params, images, labels, *, positives, confidence, counts) -> dict:
    """The per-layer table for one parent (see the module docstring)."""
    num_classes = int(params["head"]["kernel"].shape[-1])
    probs = parent_probs(params, images)
    samples = select_samples(
        images,
        labels,
        probs,
        num_positives=positives,
        negatives_per_class=0,
        confidence=confidence,
        allow_fewer=True,
    )
    per_class = max(1, round(positives / (num_classes - 1)))
    groups = class_groups(images, labels, num_classes=num_classes, per_class=per_class)
    x = jnp.asarray(samples.positives)
    reduce = jax.jit(lambda p, x, g, v: identify.class_reductions(p, x, g, valid=v))
    pos, neg = reduce(params, x, jnp.asarray(groups), samples.valid)
    final = identify.inactive_maps(pos, neg)
    # CI alone with fewer positives: the positives' reduction only (TI's does not change).
    ci_only = jax.jit(jax.vmap(lambda x, v: identify.inactive_and(params, x, valid=v)))
    fewer = {}
    for n in counts:
        fewer[n] = ci_only(x, samples.valid & (np.arange(samples.valid.shape[1]) < n)[None, :])
    rows = []
    for point in sorted(pos, key=_forward_order):
        ci = np.asarray(pos[point]).reshape(num_classes, -1)
        fin = np.asarray(final[point]).reshape(num_classes, -1)
        ci_ch = np.all(np.asarray(pos[point]), axis=(1, 2))  # [C, channels]
        fin_ch = np.all(np.asarray(final[point]), axis=(1, 2))
        rows.append(
            {
                "point": point,
                "positions": int(ci.shape[1]),
                "ci_inactive": float(ci.mean()),
                "ti_reactivated": float((ci & ~fin).sum() / max(ci.sum(), 1)),
                "final_inactive": float(fin.mean()),
                "ji_positions": _mean_pairwise_ji(~fin),
                "ji_inactive": _mean_pairwise_ji(fin),
                "ji_ci_only": _mean_pairwise_ji(~ci),
                "channels": int(ci_ch.shape[1]),
                "channel_ci_inactive": float(ci_ch.mean()),
                "channel_final_inactive": float(fin_ch.mean()),
                "ji_channels": _mean_pairwise_ji(~fin_ch),
                "ci_inactive_by_count": {
                    str(n): float(np.asarray(m[point]).mean()) for n, m in fewer.items()
                },
            }
        )
    every = np.concatenate(
        [np.asarray(final[k]).reshape(num_classes, -1) for k in sorted(final)], axis=1
    )
    every_ci = np.concatenate(
        [np.asarray(pos[k]).reshape(num_classes, -1) for k in sorted(pos)], axis=1
    )
    return {
        "ji_all_ci_only": _mean_pairwise_ji(~every_ci),
        "ci_inactive_all": float(every_ci.mean()),
        "ji_all_positions": _mean_pairwise_ji(~every),
        "ji_all_inactive": _mean_pairwise_ji(every),
        "final_inactive_all": float(every.mean()),
        "classes": num_classes,
        "positives_found": [int(v) for v in samples.num_confident],
        "positives_used": [int(v) for v in np.asarray(samples.valid).sum(1)],
        "negatives_per_class": per_class,
        "layers": rows,
    }


def _markdown(result: dict) -> str:
    counts = list(result["layers"][0]["ci_inactive_by_count"])
    head = (
        "| point | positions | CI inactive | TI re-activates | final inactive | JI (active) "
        "| JI (inactive) | JI (active, CI only) "
        "| channels | CI inactive ch. | final inactive ch. | JI (channels) | "
        + " | ".join(f"CI inactive, {n} pos." for n in counts)
        + " |"
    )
    lines = [head, "|" + "---|" * (12 + len(counts))]
    for r in result["layers"]:
        lines.append(
            f"| {r['point']} | {r['positions']} | {r['ci_inactive']:.3f} | "
            f"{r['ti_reactivated']:.3f} | {r['final_inactive']:.3f} | {r['ji_positions']:.3f} | "
            f"{r['ji_inactive']:.3f} | {r['ji_ci_only']:.3f} | "
            f"{r['channels']} | {r['channel_ci_inactive']:.3f} | "
            f"{r['channel_final_inactive']:.3f} | {r['ji_channels']:.3f} | "
            + " | ".join(f"{r['ci_inactive_by_count'][n]:.3f}" for n in counts)
            + " |"
        )
    lines.append(
        f"\nAll points together: modules zero {result['final_inactive_all']:.3f} of the "
        f"positions; JI of the active sets {result['ji_all_positions']:.3f}, of the zeroed sets "
        f"{result['ji_all_inactive']:.3f}. CI alone zeroes {result['ci_inactive_all']:.3f}, "
        f"JI of its active sets {result['ji_all_ci_only']:.3f}."
    )
    return "\n".join(lines) + "\n"


def run(args, parser) -> int:
    if args.positives < 1:
        parser.error(f"--positives {args.positives}: expected an int >= 1")
    if not 0 <= args.confidence < 1:
        parser.error(f"--confidence {args.confidence}: expected a number in [0, 1)")
    out = pathlib.Path(args.out)
    restored = training.load_run(args.workdir, args.data_dir)
    t0 = time.perf_counter()
    images, labels = restored.train_data
    pre, key = jax.jit(restored.preprocess), jax.random.key(0)
    x = np.concatenate(
        [np.asarray(pre(images[i : i + 1000], key)) for i in range(0, len(images), 1000)]
    )
    result = diagnose(
        restored.variables["params"],
        x,
        np.asarray(labels),
        positives=args.positives,
        confidence=args.confidence,
        counts=args.counts,
    )
    result.update(
        workdir=str(args.workdir),
        model=restored.config.model,
        dataset=restored.config.dataset,
        positives=args.positives,
        confidence=args.confidence,
        seconds=time.perf_counter() - t0,
    )
    atomic.write_json(out, result)
    atomic.write_text(out.with_suffix(".md"), _markdown(result))
    print(_markdown(result))
    return 0


__all__ = ["add_arguments", "diagnose", "run"]
