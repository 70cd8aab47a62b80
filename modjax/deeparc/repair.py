"""Repair by retraining only significant blocks (METHODS §8.5): attack, deviation, partial fit."""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from modjax import train
from modjax.deeparc import cka
from modjax.deeparc.blocks import block_names, block_positions, check_residual, param_key
from modjax.models.resnet_cifar import KERAS_BN_MOMENTUM
from modjax.objectives import cross_entropy

TRAIN, FREEZE = "train", "freeze"
BN_MODES = ("frozen", "train")  # the trained blocks' BatchNorm during a repair (`run_repair`)


def make_pgd(
    *,
    model: nn.Module,
    preprocess: Callable[[jax.Array, jax.Array], jax.Array],
    eps: float = 8.0,
    step_size: float = 2.0,
    steps: int = 10,
    random_start: bool = True,
) -> Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]:
    """Builds a jitted L∞ PGD attack `(variables, images, labels, rng) -> adversarial images`.

    Images are float pixels in [0, 255] (uint8 is accepted); `preprocess` maps them to model
    inputs (it divides by 255 and normalizes, `data.make_preprocess(..., augment=False)`). Each
    step ascends the cross-entropy by `step_size · sign(∇)` and projects onto the `eps` ball and
    [0, 255]. `steps=1, step_size=eps, random_start=False` is FGSM. BN runs in eval mode.

    Args:
        model: the attacked model.
        preprocess: `(pixels, rng) -> model inputs`, differentiable in the pixels.
        eps: L∞ radius in pixel units (8 = 8/255).
        step_size: step in pixel units.
        steps: PGD iterations (>= 1).
        random_start: start from a uniform point of the ball.

    Returns:
        A jitted function returning float32 `[B, H, W, C]` pixels in [0, 255].
    """
    if steps < 1 or eps <= 0 or step_size <= 0:
        raise ValueError(f"steps={steps}, eps={eps}, step_size={step_size} must all be positive")

    def loss(variables, x, labels):
        logits, _ = model.apply(variables, preprocess(x, jax.random.key(0)), train=False)
        return jnp.sum(cross_entropy(logits, labels))

    def attack(variables, images, labels, rng):
        x0 = jnp.asarray(images).astype(jnp.float32)
        x = x0
        if random_start:
            x = x + jax.random.uniform(rng, x.shape, jnp.float32, -eps, eps)
            x = jnp.clip(x, 0.0, 255.0)

        def body(_, x):
            g = jax.grad(loss, argnums=1)(variables, x, labels)
            x = x + step_size * jnp.sign(g)
            return jnp.clip(jnp.clip(x, x0 - eps, x0 + eps), 0.0, 255.0)

        return jax.lax.fori_loop(0, steps, body, x)

    return jax.jit(attack)


def make_similarity_fn(
    *,
    model: nn.Module,
    layers: Sequence[str],
    preprocess: Callable[[jax.Array, jax.Array], jax.Array],
) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
    """Jitted `(variables, images_a, images_b) -> [L]` full-batch linear CKA per layer (§8.5)."""
    layers = tuple(layers)

    def sims(variables, a, b):
        key = jax.random.key(0)
        _, acts_a = model.apply(variables, preprocess(a, key), train=False)
        _, acts_b = model.apply(variables, preprocess(b, key), train=False)
        return jnp.stack([cka.linear_cka(acts_a[n], acts_b[n]) for n in layers])

    return jax.jit(sims)


def deviation_scores(similarities: np.ndarray) -> np.ndarray:
    """score[b] = Σ_attacks (sim_{b−1} − sim_b) over blocks (METHODS §8.5 step 3).

    Args:
        similarities: `[num_attacks, 1 + num_blocks]` benign-vs-error linear CKA of the stem
            (the layer before block 0) and of every block output, in forward order.

    Returns:
        `[num_blocks]` float64 scores; large = the block where benign and error inputs diverge.

    Example:
        >>> deviation_scores(np.array([[1.0, 0.9, 0.5, 0.45]])).round(2).tolist()
        [0.1, 0.4, 0.05]
    """
    s = np.asarray(similarities, np.float64)
    if s.ndim != 2 or s.shape[1] < 2:
        raise ValueError(f"similarities has shape {s.shape}; expected [attacks, 1 + blocks]")
    return np.sum(s[:, :-1] - s[:, 1:], axis=0)


