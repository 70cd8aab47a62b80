"""The workdir layer shared by the CLI, experiments and notebooks.

Files are named after the command they serve: `config` (the frozen `TrainConfig`, config files,
JSON round-trip), `build` (a run's data, model and optimizer from a config), `restore`
(`load_run` restores a trained workdir's checkpoint as a `RestoredRun`; the checkpoint's settings
are the truth), `training` (train and evaluate in a workdir; re-exports the names of `build` and
`restore`), `preemption` (SIGTERM as save-and-stop), `plots` (curves.png, modules.png), `report`
(metrics lines and tables), `callbacks` (the `loop.fit` callbacks of a run: metrics lines, NaN
stop, progress bar, checkpoints, TensorBoard/W&B scalars), `tensorboard_log` (tb/ event files),
`wandb_log` (`--wandb`: checks before the run, process 0's W&B run), `profiling` (`--profile`:
a `jax.profiler` trace of a step range), `modularize` (MwT/MODA module directories from a run; restore a module's parent by
hash), `decompose` (Pan & Rajan module directories from a run), `deeparc` (CKA, shrink and repair
of a run; shrunk and repaired networks as module directories), `compose` (module directories of
any families into one classifier, without any workdir), `task_module` (MwT task-module
fine-tuning), `replacement` (MODA module replacement), `pipeline` (train, modularize, compose), `compare`
(the methods side by side on one network; its result files in `compare_table`), `module_sizes`
(per-class size tables of module keep trees), `results` (markdown and CSV results files that keep
their hand-written reading).
`decompose`, `deeparc` and `pipeline` are imported by name (`from modjax.runs import deeparc`).
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
]
