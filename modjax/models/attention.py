"""A ViT encoder block's two unit layers: multi-head self-attention (heads) and the MLP (neurons).

Each layer is one mask point of the zoo's `Recorder` conventions (`models.layers.Recorder`):

- `block{i}.attn`: the heads. A head is one unit, its q, k, v columns and its output-projection
  rows; a keep-mask `[heads]` or `[B, heads]` multiplies each head's output (its slice of the
  attention context) before the output projection.
- `block{i}.mlp`: the hidden neurons; a keep-mask multiplies the hidden activation GELU(fc1 x).

With `generator=True` an MwT mask generator (`layers.MaskGenerator`) reads the token-mean of the
layer input (NeMo's generators average the layer input over tokens too, METHODS §6) and its mask
multiplies the same tensor as the keep-mask, first.

Recorded activations (`acts`, one `[B, units]` entry per layer, after every mask):

- MLP neuron u: mean_t |a_tu|, the token-mean of the absolute hidden activation. This is MODA's
  reduction of a conv activation, mean_{h,w} |a| (METHODS §5.1), with tokens as positions. The
  `abs` matters here: GELU is negative for x < 0 (down to ≈ −0.17), so a signed token-mean
  could cancel between tokens and call an active neuron silent; mean |a| is 0 exactly when the
  neuron is 0 on every token, which is what a zero keep-mask produces.
- Head h: mean_t ‖c_th‖₂, the token-mean of the L2 norm of the head's output c_th ∈ R^d
  (its context vector, before the output projection). A head's output is a d-vector per token
  whose basis is arbitrary (rotating a head's v columns and o rows by one orthogonal matrix
  leaves the network unchanged), and the norm is the reduction that does not depend on that
  basis; it is ≥ 0 and 0 exactly when the head is off on every token. The attention weights
  are not used: they sum to 1 for every head, so they cannot say whether a head is switched
  off. NeMo itself records no head statistic (its units are the q/k/v/o neurons, masked by
  generators; `XiaohanBi-Hub/NeMo, src/models/utils_mask_neural.py`); this is modjax's choice
  for head units. The norm has a double-`where` so that its gradient at a zero head is 0.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from modjax.models import layers

LN_EPSILON = 1e-12
"""LayerNorm epsilon of Hugging Face's `ViTConfig` (NeMo's ViT, METHODS §6)."""

trunc_normal_002 = nn.initializers.truncated_normal(stddev=0.02)
"""Every ViT weight: a normal of std 0.02 truncated at ±2σ (HF `ViTPreTrainedModel._init_weights`
with `initializer_range = 0.02`, as timm); biases start at 0."""


def token_mean_abs(a: jax.Array) -> jax.Array:
    """`[B, T, C]` → `[B, C]`: mean over tokens of |a| (the MLP units' activation)."""
    return jnp.mean(jnp.abs(a), axis=1)


def token_mean_norm(c: jax.Array) -> jax.Array:
    """`[B, T, H, d]` → `[B, H]`: mean over tokens of each head's output norm ‖c_th‖₂.

    Gradient-safe at zero (double `where`, STYLE §8): a switched-off head gets gradient 0, not
    NaN.
    """
    sq = jnp.sum(jnp.square(c), axis=-1)
    positive = sq > 0
    norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)
    return jnp.mean(norm, axis=1)


class DotProductAttention(nn.Module):
    """softmax(q kᵀ / √d) v for every head; no parameters.

    A module of its own so that `models.count_macs` finds the two matmuls, QKᵀ and AV (each
    T·T·H·d multiply-accumulates for T tokens, H heads of size d), which are not dense layers.
    """

    @nn.compact
    def __call__(self, q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
        """Maps q, k, v `[B, T, H, d]` (self-attention: one shape) to the context `[B, T, H, d]`.

        Raises:
            ValueError: if the shapes differ or are not `[B, T, H, d]`.
        """
        if q.ndim != 4 or q.shape != k.shape or q.shape != v.shape:
            raise ValueError(
                f"self-attention needs q, k, v of one shape [B, T, heads, head_dim]; got "
                f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
            )
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) * q.shape[-1] ** -0.5
        weights = jax.nn.softmax(scores, axis=-1)
        return jnp.einsum("bhqk,bkhd->bqhd", weights, v)


