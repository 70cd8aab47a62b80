"""The `moda_replace` table of `python -m experiments.reproduce`: MODA's replacement (§5.7, §13.2 D).

Each seed runs `replace.run_seed` (one strong model, one weak model per target class, both weak
states, the adapter and the CNNSplitter-style baseline); this file tabulates the "TC | mean
non-TC" accuracy changes as mean ± std over seeds beside MODA's Table D. Approaches and parts
carry the names of `modjax.modular.replace.evaluate_replacement`: `cnnsplitter` and
`moda_adapter`; `tc` and `mean_non_tc` (results written before this layout said `cnns`, `moda`
and `non_tc`).
"""

import math
import pathlib
import statistics

from modjax import metrics
from modjax.runs.results import write_csv, write_markdown

TITLE = "MODA (ICSE'26) module replacement: accuracy change TC | mean non-TC vs the weak LeNet5"

# Table D (§13.2), CIFAR-10 TCs airplane, automobile, bird, cat, deer: (TC, mean non-TC) in %.
PUBLISHED = {
    ("vgg16_moda", "ove", "cnnsplitter"): [(3.10, 0.38), (-3.40, 2.64), (-2.10, 1.56), (-0.90, 2.38), (0.60, 1.84)],
    ("vgg16_moda", "ove", "moda_adapter"): [(8.50, -0.22), (17.00, 0.40), (12.50, -0.14), (5.90, 0.48), (13.80, 0.42)],
    ("resnet18", "ove", "cnnsplitter"): [(5.20, 0.08), (4.60, 0.70), (-1.20, 1.58), (0.20, 1.80), (2.90, 1.22)],
    ("resnet18", "ove", "moda_adapter"): [(7.30, -0.40), (10.10, 0.34), (12.80, 0.58), (5.20, 1.02), (8.00, 0.28)],
    ("vgg16_moda", "und", "cnnsplitter"): [(10.00, -0.78), (-8.20, 3.26), (-6.00, 5.04), (-5.90, 5.10), (-4.60, 3.52)],
    ("vgg16_moda", "und", "moda_adapter"): [(10.30, 3.50), (17.50, 6.76), (16.70, 6.82), (10.20, 5.64), (24.00, 10.22)],
    ("resnet18", "und", "cnnsplitter"): [(16.60, -2.86), (4.20, 1.00), (-3.00, 5.04), (-1.90, 3.54), (1.90, 2.74)],
    ("resnet18", "und", "moda_adapter"): [(9.30, 3.40), (9.60, 6.00), (16.20, 8.18), (7.60, 7.42), (18.30, 9.64)],
}  # fmt: skip
PUBLISHED_CLASSES = ("airplane", "automobile", "bird", "cat", "deer")
WEAK = {"ove": "overfitted", "und": "underfitted"}
PARTS = ("tc", "mean_non_tc")  # `evaluate_replacement` change keys
APPROACH = {"cnnsplitter": "CNNSplitter-style", "moda_adapter": "MODA adapter"}

NOTES = (
    "Each cell: accuracy change in percentage points of the repaired model over the weak one, "
    "on the test images of the target class (TC) | mean over the 5 other classes; mean ± std "
    "over seeds. *mean* = the mean over the TCs per seed, then over seeds. Weak model: LeNet5 "
    "on the 5 weak classes + TC, `weak_fraction` of the training images per class, MODA loss; "
    "underfitted = its state after `underfit_epoch` epochs, overfitted = after `overfit_epoch`. "
    "Strong model: MODA on the 5 strong classes; TC's module extracted at τ and pruned to one "
    "logit. MODA adapter = Lin(6, 6) over [weak non-TC logits, module logit], trained on the "
    "weak training data; CNNSplitter-style = softmax of the weak logits with the TC "
    "probability overwritten by the min-max normalized module output (§5.7). Published: "
    "CIFAR-10 TCs airplane … deer (Table D, §13.2); the dataset here may differ (see Recipe), "
    "so compare the pattern (sign and size of TC and non-TC changes), not class by class."
)


def _mean_std(values):
    mean = statistics.mean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else math.nan)


def _fmt(values) -> str:
    mean, std = _mean_std(values)
    return f"{mean:+.1f}" if math.isnan(std) else f"{mean:+.1f}±{std:.1f}"


def cells(seeds: list[dict], weak: str, approach: str) -> list[dict]:
    """Per TC (then the mean over TCs): `{"tc": [per seed], "mean_non_tc": [per seed]}` in pp."""
    tcs = [c["tc"] for c in seeds[0]["classes"]]
    out = []
    for i in range(len(tcs)):
        out.append(
            {
                part: [100 * s["classes"][i][weak]["change"][approach][part] for s in seeds]
                for part in PARTS
            }
        )
    out.append(
        {
            part: [statistics.mean(c[part][j] for c in out) for j in range(len(seeds))]
            for part in PARTS
        }
    )
    return out


