"""Run outputs: JSON-lines metrics, window means on the host, and plain-text tables."""

import json
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modjax.modules import atomic, jsonrules


class MetricWriter:
    """Appends one JSON object per line to `path` (process 0 only; others write nothing).

    Values follow the one JSON rule (`modules.jsonrules.jsonable`): a NaN or infinite metric,
    e.g. a term never defined in its window, is written as `null`.
    """

    def __init__(self, path: pathlib.Path, *, enabled: bool = True):
        self.path = path
        self.enabled = enabled

    def write(self, record: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        value = jsonrules.jsonable(record, "a metrics record")  # NaN, Inf -> null
        line = json.dumps(value, sort_keys=True, allow_nan=False)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        with os.fdopen(fd, "a") as f:
            if os.fstat(fd).st_mode & 0o777 != 0o644:  # 0644 whatever the umask, as atomic's
                os.fchmod(fd, 0o644)
            f.write(line + "\n")


def drop_records_after(path: pathlib.Path, step: int) -> int:
    """Removes the lines of a metrics file whose `step` is above `step`; returns how many.

    A resumed run restarts from its last checkpoint, so lines logged after it would be logged
    again; dropping them first keeps one line per step. The file is replaced atomically.
    """
    if not path.exists():
        return 0
    lines = path.read_text().splitlines(keepends=True)
    keep = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
    if len(keep) == len(lines):
        return 0
    atomic.write_text(path, "".join(keep))
    return len(lines) - len(keep)


def window_means(records: Sequence[Mapping[str, np.ndarray]]) -> dict[str, float]:
    """Means of per-step scalar metrics over a window of steps.

    A term `x` that comes with a validity flag `x_defined` (undefined on some batches, METHODS
    §11.3) is averaged over the steps where it was defined only; NaN when it never was.
    """
    if not records:
        return {}
    out = {}
    for key in records[0]:
        if key.endswith("_defined") or key in ("finite", "bad_labels"):
            continue
        values = np.asarray([np.asarray(r[key], np.float64) for r in records])
        if f"{key}_defined" in records[0]:
            valid = np.asarray([bool(r[f"{key}_defined"]) for r in records])
            out[key] = float(values[valid].mean()) if valid.any() else float("nan")
        else:
            out[key] = float(values.mean())
    return out


def first_nonfinite(records: Sequence[Mapping[str, np.ndarray]]) -> int | None:
    """Index of the first record whose `finite` flag is false, else None."""
    for i, r in enumerate(records):
        if not bool(r["finite"]):
            return i
    return None


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A fixed-width text table of `rows` restricted to `columns` (missing cells blank)."""

    def cell(v):
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 1e4 else f"{v:.4g}"
        return "" if v is None else str(v)

    body = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [
        max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(columns)
    ]
    line = "  ".join(c.rjust(w) for c, w in zip(columns, widths))
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line, sep] + ["  ".join(v.rjust(w) for v, w in zip(b, widths)) for b in body])
