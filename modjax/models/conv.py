"""The zoo's convolution dispatcher: XLA's convolution, or im2col for tiny maps on CPU.

Every zoo convolution is `nn.Conv(..., conv_general_dilated=conv_general_dilated)`; the lowering
is chosen at trace time from static shapes and the default backend (`conv_lowering`).
`modjax.models.layers` re-exports these names.
"""

import jax
import jax.numpy as jnp

IM2COL_MAX_PIXELS = 4
"""Output maps of at most this many pixels (1×1, 1×2, 2×2) use the im2col lowering on CPU."""

_NHWC = ("NHWC", "HWIO", "NHWC")


def conv_lowering(
    input_shape: tuple[int, ...],
    kernel_shape: tuple[int, ...],
    *,
    strides: tuple[int, ...],
    dilated: bool,
    groups: int,
    backend: str,
) -> str:
    """Which lowering `conv_general_dilated` uses: `"im2col"` or `"xla"`.

    XLA:CPU runs 3×3 convolutions over tiny maps (2×2, the last stage of SimCNN/VGG at 32 px)
    through a slow fallback loop, ~20–70× slower than one matmul over the im2col patches
    (`benchmarks/results/conv_lowering_cpu.md`). From 4×4 maps on, XLA's own convolution
    is faster, so only tiny maps, stride 1, no dilation and no groups take the im2col path, and
    only on the CPU backend: on GPU and TPU this always returns `"xla"`.

    Example:
        >>> conv_lowering((8, 2, 2, 64), (3, 3, 64, 64), strides=(1, 1), dilated=False,
        ...               groups=1, backend="cpu")
        'im2col'
        >>> conv_lowering((8, 2, 2, 64), (3, 3, 64, 64), strides=(1, 1), dilated=False,
        ...               groups=1, backend="gpu")
        'xla'
    """
    if backend != "cpu" or dilated or groups != 1 or any(s != 1 for s in strides):
        return "xla"
    if len(input_shape) != 4 or len(kernel_shape) != 4:
        return "xla"
    return "im2col" if input_shape[1] * input_shape[2] <= IM2COL_MAX_PIXELS else "xla"


def _im2col_conv(lhs, rhs, pads, precision):
    """A stride-1 NHWC/HWIO conv as pad + shifted slices + one matmul (plain autodiff)."""
    kh, kw, cin, cout = rhs.shape
    x = jnp.pad(lhs, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))
    h, w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    cols = [x[:, i : i + h, j : j + w, :] for i in range(kh) for j in range(kw)]
    patches = jnp.concatenate(cols, axis=-1) if len(cols) > 1 else cols[0]
    kernel = rhs.reshape(kh * kw * cin, cout)
    return jnp.einsum("bhwk,ko->bhwo", patches, kernel, precision=precision)


def conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    batch_group_count=1,
    precision=None,
    preferred_element_type=None,
):
    """`lax.conv_general_dilated` with a faster lowering for tiny maps on CPU.

    Same signature and result as `lax.conv_general_dilated`; every zoo convolution goes
    through it (`nn.Conv(..., conv_general_dilated=conv_general_dilated)`). `conv_lowering`
    decides the path at trace time from static shapes and the default backend.
    """
    dilated = any(d != 1 for d in (lhs_dilation or ())) or any(d != 1 for d in (rhs_dilation or ()))
    nhwc = dimension_numbers is not None and dimension_numbers == jax.lax.conv_dimension_numbers(
        lhs.shape, rhs.shape, _NHWC
    )
    path = conv_lowering(
        tuple(lhs.shape),
        tuple(rhs.shape),
        strides=tuple(window_strides),
        dilated=dilated,
        groups=feature_group_count * batch_group_count,
        backend=jax.default_backend(),
    )
    if path == "xla" or not nhwc or preferred_element_type is not None:
        return jax.lax.conv_general_dilated(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation,
            dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count,
            batch_group_count=batch_group_count,
            precision=precision,
            preferred_element_type=preferred_element_type,
        )
    if isinstance(padding, str):
        padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
    return _im2col_conv(lhs, rhs, padding, precision)
