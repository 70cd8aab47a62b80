"""Residual blocks of a CIFAR ResNet-v1 in forward order: names, stage positions, validation."""

import flax.linen as nn

from modjax.models.resnet_cifar import ResNetCIFAR, block_name


def check_residual(model: nn.Module) -> ResNetCIFAR:
    """Returns `model` if it is a CIFAR ResNet-v1 (the model DeepArc's block methods need).

    Raises:
        ValueError: naming the model class, for a model without residual blocks.
    """
    # A model of the wrong family is a bad value here (the issue asks for a ValueError).
    if not isinstance(model, ResNetCIFAR):
        raise ValueError(  # noqa: TRY004
            f"model={type(model).__name__} has no residual blocks DeepArc can cut or repair; "
            "expected a CIFAR ResNet-v1 (models.get_model('resnet20'), 'resnet_cifar', ...)"
        )
    return model


def block_positions(model: nn.Module) -> list[tuple[int, int]]:
    """`(stage, index in stage)` of every block in forward order; stages from 1, indices from 0.

    Example:
        >>> from modjax import models
        >>> block_positions(models.get_model("resnet20", blocks=(1, 2, 1)))
        [(1, 0), (2, 0), (2, 1), (3, 0)]
    """
    stages = check_residual(model).stage_blocks()
    return [(s, b) for s, n in enumerate(stages, start=1) for b in range(n)]


def block_names(model: nn.Module) -> list[str]:
    """The act keys of the block outputs (DeepArc's `add` → ReLU cut points) in forward order.

    Example:
        >>> from modjax import models
        >>> block_names(models.get_model("resnet14"))[:3]
        ['layer1.0', 'layer1.1', 'layer2.0']
    """
    return [block_name(s, b) for s, b in block_positions(model)]


def param_key(stage: int, index: int) -> str:
    """The `params` key of a block: `"layer{stage}_{index}"`."""
    return f"layer{stage}_{index}"
