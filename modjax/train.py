"""Training state, optimizers and the jitted train/eval steps (objective-agnostic)."""

import functools
import logging
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from modjax import parallel
from modjax.objectives import cross_entropy
from modjax.typing import Batch, BatchStats, Objective, Params

Preprocess = Callable[[jax.Array, jax.Array], jax.Array]
"""`(images uint8 [B, H, W, C], rng) -> float32 [B, H, W, C]`, run on device inside the step."""

logger = logging.getLogger(__name__)

GENERATOR_LABEL = "generator"
MODEL_LABEL = "model"


CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}
"""XLA:CPU options of the train and eval steps: YNNPACK convolution fusion off.

jaxlib 0.10's default YNNPACK fusion makes conv weight gradients 2–5× slower than XLA's Eigen
path; with it off, gradients agree to float32 rounding (`tests/test_compile_options.py`) and
the SimCNN step is faster (`benchmarks/results/`). The option is experimental: a jaxlib that
does not know it compiles without it.
"""


@functools.cache
def _options_for(backend: str) -> tuple[tuple[str, str], ...]:
    if backend != "cpu":
        return ()
    try:
        jax.jit(lambda x: x + 1, compiler_options=CPU_COMPILER_OPTIONS)(jnp.zeros(()))
    except Exception as err:  # noqa: BLE001 - any rejection means: compile without them
        logger.info("XLA:CPU rejected %s (%s); compiling without them", CPU_COMPILER_OPTIONS, err)
        return ()
    return tuple(CPU_COMPILER_OPTIONS.items())


def compiler_options() -> dict[str, str]:
    """The compiler options of modjax's jitted steps on the default backend (CPU only).

    Example:
        >>> opts = compiler_options()
        >>> opts in ({}, CPU_COMPILER_OPTIONS) if jax.default_backend() == "cpu" else opts == {}
        True
    """
    return dict(_options_for(jax.default_backend()))


class TrainState(NamedTuple):
    """Everything a training run carries from step to step; a pytree, checkpointed whole.

    Attributes:
        step: int32 scalar, number of optimizer steps taken.
        params: the model's `params` collection.
        batch_stats: the model's `batch_stats` collection (`{}` without BatchNorm).
        opt_state: the optax state.
        rng: uint32 `[2]` base key; each step uses `fold_in(rng, step)`.
    """

    step: jax.Array
    params: Params
    batch_stats: BatchStats
    opt_state: optax.OptState
    rng: jax.Array


def cosine_per_epoch(*, learning_rate: float, steps_per_epoch: int, t_max: int) -> optax.Schedule:
    """PyTorch `CosineAnnealingLR` stepped once per epoch (METHODS §2.4).

    lr(e) = ½·lr₀·(1 + cos(π·e / t_max)), constant within epoch e = ⌊step / steps_per_epoch⌋.
    """
    if steps_per_epoch <= 0 or t_max <= 0:
        raise ValueError(
            f"steps_per_epoch={steps_per_epoch} and t_max={t_max} must both be positive"
        )

    def schedule(count):
        epoch = jnp.floor_divide(count, steps_per_epoch).astype(jnp.float32)
        return 0.5 * learning_rate * (1.0 + jnp.cos(math.pi * epoch / t_max))

    return schedule


