"""Linear CKA: minibatch accumulation with the unbiased HSIC estimator, and full-batch CKA (§8.2)."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

MIN_BATCH = 4
"""The unbiased HSIC estimator divides by n(n − 3) and n − 2: a minibatch needs n >= 4."""

_HI = jax.lax.Precision.HIGHEST  # no TF32/bf16 passes in the grams (METHODS §8.2: float32+)


def check_batch(n: int) -> None:
    """Raises `ValueError` if a CKA minibatch of `n` examples is too small for unbiased HSIC."""
    if n < MIN_BATCH:
        raise ValueError(
            f"CKA minibatch size n={n} is too small: the unbiased HSIC estimator needs n >= "
            f"{MIN_BATCH} (it divides by n(n - 3))"
        )


def _flat(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1).astype(jnp.float32)


def unbiased_center(gram: ArrayLike) -> jax.Array:
    """U-centres a Gram matrix so that ⟨K̃, L̃⟩ / (n(n − 3)) is the unbiased HSIC₁ estimator.

    Zero the diagonal; μ = colsum(K) / (n − 2); μ ← μ − sum(μ) / (2(n − 1));
    K̃ = K − μ1ᵀ − 1μᵀ with a zero diagonal (METHODS §8.2).

    Args:
        gram: `[n, n]` symmetric float32 Gram matrix, n >= 4.

    Returns:
        `[n, n]` float32 U-centred matrix.

    Example:
        >>> k = unbiased_center(jnp.ones((5, 5)))
        >>> bool(jnp.allclose(k, 0.0))
        True
    """
    k = jnp.asarray(gram, jnp.float32)
    n = k.shape[0]
    check_batch(n)
    k = k * (1.0 - jnp.eye(n, dtype=k.dtype))
    mu = jnp.sum(k, axis=0) / (n - 2)
    mu = mu - jnp.sum(mu) / (2 * (n - 1))
    k = k - mu[:, None] - mu[None, :]
    return k * (1.0 - jnp.eye(n, dtype=k.dtype))


def unbiased_hsic(k: ArrayLike, l: ArrayLike) -> jax.Array:
    """The closed-form unbiased HSIC₁ estimator of Song et al. (2012), eq. 5 (a reference).

    With K̃, L̃ the Gram matrices with zeroed diagonals:
    [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1 / ((n − 1)(n − 2)) − 2·1ᵀK̃L̃1 / (n − 2)] / (n(n − 3)).

    Args:
        k: `[n, n]` Gram matrix.
        l: `[n, n]` Gram matrix.

    Returns:
        A float32 scalar.

    Example:
        >>> x = jnp.arange(12.0).reshape(6, 2)
        >>> g = x @ x.T
        >>> bool(jnp.allclose(unbiased_hsic(g, g), jnp.sum(unbiased_center(g) ** 2) / 18))
        True
    """
    k, l = jnp.asarray(k, jnp.float32), jnp.asarray(l, jnp.float32)
    n = k.shape[0]
    check_batch(n)
    off = 1.0 - jnp.eye(n, dtype=k.dtype)
    k, l = k * off, l * off
    ones = jnp.ones((n,), k.dtype)
    term = (
        jnp.sum(k * l)
        + jnp.sum(k) * jnp.sum(l) / ((n - 1) * (n - 2))
        - 2.0 * (ones @ k) @ (l @ ones) / (n - 2)
    )
    return term / (n * (n - 3))


def _centring_terms(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """μ of the U-centring of K = XXᵀ and the diagonal of K, without forming K: `([n], [n])`."""
    n = x.shape[0]
    diag = jnp.sum(x * x, axis=1)
    colsum = jnp.matmul(x, jnp.sum(x, axis=0), precision=_HI) - diag
    mu = colsum / (n - 2)
    return mu - jnp.sum(mu) / (2 * (n - 1)), diag


MAX_G_FLOATS = 2**26
"""Default memory budget of the stacked G (256 MiB of float32): larger stacks are chunked."""


def auto_row_chunk(n: int, num_layers: int, *, max_floats: int = MAX_G_FLOATS) -> int:
    """The largest divisor of n such that G's chunk (`num_layers × chunk × n`) fits `max_floats`.

    Example:
        >>> auto_row_chunk(256, 54), auto_row_chunk(256, 5000)
        (256, 32)
    """
    for chunk in range(n, 0, -1):
        if n % chunk == 0 and num_layers * chunk * n <= max_floats:
            return chunk
    return 1


def accumulate_hsic(
    h: jax.Array, features: Sequence[jax.Array], *, row_chunk: int | None = None
) -> jax.Array:
    """Adds one minibatch to the HSIC accumulator: `h + G Gᵀ`, G rows = vec(U-centred XₗXₗᵀ).

    The 1/(n(n − 3)) factor is dropped (it cancels in CKA). With `row_chunk`, G is built and
    multiplied `row_chunk` Gram rows at a time (a `fori_loop`), so the memory is
    `L × row_chunk × n` floats rather than `L × n²`, whatever the number of layers L; the
    centring only needs each layer's column sums. By default the chunk is chosen so that G stays
    under `MAX_G_FLOATS`. Pure: jit it (or the step that calls it).

    Args:
        h: `[L, L]` float32 accumulator (zeros at the start).
        features: L arrays `[n, ...]`, one per layer, flattened per example.
        row_chunk: Gram rows per chunk; must divide n. None = `auto_row_chunk(n, L)`: all n
            rows at once unless G would exceed `MAX_G_FLOATS`.

    Returns:
        The updated `[L, L]` float32 accumulator.

    Raises:
        ValueError: n < 4, layers with different n, L ≠ h's size, or a bad `row_chunk`.

    Example:
        >>> x = jax.random.normal(jax.random.key(0), (8, 5))
        >>> h = accumulate_hsic(jnp.zeros((2, 2)), [x, 2 * x])
        >>> bool(jnp.allclose(h[0, 1], 4 * h[0, 0], rtol=1e-5))
        True
    """
    xs = [_flat(x) for x in features]
    num_layers = len(xs)
    if h.shape != (num_layers, num_layers):
        raise ValueError(f"h has shape {h.shape}; {num_layers} layers need ({num_layers}, ...)")
    sizes = {x.shape[0] for x in xs}
    if len(sizes) != 1:
        raise ValueError(f"every layer needs the same number of examples; got {sorted(sizes)}")
    n = sizes.pop()
    check_batch(n)
    chunk = auto_row_chunk(n, num_layers) if row_chunk is None else row_chunk
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1 or n % chunk:
        raise ValueError(f"row_chunk={row_chunk!r} must be a positive divisor of n={n}")
    terms = [_centring_terms(x) for x in xs]

    def rows(start):
        """G restricted to Gram rows start..start+chunk: `[L, chunk * n]`."""
        out = []
        for x, (mu, _) in zip(xs, terms, strict=True):
            xr = jax.lax.dynamic_slice_in_dim(x, start, chunk, axis=0)
            k = jnp.matmul(xr, x.T, precision=_HI)
            k = k - jax.lax.dynamic_slice_in_dim(mu, start, chunk)[:, None] - mu[None, :]
            idx = start + jnp.arange(chunk)
            k = jnp.where(idx[:, None] == jnp.arange(n)[None, :], 0.0, k)
            out.append(k.reshape(-1))
        return jnp.stack(out)

    if chunk == n:
        g = rows(0)
        return h + jnp.matmul(g, g.T, precision=_HI)

    def body(i, acc):
        g = rows(i * chunk)
        return acc + jnp.matmul(g, g.T, precision=_HI)

    return jax.lax.fori_loop(0, n // chunk, body, h)


def cka_from_hsic(h: ArrayLike, *, names: Sequence[str] | None = None) -> np.ndarray:
    """CKA[a, b] = H[a, b] / √(H[a, a]·H[b, b]) from an accumulated HSIC matrix (host NumPy).

    Args:
        h: `[L, L]` accumulated HSIC (`accumulate_hsic`).
        names: optional layer names, for the error message.

    Returns:
        `[L, L]` float64 CKA matrix with a unit diagonal.

    Raises:
        ValueError: if an accumulated H[a, a] <= 0 (a constant layer, or too few minibatches for
            the unbiased estimate to turn positive); names the layer and the value.

    Example:
        >>> cka_from_hsic(np.array([[4.0, 2.0], [2.0, 1.0]]))
        array([[1., 1.],
               [1., 1.]])
    """
    h = np.asarray(h, np.float64)
    diag = np.diag(h)
    bad = np.flatnonzero(~(diag > 0))
    if bad.size:
        i = int(bad[0])
        label = f"{names[i]!r} (index {i})" if names is not None else f"index {i}"
        raise ValueError(
            f"accumulated HSIC of layer {label} is H[{i}, {i}]={float(diag[i])!r} <= 0: the layer is "
            "constant on these inputs, or more minibatches are needed"
        )
    scale = np.sqrt(diag)
    return h / scale[:, None] / scale[None, :]


def linear_cka(x: ArrayLike, y: ArrayLike) -> jax.Array:
    """Full-batch linear CKA with column-mean centring (K̃ = HKH, METHODS §8.2 end).

    CKA = ⟨K̃, L̃⟩_F / (‖K̃‖_F·‖L̃‖_F) for K = XXᵀ, L = YYᵀ, computed in feature space
    (‖YcᵀXc‖²) when both layers are narrower than the batch, else from the n × n Grams.

    Args:
        x: `[n, ...]` activations of one layer (flattened per example).
        y: `[n, ...]` activations of another layer on the same examples.

    Returns:
        A float32 scalar in [0, 1].

    Example:
        >>> x = jax.random.normal(jax.random.key(1), (32, 6))
        >>> round(float(linear_cka(x, 3.0 * x + 1.0)), 4)
        1.0
    """
    x, y = _flat(jnp.asarray(x)), _flat(jnp.asarray(y))
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} examples and y has {y.shape[0]}; they must match")
    x = x - jnp.mean(x, axis=0)
    y = y - jnp.mean(y, axis=0)
    n = x.shape[0]
    if max(x.shape[1], y.shape[1]) < n:
        cross = jnp.sum(jnp.matmul(y.T, x, precision=_HI) ** 2)
        xx = jnp.sqrt(jnp.sum(jnp.matmul(x.T, x, precision=_HI) ** 2))
        yy = jnp.sqrt(jnp.sum(jnp.matmul(y.T, y, precision=_HI) ** 2))
    else:
        k, l = jnp.matmul(x, x.T, precision=_HI), jnp.matmul(y, y.T, precision=_HI)
        cross, xx, yy = jnp.sum(k * l), jnp.linalg.norm(k), jnp.linalg.norm(l)
    return cross / (xx * yy)
