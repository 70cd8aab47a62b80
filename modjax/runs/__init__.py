"""The workdir layer shared by the CLI, experiments and notebooks.

Files: `config` (the frozen `TrainConfig`, config files, JSON round-trip), `training` (a run's
data, model and optimizer from a config; train and evaluate in a workdir), `workdir` (restore
a run's checkpoint, atomic JSON), `report` (metrics lines and tables),
`callbacks` (the `loop.fit` callbacks of a run: metrics lines, NaN stop, progress bar,
checkpoints), `modularize` (cut module directories from a run; restore a module's parent by
hash), `compose` (module directories of any families into one classifier, without any workdir), `task_module` (MwT task-module
fine-tuning), `replacement` (MODA module replacement).
The library below (`modjax.loop`, `modjax.modular`, ...) never touches a workdir.
"""

from modjax.runs import (
    callbacks,
    compose,
    config,
    modularize,
    replacement,
    report,
    task_module,
    training,
    workdir,
)

__all__ = [
    "callbacks",
    "compose",
    "config",
    "modularize",
    "replacement",
    "report",
    "task_module",
    "training",
    "workdir",
]
