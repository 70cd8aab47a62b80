"""MwT and MODA losses in their pairwise form (METHODS §2.3, §4.3, §5.2), as the papers' code.

Per layer, V [B, D] is row-normalized, S = U Uᵀ is the full B×B cosine matrix, and same / diff
are the means of S over the pairs i < j of equal / different labels. A mean over no pairs is 0,
and the cohesion / affinity term 1 − same is 0 when the batch has no same-class pair (§11.3).
"""

import torch
import torch.nn.functional as F

from .layers import MASK_SUFFIX

MWT_WEIGHTS = {"cohesion": 0.5, "coupling": 1.5}
MODA_WEIGHTS = {"affinity": 1.0, "dispersion": 1.0, "compactness": 0.3}


def pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean [B, B] masks of the pairs i < j with equal and with different labels."""
    b = labels.shape[0]
    upper = torch.triu(torch.ones(b, b, dtype=torch.bool, device=labels.device), diagonal=1)
    same = labels[:, None] == labels[None, :]
    return same & upper, ~same & upper


def same_diff(v: torch.Tensor, same: torch.Tensor, diff: torch.Tensor):
    """(mean of S over same-class pairs, mean over different-class pairs) of one layer."""
    u = F.normalize(v, p=2, dim=1, eps=1e-12)
    s = u @ u.t()
    n_same, n_diff = same.sum(), diff.sum()
    same_mean = (s * same).sum() / n_same if n_same > 0 else s.new_zeros(())
    diff_mean = (s * diff).sum() / n_diff if n_diff > 0 else s.new_zeros(())
    return same_mean, diff_mean


def reduce_activation(a: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] → [B, C] by mean_{h,w} |a|; [B, n] unchanged (MODA §5.1)."""
    return a.abs().mean(dim=(2, 3)) if a.dim() == 4 else a


def _pair_terms(vs, labels):
    same, diff = pair_masks(labels)
    pairs = [same_diff(v, same, diff) for v in vs]
    same_l = torch.stack([p[0] for p in pairs]).mean()
    diff_l = torch.stack([p[1] for p in pairs]).mean()
    pull = 1 - same_l if same.any() else same_l.new_zeros(())
    return pull, diff_l


def masks_of(acts: dict) -> list[torch.Tensor]:
    """The generator masks of `acts` in forward order."""
    masks = [a for n, a in acts.items() if n.endswith(MASK_SUFFIX)]
    if not masks:
        raise ValueError("acts has no '<conv>/mask' entries: build the model with mask_generators")
    return masks


def tracked_of(acts: dict) -> list[torch.Tensor]:
    """The tracked post-ReLU activations of `acts` (every non-mask entry)."""
    return [a for n, a in acts.items() if not n.endswith(MASK_SUFFIX)]


def standard_loss(logits, acts, labels):
    """Cross-entropy only: `(loss, {"ce": loss})`."""
    ce = F.cross_entropy(logits, labels)
    return ce, {"ce": ce}


def mwt_loss(logits, acts, labels, *, cohesion=0.5, coupling=1.5):
    """CE + α·(1 − mean_l same(M^l)) + β·mean_l diff(M^l) over the generator masks."""
    ce = F.cross_entropy(logits, labels)
    coh, cou = _pair_terms(masks_of(acts), labels)
    return ce + cohesion * coh + coupling * cou, {"ce": ce, "cohesion": coh, "coupling": cou}


def moda_loss(logits, acts, labels, *, affinity=1.0, dispersion=1.0, compactness=0.3):
    """CE + α·L_aff + β·L_dis + γ·L_com over the reduced tracked activations."""
    ce = F.cross_entropy(logits, labels)
    vs = [reduce_activation(a) for a in tracked_of(acts)]
    aff, dis = _pair_terms(vs, labels)
    com = torch.stack([v.abs().mean() for v in vs]).mean()
    loss = ce + affinity * aff + dispersion * dis + compactness * com
    return loss, {"ce": ce, "affinity": aff, "dispersion": dis, "compactness": com}


LOSSES = {"standard": standard_loss, "mwt": mwt_loss, "moda": moda_loss}
