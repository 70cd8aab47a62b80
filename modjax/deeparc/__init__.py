"""DeepArc: layer-level modules from CKA, block surgery and partial retraining (ICSE'23, §8).

Pipeline: `similarity.layer_cka` (minibatch CKA with the unbiased HSIC estimator, `cka`) →
`architecture.find_modules` / `modularity` / `sweep` (threshold scan) → `surgery.remove_blocks`,
`add_blocks`, `compression_search` (block surgery) → `repair` (deviation scores, top-k blocks,
partial fine-tuning). `pipeline` holds the host drivers used by the CLI and experiments.
"""

from modjax.deeparc import architecture, blocks, cka, pipeline, repair, similarity, surgery
from modjax.deeparc.architecture import find_modules, modularity, redundant, sweep
from modjax.deeparc.blocks import block_names, block_positions, check_residual
from modjax.deeparc.cka import (
    accumulate_hsic,
    cka_from_hsic,
    linear_cka,
    unbiased_center,
    unbiased_hsic,
)
from modjax.deeparc.similarity import layer_cka, make_hsic_step
from modjax.deeparc.surgery import add_blocks, compression_search, remove_blocks

__all__ = [
    "accumulate_hsic",
    "add_blocks",
    "architecture",
    "block_names",
    "block_positions",
    "blocks",
    "check_residual",
    "cka",
    "cka_from_hsic",
    "compression_search",
    "find_modules",
    "layer_cka",
    "linear_cka",
    "make_hsic_step",
    "modularity",
    "pipeline",
    "redundant",
    "remove_blocks",
    "repair",
    "similarity",
    "surgery",
    "sweep",
    "unbiased_center",
    "unbiased_hsic",
]