def _label_params(params: Params) -> Params:
    """Labels every leaf `"generator"` (MwT mask generators) or `"model"` (the backbone)."""

    def label(path, _):
        names = [str(getattr(k, "key", k)).lower() for k in path]
        return GENERATOR_LABEL if any(GENERATOR_LABEL in n for n in names) else MODEL_LABEL

    return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(
    *,
    learning_rate: float,
    steps_per_epoch: int,
    num_epochs: int,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 0.0,
    schedule: str = "cosine",
    t_max: int | None = None,
    mask_learning_rate: float | None = None,
) -> optax.GradientTransformation:
    """SGD with (Nesterov) momentum and a per-epoch cosine schedule (METHODS §4.4, §9).

    Args:
        learning_rate: peak learning rate of the backbone (0.05 in MwT and MODA).
        steps_per_epoch: optimizer steps per epoch; the schedule steps once per epoch.
        num_epochs: length of the run; the cosine period `t_max` defaults to it.
        momentum: SGD momentum μ (PyTorch convention, equal to optax's).
        nesterov: Nesterov momentum.
        weight_decay: coupled L2 weight decay added to the gradient (PyTorch SGD semantics).
        schedule: `"cosine"` (per-epoch) or `"constant"`.
        t_max: cosine period in epochs; METHODS uses 200 for 200-epoch runs.
        mask_learning_rate: learning rate of MwT mask-generator parameters (their own
            parameter group); `None` means equal to `learning_rate`, as MwT forces.

    Returns:
        An optax transformation; parameters whose path contains "generator" form a second group.
    """
    if learning_rate <= 0 or not math.isfinite(learning_rate):
        raise ValueError(f"learning_rate={learning_rate} must be a positive finite number")
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule={schedule!r} must be 'cosine' or 'constant'")
    if weight_decay < 0:
        raise ValueError(f"weight_decay={weight_decay} must be >= 0")

    def sgd(lr):
        if schedule == "cosine":
            lr = cosine_per_epoch(
                learning_rate=lr, steps_per_epoch=steps_per_epoch, t_max=t_max or num_epochs
            )
        parts = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
        parts.append(optax.sgd(lr, momentum=momentum or None, nesterov=nesterov))
        return optax.chain(*parts)

    mask_lr = learning_rate if mask_learning_rate is None else mask_learning_rate
    return optax.multi_transform(
        {MODEL_LABEL: sgd(learning_rate), GENERATOR_LABEL: sgd(mask_lr)}, _label_params
    )


def init_train_state(
    *, model: nn.Module, tx: optax.GradientTransformation, seed: int, image_shape: tuple
) -> TrainState:
    """Initializes a `TrainState` (pure; jit it with `out_shardings` to create it on devices).

    Args:
        model: a modjax Flax model returning `(logits, acts)`.
        tx: the optimizer.
        seed: integer seed of the run; parameters and every step's randomness derive from it.
        image_shape: `(H, W, C)` of one input image.
    """
    rng = jax.random.PRNGKey(seed)
    init_rng, dropout_rng, state_rng = jax.random.split(rng, 3)
    dummy = jnp.zeros((1, *image_shape), jnp.float32)
    variables = model.init({"params": init_rng, "dropout": dropout_rng}, dummy, train=False)
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        rng=state_rng,
    )


def create_train_state(
    *,
    model: nn.Module,
    tx: optax.GradientTransformation,
    seed: int,
    image_shape: tuple,
    mesh: Mesh | None = None,
) -> TrainState:
    """`init_train_state` run under `jit`, replicated over `mesh` when one is given."""

    def init():
        return init_train_state(model=model, tx=tx, seed=seed, image_shape=image_shape)

    out_shardings = parallel.replicated(mesh) if mesh is not None else None
    return jax.jit(init, out_shardings=out_shardings)()


def abstract_train_state(
    *,
    model: nn.Module,
    tx: optax.GradientTransformation,
    image_shape: tuple,
    mesh: Mesh | None = None,
) -> TrainState:
    """Shapes, dtypes and target shardings of the state: the Orbax restore target."""
    shapes = jax.eval_shape(
        lambda: init_train_state(model=model, tx=tx, seed=0, image_shape=image_shape)
    )
    sharding = parallel.replicated(mesh) if mesh is not None else None
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def _variables(params: Params, batch_stats: BatchStats) -> dict[str, Any]:
    return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def make_train_step(
    *,
    model: nn.Module,
    tx: optax.GradientTransformation,
    objective: Objective,
    preprocess: Preprocess,
    mesh: Mesh | None = None,
    donate: bool = True,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
    """Builds the jitted step `(state, batch) -> (state, metrics)`.

    The objective is a pure function `(logits, acts, labels) -> (loss, terms)`, so standard,
    MwT and MODA training share this step. Augmentation and normalization run on device inside
    the step (`preprocess`), with randomness from `fold_in(state.rng, state.step)`. Under a mesh
    the batch is sharded on "data" and the state replicated; XLA inserts the gradient all-reduce
    and BatchNorm moments cover the global batch.

    Args:
        model: Flax model returning `(logits, acts)`.
        tx: optimizer.
        objective: `(logits, acts, labels) -> (loss, terms)`; `terms` has fixed keys.
        preprocess: `(images uint8, rng) -> float32`, on device.
        mesh: device mesh for data parallelism; `None` runs on the default device.
        donate: donate the input state's buffers (the caller must not reuse it).

    Returns:
        A jitted function. `metrics` holds the scalars `loss`, `accuracy`, `grad_norm`, every
        objective term, `finite` (bool: loss and gradient norm are finite) and `bad_labels`
        (int: labels outside `[0, num_classes)` in the batch; `loop.check_labels` reports them).
    """

    def step(state: TrainState, batch: Batch):
        rng = jax.random.fold_in(state.rng, state.step)
        aug_rng, dropout_rng = jax.random.split(rng)
        images = preprocess(batch["image"], aug_rng)
        labels = batch["label"]

        def loss_fn(params):
            (logits, acts), updates = model.apply(
                _variables(params, state.batch_stats),
                images,
                train=True,
                rngs={"dropout": dropout_rng},
                mutable=["batch_stats"],
            )
            loss, terms = objective(logits, acts, labels)
            return loss, (terms, updates.get("batch_stats", {}), logits)

        (loss, (terms, batch_stats, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)
        accuracy = jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))
        metrics = {
            "loss": loss,
            "accuracy": accuracy,
            "grad_norm": grad_norm,
            "finite": jnp.isfinite(loss) & jnp.isfinite(grad_norm),
            # Label values cannot be checked inside jit: count them for the host to report.
            "bad_labels": jnp.sum((labels < 0) | (labels >= logits.shape[-1])).astype(jnp.int32),
            **terms,
        }
        new_state = state._replace(
            step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state
        )
        return new_state, metrics

    kwargs = {"donate_argnums": (0,) if donate else ()}
    if mesh is not None:
        rep = parallel.replicated(mesh)
        kwargs.update(in_shardings=(rep, parallel.batch_sharding(mesh)), out_shardings=(rep, rep))
    return jax.jit(step, compiler_options=compiler_options(), **kwargs)


