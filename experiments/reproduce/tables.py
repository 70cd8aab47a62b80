"""The paper tables of `python -m experiments.reproduce`: what each row measures, the published
numbers (METHODS §13.1, §13.2, §13.7), and the results file beside them (mean ± std over
seeds). `measure` measures the rows.
"""

import dataclasses
import json
import math
import pathlib
import statistics

from modjax import metrics
from modjax.runs.results import write_csv, write_markdown


@dataclasses.dataclass(frozen=True)
class Column:
    key: str
    title: str
    scale: float = 1.0  # 100 for percentages
    digits: int = 2


@dataclasses.dataclass(frozen=True)
class Table:
    title: str
    methods: tuple[str, ...]
    columns: tuple[Column, ...]
    published: dict[str, dict[str, float]]  # model -> column key -> value (paper, CIFAR-10)
    notes: str
    cache: str = "measured.json"  # per-seed cache file; tables over the same runs differ here
    runs_of: str | None = None  # another table whose training runs (and workdir) this one reads
    # Column pairs (a, b) whose difference a − b over seeds gets Welch's t-test.
    comparisons: tuple[tuple[str, str], ...] = ()


MWT = Table(
    title="MwT (ICSE'24): accuracy, accuracy loss, KRR, Jaccard cohesion/coupling, time",
    methods=("standard", "mwt"),
    columns=(
        Column("standard_accuracy", "ST acc %", 100),
        Column("method_accuracy", "MwT acc %", 100),
        Column("composed_accuracy", "10 modules, no retraining, acc %", 100),
        Column("accuracy_loss", "ST − that, pp", 100),
        Column("krr", "KRR %", 100),
        Column("cohesion", "cohesion", 1, 4),
        Column("coupling", "coupling", 1, 4),
        Column("time_ratio", "time MwT/ST", 1),
    ),
    published={
        "vgg16": {"standard_accuracy": 92.62, "method_accuracy": 90.55, "time_ratio": 1.70},
        "resnet18": {
            "standard_accuracy": 93.37,
            "method_accuracy": 91.04,
            "krr": 24.74,
            "cohesion": 0.9437,
            "coupling": 0.2412,
            "time_ratio": 1.77,
        },
        "simcnn": {"krr": 14.58},
        "rescnn": {"krr": 14.58},
    },
    notes=(
        "Published: CIFAR-10; accuracies and time ratios from MODA's Table A (§13.2; MwT "
        "under MODA's setup, V100 hours), ResNet18 KRR/cohesion/coupling at τ = 0.9 from MwT's "
        "README (§13.1), SimCNN/ResCNN KRR from MwT's abstract (most likely those two models "
        "[assumed], §13.7). The paper's accuracy loss (1.13 pp) is measured on *fine-tuned* "
        "task modules (§4.6); this table does not fine-tune. Its '10 modules' column composes "
        "all class modules with no retraining (MwT composition drops the soft generator masks, "
        "keeps the whole classifier and takes each module's column, §4.7), the quantity MODA "
        "reports as MwT 'before fine-tuning' (≈ 32% for VGG16 and ≈ 12% for ResNet18 on 10 "
        "classes, §13.1). KRR = mean kept-kernel fraction of the "
        "class modules; cohesion/coupling = Jaccard over the extraction (training) samples, §10.4."
    ),
    comparisons=(
        ("method_accuracy", "standard_accuracy"),
        ("composed_accuracy", "standard_accuracy"),
    ),
)

MODA = Table(
    title="MODA (ICSE'26): accuracy, module size, overlap, sub-task composition, time",
    methods=("standard", "moda"),
    columns=(
        Column("standard_accuracy", "ST acc %", 100),
        Column("method_accuracy", "MODA acc %", 100),
        Column("module_size", "module size", 1, 3),
        Column("overlap", "overlap", 1, 3),
        Column("reuse_accuracy", "composed acc %", 100),
        Column("restricted_accuracy", "MODA restricted %", 100),
        Column("time_ratio", "time MODA/ST", 1),
    ),
    published={
        "vgg16_moda": {
            "standard_accuracy": 92.62,
            "method_accuracy": 91.86,
            "module_size": 0.027,
            "overlap": 0.014,
            "reuse_accuracy": 94.48,
            "time_ratio": 1.40,
        },
        "resnet18": {
            "standard_accuracy": 93.37,
            "method_accuracy": 90.94,
            "module_size": 0.081,
            "overlap": 0.055,
            "reuse_accuracy": 94.11,
            "time_ratio": 1.31,
        },
        "mobilenet": {
            "standard_accuracy": 89.42,
            "method_accuracy": 89.34,
            "module_size": 0.089,
            "overlap": 0.044,
            "reuse_accuracy": 91.90,
            "time_ratio": 1.56,
        },
    },
    notes=(
        "Published: CIFAR-10, MODA's Tables A and C (§13.2); time ratio = MODA h / ST h of "
        "Table A. module size = mean fraction of the parent's parameters a class module keeps; "
        "overlap = mean over class pairs of shared parameters / model size (MODA's id-model "
        "method); composed acc = mean accuracy of the composed sub-task networks (union of the "
        "modules' kept units, logits of T, no retraining) over the sub-tasks of §5.6, on T's test "
        "samples; MODA restricted = the MODA model's own accuracy restricted to T's logits."
    ),
    comparisons=(
        ("method_accuracy", "standard_accuracy"),
        ("reuse_accuracy", "restricted_accuracy"),
    ),
)

