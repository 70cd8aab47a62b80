"""Pan & Rajan: modules cut from an already trained model (METHODS §7).

Two methods, one subpackage each, with the same step files in both (`parent`, `identify`,
`channel`, `decompose`, `module`, `pipeline`), and the parts they share beside them::

    dense/     FSE'20: a ReLU MLP (the zoo's `mlp`). CI on confident positives, TI (`sne`,
               `i`, `pn`, `hp`) on negatives, CM-RIE and CM-C, evaluated in closed form for
               all classes in one jitted, vmapped call; modules (`DenseModule`) have edge
               masks, a pruned form (`prune`) and `sizes`.
    cnn/       ICSE'22: a CIFAR ResNet-v1 without BatchNorm (`resnet20_nobn`, or `resnet_cifar`
               with `batch_norm=False`). CI keeps an inactive-position map per ReLU point, TI at
               1:1 re-activates what the other classes use, then channelling and MC-BLN;
               modules (`CnnModule`) keep the parent's weights and zero positions.
    samples    positive and negative sample selection (both methods).
    vote       voting composition, top-1 (`predict`) and top-k (`predict_topk`) (both);
               modules of several shapes (`compose_groups`, `predict_groups`); replacement
               (`replace`).
    io         module directories through `modjax.modules.directory`, method `"panrajan"`.
    family     the `modjax.families` entry point: saved modules of one parent as one scorer.

This namespace holds what a user of the methods calls: the module values, the two pipelines,
the parent checks, save/load, composition and the dense pruned form, plus the parents' forward
passes (`forward(dense_layers(params), x)` for an MLP, `run(params, x)` for a CNN). Every step
is reached through its subpackage, e.g. `decompose.dense.identify.identify` or
`from modjax.decompose.cnn import channel`.
"""

from modjax.decompose import cnn, dense, io, samples, vote
from modjax.decompose.cnn.module import CnnModule
from modjax.decompose.cnn.parent import check as check_cnn_parent
from modjax.decompose.cnn.parent import run
from modjax.decompose.cnn.pipeline import decompose as decompose_cnn
from modjax.decompose.dense.module import DenseModule, prune, sizes
from modjax.decompose.dense.parent import check as check_parent
from modjax.decompose.dense.parent import forward
from modjax.decompose.dense.parent import to_layers as dense_layers
from modjax.decompose.dense.pipeline import decompose as decompose_dense
from modjax.decompose.io import load_decomposed, load_pruned, save_decomposed
from modjax.decompose.vote import (
    compose,
    compose_groups,
    predict,
    predict_groups,
    predict_topk,
    replace,
)

__all__ = [
    "CnnModule",
    "DenseModule",
    "check_cnn_parent",
    "check_parent",
    "cnn",
    "compose",
    "compose_groups",
    "decompose_cnn",
    "decompose_dense",
    "dense",
    "dense_layers",
    "forward",
    "io",
    "load_decomposed",
    "load_pruned",
    "predict",
    "predict_groups",
    "predict_topk",
    "prune",
    "replace",
    "run",
    "samples",
    "save_decomposed",
    "sizes",
    "vote",
]