def select_blocks(
    scores: np.ndarray,
    k: int = 5,
    *,
    shares: Sequence[float] | None = None,
    max_share: float | None = None,
) -> list[int]:
    """Indices of the `k` highest deviation scores, highest first (ties: the earlier block).

    With `max_share`, blocks are taken in score order and a block is skipped when it would
    push the trained share of parameters (the sum of `shares`, `block_shares`) above the
    budget: the top-k *within* the budget, so that repair retrains a small part of a network
    whose late blocks hold most parameters (a ResNet-20's stage-3 block is ~27%).

    Example:
        >>> select_blocks(np.array([0.1, 0.4, 0.05, 0.4]), 2)
        [1, 3]
        >>> select_blocks(np.array([0.1, 0.4, 0.05, 0.4]), 2, shares=[.1, .1, .1, .5],
        ...               max_share=0.2)
        [1, 0]

    Raises:
        ValueError: `k` outside 1..blocks, `max_share` outside (0, 1] or without `shares`,
            or a budget smaller than every block.
    """
    scores = np.asarray(scores)
    if not 1 <= k <= scores.size:
        raise ValueError(f"k={k} must be in 1..{scores.size} (the number of blocks)")
    order = [int(i) for i in np.argsort(-scores, kind="stable")]
    if max_share is None:
        return order[:k]
    if not 0 < max_share <= 1:
        raise ValueError(f"max_share={max_share} must be in (0, 1] (a share of parameters)")
    if shares is None or len(shares) != scores.size:
        raise ValueError(f"max_share needs one parameter share per block ({scores.size})")
    chosen, total = [], 0.0
    for i in order:
        if total + shares[i] <= max_share:
            chosen.append(i)
            total += shares[i]
        if len(chosen) == k:
            break
    if not chosen:
        raise ValueError(
            f"max_share={max_share}: no block fits; the smallest block holds "
            f"{min(shares):.3f} of the parameters"
        )
    return chosen


def block_shares(model: nn.Module, params: Any) -> list[float]:
    """Each residual block's share of the model's parameters (scalars), in block order."""
    count = len(block_positions(check_residual(model)))
    return [trained_share(params, partition_labels(model, params, [b])) for b in range(count)]


def partition_labels(model: nn.Module, params: Any, blocks: Sequence[int]) -> Any:
    """A label tree: `"train"` for every parameter of the selected blocks, else `"freeze"`.

    Raises:
        ValueError: for a model without residual blocks or a block index out of range.
    """
    positions = block_positions(check_residual(model))
    bad = [b for b in blocks if not 0 <= b < len(positions)]
    if bad:
        raise ValueError(f"block indices {bad} are out of range 0..{len(positions) - 1}")
    keys = {param_key(*positions[b]) for b in blocks}
    return {
        k: jax.tree.map(lambda _, t=k in keys: TRAIN if t else FREEZE, v) for k, v in params.items()
    }


def trained_share(params: Any, labels: Any) -> float:
    """The share of parameters (scalars) labelled `"train"`.

    Example:
        >>> trained_share({"a": np.zeros(3), "b": np.zeros(1)}, {"a": "train", "b": "freeze"})
        0.75
    """
    sizes = jax.tree.leaves(jax.tree.map(lambda p: int(np.size(p)), params))
    flags = jax.tree.leaves(labels)
    return sum(s for s, f in zip(sizes, flags, strict=True) if f == TRAIN) / max(sum(sizes), 1)


def make_repair_optimizer(
    labels: Any, *, learning_rate: float = 1e-4, momentum: float = 0.9
) -> optax.GradientTransformation:
    """SGD on the `"train"` partition, zero updates on the rest (`optax.partition`)."""
    return optax.partition(
        {TRAIN: optax.sgd(learning_rate, momentum=momentum), FREEZE: optax.set_to_zero()}, labels
    )