MWT_REUSE = Table(
    title="MwT (ICSE'24) sub-task reuse: fine-tuned task modules vs CNNSplitter-style composition",
    methods=("standard", "mwt"),
    columns=(
        Column("restricted_accuracy", "ST restricted %", 100),
        Column("finetuned_accuracy", "task module, fine-tuned %", 100),
        Column("cnnsplitter_accuracy", "one-by-one, no retraining %", 100),
        Column("fused_accuracy", "fused, no retraining %", 100),
        Column("task_krr", "task module KRR %", 100),
    ),
    published={
        "vgg16": {"finetuned_accuracy": 93.5, "fused_accuracy": 53.5},
        "resnet18": {"restricted_accuracy": 98.0, "finetuned_accuracy": 97.23, "task_krr": 50.51},
    },
    notes=(
        "Sub-tasks: a seeded sample (seed 42) of §5.6's class subsets, the same for every seed; "
        "each cell is the mean over the sub-tasks, then mean ± std over seeds. ST restricted = "
        "the standard model's accuracy on T's test samples, argmax over T's logits (§4.7). Task "
        "module = the union of T's MwT modules with a new |T|-way head, fine-tuned (§4.6: SGD "
        "0.05, cosine T_max 20, the best epoch on a 10% validation split); one-by-one = the "
        "CNNSplitter-style composition (each class by its own module's own-class logit, §4.7); "
        "fused = one network over the union, the classifier's T columns. Published: ResNet18 "
        "3-class task at τ = 0.9 from MwT's README (§13.1; standard ≈ 98%); VGG16 = the middle "
        "of MODA's MwT reuse ranges (after fine-tuning ≈ 96 → 91%, before ≈ 75 → 32% over "
        "2–10 classes, §13.1), read from bar charts."
    ),
    cache="measured_reuse.json",
    runs_of="mwt",
    comparisons=(
        ("finetuned_accuracy", "restricted_accuracy"),
        ("finetuned_accuracy", "cnnsplitter_accuracy"),
        ("fused_accuracy", "cnnsplitter_accuracy"),
    ),
)

TABLES = {"mwt": MWT, "mwt_reuse": MWT_REUSE, "moda": MODA}


# ----------------------------------------------------------------------------- results file


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = statistics.mean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else math.nan)


def _cell(values, column: Column) -> str:
    if not values:
        return "–"
    mean, std = _mean_std([v * column.scale for v in values])
    text = f"{mean:.{column.digits}f}"
    return text if math.isnan(std) else f"{text} ± {std:.{column.digits}f}"


def significance_lines(table: Table, measured: dict) -> list[str]:
    """The "Differences over seeds" section: Welch's t-test per model and column pair."""
    if not table.comparisons:
        return []
    columns = {c.key: c for c in table.columns}
    lines = [
        "## Differences over seeds (Welch's t-test)",
        "",
        "Difference of the seed means, its 95% confidence interval and the two-sided p-value of "
        "Welch's t-test (unequal variances, `modjax.metrics.welch_comparison`). With 3 seeds a "
        "difference must be several standard deviations wide to show; *no significant "
        "difference* is not evidence of equality.",
        "",
        "| model | a − b | difference | 95% CI | p | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for model, seeds in measured.items():
        for a, b in table.comparisons:
            ca, cb = columns[a], columns[b]
            c = metrics.welch_comparison([s.get(a) for s in seeds], [s.get(b) for s in seeds])
            if c.n_a == 0 or c.n_b == 0:
                continue
            cells = metrics.comparison_cells(c, ca.scale, ca.digits)
            lines.append(f"| {model} | {ca.title} − {cb.title} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def write_results(
    table: Table, measured: dict, out: pathlib.Path, context: dict, *, seeds_wanted: int
) -> None:
    """Writes `<out>.md` and `<out>.csv`: mean ± std over finished seeds beside the paper."""
    out.parent.mkdir(parents=True, exist_ok=True)
    header = ["model", "seeds"]
    for c in table.columns:
        header += [c.title, f"paper {c.title}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    csv_rows = []
    for model, seeds in measured.items():
        cells = [model, f"{len(seeds)}/{seeds_wanted}"]
        paper = table.published.get(model, {})
        for c in table.columns:
            values = [s[c.key] for s in seeds if s.get(c.key) is not None]
            cells += [_cell(values, c), f"{paper[c.key]:g}" if c.key in paper else "–"]
            mean, std = _mean_std([v * c.scale for v in values]) if values else (None, None)
            csv_rows.append(
                {
                    "model": model,
                    "metric": c.key,
                    "mean": mean,
                    "std": std,
                    "seeds": len(values),
                    "paper": paper.get(c.key),
                    "values": " ".join(f"{v * c.scale:.6g}" for v in values),
                }
            )
        lines.append("| " + " | ".join(cells) + " |")
    cfg = context["config"]
    text = [
        f"# {table.title}",
        "",
        f"Scale: **{context['scale']}**. Mean ± std over the finished seeds (sample std).",
        "",
        *lines,
        "",
        *significance_lines(table, measured),
        table.notes,
        "",
        f"- Recipe (one row, modular run): `{json.dumps(cfg, sort_keys=True)}`",
        f"- Device: {context['device']}; machine: {context['machine']}",
        f"- Versions: {context['versions']}",
        f"- Wall time of this command so far: {context['wall_time_s'] / 60:.1f} min (cached "
        "seeds count 0)",
        f"- Command: `{context['command']}`",
    ]
    extra = [s for seeds in measured.values() for s in seeds if s.get("empty_layers")]
    if extra:
        text.append(
            f"- {len(extra)} seed(s) have modules with zero-width layers (see measured.json)."
        )
    write_markdown(out.with_suffix(".md"), "\n".join(text) + "\n")
    write_csv(out.with_suffix(".csv"), csv_rows)
