"""The measuring steps of `benchmarks/device_check.sh` on one accelerator, and its results file.

    python -m benchmarks.device_probe flops --out F.json     # fp32 and bf16 steps: MFU, memory
    python -m benchmarks.device_probe epoch --out E.json --data-dir DATA --workdir W
    python -m benchmarks.device_probe report --log-dir LOG   # benchmarks/results/device_check_*.md

`flops` times modjax's jitted train step (VGG16 and ResNet18 at full width, 32x32 inputs, MODA
objective) in float32 (`train.make_train_step`) and bf16 (compare_torch's `--bf16` recipe: bf16
params and inputs inside the loss, float32 master weights), and reports the model FLOP/s
(6 x forward MACs x batch per step, `models.count_macs`) as a fraction of the device's peak,
XLA's own FLOP count, the step's memory (`memory_analysis`) and the process's peak device memory.
`epoch` trains one epoch of `python -m experiments.reproduce moda --scale paper`'s VGG16 row
(the row's exact settings from `experiments/reproduce/configs/paper.py`, one epoch of its
200-epoch schedule) and records its time, images/s and peak device memory. `report` writes one
Markdown file named after the device from those files, compare_torch's CSVs and the stage log.
Every subcommand takes `--dry-run`: check the arguments and paths, build the configs, run nothing.
"""

import argparse
import csv
import importlib
import json
import pathlib
import re
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAPER = ROOT / "experiments" / "reproduce" / "configs" / "paper.py"

# Dense peak FLOP/s per device kind (NVIDIA data sheets; no structured sparsity). `tf32` is the
# tensor-core rate XLA uses for float32 convs and matmuls at JAX's default precision on GPUs
# since Ampere; `fp32` the CUDA-core rate.
PEAKS = {
    "H100 PCIe": {"bf16": 756e12, "tf32": 378e12, "fp32": 51.2e12},
    "H100": {"bf16": 989.4e12, "tf32": 494.7e12, "fp32": 66.9e12},  # SXM (80GB HBM3)
    "H200": {"bf16": 989.4e12, "tf32": 494.7e12, "fp32": 66.9e12},
    "A100": {"bf16": 312e12, "tf32": 156e12, "fp32": 19.5e12},
}


def peaks_for(kind: str) -> dict | None:
    """The first `PEAKS` entry whose name is in the device kind (most specific first)."""
    return next((v for k, v in PEAKS.items() if k.lower() in kind.lower()), None)


