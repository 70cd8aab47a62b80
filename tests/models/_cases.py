"""Shared cases for the model tests: expected layers (METHODS §3) and cached built models."""

import functools
import math
from typing import NamedTuple

import jax

from modjax import models

W = 0.125  # small width for real forward passes
B = 2
N = 7  # num_classes, distinct from every channel count at width W
KEY = jax.random.key(0)
CNNS = (
    "lenet5",
    "simcnn",
    "rescnn",
    "vgg16",
    "vgg16_moda",
    "resnet18",
    "mobilenet",
    "resnet20",  # CIFAR ResNet-v1: MwT masks on the BN output
    "resnet20_nobn",  # ... and on the conv output (no BN anywhere)
)
CASES = [("mlp", False), ("mlp", True)] + [(name, mg) for name in CNNS for mg in (False, True)]
CASES += [("vit_tiny", False), ("vit_tiny", True)]  # units: heads and MLP neurons
TANH1 = math.tanh(1.0)
OPTIONS = {"vit_tiny": {"depth": 2}}  # model options of the cases (2 blocks are enough here)


def c(n: int) -> int:
    return max(1, round(n * W))


# ----------------------------------------------------------------------------- expected layers
# Written out from METHODS §3 (not from the model code): (name, shape without batch) at width W.


def _tracked(name: str) -> list[tuple[str, tuple[int, ...]]]:
    if name == "vit_tiny":  # OPTIONS' 2 blocks; 3 heads kept at every width, MLP 768 scaled
        return [
            (f"block{i}.{u}", (3,) if u == "attn" else (c(768),))
            for i in range(2)
            for u in ("attn", "mlp")
        ]
    if name == "mlp":
        return [(f"dense_{i}", (c(49),)) for i in range(4)]
    if name == "lenet5":
        return [
            ("conv_0", (28, 28, c(6))),
            ("conv_1", (10, 10, c(16))),
            ("fc_0", (c(120),)),
            ("fc_1", (c(84),)),
        ]
    vgg_widths = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
    vgg_sizes = (32, 32, 16, 16, 8, 8, 8, 4, 4, 4, 2, 2, 2)
    if name in ("simcnn", "vgg16", "vgg16_moda"):
        hidden = 4096 if name == "vgg16_moda" else 512
        convs = [(f"conv_{i}", (s, s, c(w))) for i, (w, s) in enumerate(zip(vgg_widths, vgg_sizes))]
        return convs + [("fc_0", (c(hidden),)), ("fc_1", (c(hidden),))]
    if name == "rescnn":
        widths = (64, 128, 128, 128, 256, 512, 512, 512, 512, 512, 512, 512)
        sizes = (32, 32, 16, 16, 16, 8, 4, 4, 4, 2, 1, 1)
        return [(f"conv_{i}", (s, s, c(w))) for i, (w, s) in enumerate(zip(widths, sizes))]
    if name == "resnet18":
        out = [("stem", (32, 32, c(64)))]
        for s, (w, size) in enumerate(((64, 32), (128, 16), (256, 8), (512, 4)), start=1):
            for b in range(2):
                out += [
                    (f"layer{s}.{b}.conv1", (size, size, c(w))),
                    (f"layer{s}.{b}", (size,) * 2 + (c(w),)),
                ]
        return out
    if name in ("resnet20", "resnet20_nobn"):  # 3 stages × 3 blocks, 16/32/64 channels
        out = [("stem", (32, 32, c(16)))]
        for s, (w, size) in enumerate(((16, 32), (32, 16), (64, 8)), start=1):
            for b in range(3):
                out += [
                    (f"layer{s}.{b}.conv1", (size, size, c(w))),
                    (f"layer{s}.{b}", (size, size, c(w))),
                ]
        return out
    assert name == "mobilenet"
    out, size, ch = [("stem", (32, 32, c(32)))], 32, 32
    cfg = (64, (128, 2), 128, (256, 2), 256, (512, 2), 512, 512, 512, 512, 512, (1024, 2), 1024)
    for i, v in enumerate(cfg):
        width, stride = (v, 1) if isinstance(v, int) else v
        size //= stride
        out += [(f"block{i}.dw", (size, size, c(ch))), (f"block{i}.pw", (size, size, c(width)))]
        ch = width
    return out


