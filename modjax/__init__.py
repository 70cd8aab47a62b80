"""modjax: modular deep learning in JAX/Flax.

Shared foundations: `data` (datasets and batches), `models` (the zoo), `metrics`, `objectives`
(CE, MwT, MODA), `train` (state and jitted steps), `parallel` (device mesh), `loop` (the epoch
loop `fit` and the padded `evaluate`), `checkpoint` (Orbax). The method families: `modular` (MwT
and MODA modules: extract, prune, compose, fine-tune, replace, save), `decompose` (Pan & Rajan),
`deeparc` (DeepArc). `runs` is the workdir layer of the CLI, experiments and notebooks; `cli` the
`modjax` command.
"""

__version__ = "0.1.0"  # first: module files record it while the package imports

from modjax import (
    checkpoint,
    data,
    decompose,
    deeparc,
    loop,
    metrics,
    models,
    modular,
    objectives,
    parallel,
    train,
)
from modjax.models import get_model
from modjax.objectives import combine, moda_objective, mwt_objective, nemo_objective
from modjax.train import TrainState, make_eval_step, make_optimizer, make_train_step

__all__ = [
    "TrainState",
    "checkpoint",
    "combine",
    "data",
    "decompose",
    "deeparc",
    "get_model",
    "loop",
    "make_eval_step",
    "make_optimizer",
    "make_train_step",
    "metrics",
    "moda_objective",
    "models",
    "modular",
    "mwt_objective",
    "nemo_objective",
    "objectives",
    "parallel",
    "train",
]