def seed_means(measured: dict) -> dict[tuple[str, str, str, str], list[float]]:
    """`{(model, weak, approach, part): per-seed change in pp, averaged over the TCs}`."""
    return {
        (model, weak, approach, part): cells(seeds, weak, approach)[-1][part]
        for model, seeds in measured.items()
        for weak in WEAK
        for approach in APPROACH
        for part in PARTS
    }


def significance_lines(means: dict[tuple[str, str, str, str], list[float]]) -> list[str]:
    """Welch's t-test of MODA adapter − CNNSplitter-style per model, weak state and part."""
    lines = [
        "## Differences over seeds (Welch's t-test)",
        "",
        "MODA adapter − CNNSplitter-style, on the per-seed change averaged over the TCs (pp): the "
        "difference of the seed means, its 95% confidence interval and Welch's two-sided p "
        "(`modjax.metrics.welch_comparison`). *No significant difference* with 3 seeds is not "
        "evidence of equality.",
        "",
        "| weak w/ strong | part | difference | 95% CI | p | verdict |",
        "|---|---|---|---|---|---|",
    ]
    models = dict.fromkeys(m for m, *_ in means)
    for model in models:
        for weak in WEAK:
            for part in PARTS:
                a = means.get((model, weak, "moda_adapter", part))
                b = means.get((model, weak, "cnnsplitter", part))
                if not a or not b:
                    continue
                cells_ = metrics.comparison_cells(metrics.welch_comparison(a, b), 1, 1)
                label = "TC" if part == "tc" else "mean non-TC"
                lines.append(f"| {weak} w/ {model} | {label} | " + " | ".join(cells_) + " |")
    return [*lines, ""]


def write_results(
    measured: dict, out: pathlib.Path, context: dict, *, seeds_wanted: int, class_names
) -> None:
    """Writes `<out>.md` and `<out>.csv` from `{model: [run_seed results]}`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    first = next(iter(measured.values()))[0]
    tcs = [c["tc"] for c in first["classes"]]
    names = [class_names[t] if class_names else str(t) for t in tcs]
    header = ["weak w/ strong", "approach", "seeds", *names, "mean"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    csv_rows = []
    for model, seeds in measured.items():
        for weak in WEAK:
            for approach in APPROACH:
                values = cells(seeds, weak, approach)
                row = [f"{weak} w/ {model}", APPROACH[approach], f"{len(seeds)}/{seeds_wanted}"]
                row += [f"{_fmt(v['tc'])} \\| {_fmt(v['mean_non_tc'])}" for v in values]
                lines.append("| " + " | ".join(row) + " |")
                paper = PUBLISHED.get((model, weak, approach))
                if paper:
                    mean = tuple(statistics.mean(p[i] for p in paper) for i in (0, 1))
                    cells_p = [f"{a:+.1f} \\| {b:+.1f}" for a, b in [*paper, mean]]
                    lines.append("| " + " | ".join(["", "paper (CIFAR-10)", "", *cells_p]) + " |")
                for label, v in zip([*names, "mean"], values):
                    for part in PARTS:
                        m, s = _mean_std(v[part])
                        csv_rows.append(
                            {
                                "model": model,
                                "weak": weak,
                                "approach": approach,
                                "target_class": label,
                                "metric": part,
                                "mean_pp": m,
                                "std_pp": s,
                                "seeds": len(v[part]),
                                "values": " ".join(f"{x:.4g}" for x in v[part]),
                            }
                        )
    weak_acc = {
        weak: [
            100 * c[weak]["accuracy"]["weak"]
            for seeds in measured.values()
            for s in seeds
            for c in s["classes"]
        ]
        for weak in WEAK
    }
    text = [
        f"# {TITLE}",
        "",
        f"Scale: **{context['scale']}**. Accuracy changes in percentage points, TC \\| mean "
        "non-TC, mean ± std over the finished seeds (sample std).",
        "",
        *lines,
        "",
        *significance_lines(seed_means(measured)),
        NOTES,
        "",
        "- Weak model test accuracy (6 classes), mean over TCs and seeds: "
        + ", ".join(f"{WEAK[w]} {statistics.mean(v):.1f}%" for w, v in weak_acc.items()),
        "- Strong model test accuracy (its 5 classes), mean ± std over seeds: "
        + "; ".join(
            f"{model} {_fmt([100 * s['strong_accuracy'] for s in seeds]).lstrip('+')}%"
            for model, seeds in measured.items()
        ),
        f"- Published mean over the 5 CIFAR-10 TCs is in each paper row's *mean* column "
        f"(TCs {', '.join(PUBLISHED_CLASSES)}).",
        f"- Recipe: `{context['config']}`",
        f"- Device: {context['device']}; machine: {context['machine']}",
        f"- Versions: {context['versions']}",
        f"- Wall time of this command so far: {context['wall_time_s'] / 60:.1f} min (cached "
        "stages count 0)",
        f"- Command: `{context['command']}`",
    ]
    write_markdown(out.with_suffix(".md"), "\n".join(text) + "\n")
    write_csv(out.with_suffix(".csv"), csv_rows)


__all__ = ["PUBLISHED", "TITLE", "cells", "seed_means", "significance_lines", "write_results"]
