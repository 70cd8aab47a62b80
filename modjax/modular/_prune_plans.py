"""Per-architecture pruning planners for `modjax.modular.prune` (METHODS §4.6, §5.5).

Each `_plan_*` walks one architecture family over a `_Plan`, recording the slicing ops, pruned
widths, index wiring and effective kept sets that `modjax.modular.prune` turns into the pruned form and
the masked form (see `modjax.modular.prune` for the rules).
"""

from collections.abc import Mapping
from typing import Any

import numpy as np

from modjax.modular.masked import MOBILENET_BLOCKS, mobilenet_effective


def _positions(sub: np.ndarray, layout: np.ndarray) -> tuple[int, ...]:
    """For each index of `sub`, its position in `layout`, or -1 if absent (zero-padding)."""
    where = {int(v): i for i, v in enumerate(layout)}
    return tuple(where.get(int(v), -1) for v in sub)


class _Plan:
    """Host-side walk of one architecture: slicing ops, pruned widths, wiring, effective sets.

    Ops are `(param path, kind, in_idx, out_idx)` with kind `"conv"`, `"depthwise"` or
    `"dense"`; every layer of the pruned model gets one op, so generators never reach it.
    """

    def __init__(self, model_name: str, points: dict[str, int], keep: dict[str, np.ndarray]):
        self.model_name = model_name
        self.points = points
        self.keep = keep
        self.channels: dict[str, int] = {}
        self.wiring: dict[str, Any] = {}
        self.ops: list[tuple[tuple[str, ...], str, np.ndarray | None, np.ndarray]] = []
        self.effective: dict[str, np.ndarray] = {}  # overrides of `keep` for the masked form

    def kept(self, name: str) -> np.ndarray:
        if name in self.keep:
            return np.flatnonzero(self.keep[name])
        return np.arange(self.points[name])

    def layer(
        self,
        name: str,
        path: tuple[str, ...],
        in_idx: np.ndarray | None,
        out: np.ndarray | None = None,
        *,
        kind: str = "conv",
        sized: bool = True,
    ) -> np.ndarray:
        """Adds a conv/dense op for layer `name` keeping `out` (default: its kept set)."""
        out = self.kept(name) if out is None else out
        if sized and len(out) != self.points[name]:
            self.channels[name] = len(out)
        self.ops.append((path, kind, in_idx, out))
        return out

    def head(self, rows: np.ndarray, classes: np.ndarray) -> None:
        self.ops.append((("head",), "dense", rows, classes))

    def wire(self, site: str, value: Any, identity: bool) -> None:
        if not identity:
            self.wiring[site] = value


def _expand(idx: np.ndarray, hw: int) -> np.ndarray:
    """Channel indices → flattened channel-major feature indices c·H·W + p."""
    return (idx[:, None] * hw + np.arange(hw)[None, :]).reshape(-1)


def _hw(shapes: Mapping, fc: str, channels: int) -> int:
    rows = shapes[(fc, "kernel")][0]
    if rows % channels:
        raise ValueError(f"{fc} has {rows} inputs, not a multiple of {channels} channels")
    return rows // channels


def _plan_sequential(plan: _Plan, shapes: Mapping, classes: np.ndarray) -> None:
    """mlp, lenet5, simcnn, vgg16, vgg16_moda: chains of convs, then dense layers, then head."""
    names = list(plan.points)
    first = names[0]
    conv = (first, "conv", "kernel") in shapes
    prev = np.arange(shapes[(first, "conv", "kernel")][2] if conv else shapes[(first, "kernel")][0])
    last_conv = None
    for name in names:
        if (name, "conv", "kernel") in shapes:
            prev = plan.layer(name, (name,), prev)
            last_conv = name
            continue
        if last_conv is not None:  # the conv → dense flatten (channel-major)
            prev = _expand(prev, _hw(shapes, name, plan.points[last_conv]))
            last_conv = None
        prev = plan.layer(name, (name,), prev, kind="dense")
    plan.head(prev, classes)


