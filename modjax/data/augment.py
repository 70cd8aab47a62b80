"""On-device preprocessing: uint8 -> float32 in [0, 1], train augmentation, normalization.

Pure `jnp`, traced inside the train/eval step (the factory is not jitted itself). Per-dataset
defaults come from the registry (METHODS §2.5): CIFAR-10/100 and SVHN use zero-pad 4 + random
crop + horizontal flip (p = 0.5); the MNIST family and `digits` use no augmentation.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from modjax.data.registry import DatasetInfo

__all__ = ["make_preprocess", "random_crop", "random_flip"]

PreprocessFn = Callable[[jax.Array, jax.Array], jax.Array]


def random_crop(images: jax.Array, rng: jax.Array, *, pad: int) -> jax.Array:
    """Zero-pads each image by `pad` pixels per side, then crops it back at a random offset.

    Args:
        images: `[B, H, W, C]` float images.
        rng: a PRNG key; each image draws its own offset in `[0, 2 * pad]` per axis.
        pad: padding per side (the torchvision `RandomCrop(size, padding=pad)` semantics).

    Returns:
        `[B, H, W, C]`, same dtype.
    """
    batch, height, width, channels = images.shape
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = jax.random.randint(rng, (batch, 2), 0, 2 * pad + 1)

    def crop(image: jax.Array, offset: jax.Array) -> jax.Array:
        zero = jnp.zeros((), offset.dtype)
        return lax.dynamic_slice(image, (offset[0], offset[1], zero), (height, width, channels))

    return jax.vmap(crop)(padded, offsets)


def random_flip(images: jax.Array, rng: jax.Array) -> jax.Array:
    """Flips each `[B, H, W, C]` image left-right with probability 0.5, independently."""
    flip = jax.random.bernoulli(rng, 0.5, (images.shape[0],))
    return jnp.where(flip[:, None, None, None], images[:, :, ::-1, :], images)


def make_preprocess(
    info: DatasetInfo,
    *,
    augment: bool,
    normalize: bool = True,
    crop_pad: int | None = None,
    flip: bool | None = None,
    image_size: int | None = None,
) -> PreprocessFn:
    """Builds `preprocess_fn(images, rng) -> float32 images` for one dataset.

    The function scales `uint8` pixels to [0, 1]; if `augment`, applies the random crop (zero
    padding `crop_pad`) and the horizontal flip; then, if `normalize`, subtracts the registry
    mean and divides by its std per channel. Test transforms are `augment=False` (normalization
    only). Pan & Rajan's MNIST-family models use no normalization: pass `normalize=False`.

    Args:
        info: the dataset's registry entry (mean, std and augmentation defaults).
        augment: whether to apply train-time augmentation.
        normalize: whether to normalize with `info.mean` / `info.std`.
        crop_pad: overrides `info.augment_crop_pad` (0 disables the crop).
        flip: overrides `info.augment_flip`.
        image_size: if set, resize every image to `image_size × image_size` (bilinear, on
            device, before augmentation), e.g. 32 to feed 28×28 MNIST to VGG/LeNet5.

    Returns:
        `preprocess_fn(images, rng)`: `images` uint8 `[B, H, W, C]`, `rng` a PRNG key (unused
        without augmentation) -> float32 `[B, H', W', C]` (H' = W' = `image_size` if given).
        Pure and jit-compatible.

    Raises:
        ValueError: on a negative `crop_pad`, a non-positive `image_size`, or mean/std lengths
            that don't match the channels.

    Example:
        >>> from modjax.data import get_info
        >>> fn = make_preprocess(get_info("cifar10"), augment=True)
        >>> fn(jnp.zeros((2, 32, 32, 3), jnp.uint8), jax.random.key(0)).dtype
        dtype('float32')
    """
    pad = info.augment_crop_pad if crop_pad is None else crop_pad
    do_flip = info.augment_flip if flip is None else flip
    if pad < 0:
        raise ValueError(f"crop_pad={pad}; expected a non-negative integer")
    if image_size is not None and image_size <= 0:
        raise ValueError(f"image_size={image_size}; expected a positive integer or None")
    channels = info.image_shape[-1]
    if len(info.mean) != channels or len(info.std) != channels:
        raise ValueError(
            f"{info.name}: mean={info.mean}, std={info.std}; expected {channels} values each"
        )
    # Shaped [1, 1, 1, C] so no rank promotion is needed; float32 so nothing drifts to float64.
    mean = np.asarray(info.mean, np.float32).reshape(1, 1, 1, channels)
    std = np.asarray(info.std, np.float32).reshape(mean.shape)

    def preprocess_fn(images: jax.Array, rng: jax.Array) -> jax.Array:
        if images.ndim != 4 or images.shape[1:] != info.image_shape:
            raise ValueError(
                f"images.shape={images.shape}; expected [B, *{info.image_shape}] for {info.name}"
            )
        x = jnp.asarray(images).astype(jnp.float32) / np.float32(255)
        if image_size is not None and x.shape[1:3] != (image_size, image_size):
            x = jax.image.resize(x, (x.shape[0], image_size, image_size, channels), "bilinear")
        if augment:
            crop_key, flip_key = jax.random.split(rng)
            if pad > 0:
                x = random_crop(x, crop_key, pad=pad)
            if do_flip:
                x = random_flip(x, flip_key)
        if normalize:
            x = (x - mean) / std
        return x

    return preprocess_fn
