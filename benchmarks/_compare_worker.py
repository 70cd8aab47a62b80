"""The timing worker of `compare_torch.py`: one process at one thread count, all cases.

Run only by `compare_torch.py`, which pins the process to N cores before JAX and torch start
(both size their thread pools from the affinity mask) and reads the JSON this writes.
Each case times modjax and the PyTorch reference in alternating rounds (the order rotates every
round), so load from other jobs hits both sides alike and cancels from the per-round ratios.
"""

import copy
import re
import signal
import statistics
import time

import jax
import numpy as np
import torch

from benchmarks import torch_ref
from benchmarks._bf16 import bf16_step as _bf16_step
from benchmarks.torch_ref import compose as ref_compose
from benchmarks.torch_ref import extract as ref_extract
from benchmarks.torch_ref import train as ref_train
from benchmarks.torch_ref import weights
from modjax import models, modular, objectives, train

NUM_CLASSES = 10
MODEL_KWARGS = {"lenet5": {}, "simcnn": {}, "vgg16": {}, "resnet18": {}}


def _identity(x, rng):
    del rng
    return x


def _objective(method):
    return {
        "standard": objectives.standard,
        "mwt": objectives.mwt_objective(num_classes=NUM_CLASSES),
        "moda": objectives.moda_objective(num_classes=NUM_CLASSES),
    }[method]


# ----------------------------------------------------------------------------- memory


def _status_kib(field):
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))


def peak_memory_mib(fn, device):
    """Peak memory growth while `fn()` runs: RSS high-water mark on CPU, allocator peak on GPU."""
    if device == "cpu":
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        before = _status_kib("VmRSS")
        fn()
        return (_status_kib("VmHWM") - before) / 1024
    torch.cuda.reset_peak_memory_stats()
    fn()
    return torch.cuda.max_memory_allocated() / 2**20


# ----------------------------------------------------------------------------- the two sides


class Modjax:
    """modjax's jitted train step on a fixed float32 batch (no augmentation on either side)."""

    def __init__(self, name, method, width, batch, *, bf16=False, objective=None, seed=0):
        self.mwt = method == "mwt"
        self.model = models.get_model(
            name, num_classes=NUM_CLASSES, width=width, mask_generators=self.mwt,
            **MODEL_KWARGS[name],
        )  # fmt: skip
        tx = train.make_optimizer(learning_rate=0.05, steps_per_epoch=10**6, num_epochs=1)
        self.state = train.create_train_state(
            model=self.model, tx=tx, seed=seed, image_shape=batch["image"].shape[1:]
        )
        objective = objective or _objective(method)
        if bf16:
            self.step = _bf16_step(self.model, tx, objective)
        else:
            self.step = train.make_train_step(
                model=self.model, tx=tx, objective=objective, preprocess=_identity
            )
        self.batch = jax.device_put(batch)

    def variables(self):
        return jax.device_get(train.variables_of(self.state))

    def __call__(self, n):
        for _ in range(n):
            self.state, metrics = self.step(self.state, self.batch)
        jax.block_until_ready(metrics)


class Torch:
    """The reference train step, eager or `torch.compile`d, on the same batch and weights."""

    def __init__(self, name, method, width, batch, variables, *, device, bf16, compiled=False):
        self.model = torch_ref.get_model(
            name, num_classes=NUM_CLASSES, width=width, mask_generators=method == "mwt"
        )
        weights.load_flax_variables(self.model, variables)
        self.model.to(device)
        self.opt = ref_train.make_optimizer(self.model, lr=0.05)
        self.forward = torch.compile(self.model) if compiled else None
        self.method, self.device, self.bf16 = method, device, bf16
        self.x = torch.from_numpy(np.ascontiguousarray(batch["image"].transpose(0, 3, 1, 2)))
        self.x = self.x.to(device)
        self.y = torch.from_numpy(batch["label"]).long().to(device)

    def __call__(self, n):
        for _ in range(n):
            with torch.autocast(self.device, torch.bfloat16, enabled=self.bf16):
                ref_train.train_step(
                    self.model, self.opt, self.x, self.y, self.method, forward=self.forward
                )
        if self.device == "cuda":
            torch.cuda.synchronize()


# ----------------------------------------------------------------------------- timing


class _Timeout(Exception):
    pass


