"""Pan & Rajan's dense method (FSE'20, METHODS §7.1–7.4): a ReLU MLP cut into one module per class.

One file per step, the same file names as `modjax.decompose.cnn`:

- `parent`: the zoo MLP as `(W, b)` layers (`check`, `to_layers`, `to_params`), the monitoring
  pass (`monitor`) and the forward pass (`forward`).
- `identify`: concern and tangling identification (CI, TI) in closed form (`identify`, which
  returns the `WeightMasks` of a module; `first_flags`, the sparsity guard).
- `channel`: concern modularization, CM-RIE (`remove_irrelevant`) and CM-C (`channel`).
- `decompose`: the TI variants (`Variant`, `variant`) and all classes in one jitted, vmapped
  call (`make_decompose`; `decompose_class` for one class).
- `module`: the module value (`DenseModule`), its edge masks, pruned form (`prune`) and
  `sizes`; `unstack` splits the stacked result into values.
- `pipeline`: one call from a trained MLP and its training data to the modules (`decompose`,
  which `modjax.decompose` exports as `decompose_dense`).
"""

from modjax.decompose.dense import channel, decompose, identify, module, parent, pipeline

__all__ = ["channel", "decompose", "identify", "module", "parent", "pipeline"]
