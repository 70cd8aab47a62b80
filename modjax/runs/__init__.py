"""The workdir layer shared by the CLI, experiments and notebooks.

Files: `config` (the frozen `TrainConfig`, config files, JSON round-trip), `training` (a run's
data, model and optimizer from a config; train and evaluate in a workdir), `workdir` (restore
a run's checkpoint, describe its parent, atomic JSON), `report` (metrics lines and tables).
The library below (`modjax.loop`, `modjax.modular`, ...) never touches a workdir.
"""

from modjax.runs import config, report, training, workdir

__all__ = ["config", "report", "training", "workdir"]
