"""The method registry: which family reads which module, found through entry points.

Each family registers itself in the package metadata (`pyproject.toml`)::

    [project.entry-points."modjax.families"]
    modular = "modjax.modular.family:FAMILY"

A `Family` names its methods (the `method` field its module directories carry) and turns loaded
directories of those methods into `Scorer`s. The foundation imports no family and holds no
method list: `families()` reads the entry points when first asked, never at import time, and
other packages can add a family the same way.
"""

import dataclasses
import functools
import importlib.metadata
from collections.abc import Callable, Sequence
from typing import Any

from modjax.modules.directory import ModuleDir
from modjax.modules.scorer import Scorer

GROUP = "modjax.families"
"""The entry-point group families register under."""


@dataclasses.dataclass(frozen=True)
class Family:
    """A method family as the module layer sees it.

    Attributes:
        name: the family's name (`modular`, `panrajan`, `deeparc`, or a plug-in's).
        methods: the `method` values of its module directories, and of its training objectives
            where it has any (`objectives`).
        scorers: `(loaded directories of this family) -> one Scorer per output group` (a family
            may fuse several modules of one parent into one scorer).
        summary: one line for `--help` and tables.
        objectives: the methods that are training objectives (`modjax train --method`); one
            whose modules cannot be cut yet (NeMo) is listed here but not in `methods`.
        cut: the `modjax` command (and fixed options) that cuts this family's modules from a
            training workdir given `--workdir RUN --out DIR`: its per-class `class_<c>` module
            directories, or one network directory `DIR/network`.
        units: `(loaded directory) -> {layer: bool [C]}`, the parent's hidden units (neurons,
            channels) the module uses, so overlap is one computation for every family
            (`metrics.jaccard_coupling` over the concatenated masks); None for a family whose
            modules are whole networks.
    """

    name: str
    methods: tuple[str, ...]
    scorers: Callable[[Sequence[ModuleDir]], list[Scorer]]
    summary: str = ""
    objectives: tuple[str, ...] = ()
    cut: tuple[str, ...] = ()
    units: Callable[[ModuleDir], dict[str, Any]] | None = None


def _entry_points() -> Sequence[Any]:
    return tuple(importlib.metadata.entry_points(group=GROUP))


@functools.cache
def families() -> dict[str, Family]:
    """`{name: Family}` of every registered family, in entry-point name order.

    Raises:
        RuntimeError: no family is registered (modjax is not installed), an entry point that is
            not a `Family`, or two families claiming one method.
    """
    found: dict[str, Family] = {}
    for ep in sorted(_entry_points(), key=lambda e: e.name):
        fam = ep.load()
        if not isinstance(fam, Family):
            raise RuntimeError(f"entry point {ep.name} = {ep.value} is not a modules.Family")
        found[fam.name] = fam
    if not found:
        raise RuntimeError(
            f"no module family is registered under the entry-point group {GROUP!r}: install "
            "modjax (`pip install -e .`) so that its package metadata is present"
        )
    owner: dict[str, str] = {}
    for fam in found.values():
        for m in fam.methods:
            if m in owner:
                raise RuntimeError(
                    f"method {m!r} is claimed by families {owner[m]!r} and {fam.name!r}"
                )
            owner[m] = fam.name
    return found


def methods() -> tuple[str, ...]:
    """Every registered method, family by family."""
    return tuple(m for fam in families().values() for m in fam.methods)


def objective_methods() -> tuple[str, ...]:
    """The registered methods that are training objectives (besides `standard`)."""
    return tuple(m for fam in families().values() for m in fam.objectives)


def family_of(method: str) -> Family:
    """The family that reads modules of `method`.

    Raises:
        ValueError: no registered family has `method`, naming the known ones.
    """
    for fam in families().values():
        if method in fam.methods:
            return fam
    raise ValueError(
        f"method={method!r} is not a registered module method; known: {list(methods())}"
    )


__all__ = ["GROUP", "Family", "families", "family_of", "methods", "objective_methods"]
