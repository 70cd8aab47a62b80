"""Shared building blocks of the model zoo: initializers, the MwT mask generator, conv/dense units."""

import math
from collections.abc import Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from modjax.models.conv import conv_general_dilated

MASK_SUFFIX = "/mask"
"""Suffix of the `acts` keys that hold MwT generator masks: `f"{conv}{MASK_SUFFIX}"`."""

Initializer = Callable[..., jax.Array]

# PyTorch `kaiming_normal_` is an untruncated normal (METHODS §2.4); Flax's `kaiming_normal` is
# truncated, so spell out the variance scaling. Flax fans match PyTorch's for conv kernels
# `[kh, kw, in / groups, out]` and dense kernels `[in, out]`.


def empty_safe(init: Initializer) -> Initializer:
    """`init`, except that a shape with a zero dimension gives an empty array.

    Pruned modules may keep zero channels in a layer (parity extraction, METHODS §4.5); Flax
    checks parameter shapes through the initializer, and fan-based initializers divide by 0.
    """

    def init_fn(key, shape, dtype=jnp.float32):
        if 0 in tuple(shape):
            return jnp.zeros(shape, dtype)
        return init(key, shape, dtype)

    return init_fn


kaiming_normal_fan_out = empty_safe(nn.initializers.variance_scaling(2.0, "fan_out", "normal"))
kaiming_normal_fan_in = empty_safe(nn.initializers.variance_scaling(2.0, "fan_in", "normal"))
# PyTorch's default Linear/Conv weight init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)):
# a uniform of variance scale/fan_in has limit sqrt(3 * scale / fan_in), so scale = 1/3.
torch_default_kernel = empty_safe(nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"))
normal_001 = nn.initializers.normal(stddev=0.01)
glorot_uniform = empty_safe(nn.initializers.glorot_uniform())
zeros = nn.initializers.zeros

BN_MOMENTUM = 0.9  # PyTorch momentum 0.1
BN_EPSILON = 1e-5


def torch_default_bias(fan_in: int) -> Initializer:
    """PyTorch's default bias init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), for a known fan_in.

    A zero fan_in (a layer after a zero-width one) uses bound 1: the values are never used.
    """
    bound = 1.0 / math.sqrt(max(fan_in, 1))

    def init_fn(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init_fn


def check_width(width: float) -> float:
    """Returns `width` if it is a positive number, else raises `ValueError` naming it."""
    if isinstance(width, bool) or not isinstance(width, int | float) or not width > 0:
        raise ValueError(f"width={width!r} must be a positive number (1.0 = paper architecture)")
    return width


def scaled(channels: int, width: float) -> int:
    """Applies the width multiplier: `round(channels * width)`.

    Raises:
        ValueError: if `width` is not a positive number, or leaves the layer with no units.
    """
    units = round(channels * check_width(width))
    if units < 1:
        raise ValueError(
            f"width={width!r} leaves a layer of {channels} channels with no units "
            f"(round({channels} * {width!r}) = 0); use width >= {0.5 / channels:.3g}"
        )
    return units


def generator_hidden(channels: int) -> int:
    """MwT generator hidden size H_g: C_out if C_out < 128 else C_out // 2 (METHODS §4.1)."""
    return channels if channels < 128 else channels // 2


def check_min_size(x: jax.Array, size: int, *, model: str) -> None:
    """Checks that NHWC input `x` is at least `size`×`size` (e.g. 32 for five 2×2 max-pools).

    Raises:
        ValueError: naming the model, the input shape and the minimum.
    """
    if x.ndim != 4 or x.shape[1] < size or x.shape[2] < size:
        raise ValueError(
            f"{model} needs NHWC inputs of at least {size}x{size}; got shape {tuple(x.shape)}"
        )


def flatten_nchw(x: jax.Array) -> jax.Array:
    """Flattens `[B, H, W, C]` channel-major (PyTorch order c·H·W + h·W + w) to `[B, C·H·W]`."""
    return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


def max_pool(x: jax.Array) -> jax.Array:
    """2×2 max-pool, stride 2, floor on odd sizes (PyTorch `MaxPool2d(2)`, Flax VALID).

    Written as a reshape and a max over the window axes rather than `nn.max_pool`: the values
    are identical, and the gradient avoids XLA's select-and-scatter, which on CPU is ~7× slower
    (benchmarks/results/step_throughput_cpu.md). Ties inside a window (measure zero after a
    ReLU, except all-zero windows whose gradient the ReLU stops anyway) share the gradient.
    """
    b, h, w, c = x.shape
    x = x[:, : h - h % 2, : w - w % 2, :]
    return jnp.max(x.reshape(b, h // 2, 2, w // 2, 2, c), axis=(2, 4))


class MaskGenerator(nn.Module):
    """MwT mask generator G: per-sample, per-output-channel soft masks (METHODS §4.1).

    z = mean_{H,W} x; h = ReLU(W₁ z) (no bias); m = ReLU(tanh(W₂ h + b₂)), with W₁, W₂
    Kaiming-normal fan_in (untruncated) and b₂ = 1.0, so m ≈ tanh(1) ≈ 0.76 at init.

    A dense layer's generator (the MLP's neuron-level masks, see `DenseUnit`) reads a `[B, C_in]`
    input, which has no spatial axes: z = x.

    Attributes:
        features: C_out, the number of masked channels (or neurons).
        hidden: H_g; defaults to `generator_hidden(features)`.
    """

    features: int
    hidden: int | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps the layer input `[B, H, W, C_in]` or `[B, C_in]` to masks `[B, features]` in [0, 1).

        Raises:
            ValueError: for an input that is neither NHWC nor `[B, C_in]`.
        """
        hidden = self.hidden if self.hidden is not None else generator_hidden(self.features)
        if x.ndim == 4:
            z = jnp.mean(x, axis=(1, 2))
        elif x.ndim == 2:
            z = x
        else:
            raise ValueError(
                f"MaskGenerator reads a conv input [B, H, W, C] or a dense input [B, C]; got "
                f"shape {tuple(x.shape)}"
            )
        h = nn.relu(
            nn.Dense(hidden, use_bias=False, kernel_init=kaiming_normal_fan_in, name="fc1")(z)
        )
        a = nn.Dense(
            self.features,
            kernel_init=kaiming_normal_fan_in,
            bias_init=nn.initializers.constant(1.0),
            name="fc2",
        )(h)
        return nn.relu(jnp.tanh(a))


class ConvUnit(nn.Module):
    """Conv → optional BN → optional MwT generator mask; returns the pre-activation.

    With `generator=True` this is MwT's `MaskConvBN` (METHODS §4.1): the generator reads the conv
    input, BN statistics use the unmasked conv output, and the mask multiplies the BN output.

    Attributes:
        features: output channels.
        kernel_size: square kernel size.
        strides: stride.
        padding: symmetric PyTorch-style padding (METHODS §2.4).
        groups: feature groups (`groups == features == C_in` is depthwise).
        use_bias: conv bias.
        use_bn: BatchNorm (momentum 0.9, eps 1e-5) after the conv.
        generator: attach a `MaskGenerator` (MwT always pairs it with BN).
        kernel_init: conv kernel init (default Kaiming-normal fan_out).
        bias_init: conv bias init (default zeros).
    """

    features: int
    kernel_size: int = 3
    strides: int = 1
    padding: int = 1
    groups: int = 1
    use_bias: bool = True
    use_bn: bool = True
    generator: bool = False
    kernel_init: Initializer = kaiming_normal_fan_out
    bias_init: Initializer = zeros

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array | None]:
        """Returns `(y, mask)`: `y` `[B, H', W', features]` before ReLU, `mask` `[B, features]`."""
        k, p = self.kernel_size, self.padding
        y = nn.Conv(
            self.features,
            (k, k),
            strides=(self.strides, self.strides),
            padding=((p, p), (p, p)),
            feature_group_count=max(self.groups, 1),  # a zero-width depthwise layer: 0 → 1
            use_bias=self.use_bias,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            conv_general_dilated=conv_general_dilated,
            name="conv",
        )(x)
        if self.use_bn:
            y = nn.BatchNorm(
                use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name="bn"
            )(y)
        mask = None
        if self.generator:
            mask = MaskGenerator(self.features, name="generator")(x)
            y = y * mask[:, None, None, :]
        return y, mask


def _dense_inits(init: str, fan_in: int) -> tuple[Initializer, Initializer]:
    if init == "torch":
        return torch_default_kernel, torch_default_bias(fan_in)
    if init == "normal001":
        return normal_001, zeros
    if init == "keras":
        return glorot_uniform, zeros
    raise ValueError(f"init={init!r} must be one of 'torch', 'normal001', 'keras'")


def dense(x: jax.Array, features: int, *, init: str, name: str) -> jax.Array:
    """A dense layer with a named init scheme, created inside the calling compact module.

    Args:
        x: `[B, n_in]` input.
        features: output units.
        init: `"torch"` (PyTorch default, U(±1/√fan_in) for weight and bias), `"normal001"`
            (N(0, 0.01²), zero bias) or `"keras"` (Glorot-uniform, zero bias).
        name: module name.
    """
    kernel_init, bias_init = _dense_inits(init, x.shape[-1])
    return nn.Dense(features, kernel_init=kernel_init, bias_init=bias_init, name=name)(x)


class DenseUnit(nn.Module):
    """Dense → MwT generator mask: the neuron-level counterpart of `ConvUnit`'s MaskConvBN.

    The generator reads the layer input x `[B, C_in]` itself (z = x: there is no spatial mean)
    and its mask multiplies the pre-activation, y = Dense(x) ⊙ m; the host network applies ReLU
    after it, so a zero mask switches a neuron off exactly. There is no BN (NeMo's neuron-level
    masks on Linear layers, METHODS §6, carried to MwT §4.1).

    The Dense shares this unit's scope, so its `kernel` and `bias` sit at the unit's own path
    (`params[name]["kernel"]`, exactly where a plain `dense(..., name=name)` puts them) and the
    generator at `params[name]["generator"]`: dropping the generator subtrees
    (`modjax.modular.drop_generators`) leaves the plain model's variables.

    Attributes:
        features: output units.
        init: the Dense's init scheme, as `dense`.
        generator: attach a `MaskGenerator` (H_g = `generator_hidden(features)`).
    """

    features: int
    init: str = "keras"
    generator: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        """Returns `(y, mask)`: `y` `[B, features]` before ReLU, `mask` `[B, features]` or None."""
        kernel_init, bias_init = _dense_inits(self.init, x.shape[-1])
        layer = nn.Dense(self.features, kernel_init=kernel_init, bias_init=bias_init, name="dense")
        nn.share_scope(self, layer)
        y = layer(x)
        mask = None
        if self.generator:
            mask = MaskGenerator(self.features, name="generator")(x)
            y = y * mask
        return y, mask


class Recorder:
    """Per-forward bookkeeping: acts in forward order, mask points, keep-masks and pruned widths.

    A plain object created at the start of a model's `__call__` and dropped at its end; the model
    returns `finish()`'s acts, so `apply` stays a pure function.

    Args:
        masks: external keep-masks `{layer name: [C] or [B, C]}`, or None.
        model: the model's name, for error messages.
        channels: per-layer output-width overrides `{layer name: int}` of a pruned (narrower)
            instance, or None; unlisted layers keep their width-derived size.
        index: static channel wiring of a pruned instance `{site: tuple of source indices}`
            (residual adds, MobileNet depthwise inputs; see `gather_or_zero`), or None.
    """

    def __init__(
        self,
        masks: Mapping[str, jax.Array] | None,
        *,
        model: str,
        channels: Mapping[str, int] | None = None,
        index: Mapping[str, tuple] | None = None,
    ):
        self.masks = dict(masks or {})
        self.model = model
        self.channels = dict(channels or {})
        self.index = dict(index or {})
        self.acts: dict[str, jax.Array] = {}
        self.points: dict[str, int] = {}
        self._sized: set[str] = set()
        self._wired: set[str] = set()

    def features(self, name: str, default: int) -> int:
        """The output width of layer `name`: its `channels` override, else `default`."""
        self._sized.add(name)
        return int(self.channels.get(name, default))

    def wiring(self, name: str) -> tuple | None:
        """The static index wiring of site `name` (None when the instance has none there)."""
        self._wired.add(name)
        return self.index.get(name)

    def keep(self, name: str, y: jax.Array, *, axis: int = -1) -> jax.Array:
        """Registers mask point `name` and applies its keep-mask.

        The channels are axis `axis` of `y` (default the last; a ViT's heads are axis 2 of
        `[B, T, heads, head_dim]`); a `[B, C]` mask broadcasts over every other axis but the batch.
        """
        axis = axis % y.ndim
        channels = y.shape[axis]
        self.points[name] = channels
        if name not in self.masks:
            return y
        mask = jnp.asarray(self.masks[name])
        batch = y.shape[0]
        ok = (mask.ndim == 1 and mask.shape == (channels,)) or (
            mask.ndim == 2 and mask.shape in ((batch, channels), (1, channels))
        )
        if not ok:
            raise ValueError(
                f"masks[{name!r}] has shape {tuple(mask.shape)}; {self.model} layer {name!r} has "
                f"{channels} channels, so expected ({channels},) or ({batch}, {channels})"
            )
        shape = [1] * y.ndim
        shape[axis] = channels
        if mask.ndim == 2:
            shape[0] = mask.shape[0]
        return y * mask.reshape(shape).astype(y.dtype)

    def act(self, name: str, a: jax.Array) -> jax.Array:
        """Stores the post-ReLU activation of layer `name` and returns it."""
        self.acts[name] = a
        return a

    def generated(self, name: str, mask: jax.Array | None) -> None:
        """Stores an MwT generator mask `[B, C]` under `f"{name}/mask"` (no-op for None)."""
        if mask is not None:
            self.acts[name + MASK_SUFFIX] = mask

    def finish(self, module: nn.Module) -> dict[str, jax.Array]:
        """Checks mask keys, exposes mask points for introspection and returns the acts.

        When the `"intermediates"` collection is mutable (introspection, e.g. `models.mask_points`;
        plain `init` and `apply` leave it immutable), stores `intermediates["mask_points"] =
        {name: zeros((index, channels))}`: the shape carries the forward index and channel count,
        so the order survives JAX's key-sorted dict flattening.

        Raises:
            ValueError: if a key of `masks` names no mask point of the model, or a key of
                `channels` / `index` names no layer / wiring site of it.
        """
        unknown = [k for k in self.masks if k not in self.points]
        if unknown:
            raise ValueError(
                f"masks has keys {unknown} that name no mask point of {self.model}; "
                f"valid names: {list(self.points)}"
            )
        unknown = [k for k in self.channels if k not in self._sized]
        if unknown:
            raise ValueError(
                f"channels has keys {unknown} that name no layer of {self.model} with a settable "
                f"width; valid names: {sorted(self._sized)}"
            )
        unknown = [k for k in self.index if k not in self._wired]
        if unknown:
            raise ValueError(
                f"index wiring has keys {unknown} that name no wiring site of {self.model}; "
                f"valid names: {sorted(self._wired)}"
            )
        if module.is_mutable_collection("intermediates"):
            points = {n: jnp.zeros((i, c)) for i, (n, c) in enumerate(self.points.items())}
            module.put_variable("intermediates", "mask_points", points)
        return self.acts


def conv_layer(
    rec: Recorder,
    x: jax.Array,
    *,
    name: str,
    train: bool,
    module_name: str | None = None,
    relu: bool = True,
    **unit_kwargs,
) -> jax.Array:
    """Runs a `ConvUnit` as layer `name`: generator mask, keep-mask, then ReLU and act.

    Must be called inside a compact method; the unit is a child of the calling module, named
    `module_name` (default `name`).

    Args:
        rec: the forward's recorder.
        x: `[B, H, W, C_in]` input.
        name: stable layer name (act key, mask key).
        train: BN batch statistics.
        module_name: the unit's Flax module name.
        relu: apply ReLU and record the act; False returns the masked pre-activation (e.g. before a
            residual add), with no act entry.
        **unit_kwargs: `ConvUnit` attributes.
    """
    y, mask = ConvUnit(name=module_name or name, **unit_kwargs)(x, train=train)
    rec.generated(name, mask)
    y = rec.keep(name, y)
    if not relu:
        return y
    return rec.act(name, nn.relu(y))


def dense_layer(
    rec: Recorder,
    x: jax.Array,
    features: int,
    *,
    name: str,
    init: str,
    generator: bool = False,
) -> jax.Array:
    """A hidden dense layer `name`: Dense → generator mask → keep-mask → ReLU, recorded as an act.

    With `generator=True` the layer is a `DenseUnit` (MwT's neuron-level mask) whose mask is
    recorded as `f"{name}/mask"`; its Dense parameters stay at `params[name]`.
    """
    if not generator:
        y = dense(x, features, init=init, name=name)
    else:
        y, mask = DenseUnit(features, init=init, name=name)(x)
        rec.generated(name, mask)
    y = rec.keep(name, y)
    return rec.act(name, nn.relu(y))


def gather_or_zero(x: jax.Array, src: tuple[int, ...] | None) -> jax.Array:
    """Rewires channels with a static index: `out[..., j] = x[..., src[j]]`, or 0 where -1.

    This is the pruned form's channel plumbing (METHODS §4.6, §5.5): zero-padding a branch to a
    wider layout at its own indices and gathering the kept set, as one gather with fixed shapes.

    Args:
        x: `[..., C]` input.
        src: for each output channel, the source channel of `x` or -1 for zeros; None returns `x`.

    Returns:
        `[..., len(src)]`.

    Raises:
        ValueError: if an index is out of range.
    """
    if src is None:
        return x
    idx = np.asarray(src, dtype=np.int32).reshape(-1)
    c = x.shape[-1]
    if idx.size and (idx.min() < -1 or idx.max() >= c):
        raise ValueError(f"channel index wiring {tuple(src)} is out of range for {c} channels")
    if idx.size == c and np.array_equal(idx, np.arange(c)):
        return x
    if (idx < 0).any():
        x = jnp.concatenate([x, jnp.zeros((*x.shape[:-1], 1), x.dtype)], axis=-1)
        idx = np.where(idx < 0, c, idx)
    return jnp.take(x, jnp.asarray(idx), axis=-1)


def residual_add(rec: Recorder, name: str, branch: jax.Array, shortcut: jax.Array) -> jax.Array:
    """`branch + shortcut`, or for a pruned instance with wiring `(branch_src, shortcut_src)` at
    site `name`, each side rewired by `gather_or_zero` into the add's kept layout first (the
    union rule of METHODS §4.6 and the identity-intersection rule of §5.5).

    Raises:
        ValueError: if the widths differ and the instance has no wiring for `name`.
    """
    wiring = rec.wiring(name)
    if wiring is None:
        if branch.shape[-1] != shortcut.shape[-1]:
            raise ValueError(
                f"{rec.model} residual add {name!r} joins {branch.shape[-1]} and "
                f"{shortcut.shape[-1]} channels: a pruned instance needs index wiring for it"
            )
        return branch + shortcut
    branch_src, shortcut_src = wiring
    return gather_or_zero(branch, branch_src) + gather_or_zero(shortcut, shortcut_src)