def _masked(name: str) -> list[str]:
    """MwT-masked layers in forward order (METHODS §4.2)."""
    if name in ("resnet18", "resnet20", "resnet20_nobn"):  # projection shortcuts at s > 1
        stages, blocks = (4, 2) if name == "resnet18" else (3, 3)
        out = []
        for s in range(1, stages + 1):
            for b in range(blocks):
                out += [f"layer{s}.{b}.conv1", f"layer{s}.{b}.conv2"]
                out += [f"layer{s}.{b}.shortcut"] if s > 1 and b == 0 else []
        return out
    if name == "mobilenet":
        return [n for n, _ in _tracked(name) if n != "stem"]
    if name in ("mlp", "vit_tiny"):  # neuron/head masks on every unit layer (none unmasked)
        return [n for n, _ in _tracked(name)]
    return [n for n, _ in _tracked(name) if n.startswith("conv_") and n != "conv_0"]


def _acts(name: str, mg: bool) -> list[tuple[str, tuple[int, ...]]]:
    """Full acts in forward order: each generator mask comes right before its layer's output."""
    tracked = _tracked(name)
    if not mg:
        return tracked
    masked = dict.fromkeys(_masked(name))
    out = []
    for act, shape in tracked:
        pending = [m for m in masked if m == act or m.startswith(act + ".")]
        for m in pending:
            out.append((f"{m}/mask", (dict(tracked).get(m, shape)[-1],)))
            del masked[m]
        out.append((act, shape))
    assert not masked
    return out


# ----------------------------------------------------------------------------- built models
# Eager CPU forwards pay one XLA compile per new op shape, so every variant is checked abstractly
# (jax.eval_shape) and a representative subset runs for real.

REAL = [
    ("mlp", False),
    ("mlp", True),
    ("lenet5", True),
    ("simcnn", False),
    ("rescnn", False),
    ("vgg16", True),
    ("resnet18", True),
    ("mobilenet", True),
    ("resnet20", True),
    ("resnet20_nobn", True),
    ("vit_tiny", True),
]


def _model(name: str, mg: bool):
    return models.get_model(
        name, num_classes=N, width=W, mask_generators=mg, **OPTIONS.get(name, {})
    )


def _input() -> jax.Array:
    return jax.random.normal(jax.random.key(1), (B, 32, 32, 3))


class Built(NamedTuple):
    model: object
    variables: dict
    x: jax.Array
    eval_out: tuple
    train_out: tuple
    updates: dict


@functools.cache
def _build(name: str, mg: bool) -> Built:
    assert (name, mg) in REAL
    model, x = _model(name, mg), _input()
    variables = model.init({"params": KEY, "dropout": KEY}, x, train=False)
    eval_out = model.apply(variables, x, train=False)
    train_out, updates = model.apply(
        variables, x, train=True, rngs={"dropout": KEY}, mutable=["batch_stats"]
    )
    return Built(model, variables, x, eval_out, train_out, updates)


def _abstract(model, x):
    """Abstract init (whose forward is the eval pass) and train apply.

    Returns the variables and, for eval and train, `(logits, acts in forward order, updates)`.
    """
    order = {}

    def forward(x):
        (logits, acts), variables = model.init_with_output(
            {"params": KEY, "dropout": KEY}, x, train=False
        )
        order[False] = [(k, a.shape) for k, a in acts.items()]  # before dict key sorting
        (train_logits, acts), updates = model.apply(
            variables, x, train=True, rngs={"dropout": KEY}, mutable=["batch_stats"]
        )
        order[True] = [(k, a.shape) for k, a in acts.items()]
        eval_updates = (
            {"batch_stats": variables["batch_stats"]} if "batch_stats" in variables else {}
        )
        return variables, [(logits, eval_updates), (train_logits, updates)]

    variables, outs = jax.eval_shape(forward, x)
    return variables, [(logits, order[t], upd) for t, (logits, upd) in zip((False, True), outs)]
