"""Adds (or refreshes) the Welch's-test section of a committed reproduction table from its CSV.

    python -m experiments.reproduce.significance benchmarks/results/reproduce_mwt_cpu.md [...]

A results file `reproduce_<table>_<scale>[_<tag>].md` and its `.csv` (one row per model and metric, the
per-seed values in `values`) are all this needs: the per-seed caches of the training workdirs
may be on another machine. The section is the one `python -m experiments.reproduce` writes
(`tables.significance_lines`); it goes before the table's notes, replacing an older one, and
everything else in the file (the hand-written Reading too) stays as it is.
"""

import argparse
import csv
import pathlib

from experiments import run
from experiments.reproduce import replace_table, tables
from modjax.modules import atomic

HEADING = "## Differences over seeds"


def measured_from_csv(path: pathlib.Path, table: tables.Table) -> dict[str, list[dict]]:
    """`{model: [per-seed {metric: value}]}` from a results CSV (values unscaled to fractions).

    Seeds are aligned by position in `values`; only metrics measured on every seed align
    exactly, which is all Welch's (unpaired) test needs.
    """
    scale = {c.key: c.scale for c in table.columns}
    out: dict[str, list[dict]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["metric"] not in scale or not row["values"]:
                continue
            values = [float(v) / scale[row["metric"]] for v in row["values"].split()]
            seeds = out.setdefault(row["model"], [])
            seeds.extend({} for _ in range(len(values) - len(seeds)))
            for seed, v in zip(seeds, values, strict=False):
                seed[row["metric"]] = v
    return out


OLD_NAMES = {"cnns": "cnnsplitter", "moda": "moda_adapter", "non_tc": "mean_non_tc"}


def replace_means_from_csv(path: pathlib.Path) -> dict[tuple[str, str, str, str], list[float]]:
    """`replace_table.seed_means` from a `moda_replace` CSV (its rows of target class "mean")."""
    out = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["target_class"] == "mean" and row["values"]:
                key = tuple(OLD_NAMES.get(row[k], row[k]) for k in ("approach", "metric"))
                out[(row["model"], row["weak"], *key)] = [float(v) for v in row["values"].split()]
    return out


def refresh(md: pathlib.Path) -> list[str]:
    """Rewrites the section of `md` in place; returns it."""
    known = sorted([*tables.TABLES, "moda_replace"], key=len, reverse=True)
    rest = md.stem.removeprefix("reproduce_")
    name = next((t for t in known if rest.startswith(t + "_")), None)  # mwt_reuse before mwt
    if name is None:
        raise ValueError(
            f"{md.name}: expected reproduce_<table>_<scale>.md with a table in {sorted(known)}"
        )
    csv_path = md.with_suffix(".csv")
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path} (the per-seed values) does not exist")
    if name == "moda_replace":
        notes = replace_table.NOTES
        section = replace_table.significance_lines(replace_means_from_csv(csv_path))
    else:
        notes = tables.TABLES[name].notes
        table = tables.TABLES[name]
        section = tables.significance_lines(table, measured_from_csv(csv_path, table))
    text = md.read_text()
    if HEADING in text:  # replace the old section (it ends where the notes start)
        start = text.index(HEADING)
        end = text.index(notes[:40], start)
        text = text[:start] + text[end:]
    at = text.index(notes[:40])
    atomic.write_text(md, text[:at] + "\n".join(section) + "\n" + text[at:])
    return section


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.reproduce.significance", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("results", nargs="+", type=pathlib.Path, help="reproduce_*.md files")
    for md in parser.parse_args(argv).results:
        print(f"{md}:")
        print("\n".join(refresh(md)))
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main, "python -m experiments.reproduce.significance"))
