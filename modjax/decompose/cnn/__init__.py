"""Pan & Rajan's CNN method (ICSE'22, METHODS §7.7): a CIFAR ResNet without BN cut into modules.

One file per step, the same file names as `modjax.decompose.dense`, so each step of one method
sits beside the same step of the other:

- `parent`: the no-BN CIFAR ResNet-v1 as a pure function of its params (`check`, `layout`,
  `relu_points`, `run`, which zeroes single positions with keep-maps).
- `identify`: CI and TI as inactive-position maps in closed form (`inactive_and` per sample
  set, `class_reductions` per class, `inactive_maps` for every module).
- `channel`: channelling of the dense head (`channel_head`) and MC-BLN (`bln_marks`,
  `apply_bln`, following the paper's prose where its pseudocode contradicts it); MC-BI is not
  implemented.
- `decompose`: all classes in one jitted call (`make_decompose`; `modularize_class` is the CM
  step of one class).
- `module`: the module value (`CnnModule`), its `sizes` (position and channel retention),
  `logits`, and the position Jaccard index; a CNN module has no smaller pruned form
  (convolutions share their weights, so no conv edge is removed).
- `pipeline`: one call from a trained parent and its training data to the modules
  (`decompose`, which `modjax.decompose` exports as `decompose_cnn`).
"""

from modjax.decompose.cnn import channel, decompose, identify, module, parent, pipeline

__all__ = ["channel", "decompose", "identify", "module", "parent", "pipeline"]
