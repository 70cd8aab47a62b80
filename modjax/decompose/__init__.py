"""Pan & Rajan: modules cut from an already trained model (METHODS §7).

The dense method (FSE'20) decomposes a ReLU MLP (the zoo's `mlp`) into one module per class:
concern identification (CI) on confident positives, tangling identification (TI: `sne`, `i`,
`pn`, `hp`) on negatives, and concern modularization (CM-RIE, CM-C). The sequential update
rules are evaluated in closed form (`identify`), all classes in one jitted, vmapped call
(`make_decompose`). Modules compose by voting (`vote`, `compose`, `predict`) and are values
(`DenseModule`) with edge masks, a pruned form (`prune`) and sizes (`sizes`).

The CNN method (ICSE'22) is not implemented.
"""

from modjax.decompose._channel import channel, remove_irrelevant
from modjax.decompose._dense import check_parent, dense_layers, forward, monitor, to_params
from modjax.decompose._identify import Masks, first_flags, identify
from modjax.decompose._io import load_dense_module, load_pruned, save_dense_module
from modjax.decompose._module import METHOD, DenseModule, edge_masks, prune, sizes, unstack
from modjax.decompose._panrajan import (
    CM_VARIANTS,
    TI_VARIANTS,
    Variant,
    decompose_class,
    make_decompose,
    variant,
)
from modjax.decompose._pipeline import decompose_dense, parent_probs
from modjax.decompose._samples import Samples, select_samples
from modjax.decompose._vote import compose, module_logits, predict, vote

__all__ = [
    "CM_VARIANTS",
    "METHOD",
    "TI_VARIANTS",
    "DenseModule",
    "Masks",
    "Samples",
    "Variant",
    "channel",
    "check_parent",
    "compose",
    "decompose_class",
    "decompose_dense",
    "dense_layers",
    "edge_masks",
    "first_flags",
    "forward",
    "identify",
    "load_dense_module",
    "load_pruned",
    "make_decompose",
    "module_logits",
    "monitor",
    "parent_probs",
    "predict",
    "prune",
    "remove_irrelevant",
    "save_dense_module",
    "select_samples",
    "sizes",
    "to_params",
    "unstack",
    "variant",
    "vote",
]