def slug(kind: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", kind.lower()).strip("_") or "unknown"


def _device():
    import jax

    device = jax.devices()[0]
    return device, {
        "platform": device.platform,
        "kind": device.device_kind,
        "count": jax.device_count(),
        "jax": jax.__version__,
        "default_matmul_precision": str(jax.config.jax_default_matmul_precision),
    }


def _peak_bytes(device) -> int | None:
    stats = device.memory_stats() or {}
    return stats.get("peak_bytes_in_use")


# ----------------------------------------------------------------------------- flops


def _steps(name: str, batch: int, method: str):
    """`{dtype: (jitted step, state, batch)}` for one model (float32 and bf16)."""
    import jax
    import numpy as np

    from benchmarks._bf16 import bf16_step  # compare_torch's bf16 recipe
    from modjax import models, objectives, train

    objective = {
        "standard": objectives.standard,
        "mwt": objectives.mwt_objective(num_classes=10),
        "moda": objectives.moda_objective(num_classes=10),
    }[method]
    model = models.get_model(name, num_classes=10, width=1.0, mask_generators=method == "mwt")
    tx = train.make_optimizer(learning_rate=0.05, steps_per_epoch=10**6, num_epochs=1)
    rs = np.random.RandomState(0)
    data = jax.device_put(
        {
            "image": rs.randn(batch, 32, 32, 3).astype(np.float32),
            "label": (np.arange(batch) % 10).astype(np.int32),
        }
    )
    out = {}
    for dtype in ("float32", "bfloat16"):
        state = train.create_train_state(model=model, tx=tx, seed=0, image_shape=(32, 32, 3))
        if dtype == "float32":
            step = train.make_train_step(
                model=model, tx=tx, objective=objective, preprocess=lambda x, rng: x
            )
        else:
            step = bf16_step(model, tx, objective)
        out[dtype] = (step, state, data)
    macs = models.count_macs(model, (32, 32, 3))
    return out, macs


def flops(args) -> dict:
    import jax

    device, info = _device()
    peaks = peaks_for(info["kind"])
    rows = []
    for name in args.models:
        steps, macs = _steps(name, args.batch_size, args.method)
        for dtype, (step, state, data) in steps.items():
            compiled = step.lower(state, data).compile()
            cost = compiled.cost_analysis() or {}
            cost = cost[0] if isinstance(cost, list) else cost
            mem = compiled.memory_analysis()
            t0 = time.perf_counter()
            state, metrics = step(state, data)
            jax.block_until_ready(metrics)
            first_s = time.perf_counter() - t0
            times = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    state, metrics = step(state, data)
                jax.block_until_ready(metrics)
                times.append((time.perf_counter() - t0) / args.steps)
            median = statistics.median(times)
            model_flops = 6 * macs * args.batch_size
            row = {
                "model": name,
                "method": args.method,
                "dtype": dtype,
                "batch": args.batch_size,
                "step_ms": 1e3 * median,
                "images_per_s": args.batch_size / median,
                "first_step_s": first_s,
                "model_flops_per_step": model_flops,
                "xla_flops_per_step": cost.get("flops"),
                "achieved_tflops": model_flops / median / 1e12,
                "step_memory_mib": None
                if mem is None
                else (mem.temp_size_in_bytes + mem.argument_size_in_bytes) / 2**20,
                "process_peak_mib": (_peak_bytes(device) or 0) / 2**20 or None,
                "loss_finite": bool(jax.numpy.isfinite(metrics["loss"])),
            }
            if peaks:
                rates = ("bf16",) if dtype == "bfloat16" else ("tf32", "fp32")
                for r in rates:
                    row[f"fraction_of_{r}_peak"] = model_flops / median / peaks[r]
            rows.append(row)
            print(json.dumps(row), flush=True)
            del state
    return {"device": info, "peaks": peaks, "rows": rows}


# ----------------------------------------------------------------------------- epoch


def paper_row(data_dir: str | None):
    """The `moda` table's VGG16 row at paper scale, one epoch of its schedule."""
    reproduce = importlib.import_module("experiments.reproduce.__main__")
    from modjax.runs import config as config_lib

    cfg = reproduce.load_scale(PAPER, "moda")
    model = next(m for m in cfg["models"]["moda"] if m.startswith("vgg16"))
    values = {**reproduce.row(cfg, model, "moda"), "seed": 0, "data_dir": data_dir}
    values["num_epochs"] = 1  # t_max stays the paper's 200: the first epoch of its schedule
    return config_lib.from_dict(values, source="paper.py (device check: 1 epoch)")


def epoch(args) -> dict:
    from modjax.runs import training

    device, info = _device()
    config = paper_row(args.data_dir)
    t0 = time.perf_counter()
    summary = training.train_and_evaluate(config, args.workdir, progress=False)
    wall = time.perf_counter() - t0
    log = summary["epochs_log"][0]
    images = summary["steps"] * config.global_batch_size
    return {
        "device": info,
        "config": config.to_json(),
        "wall_s": wall,
        "epoch_time_s": log["epoch_time_s"],
        "compile_time_s": summary.get("compile_time_s"),
        "steps": summary["steps"],
        "images_per_s_incl_compile": images / log["epoch_time_s"],
        "images_per_s_excl_compile": images
        / (log["epoch_time_s"] - (summary.get("compile_time_s") or 0)),
        "test_accuracy": summary["test_accuracy"],
        "process_peak_mib": (_peak_bytes(device) or 0) / 2**20 or None,
        "tensorflow_imported": "tensorflow" in sys.modules,
    }


# ----------------------------------------------------------------------------- report


def _stages(log_dir: pathlib.Path) -> list[list[str]]:
    path = log_dir / "stages.tsv"
    return [line.split("\t") for line in path.read_text().splitlines()] if path.exists() else []


def _json(path: pathlib.Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _compare_rows(tags: list[str]) -> list[dict]:
    rows = []
    for tag in tags:
        path = RESULTS / f"compare_torch_gpu_{tag}.csv"
        if path.exists():
            rows += [r for r in csv.DictReader(path.open()) if r["what"] == "train_step"]
    return rows


def _fmt(x, spec=".1f"):
    return "–" if x in (None, "") else format(float(x), spec)


def report(args) -> pathlib.Path:
    log = pathlib.Path(args.log_dir)
    fl, ep = _json(log / "flops.json"), _json(log / "epoch.json")
    device = (fl or ep or {}).get("device") or {"kind": args.device_kind or "unknown"}
    peaks = peaks_for(device["kind"])
    out = (
        pathlib.Path(args.out) if args.out else RESULTS / f"device_check_{slug(device['kind'])}.md"
    )
    lines = [
        f"# Device check: {device['kind']}",
        "",
        f"`bash benchmarks/device_check.sh` on {device['kind']} x {device.get('count', '?')} "
        f"({device.get('platform', '?')}), JAX {device.get('jax', '?')}, default matmul "
        f"precision {device.get('default_matmul_precision', '?')}; written "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "## Stages",
        "",
        "| stage | exit status | seconds | last line |",
        "|---|---|---|---|",
    ]
    for name, rc, seconds, *rest in _stages(log):
        lines.append(f"| {name} | {rc} | {seconds} | {' '.join(rest)[:120]} |")
    lines += ["", "## Train step, fp32 and bf16 (modjax, `device_probe flops`)", ""]
    if fl:
        lines += [
            "| model | method | dtype | batch | ms/step | images/s | TFLOP/s | of peak | "
            "step memory MiB | process peak MiB |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in fl["rows"]:
            frac = (
                f"{100 * r['fraction_of_bf16_peak']:.1f}% bf16"
                if "fraction_of_bf16_peak" in r
                else f"{100 * r['fraction_of_tf32_peak']:.1f}% tf32, "
                f"{100 * r['fraction_of_fp32_peak']:.1f}% fp32"
                if "fraction_of_tf32_peak" in r
                else "– (no peak known)"
            )
            lines.append(
                f"| {r['model']} | {r['method']} | {r['dtype']} | {r['batch']} | "
                f"{r['step_ms']:.2f} | {r['images_per_s']:.0f} | {r['achieved_tflops']:.2f} | "
                f"{frac} | {_fmt(r['step_memory_mib'], '.0f')} | "
                f"{_fmt(r['process_peak_mib'], '.0f')} |"
            )
        lines += [
            "",
            "Model FLOPs: 6 x forward MACs x batch (`modjax.models.count_macs`); peaks "
            f"(dense): {json.dumps(peaks)}.",
        ]
    else:
        lines.append("not measured (see the stage table)")
    lines += ["", "## modjax vs PyTorch (`compare_torch.py --scale gpu`, float32)", ""]
    compare = _compare_rows(args.compare_tags)
    if compare:
        from modjax import models

        lines += [
            "| model | method | batch | side | ms/step | images/s | of tf32 peak |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in compare:
            frac = "–"
            if peaks and r["median_ms"]:
                macs = models.count_macs(models.get_model(r["model"], width=1.0), (32, 32, 3))
                rate = 6 * macs * int(r["batch"]) / (float(r["median_ms"]) / 1e3)
                frac = f"{100 * rate / peaks['tf32']:.1f}%"
            lines.append(
                f"| {r['model']} | {r['method']} | {r['batch']} | {r['side']} | "
                f"{_fmt(r['median_ms'], '.2f')} | {_fmt(r['images_per_s'], '.0f')} | {frac} |"
            )
        tags = ", ".join(f"`compare_torch_gpu_{t}.md`" for t in args.compare_tags)
        lines += ["", f"Full tables (compile times, ratios, extraction): {tags}."]
    else:
        lines.append("not measured (see the stage table)")
    lines += [
        "",
        "## One paper-scale epoch (`experiments.reproduce moda --scale paper`, VGG16)",
        "",
    ]
    if ep:
        lines += [
            f"- settings: `{json.dumps(ep['config'], sort_keys=True)}`",
            f"- epoch {ep['epoch_time_s']:.1f} s ({ep['steps']} steps; compile "
            f"{_fmt(ep['compile_time_s'])} s included), {ep['images_per_s_excl_compile']:.0f} "
            "images/s after compiling",
            f"- peak device memory {_fmt(ep['process_peak_mib'], '.0f')} MiB; test accuracy "
            f"after the epoch {100 * ep['test_accuracy']:.2f}%; TensorFlow imported: "
            f"{'yes' if ep['tensorflow_imported'] else 'no'}",
        ]
    else:
        lines.append("not measured (see the stage table)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


# ----------------------------------------------------------------------------- command line


def _parse(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.device_probe",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("flops", help="fp32 and bf16 train steps: time, FLOP/s, memory")
    f.add_argument("--models", nargs="+", default=["vgg16", "resnet18"])
    f.add_argument("--method", choices=("standard", "mwt", "moda"), default="moda")
    f.add_argument("--batch-size", type=int, default=512)
    f.add_argument("--rounds", type=int, default=5)
    f.add_argument("--steps", type=int, default=10)
    f.add_argument("--out", required=True, help="JSON file")
    e = sub.add_parser("epoch", help="one paper-scale epoch of the moda table's VGG16 row")
    e.add_argument("--data-dir", help="where CIFAR-10 is (default: $MODJAX_DATA_DIR)")
    e.add_argument("--workdir", required=True, help="a fresh directory for the run")
    e.add_argument("--out", required=True, help="JSON file")
    r = sub.add_parser("report", help="the results file from the stage outputs")
    r.add_argument("--log-dir", required=True, help="device_check.sh's log directory")
    r.add_argument("--compare-tags", nargs="*", default=[], help="compare_torch --tag values")
    r.add_argument("--device-kind", help="the device's name when no stage recorded it")
    r.add_argument("--out", help="default: benchmarks/results/device_check_<device>.md")
    for p in (f, e, r):
        p.add_argument("--dry-run", action="store_true", help="check, run nothing")
    return parser, parser.parse_args(argv)


def _check(parser, args) -> None:
    """Refuses bad values and missing paths before any work (one line, status 2)."""
    if args.command == "flops":
        from modjax import models

        bad = [m for m in args.models if m not in models.MODEL_NAMES]
        if bad:
            parser.error(f"--models {bad}: not in the zoo ({sorted(models.MODEL_NAMES)})")
        if args.batch_size < 2 or args.rounds < 1 or args.steps < 1:
            parser.error("--batch-size must be >= 2, --rounds and --steps >= 1")
    if args.command == "epoch":
        if args.data_dir and not pathlib.Path(args.data_dir).is_dir():
            parser.error(f"--data-dir {args.data_dir} is not a directory")
        paper_row(args.data_dir)  # the row's settings validate
        if pathlib.Path(args.workdir).exists() and any(pathlib.Path(args.workdir).iterdir()):
            parser.error(f"--workdir {args.workdir} is not empty; give a fresh directory")
    if args.command == "report" and not pathlib.Path(args.log_dir).is_dir():
        parser.error(f"--log-dir {args.log_dir} is not a directory")
    out = getattr(args, "out", None)
    if out and not pathlib.Path(out).resolve().parent.is_dir():
        parser.error(f"--out {out}: its directory does not exist")


def main(argv=None) -> int:
    parser, args = _parse(argv)
    _check(parser, args)
    if args.dry_run:
        if args.command == "flops":
            importlib.import_module("benchmarks._bf16")  # the bf16 step imports
        print(f"device_probe {args.command}: arguments and paths OK (dry run)")
        return 0
    if args.command == "report":
        print(report(args))
        return 0
    value = flops(args) if args.command == "flops" else epoch(args)
    pathlib.Path(args.out).write_text(json.dumps(value, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
