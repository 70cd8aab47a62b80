"""Modularity metrics: kernel/weight retention, overlap, Jaccard cohesion/coupling, sizes, accuracy.

Conventions (METHODS §10). A per-class module's kernel selection is a boolean vector over the K
masked kernels (all masked layers concatenated in forward order), so a class set is `U: bool
[N, K]` and per-sample binary masks are `B: bool [n, K]` (`m > 0` of the MwT generator masks).
Parameter-level membership (weight retention, overlap) is a *keep tree*: a pytree of boolean
arrays with the structure and shapes of the parent's `params` (True = the scalar survives
slicing). Jaccard metrics are invariant to the kernel order, so any consistent concatenation works.

Everything here runs offline on the host in NumPy, except `batch_jaccard_metrics`, which is
`jnp` and traceable so an eval step can compute it per batch.

Files by concern: `_retention` (kernel and weight retention), `_overlap` (MODA overlap),
`_jaccard` (cohesion, coupling, per-batch metrics), `_sizes` (module MACs and parameters),
`_flops` (XLA's compiled FLOPs),
`_pan_rajan` (value and edge Jaccard), `_accuracy`, `_significance` (Welch's t-test of a
difference over seeds), and `_common` (shared validation).
"""

from modjax.metrics._accuracy import accuracy_from_sums, per_class_accuracy
from modjax.metrics._flops import compiled_flops
from modjax.metrics._jaccard import (
    BatchJaccard,
    JaccardCohesion,
    JaccardCoupling,
    batch_jaccard_metrics,
    jaccard_cohesion,
    jaccard_coupling,
)
from modjax.metrics._overlap import Overlap, PairwiseOverlap, mean_pairwise_overlap, overlap
from modjax.metrics._pan_rajan import edge_jaccard, value_jaccard
from modjax.metrics._retention import (
    RESCNN_TOTAL_KERNELS,
    RESCNN_TOTAL_KERNELS_PARITY,
    SIMCNN_TOTAL_KERNELS,
    KernelRetention,
    composition_kernel_retention,
    kernel_retention,
    linear_weight_retention,
    task_kernel_retention,
    weight_retention,
)
from modjax.metrics._significance import Comparison, comparison_cells, welch_comparison
from modjax.metrics._sizes import ModuleSize, module_macs_and_params

__all__ = [
    "RESCNN_TOTAL_KERNELS",
    "RESCNN_TOTAL_KERNELS_PARITY",
    "SIMCNN_TOTAL_KERNELS",
    "BatchJaccard",
    "Comparison",
    "JaccardCohesion",
    "JaccardCoupling",
    "KernelRetention",
    "ModuleSize",
    "Overlap",
    "PairwiseOverlap",
    "accuracy_from_sums",
    "batch_jaccard_metrics",
    "compiled_flops",
    "comparison_cells",
    "composition_kernel_retention",
    "edge_jaccard",
    "jaccard_cohesion",
    "jaccard_coupling",
    "kernel_retention",
    "linear_weight_retention",
    "mean_pairwise_overlap",
    "module_macs_and_params",
    "overlap",
    "per_class_accuracy",
    "task_kernel_retention",
    "value_jaccard",
    "weight_retention",
    "welch_comparison",
]
