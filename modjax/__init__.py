"""modjax: modular deep learning in JAX/Flax.

Submodules: `data` (datasets and batches), `models` (the zoo), `objectives` (CE, MwT, MODA),
`train` (state and jitted steps), `parallel` (device mesh), `checkpoint` (Orbax),
`modularize` (module extraction), `prune` (pruned modules), `module_io` (module files),
`metrics` (modularity metrics), `compose` (classifiers built from modules), `modules` (the module value), `replace`
(module replacement), `finetune` (MwT task head).
"""

from modjax import (
    checkpoint,
    compose,
    data,
    finetune,
    metrics,
    models,
    modularize,
    module_io,
    modules,
    objectives,
    parallel,
    prune,
    replace,
    train,
)
from modjax.models import get_model
from modjax.objectives import combine, moda_objective, mwt_objective
from modjax.train import TrainState, make_eval_step, make_optimizer, make_train_step

__version__ = "0.1.0"

__all__ = [
    "TrainState",
    "checkpoint",
    "combine",
    "compose",
    "data",
    "finetune",
    "get_model",
    "make_eval_step",
    "make_optimizer",
    "make_train_step",
    "metrics",
    "moda_objective",
    "models",
    "modularize",
    "module_io",
    "modules",
    "mwt_objective",
    "objectives",
    "parallel",
    "prune",
    "replace",
    "train",
]
