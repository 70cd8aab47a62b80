"""The zoo's convolution dispatcher: XLA's convolution, or a faster lowering on CPU.

Every zoo convolution is `nn.Conv(..., conv_general_dilated=conv_general_dilated)`; the lowering
is chosen at trace time from static shapes and the default backend (`conv_lowering`):
im2col for tiny maps, a direct shifted sum for convs with at most 4 input and 4 output channels
(LeNet5 w0.25), XLA's convolution for everything else and on every other backend.
`modjax.models.layers` re-exports these names.
"""

import functools

import jax
import jax.numpy as jnp

IM2COL_MAX_PIXELS = 4
"""Output maps of at most this many pixels (1×1, 1×2, 2×2) use the im2col lowering on CPU."""

DIRECT_MAX_IN_CHANNELS = 4
"""Convs with at most this many input and `DIRECT_MAX_OUT_CHANNELS` output channels run direct."""

DIRECT_MAX_OUT_CHANNELS = 16

CHANNELS_FIRST_MAX_OUT = 4
"""The direct lowering sums channels-first up to this many output channels, in NHWC above."""

_NHWC = ("NHWC", "HWIO", "NHWC")


def conv_lowering(
    input_shape: tuple[int, ...],
    kernel_shape: tuple[int, ...],
    *,
    strides: tuple[int, ...],
    dilated: bool,
    groups: int,
    backend: str,
    xla_optimized: bool = True,
) -> str:
    """Which lowering `conv_general_dilated` uses: `"im2col"` or `"xla"`.

    Two XLA:CPU (jaxlib 0.10) slow spots, measured in `benchmarks/results/conv_lowering_cpu.md`:

    - 3×3 convolutions over tiny maps (2×2, the last stage of SimCNN/VGG at 32 px) run through a
      slow fallback loop, ~20–70× slower than one matmul over the im2col patches: `"im2col"`.
      From 4×4 maps on, XLA's own convolution is faster.
    - A forward conv with few input channels costs a near-constant ~10–20 ms at batch 128 on
      32×32 maps however small it is (1→2 channels included), and so does the input gradient
      of one with few output channels. For ≤ 4 input and ≤ 16 output channels (LeNet5's first
      conv at every width, its second at w ≤ 0.5; SimCNN/VGG16's first at w ≤ 0.25) a direct
      multiply-add over the kernel's shifted slices is 1.7–11× faster forward, its input
      gradient is another such sum, and its kernel gradient is XLA's (see `_direct_conv`):
      `"direct"`. From 32 output channels on, XLA's convolution is faster
      (`benchmarks/results/conv_lowering_cpu.md`).

    Only stride 1, no dilation and no groups take either path, and only on the CPU backend: on
    GPU and TPU this always returns `"xla"`. `"direct"` also needs XLA's optimizing pipeline
    (`xla_optimized`): under `jax_disable_most_optimizations`, XLA:CPU (jaxlib 0.10.2)
    miscompiles some train steps that contain it (NaN gradients, correct with optimizations on
    and correct alone), so that debugging mode gets XLA's convolution.

    Example:
        >>> conv_lowering((8, 2, 2, 64), (3, 3, 64, 64), strides=(1, 1), dilated=False,
        ...               groups=1, backend="cpu")
        'im2col'
        >>> conv_lowering((8, 32, 32, 3), (5, 5, 3, 2), strides=(1, 1), dilated=False,
        ...               groups=1, backend="cpu")
        'direct'
        >>> conv_lowering((8, 2, 2, 64), (3, 3, 64, 64), strides=(1, 1), dilated=False,
        ...               groups=1, backend="gpu")
        'xla'
    """
    if backend != "cpu" or dilated or groups != 1 or any(s != 1 for s in strides):
        return "xla"
    if len(input_shape) != 4 or len(kernel_shape) != 4:
        return "xla"
    if input_shape[1] * input_shape[2] <= IM2COL_MAX_PIXELS:
        return "im2col"
    if xla_optimized and _direct_ok(kernel_shape[2], kernel_shape[3]):
        return "direct"
    return "xla"


def _direct_ok(in_channels: int, out_channels: int) -> bool:
    # Zero-width (pruned away) layers stay on XLA, which handles empty contractions.
    return (
        1 <= in_channels <= DIRECT_MAX_IN_CHANNELS and 1 <= out_channels <= DIRECT_MAX_OUT_CHANNELS
    )


def _im2col_conv(lhs, rhs, pads, precision):
    """A stride-1 NHWC/HWIO conv as pad + shifted slices + one matmul (plain autodiff)."""
    kh, kw, cin, cout = rhs.shape
    x = jnp.pad(lhs, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))
    h, w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    cols = [x[:, i : i + h, j : j + w, :] for i in range(kh) for j in range(kw)]
    patches = jnp.concatenate(cols, axis=-1) if len(cols) > 1 else cols[0]
    kernel = rhs.reshape(kh * kw * cin, cout)
    return jnp.einsum("bhwk,ko->bhwo", patches, kernel, precision=precision)


