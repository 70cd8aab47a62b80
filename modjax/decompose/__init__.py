"""Pan & Rajan: modules cut from an already trained model (METHODS §7).

The dense method (FSE'20) decomposes a ReLU MLP (the zoo's `mlp`) into one module per class:
concern identification (CI) on confident positives, tangling identification (TI: `sne`, `i`,
`pn`, `hp`) on negatives, and concern modularization (CM-RIE, CM-C). The sequential update
rules are evaluated in closed form (`identify`), all classes in one jitted, vmapped call
(`make_decompose`). Modules compose by voting (`vote`, `compose`, `predict`) and are values
(`DenseModule`) with edge masks, a pruned form (`prune`) and sizes (`sizes`).

The CNN method (ICSE'22) decomposes a CIFAR ResNet-v1 without BatchNorm (`resnet20_nobn`, or
`resnet_cifar` with `batch_norm=False`): CI keeps an inactive-position map per ReLU point
(positions ≤ 0 for every positive), TI at 1:1 re-activates what the other classes' images use,
then channelling and MC-BLN (`make_decompose_cnn`, `decompose_cnn`). MC-BLN follows the paper's
prose where its pseudocode contradicts it (`_cnn_modularize`); MC-BI is not implemented. CNN
modules (`CnnModule`) compose by the same vote, top-1 and top-k (`predict_topk`).

Modules of both kinds save and load through `modjax.modular.io` (method `"panrajan"`).
"""

from modjax.decompose._channel import channel, remove_irrelevant
from modjax.decompose._cnn_identify import class_reductions, combine, inactive_and
from modjax.decompose._cnn_modularize import BLN_DELTA, apply_bln, bln_marks, channel_head
from modjax.decompose._cnn_module import (
    CNN_KIND,
    CnnModule,
    cnn_logits,
    cnn_sizes,
    mean_jaccard,
    position_jaccard,
    unstack_cnn,
)
from modjax.decompose._cnn_net import CNN_MODELS, check_cnn_parent, cnn_layout, relu_points, run
from modjax.decompose._cnn_panrajan import CNN_CM_VARIANTS, make_decompose_cnn, modularize_class
from modjax.decompose._cnn_pipeline import class_groups, cnn_probs, decompose_cnn
from modjax.decompose._dense import check_parent, dense_layers, forward, monitor, to_params
from modjax.decompose._identify import Masks, first_flags, identify
from modjax.decompose._io import (
    load_decomposed,
    load_pruned,
    save_decomposed,
)
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
from modjax.decompose._vote import (
    compose,
    module_logits,
    predict,
    predict_topk,
    vote,
    vote_scores,
)

__all__ = [
    "BLN_DELTA",
    "CM_VARIANTS",
    "CNN_CM_VARIANTS",
    "CNN_KIND",
    "CNN_MODELS",
    "METHOD",
    "TI_VARIANTS",
    "CnnModule",
    "DenseModule",
    "Masks",
    "Samples",
    "Variant",
    "apply_bln",
    "bln_marks",
    "channel",
    "channel_head",
    "check_cnn_parent",
    "check_parent",
    "class_groups",
    "class_reductions",
    "cnn_layout",
    "cnn_logits",
    "cnn_probs",
    "cnn_sizes",
    "combine",
    "compose",
    "decompose_class",
    "decompose_cnn",
    "decompose_dense",
    "dense_layers",
    "edge_masks",
    "first_flags",
    "forward",
    "identify",
    "inactive_and",
    "load_decomposed",
    "load_pruned",
    "make_decompose",
    "make_decompose_cnn",
    "mean_jaccard",
    "modularize_class",
    "module_logits",
    "monitor",
    "parent_probs",
    "position_jaccard",
    "predict",
    "predict_topk",
    "prune",
    "relu_points",
    "remove_irrelevant",
    "run",
    "save_decomposed",
    "select_samples",
    "sizes",
    "to_params",
    "unstack",
    "unstack_cnn",
    "variant",
    "vote",
    "vote_scores",
]