def first_call(fn, budget_s):
    """Runs `fn(1)` (compile + one step) within `budget_s`; returns (seconds, None) or (None, why)."""

    def on_alarm(signum, frame):
        raise _Timeout(f"compile + first step exceeded {budget_s} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(budget_s))
    t0 = time.perf_counter()
    try:
        fn(1)
        return time.perf_counter() - t0, None
    except Exception as err:  # noqa: BLE001 - any failure is reported, never timed
        text = str(err).strip().splitlines()
        return None, f"{type(err).__name__}: {text[0][:160] if text else ''}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


PAUSE_S = 0.02
"""Idle time before each side's timed run: XLA's and OpenMP's pool threads spin for a while
after their work, and a side started at once competes with them (torch LeNet5 at 2 threads:
1.31x slower right after a JAX round, 1.05x after a 20 ms pause; `torch_calibration.py`)."""


def alternate(fns, rounds, steps, pause=PAUSE_S):
    """Per-step seconds of each side in `rounds` rounds; the order rotates every round, and each
    timed run starts after `pause` seconds of idle."""
    names = list(fns)
    times = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            time.sleep(pause)
            t0 = time.perf_counter()
            fns[n](steps)
            times[n].append((time.perf_counter() - t0) / steps)
    return times


def summarize(times, ref="modjax"):
    """Medians, and for each side the median of its per-round time ratio to `ref`."""
    out = {}
    for n, ts in times.items():
        out[n] = {"median_s": statistics.median(ts), "rounds_s": ts}
        if n != ref:
            out[n]["ratio_to_modjax"] = statistics.median(
                a / b for a, b in zip(ts, times[ref], strict=True)
            )
    return out


# ----------------------------------------------------------------------------- one case


def make_batch(batch_size, seed=0):
    rs = np.random.RandomState(seed)
    return {
        "image": rs.randn(batch_size, 32, 32, 3).astype(np.float32),
        "label": (np.arange(batch_size) % NUM_CLASSES).astype(np.int32)[rs.permutation(batch_size)],
    }


def step_case(name, method, batch_size, args, device):
    """Train-step timing, images/s and peak memory of every side, in alternating rounds."""
    batch = make_batch(batch_size)
    row = {"model": name, "method": method, "batch": batch_size, "failed": {}}
    mj = Modjax(name, method, args.width, batch, bf16=args.bf16)
    sides = {"modjax": mj}
    compile_s = {}
    compile_s["modjax"], why = first_call(mj, args.compile_budget_s)
    if why:
        raise RuntimeError(f"modjax {name}/{method} failed: {why}")
    variables = mj.variables()
    sides["torch"] = Torch(
        name, method, args.width, batch, variables, device=device, bf16=args.bf16
    )
    compile_s["torch"], why = first_call(sides["torch"], args.compile_budget_s)
    if why:
        raise RuntimeError(f"torch eager {name}/{method} failed: {why}")
    if method != "standard" and args.worker_extract:  # the objective's cost: same model, CE only
        sides["modjax_ce"] = Modjax(
            name, method, args.width, batch, bf16=args.bf16, objective=objectives.standard
        )
        compile_s["modjax_ce"], _ = first_call(sides["modjax_ce"], args.compile_budget_s)
    if args.compile:
        tc = Torch(
            name, method, args.width, batch, variables, device=device, bf16=args.bf16,
            compiled=True,
        )  # fmt: skip
        compile_s["torch_compile"], why = first_call(tc, args.compile_budget_s)
        if why is None:
            _, why = first_call(tc, args.compile_budget_s)  # a recompile shows up here
        if why is None:
            sides["torch_compile"] = tc
        else:
            row["failed"]["torch_compile"] = why
    row["compile_s"] = compile_s
    row["peak_mib"] = {n: peak_memory_mib(lambda f=f: f(2), device) for n, f in sides.items()}
    row["memory_kind"] = "RSS high-water growth" if device == "cpu" else "allocator peak"
    row["timing"] = summarize(alternate(sides, args.rounds, args.steps))
    return row, mj, variables


def extraction_case(name, method, mj, variables, args, device):
    """All-class extraction (modjax one pass vs the reference's per-class loop) and composition."""
    n = args.extract_samples
    rs = np.random.RandomState(1)
    xs = rs.randn(n, 32, 32, 3).astype(np.float32)
    ys = (np.arange(n) % NUM_CLASSES).astype(np.int32)
    bs = 128
    host = [{"image": xs[i : i + bs], "label": ys[i : i + bs]} for i in range(0, n, bs)]
    tb = [
        (torch.from_numpy(b["image"].transpose(0, 3, 1, 2).copy()).to(device),
         torch.from_numpy(b["label"]).long().to(device))
        for b in host
    ]  # fmt: skip
    parent = modular.describe_parent(
        name, num_classes=NUM_CLASSES, width=args.width, mask_generators=method == "mwt"
    )
    ref = torch_ref.get_model(
        name, num_classes=NUM_CLASSES, width=args.width, mask_generators=method == "mwt"
    )
    weights.load_flax_variables(ref, variables).to(device).eval()
    dev_vars = jax.device_put(variables)
    out = {"samples": n}
    ext = {}

    def run_modjax(reps):
        for _ in range(reps):
            e = modular.extract_modules(
                host, variables=dev_vars, parent=parent, preprocess=_identity, method=method,
                disable=True,
            )  # fmt: skip
            ext["e"] = e
            ext.setdefault("walls", []).append(e.timing["total_s"] - e.timing["compile_s"])
            ext.setdefault("compile", []).append(e.timing["compile_s"])

    def run_torch(reps):
        for _ in range(reps):
            ext["keep"] = ref_extract.extract_all(ref, tb, NUM_CLASSES, method=method)

    run_modjax(1)
    run_torch(1)
    ext["walls"] = []
    times = alternate({"modjax": run_modjax, "torch": run_torch}, args.extract_rounds, 1)
    # modjax's own wall excludes the count-step compile it repeats on every call
    times["modjax"] = ext["walls"]
    out["timing"] = summarize(times)
    out["modjax_compile_s"] = statistics.median(ext["compile"])
    e, keep = ext["e"], ext["keep"]
    fell = {(f.layer, f.class_id) for f in e.fallbacks}
    differ = sum(
        int((keep[layer][c].cpu().numpy() != m.keep[layer]).sum())
        for c, m in enumerate(e.modules)
        for layer in keep
        if not (method == "moda" and (layer, c) in fell)
    )
    out["keep_units_differing"] = differ
    out["kernel_rate"] = float(np.mean([m.metrics["kernel_rate"] for m in e.modules]))

    # composition of a 5-class task: modjax's fused pruned network vs the reference's
    task = tuple(range(NUM_CLASSES // 2))
    comp = {"task": task}
    if name not in ("lenet5", "simcnn", "vgg16"):
        comp["failed"] = "n/a: torch_ref.compose slices sequential models only"
        out["compose"] = comp
        return out
    composed = modular.compose.compose(
        [e.modules[c] for c in task], {modular.compose.parent_key(e.modules[0].parent): dev_vars}
    )
    x = jax.device_put(xs[:bs])

    def build(num_classes, channels):
        kw = {"batch_norm": True} if (method == "mwt" and name != "vgg16") else {}
        return torch_ref.get_model(
            name, num_classes=num_classes, width=args.width, channels=channels, **kw
        ).to(device)

    pruned, columns = ref_compose.prune(
        ref, ref_compose.union_keep(keep, task), task, method=method, build=build
    )
    tx = tb[0][0]

    def mj_infer(reps):
        for _ in range(reps):
            y = composed.apply_fn(x)
        jax.block_until_ready(y)

    @torch.no_grad()
    def t_infer(reps):
        for _ in range(reps):
            pruned(tx)[0][:, columns]
        if device == "cuda":
            torch.cuda.synchronize()

    mj_infer(1)
    t_infer(1)
    with torch.no_grad():
        diff = np.abs(pruned(tx)[0][:, columns].cpu().numpy() - np.asarray(composed.apply_fn(x)))
    comp["max_abs_logit_diff"] = float(diff.max())
    comp["batch"] = bs
    comp["timing"] = summarize(alternate({"modjax": mj_infer, "torch": t_infer}, args.rounds, 5))
    out["compose"] = comp
    return out


def run(args):
    device = "cuda" if args.scale == "gpu" else "cpu"
    rows = []
    for name in args.models:
        for method in args.methods:
            for b in args.batch_sizes:
                print(f"[threads={args.worker_threads}] {name} {method} batch {b}", flush=True)
                row, mj, variables = step_case(name, method, b, args, device)
                row["threads"] = args.worker_threads
                if method != "standard" and args.worker_extract and b == args.batch_sizes[0]:
                    row["extraction"] = extraction_case(name, method, mj, variables, args, device)
                rows.append(copy.deepcopy(row))
                yield rows
