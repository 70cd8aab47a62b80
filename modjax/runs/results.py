"""Results files of experiments: a markdown table that keeps its hand-written reading, and CSV.

    write_markdown(pathlib.Path("benchmarks/results/x.md"), table_text)
    write_csv(pathlib.Path("benchmarks/results/x.csv"), [{"model": "vgg16", "mean": 0.9}])

Experiments regenerate their results after every finished seed; a reading of the numbers,
appended by hand after a run under `## Reading`, survives those rewrites. Both writes are
atomic (`modules.atomic`): a reader never sees half a file.
"""

import csv
import io
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from modjax.modules import atomic

READING = "## Reading"
"""The heading of the hand-written section `write_markdown` keeps."""


def write_markdown(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path`, keeping the `## Reading` section (to the end) of the old file.

    The kept reading may then describe fewer seeds than the new table: re-read it.

    Example:
        >>> import pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.md"
        >>> write_markdown(p, "# T\\n| 1 |\\n")
        >>> _ = p.write_text(p.read_text() + "\\n## Reading\\nNoise.\\n")
        >>> write_markdown(p, "# T\\n| 2 |\\n")
        >>> p.read_text()
        '# T\\n| 2 |\\n\\n## Reading\\nNoise.\\n'
    """
    path = pathlib.Path(path)
    old = path.read_text() if path.exists() else ""
    at = old.find("\n" + READING)
    atomic.write_text(path, text + (old[at:] if at >= 0 else ""))


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
    """Writes `rows` (mappings with the keys of the first, in its order) as CSV, atomically.

    Raises:
        ValueError: no rows (a CSV file needs at least its header's keys).
    """
    if not rows:
        raise ValueError(f"no rows to write to {path}")
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(path, buffer.getvalue())


__all__ = ["READING", "write_csv", "write_markdown"]