class SelfAttention(nn.Module):
    """Multi-head self-attention whose heads are the units of mask point `unit`.

    query/key/value: Dense(D → H·d) each, columns head-major (head h owns columns h·d … h·d+d−1);
    out: Dense(H·d → D), rows head-major. A narrower instance (fewer `heads`) is the same layer
    with those column and row groups removed.

    Attributes:
        heads: H, the number of heads (0: the layer outputs `out`'s bias).
        head_dim: d.
        unit: the mask-point and act name, `"block{i}.attn"`.
        generator: attach an MwT mask generator over the heads.
    """

    heads: int
    head_dim: int
    unit: str
    generator: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, rec: layers.Recorder) -> jax.Array:
        """Maps `[B, T, D]` to `[B, T, D]`; records the head masks and activations in `rec`."""
        b, t, dim = x.shape
        inner = self.heads * self.head_dim

        def project(name: str) -> jax.Array:
            y = nn.Dense(inner, kernel_init=trunc_normal_002, name=name)(x)
            return y.reshape(b, t, self.heads, self.head_dim)

        c = DotProductAttention(name="core")(project("query"), project("key"), project("value"))
        if self.generator:
            mask = layers.MaskGenerator(self.heads, name="generator")(jnp.mean(x, axis=1))
            rec.generated(self.unit, mask)
            c = c * mask[:, None, :, None]
        c = rec.keep(self.unit, c, axis=2)
        rec.act(self.unit, token_mean_norm(c))
        return nn.Dense(dim, kernel_init=trunc_normal_002, name="out")(c.reshape(b, t, inner))


class FeedForward(nn.Module):
    """fc1 (D → M) → exact GELU → masks → fc2 (M → D); the M hidden neurons are mask point `unit`.

    Attributes:
        features: M, the hidden neurons (0: the layer outputs fc2's bias).
        unit: the mask-point and act name, `"block{i}.mlp"`.
        generator: attach an MwT mask generator over the neurons.
    """

    features: int
    unit: str
    generator: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, rec: layers.Recorder) -> jax.Array:
        """Maps `[B, T, D]` to `[B, T, D]`; records the neuron masks and activations in `rec`."""
        a = nn.Dense(self.features, kernel_init=trunc_normal_002, name="fc1")(x)
        a = nn.gelu(a, approximate=False)
        if self.generator:
            mask = layers.MaskGenerator(self.features, name="generator")(jnp.mean(x, axis=1))
            rec.generated(self.unit, mask)
            a = a * mask[:, None, :]
        a = rec.keep(self.unit, a)
        rec.act(self.unit, token_mean_abs(a))
        return nn.Dense(x.shape[-1], kernel_init=trunc_normal_002, name="fc2")(a)


class EncoderBlock(nn.Module):
    """Pre-LN encoder block: x + Attn(LN(x)), then x + MLP(LN(x)).

    Attributes:
        heads: heads of this block.
        head_dim: d.
        mlp_dim: hidden neurons of this block's MLP.
        index: i, naming the units `block{i}.attn` and `block{i}.mlp`.
        generator: MwT mask generators on both unit layers.
    """

    heads: int
    head_dim: int
    mlp_dim: int
    index: int
    generator: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, rec: layers.Recorder) -> jax.Array:
        """Maps `[B, T, D]` to `[B, T, D]`."""
        i, g = self.index, self.generator
        h = nn.LayerNorm(epsilon=LN_EPSILON, name="ln1")(x)
        x = x + SelfAttention(self.heads, self.head_dim, f"block{i}.attn", g, name="attn")(h, rec)
        h = nn.LayerNorm(epsilon=LN_EPSILON, name="ln2")(x)
        return x + FeedForward(self.mlp_dim, f"block{i}.mlp", g, name="mlp")(h, rec)