def _plan_rescnn(plan: _Plan, shapes: Mapping, classes: np.ndarray) -> None:
    """ResCNN: R_1 ∪ R_3 feeds conv_4, R_5 ∪ R_7 conv_8, R_9 ∪ R_11 the head (§4.6)."""
    x = np.arange(shapes[("conv_0", "conv", "kernel")][2])
    for i in range(12):
        name = f"conv_{i}"
        if i in (2, 6, 10):
            shortcut = x
        x = plan.layer(name, (name,), x)
        if i in (3, 7, 11):
            union = np.union1d(x, shortcut)
            wiring = (_positions(union, x), _positions(union, shortcut))
            plan.wire(name, wiring, len(x) == len(shortcut) == plan.points[name])
            x = union
    plan.head(_expand(x, _hw(shapes, "head", plan.points["conv_11"])), classes)


def _plan_resnet(plan: _Plan, shapes: Mapping, classes: np.ndarray) -> None:
    """ResNet18 and the CIFAR ResNet-v1: R_out = (R_conv2 ∪ R_shortcut) ∩ R_block per block
    (§4.6 union, §5.5).

    Blocks are the `layer{s}.{b}` mask points in forward order (parameters at `layer{s}_{b}`);
    a block has a projection shortcut when its parameters hold `shortcut`. MwT keys conv1, conv2
    and the shortcuts, MODA the stem, conv1 and the block outputs; one formula serves both.
    """
    x = plan.layer("stem", ("stem",), np.arange(shapes[("stem", "conv", "kernel")][2]))
    for prefix in (n for n in plan.points if n.startswith("layer") and n.count(".") == 1):
        path = prefix.replace(".", "_")
        h = plan.layer(f"{prefix}.conv1", (path, "conv1"), x)
        down = (path, "shortcut", "conv", "kernel") in shapes
        r_c2 = plan.kept(f"{prefix}.conv2")
        r_s = plan.kept(f"{prefix}.shortcut") if down else x
        out = np.intersect1d(np.union1d(r_c2, r_s), plan.kept(prefix))
        o = plan.layer(f"{prefix}.conv2", (path, "conv2"), h, np.intersect1d(r_c2, out))
        if down:
            r_s = plan.layer(f"{prefix}.shortcut", (path, "shortcut"), x, np.intersect1d(r_s, out))
        b_src, s_src = _positions(out, o), _positions(out, r_s)
        full = np.arange(len(out))
        identity = (
            len(out) == plan.points[prefix]
            and np.array_equal(b_src, full)
            and np.array_equal(s_src, full)
        )
        plan.wire(prefix, (b_src, s_src), identity)
        x = out
    plan.head(x, classes)


def _plan_mobilenet(plan: _Plan, shapes: Mapping, classes: np.ndarray, method: str) -> None:
    """MobileNet: depthwise keeps R_dw; its input set becomes E = R_prev ∩ R_dw (§4.6, §5.5)."""
    sets = mobilenet_effective(plan.keep, method, plan.points)
    eff = {name: np.flatnonzero(k) for name, k in sets.items()}
    for name, idx in eff.items():
        if name in plan.keep:
            plan.effective[name] = idx
    x = plan.layer("stem", ("stem",), np.arange(shapes[("stem", "conv", "kernel")][2]), eff["stem"])
    for i in range(MOBILENET_BLOCKS):
        dw, pw = f"block{i}.dw", f"block{i}.pw"
        r_dw = plan.layer(dw, (f"block{i}", "dw"), None, eff[dw], kind="depthwise", sized=False)
        src = _positions(r_dw, x)
        identity = len(r_dw) == plan.points[dw] and np.array_equal(src, np.arange(len(r_dw)))
        plan.wire(dw, src, identity)
        x = plan.layer(pw, (f"block{i}", "pw"), r_dw, eff[pw])
    plan.head(x, classes)
