"""The workdir layer shared by the CLI, experiments and notebooks.

Files: `config` (the frozen `TrainConfig`, config files, JSON round-trip), `training` (a run's
data, model and optimizer from a config; train and evaluate in a workdir), `workdir` (restore
a run's checkpoint, describe its parent, atomic JSON), `report` (metrics lines and tables),
`callbacks` (the `loop.fit` callbacks of a run: metrics lines, NaN stop, progress bar,
checkpoints).
The library below (`modjax.loop`, `modjax.modular`, ...) never touches a workdir.
"""

from modjax.runs import callbacks, config, report, training, workdir

__all__ = ["callbacks", "config", "report", "training", "workdir"]
