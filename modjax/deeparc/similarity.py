"""Block-level CKA of a model over a dataset: one jitted HSIC accumulation per minibatch."""

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from modjax import parallel
from modjax.deeparc import cka


def make_hsic_step(
    *,
    model: nn.Module,
    layers: Sequence[str],
    preprocess: Callable[[jax.Array, jax.Array], jax.Array],
    mesh: Mesh | None = None,
    row_chunk: int | None = None,
) -> Callable[[jax.Array, Any, jax.Array], jax.Array]:
    """Builds the jitted `(h, variables, images) -> h`: forward, U-centring, `H += G Gᵀ`.

    One compiled function per minibatch shape: the whole L × L accumulation is one XLA program,
    with no Python loop over layer pairs. Under `mesh` the images are sharded on "data" and `h`
    and the variables replicated.

    Args:
        model: a modjax model returning `(logits, acts)`.
        layers: the act names to compare, in the order of `h`'s rows.
        preprocess: `(images uint8, rng) -> float32` model inputs (eval transform).
        mesh: optional device mesh.
        row_chunk: Gram rows per chunk (`cka.accumulate_hsic`); bounds memory for many layers.

    Returns:
        A jitted function; `h` is `[L, L]` float32.

    Example:
        >>> from modjax import models
        >>> m = models.get_model("resnet14", width=0.125)
        >>> v = m.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
        >>> step = make_hsic_step(model=m, layers=["layer1.0", "layer3.1"],
        ...                       preprocess=lambda x, r: x.astype(jnp.float32) / 255)
        >>> step(jnp.zeros((2, 2)), v, jnp.ones((8, 32, 32, 3), jnp.uint8)).shape
        (2, 2)
    """
    layers = tuple(layers)
    if not layers:
        raise ValueError("layers is empty: name at least one act to compare")

    def step(h, variables, images):
        x = preprocess(images, jax.random.key(0))
        _, acts = model.apply(variables, x, train=False)
        missing = [n for n in layers if n not in acts]
        if missing:
            raise ValueError(f"layers {missing} are not acts of the model; acts: {sorted(acts)}")
        return cka.accumulate_hsic(h, [acts[n] for n in layers], row_chunk=row_chunk)

    if mesh is None:
        return jax.jit(step)
    rep = parallel.replicated(mesh)
    return jax.jit(step, in_shardings=(rep, rep, parallel.batch_sharding(mesh)), out_shardings=rep)


def minibatches(num: int, *, batch_size: int, passes: int, seed: int) -> Iterable[np.ndarray]:
    """Index minibatches: `passes` shuffled passes over `num` examples, drop-remainder (§8.2).

    Example:
        >>> [len(b) for b in minibatches(10, batch_size=4, passes=2, seed=0)]
        [4, 4, 4, 4]
    """
    cka.check_batch(batch_size)
    if batch_size > num:
        raise ValueError(f"batch_size={batch_size} exceeds the {num} examples")
    rng = np.random.default_rng(seed)
    for _ in range(passes):
        order = rng.permutation(num)
        for i in range(num // batch_size):
            yield order[i * batch_size : (i + 1) * batch_size]


def layer_cka(
    *,
    model: nn.Module,
    variables: Any,
    images: np.ndarray,
    layers: Sequence[str],
    preprocess: Callable[[jax.Array, jax.Array], jax.Array],
    batch_size: int = 256,
    passes: int = 10,
    seed: int = 0,
    mesh: Mesh | None = None,
    row_chunk: int | None = None,
) -> np.ndarray:
    """Minibatch CKA between all pairs of `layers` over `images` (METHODS §8.2).

    DeepArc's protocol: `passes` shuffled passes of `batch_size` minibatches (drop-remainder),
    unbiased HSIC accumulated over all of them, CKA from the accumulated matrix.

    Args:
        model: the model; `variables` its variables.
        variables: Flax variables (host or device).
        images: `[N, H, W, C]` uint8 images.
        layers: act names (e.g. `blocks.block_names(model)`).
        preprocess: eval transform `(uint8, rng) -> float32`.
        batch_size: n per minibatch (>= 4; divisible by the mesh size).
        passes: passes over the data.
        seed: shuffling seed.
        mesh: optional device mesh.
        row_chunk: see `make_hsic_step`.

    Returns:
        `[L, L]` float64 CKA matrix.

    Raises:
        ValueError: batch_size < 4 or > N, or an accumulated HSIC diagonal <= 0.
    """
    cka.check_batch(batch_size)
    if mesh is not None:
        parallel.check_batch_size(batch_size, mesh)
        variables = parallel.replicate(variables, mesh)
    step = make_hsic_step(
        model=model, layers=layers, preprocess=preprocess, mesh=mesh, row_chunk=row_chunk
    )
    h = jnp.zeros((len(layers), len(layers)), jnp.float32)
    for idx in minibatches(len(images), batch_size=batch_size, passes=passes, seed=seed):
        batch = images[np.sort(idx)]
        if mesh is not None:
            batch = parallel.shard_batch({"image": batch}, mesh)["image"]
        h = step(h, variables, batch)
    return cka.cka_from_hsic(jax.device_get(h), names=list(layers))
