"""The module layer every family shares: identity, files, the registry, scoring, composition.

Files, one job each: `identity` (a parent's content hash, key and description), `jsonrules` (the
one JSON rule), `atomic` (atomic file and directory writes), `directory` (the module directory
format, version 3, with SHA256SUMS), `registry` (families register through entry points;
`family_of(method)`), `scorer` (the seam: every module becomes `inputs -> per-class scores`),
`compose` (any scorers side by side: relabelling, calibration, evaluation), `export` (a
composition as one `jax.export` file), `transform` (a module's recorded input transform). It imports no family; `modjax.modular`,
`modjax.decompose` and `modjax.deeparc` build on it and never on each other.
"""

from modjax.modules import (
    atomic,
    compose,
    directory,
    export,
    identity,
    jsonrules,
    registry,
    scorer,
    transform,
)
from modjax.modules.compose import (
    Composed,
    calibrate,
    compose_scorers,
    evaluate_composed,
    fit_calibration,
    pure_apply,
)
from modjax.modules.directory import ModuleDir, ModuleFileError
from modjax.modules.identity import describe_parent, parent_hash, parent_key
from modjax.modules.registry import Family, families, family_of
from modjax.modules.scorer import Network, Scorer, network_scorer

__all__ = [
    "Composed",
    "Family",
    "ModuleDir",
    "ModuleFileError",
    "Network",
    "Scorer",
    "atomic",
    "calibrate",
    "compose",
    "compose_scorers",
    "describe_parent",
    "directory",
    "evaluate_composed",
    "export",
    "families",
    "family_of",
    "fit_calibration",
    "identity",
    "jsonrules",
    "network_scorer",
    "parent_hash",
    "parent_key",
    "pure_apply",
    "registry",
    "scorer",
    "transform",
]
