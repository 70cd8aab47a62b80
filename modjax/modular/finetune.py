"""MwT task modules (METHODS §4.6): a pruned backbone + head, fine-tuned on the sub-task.

Pipeline::

    pruned, pv = prune(name, kw, variables, union(modules_of_T).keep, classes=None, method="mwt")
    model, variables = make_task_head(pruned, pv, num_outputs=len(T), seed=0)
    (tr_x, tr_y), (va_x, va_y) = split of T's training samples (data.stratified_split), labels 0..|T|-1
    result = finetune_task_module(model, variables, (tr_x, tr_y), (va_x, va_y), ...)
    result.best_variables   # default selection: best validation epoch; result.last_variables too

The fine-tune is `train.make_train_step` with `TaskHead` as the model: all parameters train,
BatchNorm in train mode, SGD 0.05 Nesterov, batch 128, 10 epochs, per-epoch cosine T_max = 20.
"""

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from modjax import data, loop, objectives, train


def _torch_bias_init(fan_in: int):
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class TaskHead(nn.Module):
    """`backbone (N logits) -> ReLU -> Dense(num_outputs)` (METHODS §4.6, one network).

    Attributes:
        backbone: the pruned model (keeps the whole N-way classifier); its variables live under
            `"backbone"`.
        num_outputs: |T|.
        fan_in: N, the backbone's number of outputs (for PyTorch's default bias init).

    Returns `(logits [B, num_outputs], acts)` with the backbone's acts plus `"backbone_logits"`.
    """

    backbone: nn.Module
    num_outputs: int
    fan_in: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        z, acts = self.backbone(x, train=train)
        head = nn.Dense(
            self.num_outputs,
            # PyTorch nn.Linear default: U(±1/sqrt(fan_in)) for weight and bias.
            kernel_init=nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
            bias_init=_torch_bias_init(self.fan_in),
            name="head",
        )
        return head(nn.relu(z)), {**acts, "backbone_logits": z}


def make_task_head(
    backbone: nn.Module, backbone_variables: dict[str, Any], *, num_outputs: int, seed: int = 0
) -> tuple[TaskHead, dict[str, Any]]:
    """Wraps a pruned backbone with a fresh head; returns `(model, variables)`.

    Args:
        backbone: the pruned model (`prune(..., classes=None)`), input `[B, H, W, C]`.
        backbone_variables: its `{"params", optional "batch_stats"}`.
        num_outputs: |T| >= 1.
        seed: seed of the head's initialization.
    """
    if num_outputs < 1:
        raise ValueError(f"num_outputs={num_outputs} must be >= 1 (the sub-task's classes)")
    params = backbone_variables["params"]
    out = _output_width(params)
    model = TaskHead(backbone, num_outputs, out)
    head = nn.Dense(
        num_outputs,
        kernel_init=nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
        bias_init=_torch_bias_init(out),
    ).init(jax.random.PRNGKey(seed), jnp.zeros((1, out)))["params"]
    variables = {"params": {"backbone": params, "head": head}}
    if backbone_variables.get("batch_stats"):
        variables["batch_stats"] = {"backbone": backbone_variables["batch_stats"]}
    return model, variables


def _output_width(params) -> int:
    """N: the width of the last Dense kernel of the backbone (its classifier)."""
    kernels = [
        leaf
        for path, leaf in jax.tree_util.tree_leaves_with_path(params)
        if str(getattr(path[-1], "key", "")) == "kernel" and np.ndim(leaf) == 2
    ]
    if not kernels:
        raise ValueError("backbone params hold no Dense kernel; expected a classifier")
    return int(np.shape(kernels[-1])[-1])