def make_repair_step(
    *,
    model: nn.Module,
    tx: optax.GradientTransformation,
    target_layer: str,
    preprocess: Callable[[jax.Array, jax.Array], jax.Array],
    mse_weight: float = 0.5,
    ce_weight: float = 0.5,
    bn_train: Sequence[str] = (),
) -> Callable[[train.TrainState, dict], tuple[train.TrainState, dict]]:
    """Jitted `(state, batch) -> (state, metrics)` of the repair loss (METHODS §8.5 step 5).

    loss = mse_weight · MSE(h_{b*}(x), batch["target"]) + ce_weight · CE(logits, label), with
    `target` the original model's activation at b* on the benign counterpart of x.

    BatchNorm follows Keras, DeepArc's framework: a frozen layer (`trainable = False`) runs in
    inference mode, a retrained one in training mode. Every BN inside the blocks whose params
    keys are in `bn_train` normalizes with the batch's statistics and updates its running
    statistics (the model's momentum); every other BN keeps its statistics and runs in
    inference mode. Retraining a block's convolutions under BN statistics frozen from the old
    weights is what cost the repaired network its clean accuracy (issue 20's diagnosis).
    `bn_train=()` freezes every BN.

    Args:
        model: the model being repaired.
        tx: `make_repair_optimizer(...)`.
        target_layer: act name of b* (the top-ranked block output).
        preprocess: eval transform `(pixels, rng) -> inputs`.
        mse_weight: MSE weight (0.5).
        ce_weight: CE weight (0.5).
        bn_train: params keys (`blocks.param_key`, or any top-level module name such as
            `"stem"`) whose BatchNorm layers run in training mode.

    Returns:
        A jitted step; metrics `loss`, `mse`, `ce`, `accuracy`, `finite`.
    """

    def step(state, batch):
        x = preprocess(batch["image"], jax.random.key(0))

        def loss_fn(params):
            variables = {"params": params}
            if state.batch_stats:
                variables["batch_stats"] = state.batch_stats
            (logits, acts), stats = apply_bn_train(model, variables, x, bn_train)
            mse = jnp.mean((acts[target_layer] - batch["target"]) ** 2)
            ce = jnp.mean(cross_entropy(logits, batch["label"]))
            return mse_weight * mse + ce_weight * ce, (mse, ce, logits, stats)

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (mse, ce, logits, batch_stats)), grads = grad_fn(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        acc = jnp.mean((jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32))
        metrics = {
            "loss": loss,
            "mse": mse,
            "ce": ce,
            "accuracy": acc,
            "finite": jnp.isfinite(loss),
        }
        new = state._replace(
            step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state
        )
        return new, metrics

    return jax.jit(step, donate_argnums=0)


def apply_bn_train(
    model: nn.Module, variables: Any, x: jax.Array, bn_train: Sequence[str]
) -> tuple[Any, Any]:
    """`model.apply(variables, x, train=False)` with the BN layers under `bn_train` in training mode.

    Returns `(outputs, batch_stats)`: the model's outputs, and `variables["batch_stats"]` with
    the running statistics of those BN layers updated by this batch (the others unchanged; `{}`
    for a model without BN). The rest of the model (dropout and the like) stays in inference
    mode. The switch is a Flax method interceptor that passes `use_running_average=False` to
    those `nn.BatchNorm.__call__`s, so it needs models that give the mode at call time, as
    `resnet_cifar` (the only residual zoo model) does.
    """
    keys = frozenset(bn_train)

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if (
            keys
            and isinstance(module, nn.BatchNorm)
            and context.method_name == "__call__"
            and module.path
            and module.path[0] in keys
        ):
            if module.use_running_average is not None:
                raise ValueError(
                    f"the BatchNorm at {'/'.join(module.path)} fixes use_running_average in its "
                    "constructor; repair switches BN modes only where the model passes it at "
                    "call time (as resnet_cifar does)"
                )
            kwargs = {**kwargs, "use_running_average": False}
        return next_fun(*args, **kwargs)

    if "batch_stats" not in variables:
        return model.apply(variables, x, train=False), {}
    with nn.intercept_methods(interceptor):
        out, updated = model.apply(variables, x, train=False, mutable=["batch_stats"])
    return out, updated["batch_stats"]


def recalibrate_bn(
    model: nn.Module,
    variables: Any,
    images: np.ndarray,
    preprocess: Callable[[jax.Array, jax.Array], jax.Array],
    keys: Sequence[str],
    *,
    batch_size: int = 128,
) -> Any:
    """`variables` with the running statistics of the BN layers under `keys` recomputed on
    `images`; every other BN keeps its statistics, and no weight changes.

    Each full batch runs with those layers in training mode (`apply_bn_train`; the layers
    before them normalize with their running statistics, as at test time). The new mean is the
    mean of the batch means; the new variance is the mean of the batch variances plus the
    variance of the batch means (the population variance of the pooled batches). One
    training-mode call from zero statistics stores (1 − m) · the batch statistic, m the
    model's BN momentum (`resnet_cifar.KERAS_BN_MOMENTUM`), which this divides out.

    Raises:
        ValueError: fewer images than one batch, or no BN layer under `keys`.
    """
    if len(images) < batch_size:
        raise ValueError(f"{len(images)} images are fewer than one batch of {batch_size}")
    stats = variables.get("batch_stats", {})
    if not any(k in stats for k in keys):
        raise ValueError(f"no BatchNorm statistics under {list(keys)} to recalibrate")
    keys = tuple(k for k in keys if k in stats)  # e.g. the head has none
    zeroed = {
        **variables,
        "batch_stats": {
            k: jax.tree.map(np.zeros_like, v) if k in keys else v for k, v in stats.items()
        },
    }

    @jax.jit
    def batch_stats(x):
        _, new = apply_bn_train(model, zeroed, preprocess(x, jax.random.key(0)), keys)
        return {k: jax.tree.map(lambda t: t / (1 - KERAS_BN_MOMENTUM), new[k]) for k in keys}

    per_batch = [
        jax.device_get(batch_stats(images[i : i + batch_size]))
        for i in range(0, len(images) - batch_size + 1, batch_size)
    ]
    pooled = {k: _pool([b[k] for b in per_batch]) for k in keys}
    return {**variables, "batch_stats": {**stats, **pooled}}


def _pool(batches: list[dict]) -> dict:
    """Per-batch BN statistics trees -> population statistics (see `recalibrate_bn`)."""
    first = batches[0]
    if set(first) == {"mean", "var"}:
        means = np.stack([b["mean"] for b in batches])
        variances = np.stack([b["var"] for b in batches])
        return {"mean": means.mean(0), "var": variances.mean(0) + means.var(0)}
    return {name: _pool([b[name] for b in batches]) for name in first}


def repair_blocks(model: nn.Module) -> list[str]:
    """The block-output act names repair scores (raises for a model without residual blocks)."""
    return block_names(check_residual(model))
