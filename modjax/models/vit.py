"""Vision Transformer (Dosovitskiy et al. 2021) whose units are attention heads and MLP neurons."""

from collections.abc import Mapping
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from modjax.models import layers
from modjax.models.attention import LN_EPSILON, EncoderBlock, trunc_normal_002
from modjax.typing import Acts, Masks

SIZES: dict[str, tuple[int, int, int, int]] = {
    "tiny": (192, 12, 3, 768),
    "small": (384, 12, 6, 1536),
}
"""`(dim, depth, heads, mlp_dim)` at width 1 (DeiT-Ti and DeiT-S)."""

POOLS = ("cls", "mean")


class ViTDims(NamedTuple):
    """A ViT's resolved sizes (before any per-block pruning).

    Attributes:
        dim: D, the residual (token) width.
        depth: encoder blocks.
        heads: heads per block.
        head_dim: d = D / heads.
        mlp_dim: hidden neurons per block's MLP.
    """

    dim: int
    depth: int
    heads: int
    head_dim: int
    mlp_dim: int


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be an int >= 1")
    return value


def vit_dims(
    *, size: str, width: float, depth: int | None = None, num_heads: int | None = None
) -> ViTDims:
    """The sizes of a ViT: `SIZES[size]` with the width multiplier and overrides applied.

    Width rule: D and the MLP width scale like every zoo width, `round(c · width)`
    (`layers.scaled`); the number of heads does not, so the head size d = D / heads shrinks.
    Heads are the attention units of a modular ViT, and scaling them would leave `tiny` (3
    heads) at width ≤ 1/6 with one head per block. At width 0.25, `tiny` has D = 48, 3 heads of
    16 and MLP 192; `small` has D = 96, 6 heads of 16 and MLP 384.

    Args:
        size: `"tiny"` or `"small"`.
        width: positive multiplier.
        depth: blocks (None: the size's 12).
        num_heads: heads per block (None: the size's; e.g. 12 for NeMo's ViT-S, METHODS §6).

    Raises:
        ValueError: for an unknown size, a bad width, depth or head count, or heads that do not
            divide the scaled D.

    Example:
        >>> vit_dims(size="tiny", width=0.25)
        ViTDims(dim=48, depth=12, heads=3, head_dim=16, mlp_dim=192)
    """
    if size not in SIZES:
        raise ValueError(f"unknown size={size!r}; expected one of {list(SIZES)}")
    dim0, depth0, heads0, mlp0 = SIZES[size]
    dim, mlp_dim = layers.scaled(dim0, width), layers.scaled(mlp0, width)
    depth = depth0 if depth is None else _positive_int("depth", depth)
    heads = heads0 if num_heads is None else _positive_int("num_heads", num_heads)
    if dim % heads:
        raise ValueError(
            f"heads={heads} does not divide dim={dim} (round({dim0} * width={width!r})) of "
            f"vit size {size!r}: choose a width that makes round({dim0} * width) a multiple of "
            f"{heads} (e.g. 0.25, 0.125), or num_heads dividing {dim}"
        )
    return ViTDims(dim, depth, heads, dim // heads, mlp_dim)


def check_patches(*, patch_size: int, image_size: int | None, pool: str) -> None:
    """Validates the patch grid and pooling of a ViT.

    Raises:
        ValueError: for a patch size that is not an int >= 1 or does not divide `image_size`,
            a bad `image_size`, or an unknown `pool`.
    """
    _positive_int("patch_size", patch_size)
    if image_size is not None:
        _positive_int("image_size", image_size)
        if image_size % patch_size:
            raise ValueError(
                f"patch_size={patch_size} does not divide image_size={image_size}; "
                "expected image_size to be a multiple of patch_size"
            )
    if pool not in POOLS:
        raise ValueError(f"pool={pool!r} must be one of {list(POOLS)}")


class ViT(nn.Module):
    """ViT: patches → Dense(D) + position embeddings → pre-LN encoder blocks → LN → Dense(N).

    - Patch embedding: the image `[B, H, W, C]` is cut into p×p patches, each flattened
      row-major over (row, column, channel) and mapped by one Dense(p²C → D) (`patch_embed`;
      the same map as a conv with kernel and stride p). There are T = HW/p² patch tokens, plus
      a learned class token in front with `pool="cls"`.
    - Learned position embeddings `[1, T (+1), D]`, added once. T comes from the input, so a
      model with `image_size=None` runs at any size the patch divides (e.g. `--image-size 16`).
    - Block i (`models.attention.EncoderBlock`): x + Attn(LN(x)); x + MLP(LN(x)), MLP = fc1 →
      exact GELU → fc2. Heads per block and MLP width per block can differ (pruned instances).
    - Final LN, then the class token (`pool="cls"`) or the mean of the patch tokens
      (`pool="mean"`), then the head Dense(D → N).
    - As Hugging Face's `ViTForImageClassification` (NeMo's ViT, METHODS §6): LayerNorm eps
      1e-12, q/k/v biases, every weight truncated-normal with std 0.02, zero biases, no dropout.

    Units and masks (the `Recorder` conventions; see `models.attention` for the activations):
    mask points `block{i}.attn` (heads: a keep-mask `[H]` or `[B, H]` multiplies each head's
    output before the output projection) and `block{i}.mlp` (hidden neurons: it multiplies the
    hidden activation GELU(fc1 x)), in forward order. Acts: the same names, `[B, H]` (token-mean
    of each head's output norm) and `[B, M]` (token-mean of |hidden activation|).

    MwT form (`mask_generators=True`): every block's heads and MLP neurons get a mask generator
    (`layers.MaskGenerator`, MwT's form of METHODS §4.1) reading the token-mean of the layer's
    input (the LN output), z = mean_t x_t; its mask multiplies the same tensor as the keep-mask.
    Acts gain `block{i}.attn/mask` `[B, H]` and `block{i}.mlp/mask` `[B, M]`. Differences from
    NeMo (METHODS §6), which masks the q, k, v, output, intermediate and MLP-output neurons of
    every block but block 0: here the units are heads and MLP neurons, every block is masked,
    and the MLP mask multiplies the GELU output (NeMo multiplies the fc1 output before GELU; for
    0/1 masks the two agree, since GELU(0) = 0). Generators sit at `params[...]["attn" |
    "mlp"]["generator"]`, so `modjax.modular.drop_generators` leaves the plain model.

    Parameters: `patch_embed`, `cls_token` (`pool="cls"`), `pos_embed`, `block_{i}` with `ln1`,
    `attn` (`query`, `key`, `value`, `out`), `ln2`, `mlp` (`fc1`, `fc2`), then `ln`, `head`.

    Attributes:
        num_classes: output units N.
        width: multiplier of D and the MLP width (the head count is kept; see `vit_dims`).
        mask_generators: build the MwT modular model.
        size: `"tiny"` (D 192, 12 blocks, 3 heads, MLP 768) or `"small"` (384, 12, 6, 1536).
        patch_size: p (4 for CIFAR's 32×32 images).
        image_size: the square input size, checked against inputs; None (default) takes the
            size from the input.
        pool: `"cls"` (class token) or `"mean"` (mean of the patch tokens).
        depth: blocks, overriding the size's 12.
        num_heads: heads per block, overriding the size's.
        channels: per-block overrides `{"block{i}.attn": heads, "block{i}.mlp": neurons}` of a
            pruned instance (`modjax.modular.prune_vit`); D is never pruned.
    """

    num_classes: int = 10
    width: float = 1.0
    mask_generators: bool = False
    size: str = "tiny"
    patch_size: int = 4
    image_size: int | None = None
    pool: str = "cls"
    depth: int | None = None
    num_heads: int | None = None
    channels: Mapping[str, int] | None = None

    def dims(self) -> ViTDims:
        """Validates the configuration and returns its sizes (see `vit_dims`).

        Raises:
            ValueError: as `vit_dims` and `check_patches`.
        """
        check_patches(patch_size=self.patch_size, image_size=self.image_size, pool=self.pool)
        return vit_dims(
            size=self.size, width=self.width, depth=self.depth, num_heads=self.num_heads
        )

    def _patches(self, x: jax.Array) -> jax.Array:
        """`[B, H, W, C]` → `[B, HW/p², p²C]`, checking the input against the patch grid."""
        p = self.patch_size
        if x.ndim != 4:
            raise ValueError(f"vit needs NHWC inputs [B, H, W, C]; got shape {tuple(x.shape)}")
        b, h, w, c = x.shape
        if self.image_size is not None and (h, w) != (self.image_size, self.image_size):
            raise ValueError(
                f"vit was built with image_size={self.image_size}; got inputs of shape "
                f"{tuple(x.shape)}"
            )
        if h % p or w % p:
            raise ValueError(
                f"patch_size={p} does not divide the input size {h}x{w}; expected height and "
                "width to be multiples of patch_size"
            )
        x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
        return x.reshape(b, (h // p) * (w // p), p * p * c)

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, masks: Masks | None = None
    ) -> tuple[jax.Array, Acts]:
        """Returns `(logits [B, num_classes], acts)`; `train` is unused (no BN, no dropout)."""
        del train
        dims = self.dims()
        rec = layers.Recorder(masks, model="vit", channels=self.channels)
        x = nn.Dense(dims.dim, kernel_init=trunc_normal_002, name="patch_embed")(self._patches(x))
        if self.pool == "cls":
            cls = self.param("cls_token", trunc_normal_002, (1, 1, dims.dim))
            x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, dims.dim)), x], axis=1)
        x = x + self.param("pos_embed", trunc_normal_002, (1, x.shape[1], dims.dim))
        for i in range(dims.depth):
            x = EncoderBlock(
                heads=rec.features(f"block{i}.attn", dims.heads),
                head_dim=dims.head_dim,
                mlp_dim=rec.features(f"block{i}.mlp", dims.mlp_dim),
                index=i,
                generator=self.mask_generators,
                name=f"block_{i}",
            )(x, rec)
        x = nn.LayerNorm(epsilon=LN_EPSILON, name="ln")(x)
        x = x[:, 0] if self.pool == "cls" else jnp.mean(x, axis=1)
        logits = nn.Dense(self.num_classes, kernel_init=trunc_normal_002, name="head")(x)
        return logits, rec.finish(self)
