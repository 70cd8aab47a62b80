"""Modules from modular training (MwT, MODA): extract, prune, compose, fine-tune, replace, save.

Pipeline (METHODS §4.5–4.7, §5.4–5.7)::

    extraction = extract_modules(model=model, variables=v, batches=train, num_classes=N, ...)
    module = extraction.modules[3]                            # masked form: keep-masks
    pruned_model, pruned_vars = prune.prune(...)              # pruned form: a narrower model
    composed = compose.compose([m3, m5], {parent_key: v})     # one classifier from modules
    io.save_module(module, "modules/class_3")                 # a directory that travels

Files, one step each: `module` (the value, union, checks), `masked` (masked form and the
architecture rules), `counting` (one jitted counting pass), `extract` (thresholds and
fallbacks), `prune` (pruned form; `prune_vit` for a ViT's heads and MLP neurons), `compose`
(its values in `_composed`, its runs over data, calibration and accuracy, in `_compose_data`),
`finetune` (MwT task head), `replace` (MODA adapter, CNNSplitter patch), `portable` (kept-unit
values: modules that travel), `io` (module directories in the shared format), `family` (what
the module layer needs: methods, scorers of saved modules).
"""

from modjax.modular import (
    compose,
    counting,
    finetune,
    io,
    masked,
    module,
    portable,
    prune,
    prune_vit,
    replace,
)
from modjax.modular.counting import Counts, class_frequencies, make_count_step
from modjax.modular.extract import Extraction, extract, extract_modules
from modjax.modular.masked import (
    as_masks,
    drop_generators,
    effective_keep,
    masked_form_model,
    without_generators,
)
from modjax.modular.module import (
    METHODS,
    FallbackEvent,
    Module,
    check_method,
    check_module,
    kernel_rate,
    module_for_class,
    union,
)
from modjax.modules.identity import describe_parent

__all__ = [
    "METHODS",
    "Counts",
    "Extraction",
    "FallbackEvent",
    "Module",
    "as_masks",
    "check_method",
    "check_module",
    "class_frequencies",
    "compose",
    "counting",
    "describe_parent",
    "drop_generators",
    "effective_keep",
    "extract",
    "extract_modules",
    "finetune",
    "io",
    "kernel_rate",
    "make_count_step",
    "masked",
    "masked_form_model",
    "module",
    "module_for_class",
    "portable",
    "prune",
    "prune_vit",
    "replace",
    "union",
    "without_generators",
]
