"""The reference train step: forward, loss, backward, SGD (METHODS §4.4, §5.3)."""

import torch
from torch import nn

from .losses import LOSSES


def make_optimizer(model: nn.Module, *, lr=0.05, momentum=0.9) -> torch.optim.SGD:
    """SGD, Nesterov momentum 0.9, no weight decay; backbone and generators as two groups."""
    gen = [p for n, p in model.named_parameters() if ".generator." in n]
    rest = [p for n, p in model.named_parameters() if ".generator." not in n]
    groups = [{"params": rest}] + ([{"params": gen}] if gen else [])
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)


def check_method(method: str, model: nn.Module) -> None:
    """Raises `ValueError` for an unknown method, or MwT on a model without generators."""
    if method not in LOSSES:
        raise ValueError(f"method={method!r} must be one of {list(LOSSES)}")
    has_gen = any(".generator." in n for n, _ in model.named_parameters())
    if method == "mwt" and not has_gen:
        raise ValueError("method='mwt' needs a model built with mask_generators=True")


def train_step(model, optimizer, images, labels, method, forward=None):
    """One step in train mode; returns `(loss, terms)` as detached tensors.

    `forward` replaces `model` for the forward pass (e.g. a `torch.compile`d model).
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    logits, acts = (model if forward is None else forward)(images)
    loss, terms = LOSSES[method](logits, acts, labels)
    loss.backward()
    optimizer.step()
    return loss.detach(), {k: v.detach() for k, v in terms.items()}