class FinetuneResult(NamedTuple):
    """Outcome of `finetune_task_module`.

    Attributes:
        best_variables: variables of the epoch with the best validation accuracy (first on ties).
        best_epoch: that epoch, 1-based.
        best_val_accuracy: its validation accuracy.
        last_variables: variables after the last epoch.
        last_val_accuracy: validation accuracy after the last epoch.
        history: one dict per epoch `{"epoch", "train_loss", "val_accuracy"}`.
    """

    best_variables: dict[str, Any]
    best_epoch: int
    best_val_accuracy: float
    last_variables: dict[str, Any]
    last_val_accuracy: float
    history: list[dict[str, float]]


def finetune_task_module(
    model: nn.Module,
    variables: dict[str, Any],
    train_data: tuple[np.ndarray, np.ndarray],
    val_data: tuple[np.ndarray, np.ndarray],
    *,
    num_classes: int,
    train_preprocess: Callable,
    eval_preprocess: Callable,
    num_epochs: int = 10,
    t_max: int = 20,
    learning_rate: float = 0.05,
    batch_size: int = 128,
    seed: int = 0,
) -> FinetuneResult:
    """Fine-tunes every parameter of `model` with CE (METHODS §4.6), selecting on validation.

    Args:
        model: e.g. `TaskHead` from `make_task_head`; returns `(logits [B, num_classes], acts)`.
        variables: its initial `{"params", optional "batch_stats"}`.
        train_data: `(images uint8 [n, H, W, C], labels int [n] in [0, num_classes))`.
        val_data: the held-out split, same layout (evaluated with `eval_preprocess`).
        num_classes: |T|.
        train_preprocess: `(images, rng) -> float32`, training augmentation included.
        eval_preprocess: `(images, rng) -> float32`, the test transform.
        num_epochs: epochs (10).
        t_max: cosine period in epochs (20; the last epoch's lr is about 0.029).
        learning_rate: peak SGD learning rate.
        batch_size: examples per step; the remainder of each epoch is dropped.
        seed: data order and dropout.
    """
    images, labels = train_data
    steps = data.steps_per_epoch(len(labels), batch_size)
    if steps == 0:
        raise ValueError(f"batch_size={batch_size} exceeds the {len(labels)} training samples")
    tx = train.make_optimizer(
        learning_rate=learning_rate, steps_per_epoch=steps, num_epochs=num_epochs, t_max=t_max
    )
    step = train.make_train_step(
        model=model,
        tx=tx,
        objective=objectives.standard,
        preprocess=train_preprocess,
        donate=False,
    )
    evaluate = train.make_eval_step(
        model=model, preprocess=eval_preprocess, num_classes=num_classes
    )
    state = train.TrainState(
        step=jnp.zeros((), jnp.int32),
        params=variables["params"],
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(variables["params"]),
        rng=jax.random.PRNGKey(seed),
    )

    history, best, last = [], [], []

    def on_epoch_end(event: loop.EpochEvent) -> None:
        on_device = train.variables_of(event.state)  # the step does not donate: still valid
        acc = loop.evaluate(
            eval_step=evaluate,
            variables=on_device,
            images=val_data[0],
            labels=val_data[1],
            global_batch_size=batch_size,
        )["accuracy"]
        v = jax.device_get(on_device)
        history.append(
            {
                "epoch": event.epoch,
                "train_loss": float(np.mean([r["loss"] for r in event.records])),
                "val_accuracy": acc,
            }
        )
        if not best or acc > best[2]:
            best[:] = (v, event.epoch, acc)
        last[:] = (v, acc)

    loop.fit(
        train_step=step,
        state=state,
        epoch_batches=lambda epoch: data.train_batches(
            images, labels, global_batch_size=batch_size, seed=seed, epoch=epoch
        ),
        steps_per_epoch=steps,
        num_epochs=num_epochs,
        log_every=steps,
        callbacks=[loop.check_finite(), loop.Callback(on_epoch_end=on_epoch_end)],
    )
    return FinetuneResult(best[0], best[1], best[2], last[0], last[1], history)


__all__ = [
    "FinetuneResult",
    "TaskHead",
    "finetune_task_module",
    "make_task_head",
]