def make_eval_step(
    *,
    model: nn.Module | None = None,
    predict_fn: Callable[[Any, jax.Array], jax.Array] | None = None,
    preprocess: Preprocess,
    num_classes: int,
    mesh: Mesh | None = None,
    loss: bool = True,
) -> Callable[[Any, Batch], dict[str, jax.Array]]:
    """Builds the jitted eval step `(variables, batch) -> sums`; the host divides once.

    The prediction is any function of the variables and the preprocessed images, as in
    big_vision's evaluators: a zoo `model` (its logits), or `predict_fn(variables, x) -> scores
    [B, num_classes]` (a composed classifier, a module's vote scores, a shrunk network).
    `batch` may carry `"mask": bool [B]` marking real rows of a padded batch. Returns int32
    `correct`, `count`, `per_class_correct [num_classes]`, `per_class_count [num_classes]` and
    float32 `loss_sum` (cross-entropy of the scores summed over real rows; 0 with `loss=False`,
    for scores that are not logits).

    Raises:
        ValueError: neither or both of `model` and `predict_fn`.
    """
    if (model is None) == (predict_fn is None):
        raise ValueError("make_eval_step takes exactly one of model= and predict_fn=")
    if predict_fn is None:

        def predict_fn(variables, x):
            return model.apply(variables, x, train=False)[0]

    def eval_step(variables, batch):
        images = preprocess(batch["image"], jax.random.PRNGKey(0))
        labels = batch["label"]
        valid = batch.get("mask", jnp.ones(labels.shape, bool))
        logits = predict_fn(variables, images)
        hit = (jnp.argmax(logits, axis=-1) == labels) & valid
        onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.int32) * valid[:, None]
        if loss:
            loss_sum = jnp.sum(jnp.where(valid, cross_entropy(logits, labels), 0.0))
        else:
            loss_sum = jnp.zeros((), jnp.float32)
        return {
            "correct": jnp.sum(hit, dtype=jnp.int32),
            "count": jnp.sum(valid, dtype=jnp.int32),
            "per_class_correct": jnp.sum(onehot * hit[:, None], axis=0),
            "per_class_count": jnp.sum(onehot, axis=0),
            "loss_sum": loss_sum,
        }

    kwargs = {}
    if mesh is not None:
        rep = parallel.replicated(mesh)
        kwargs.update(in_shardings=(rep, parallel.batch_sharding(mesh)), out_shardings=rep)
    return jax.jit(eval_step, compiler_options=compiler_options(), **kwargs)


def variables_of(state: TrainState) -> dict[str, Any]:
    """The Flax variables dict (`params`, and `batch_stats` when present) of a state."""
    return _variables(state.params, state.batch_stats)
