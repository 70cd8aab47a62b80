"""The comparison's result files: one record per seed, and the table rebuilt from them.

Each finished seed is `<results>/seed_<s>.json` (the config and its hash, git commit, command,
device, versions, wall time, one row per method); `write_table` rebuilds `<results>.md` (mean ±
std over the seed files of one config hash), keeping its hand-written `## Reading` section, so a
table fills over several sessions without mixing settings.
"""

import hashlib
import json
import math
import pathlib
import platform
import statistics
import subprocess

import jax

from modjax import metrics
from modjax.modules import atomic, jsonrules

COLUMNS = (
    ("model_accuracy", "trained network acc %", 100),
    ("modules_accuracy", "all modules composed acc %", 100),
    ("accuracy_loss", "loss vs standard, pp", 100),
    ("module_params", "module params / parent", 1),
    ("module_macs", "module MACs / parent", 1),
    ("overlap", "overlap (Jaccard)", 1),
    ("task_accuracy", "sub-tasks composed acc %", 100),
    ("time_vs_standard", "train time / standard", 1),
    ("cut_s", "decompose/extract s", 1),
)
TESTED = ("modules_accuracy", "task_accuracy")  # columns whose method pairs get Welch's test


def config_hash(config: dict) -> str:
    """A short content hash of a comparison config (canonical JSON)."""
    return hashlib.sha256(jsonrules.canonical(config).encode()).hexdigest()[:12]


def git_commit() -> str:
    """`git rev-parse HEAD` of the working directory, `+dirty` when `modjax/` has changes."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "modjax"], capture_output=True)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def _cell(values: list[float], scale: float) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "–"
    mean = scale * statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.3f}" if scale == 1 else f"{mean:.2f}"
    std = scale * statistics.stdev(values)
    return f"{mean:.3f} ± {std:.3f}" if scale == 1 else f"{mean:.2f} ± {std:.2f}"


def _significance(seeds: list[dict], methods: list[str]) -> list[str]:
    """Welch's t-test over seeds of every method pair on the `TESTED` columns."""
    titles = {key: (title, scale) for key, title, scale in COLUMNS}

    def values(method, key):
        return [next(r for r in s["rows"] if r["method"] == method).get(key) for s in seeds]

    lines = [
        "Differences between methods over seeds: a − b of the seed means, its 95% confidence "
        "interval and Welch's two-sided p (`modjax.metrics.welch_comparison`); *no significant "
        "difference* with few seeds is not evidence of equality.",
        "",
        "| a − b | column | difference | 95% CI | p | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for i, a in enumerate(methods):
        for b in methods[i + 1 :]:
            for key in TESTED:
                title, scale = titles[key]
                c = metrics.welch_comparison(values(a, key), values(b, key))
                if c.n_a and c.n_b:
                    cells = metrics.comparison_cells(c, scale, 2)
                    lines.append(f"| {a} − {b} | {title} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def write_table(results: pathlib.Path, config_hash: str) -> pathlib.Path:
    """Rebuilds `<results>.md` from the seed files of `config_hash` (keeps `## Reading`)."""
    seeds = []
    for path in sorted(results.glob("seed_*.json")):
        record = json.loads(path.read_text())
        if record["config_hash"] == config_hash:
            seeds.append(record)
    if not seeds:
        raise FileNotFoundError(f"no seed file with config hash {config_hash} in {results}")
    first = seeds[0]
    walls = ", ".join(f"{r['wall_s'] / 60:.1f}" for r in seeds)
    methods = [r["method"] for r in first["rows"]]
    header = "| method | " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    lines = [
        f"# The methods on one network: {first['config']['train']['model']} on "
        f"{first['config']['train']['dataset']}",
        "",
        f"{len(seeds)} seed(s) ({', '.join(str(r['seed']) for r in seeds)}), mean ± std. "
        f"Config hash {config_hash}; command `{first['command']}`; device {first['device']}; "
        f"{first['versions']}; commits {sorted({r['commit'] for r in seeds})}; wall time per "
        f"seed {walls} min.",
        "",
        "Every column is computed by the same code from module directories "
        "(`modjax.runs.compare.measure`): all modules composed = the N per-class modules (or "
        "the one network) composed and evaluated on the whole test set; module size = a "
        "single module's parameters and MACs over the parent's; overlap = mean pairwise "
        "Jaccard of the hidden units two modules use; sub-tasks = the mean accuracy of "
        f"{len(first['tasks'])} sampled class subsets, the same list for every method, composed "
        "from their modules without retraining; train time / standard = wall time of training "
        "the method's network (Pan & Rajan and DeepArc reuse the standard one: 1.0); "
        "decompose/extract s = wall time of `modjax decompose`, `modularize` or `shrink`.",
        "",
        header,
        "|" + "---|" * (len(COLUMNS) + 1),
    ]
    for m in methods:
        cells = []
        for key, _, scale in COLUMNS:
            values = [next(r for r in s["rows"] if r["method"] == m).get(key) for s in seeds]
            cells.append(_cell(values, scale))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += _significance(seeds, methods)
    md = results.with_suffix(".md")
    reading = ""
    if md.is_file() and "## Reading" in md.read_text():
        reading = md.read_text()[md.read_text().index("## Reading") :]
    atomic.write_text(md, "\n".join(lines) + ("\n" + reading if reading else ""))
    return md


def device() -> str:
    """The device and machine a record was measured on."""
    d = jax.devices()[0]
    return f"{d.platform} ({d.device_kind}, {platform.machine()})"


def versions() -> str:
    """The versions a record was measured with."""
    return f"JAX {jax.__version__}, Python {platform.python_version()}"


__all__ = ["COLUMNS", "config_hash", "device", "git_commit", "versions", "write_table"]
