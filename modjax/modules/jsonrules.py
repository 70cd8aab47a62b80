"""The one JSON rule of modjax: every manifest, result and report file goes through `jsonable`.

NumPy scalars and 0-d arrays become Python scalars, arrays and tuples become lists, paths become
strings, and a non-finite float (NaN, ±Inf) becomes `null`: JSON has no NaN, and a per-class
accuracy of a class without test samples is "no value", not a number. Anything else (a model, a
function) is refused naming where it sits, so a file never holds a `repr`.
"""

import json
import math
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np


def jsonable(x: Any, what: str = "value") -> Any:
    """`x` as plain JSON types (see the module docstring for the rule).

    Args:
        x: nested dicts, lists, tuples, scalars, NumPy values and paths.
        what: where `x` sits, for the error message.

    Raises:
        TypeError: a value of any other type, naming `what` and its key path.

    Example:
        >>> jsonable({"acc": np.float32(0.5), "per_class": np.array([1.0, np.nan])})
        {'acc': 0.5, 'per_class': [1.0, None]}
    """
    if isinstance(x, Mapping):
        return {str(k): jsonable(v, f"{what}[{k!r}]") for k, v in x.items()}
    if isinstance(x, np.ndarray) and x.ndim > 0:
        return [jsonable(v, what) for v in x.tolist()]
    if isinstance(x, list | tuple):
        return [jsonable(v, f"{what}[{i}]") for i, v in enumerate(x)]
    if isinstance(x, np.generic | np.ndarray):
        x = x.item()
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if x is None or isinstance(x, bool | int | str):
        return x
    raise TypeError(f"{what} has a value of type {type(x).__name__}; expected JSON scalars")


def dumps(x: Any, what: str = "value", *, indent: int | None = 2) -> str:
    """`json.dumps(jsonable(x))`, strict JSON (no NaN literals)."""
    return json.dumps(jsonable(x, what), indent=indent, allow_nan=False)


def canonical(x: Any) -> str:
    """A comparable form of JSON-like metadata: keys sorted, tuples as lists, compact."""
    return json.dumps(jsonable(x), sort_keys=True, separators=(",", ":"), allow_nan=False)


def read(path: str | os.PathLike, *, keys: tuple[str, ...] = ()) -> Any:
    """The JSON value of a file (`null` stays `None`); with `keys`, an object holding them.

    Raises:
        FileNotFoundError: no such file (naming it).
        ValueError: invalid JSON (naming the file, line and column), or, with `keys`, not an
            object or missing one of them (naming the file and the keys).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        where = f" at line {err.lineno}, column {err.colno}" if hasattr(err, "lineno") else ""
        raise ValueError(f"{path} is not valid JSON ({getattr(err, 'msg', err)}{where})") from None
    if keys:
        missing = [k for k in keys if not isinstance(value, dict) or k not in value]
        if missing:
            raise ValueError(f"{path} lacks the key(s) {missing}; is it the right file?")
    return value


__all__ = ["canonical", "dumps", "jsonable", "read"]