def _nhwc_conv(lhs, rhs, pads, precision):
    dn = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
    return jax.lax.conv_general_dilated(
        lhs, rhs, (1, 1), pads, dimension_numbers=dn, precision=precision
    )


def _tree_sum(terms):
    """Pairwise sum: XLA:CPU vectorizes the fused balanced tree better than a chain (~1.5×)."""
    while len(terms) > 1:
        pairs = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
        terms = pairs + terms[2 * len(pairs) :]
    return terms[0]


def _shifted_sum(lhs, rhs, pads):
    """A stride-1 NHWC/HWIO conv as Σ over (tap, input channel) of slice × weight row.

    One kernel row per iteration of a loop: each iteration is one fused multiply-add over the
    row's kw·C_in shifted slices. The loop is what keeps the result a single buffer: as one
    flat fusion, XLA duplicates the whole sum into every consumer (in a train step, the
    ReLU/max-pool forward and both their backward passes, 3× the work). The loop carries the
    padded input and the kernel rolled up by one row per iteration, so the body reads static
    slices: indexing them with the loop counter (`dynamic_slice`) keeps XLA:CPU from
    vectorizing the body (2× slower for LeNet5's first conv).

    Up to `CHANNELS_FIRST_MAX_OUT` output channels the sum runs channels-first (the map's
    width is the vectorized axis); wider, it runs in NHWC (the output channels are), which
    also saves transposing the result back (3→16 channels, 3×3, with bias and ReLU: 10.2 ms
    channels-first, 8.5 ms NHWC; 3→2, 5×5: 3.8 vs 4.3 ms).
    """
    kh, kw, cin, cout = rhs.shape
    channels_first = cout <= CHANNELS_FIRST_MAX_OUT
    zero = jnp.zeros((), lhs.dtype)
    x = jax.lax.pad(lhs, zero, ((0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)))
    if channels_first:
        x = jnp.transpose(x, (0, 3, 1, 2))
        h, w = x.shape[2] - kh + 1, x.shape[3] - kw + 1
        acc = jnp.zeros((x.shape[0], cout, h, w), lhs.dtype)

        def term(rows, k, j, c):
            return rows[:, c, None, :h, j : j + w] * k[j, c][None, :, None, None]
    else:
        h, w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
        acc = jnp.zeros((x.shape[0], h, w, cout), lhs.dtype)

        def term(rows, k, j, c):
            return rows[:, :h, j : j + w, c, None] * k[j, c]

    row_axis = 2 if channels_first else 1

    def add_row(_, carry):
        acc, rows, kernel = carry
        terms = [term(rows, kernel[0], j, c) for j in range(kw) for c in range(cin)]
        return (
            acc + _tree_sum(terms),
            jnp.roll(rows, -1, axis=row_axis),
            jnp.roll(kernel, -1, axis=0),
        )

    acc, _, _ = jax.lax.fori_loop(0, kh, add_row, (acc, x, rhs))
    return jnp.transpose(acc, (0, 2, 3, 1)) if channels_first else acc


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _direct_conv(lhs, rhs, pads, precision):
    """`_shifted_sum` forward; backward, the input gradient as another `_shifted_sum`.

    The input gradient of such a conv is itself a conv with few output channels (flipped
    kernel, channels swapped: the conv's ≤ 16 outputs in, its ≤ 4 inputs out), where XLA:CPU's
    convolution has the same fixed cost as forward (LeNet5 w0.25's second conv: ~6.5 ms of a
    ~20 ms step on one core); a first conv's input gradient is never
    computed (dropped as dead code). The kernel gradient is XLA's: autodiff through the shifted
    sum would make it kh·kw·C_in·C_out separate reductions (~100× slower). Reverse mode only
    (no `jax.jvp`).
    """
    del precision
    return _shifted_sum(lhs, rhs, pads)


def _direct_fwd(lhs, rhs, pads, precision):
    return _shifted_sum(lhs, rhs, pads), (lhs, rhs)


def _direct_bwd(pads, precision, res, g):
    lhs, rhs = res
    _, kernel_vjp = jax.vjp(lambda k: _nhwc_conv(lhs, k, pads, precision), rhs)
    (d_rhs,) = kernel_vjp(g)
    # The input gradient of a stride-1 conv is the conv of `g` with the flipped kernel, its
    # channel axes swapped (C_out in, C_in ≤ 4 out: summed channels-first), padded k - 1 - pad.
    kernel_t = jnp.transpose(jnp.flip(rhs, (0, 1)), (0, 1, 3, 2))
    back_pads = tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(rhs.shape[:2], pads))
    return _shifted_sum(g, kernel_t, back_pads), d_rhs


_direct_conv.defvjp(_direct_fwd, _direct_bwd)


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
    """`lax.conv_general_dilated` with faster lowerings for some shapes on CPU.

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
        xla_optimized=not jax.config.read("jax_disable_most_optimizations"),
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
    if path == "direct":
        return _direct_conv(lhs, rhs, tuple(tuple(p) for p in padding), precision)
    return _im2col_conv(lhs, rhs, padding, precision)
