"""The reference module extraction (METHODS §4.5, §5.4): one inference pass, then per class.

As in the papers' code: an eager no-grad pass in eval mode stores every sample's binary
indicators (MwT: generator mask > 0; MODA: reduced activation ≠ 0), then a loop over classes
re-concatenates them, selects the class's samples and thresholds the frequencies at τ. MwT's
fallback (lower τ by 0.05 for an empty layer) is applied; MODA's ICSE'26 top-k fallback is not
(the 2024 code has none), so compare keep-masks only where modjax reports no MODA fallback.
"""

import torch

from .layers import MASK_SUFFIX
from .losses import reduce_activation


@torch.no_grad()
def sample_indicators(model, batches, method: str):
    """`({layer: [int [B, C] per batch]}, labels [n])` over `batches` of `(images, labels)`."""
    if method not in ("mwt", "moda"):
        raise ValueError(f"method={method!r} must be 'mwt' or 'moda' (standard has no modules)")
    model.eval()
    per_layer, labels = {}, []
    for images, y in batches:
        _, acts = model(images)
        for name, a in acts.items():
            if method == "mwt" and name.endswith(MASK_SUFFIX):
                per_layer.setdefault(name.removesuffix(MASK_SUFFIX), []).append((a > 0).int())
            elif method == "moda" and not name.endswith(MASK_SUFFIX):
                per_layer.setdefault(name, []).append((reduce_activation(a) != 0).int())
        labels.append(y)
    if method == "mwt" and not per_layer:
        raise ValueError("method='mwt' needs a model built with mask_generators=True")
    return per_layer, torch.cat(labels)


@torch.no_grad()
def module_masks(per_layer, labels, num_classes: int, *, method: str, threshold: float = 0.9):
    """The per-class loop: `{layer: bool [num_classes, C]}` keep-masks f_c ≥ τ."""
    keep = {name: [] for name in per_layer}
    for c in range(num_classes):
        for name, chunks in per_layer.items():
            b = torch.cat(chunks, dim=0)[labels == c]
            if b.shape[0] == 0:
                raise ValueError(f"class {c} has no samples; its module is undefined")
            f = b.sum(dim=0).double() / b.shape[0]
            m = f >= threshold
            t = threshold
            while method == "mwt" and not m.any():
                t = round(t - 0.05, 12)
                if t <= 0:
                    raise ValueError(f"MwT fallback: layer {name!r} of class {c} keeps nothing")
                m = f >= t
            keep[name].append(m)
    return {name: torch.stack(ms) for name, ms in keep.items()}


def extract_all(model, batches, num_classes: int, *, method: str, threshold: float = 0.9):
    """Keep-masks of every class module: the indicator pass, then the per-class loop."""
    per_layer, labels = sample_indicators(model, batches, method)
    return module_masks(per_layer, labels, num_classes, method=method, threshold=threshold)
