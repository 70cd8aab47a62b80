"""Writes `compare_torch.py`'s results: Markdown table, CSV and a bar plot."""

import csv
import json
import math

from benchmarks import torch_calibration

NAMES = {"modjax": "modjax", "torch": "torch eager", "torch_compile": "torch.compile"}
OVERHEAD_GOAL = 0.10
EXTRACTION_GOAL = 10.0


def _ms(row, side):
    t = row["timing"].get(side)
    return None if t is None else 1e3 * t["median_s"]


def _fmt(x, spec=".1f"):
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _side_cell(row, side, spec=".1f", scale=1.0):
    if side in row["failed"]:
        return f"failed: {row['failed'][side]}"
    ms = _ms(row, side)
    return _fmt(None if ms is None else ms * scale, spec)


def calibration_status(rows, info):
    """`{(model, threads): None or why its ratios are withheld}` from the standard rows' torch
    times against `info["calibration"]` (plain PyTorch in a fresh process without JAX)."""
    cal = info.get("calibration")
    out = {}
    for r in rows:
        key = (r["model"], r["threads"])
        if cal is None:
            out[key] = None  # a GPU run: no CPU calibration applies
            continue
        c = cal.get(f"{r['model']}@{r['threads']}")
        if c is None or "failed" in c:
            out[key] = f"calibration failed: {c['failed'] if c else 'not run'}"
        elif r["method"] == "standard":
            out[key] = torch_calibration.check(_ms(r, "torch"), c["ms"])
        else:
            out.setdefault(key, None)
    return out


def _ratio_cell(status, r, ratio, spec=".2f", bold=True):
    why = status.get((r["model"], r["threads"]))
    if why is not None:
        return "withheld (uncalibrated)"
    return f"**{ratio:{spec}}**" if bold else f"{ratio:{spec}}"


def flat_rows(rows):
    out = []
    for r in rows:
        base = {k: r[k] for k in ("model", "method", "batch", "threads")}
        for side in ("modjax", "torch", "torch_compile", "modjax_ce"):
            t = r["timing"].get(side)
            out.append({
                **base, "what": "train_step", "side": side,
                "median_ms": None if t is None else 1e3 * t["median_s"],
                "images_per_s": None if t is None else r["batch"] / t["median_s"],
                "time_ratio_to_modjax": None if t is None else t.get("ratio_to_modjax"),
                "peak_mib": r["peak_mib"].get(side), "memory_kind": r["memory_kind"],
                "compile_s": r["compile_s"].get(side), "failed": r["failed"].get(side, ""),
            })  # fmt: skip
        e = r.get("extraction")
        if e:
            for side, t in e["timing"].items():
                out.append({**base, "what": "extraction_all_classes", "side": side,
                            "median_ms": 1e3 * t["median_s"],
                            "time_ratio_to_modjax": t.get("ratio_to_modjax")})  # fmt: skip
            c = e["compose"]
            for side, t in c.get("timing", {}).items():
                out.append({**base, "what": "composed_inference", "side": side,
                            "median_ms": 1e3 * t["median_s"],
                            "images_per_s": c["batch"] / t["median_s"],
                            "time_ratio_to_modjax": t.get("ratio_to_modjax")})  # fmt: skip
            if "failed" in c:
                out.append({**base, "what": "composed_inference", "side": "torch",
                            "failed": c["failed"]})  # fmt: skip
    return out


def write(rows, info, args, stem):
    stem.parent.mkdir(parents=True, exist_ok=True)
    flat = flat_rows(rows)
    fields = ["model", "method", "batch", "threads", "what", "side", "median_ms", "images_per_s",
              "time_ratio_to_modjax", "peak_mib", "memory_kind", "compile_s", "failed"]  # fmt: skip
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(flat)
    m, v = info["machine"], info["versions"]
    gpu_note = (
        "No GPU on this machine: the GPU settings (`--scale gpu`: width 1.0, batches 128 and 512, "
        "`--bf16`) are implemented but were not run."
        if args.scale == "cpu"
        else "GPU run."
    )
    lines = [
        f"# modjax vs the PyTorch reference ({args.scale} scale)",
        "",
        f"- Machine: `{m['host']}`, {m['cpu']}, {m['cores']} cores, {m['mem_gib']:.0f} GiB RAM; "
        f"{m['os']}.",
        "- Versions: " + ", ".join(f"{k} {x}" for k, x in v.items()) + ".",
        f"- Command: `python -m benchmarks.compare_torch {' '.join(info['argv'])}` "
        f"({info['started']}).",
        f"- Width {args.width}, batch {args.batch_sizes}, 32×32×3 float32 inputs, 10 classes, "
        f"thread counts {info['threads']} (each a worker pinned to that many cores; torch "
        f"`set_num_threads` equal, `OMP_WAIT_POLICY={info['omp_wait_policy']}`). SGD-Nesterov lr 0.05; no augmentation on either side.",
        f"- {args.rounds} alternating rounds × {args.steps} steps per side (the order rotates every "
        "round); times are medians, **ratios are medians of per-round ratios** "
        "(torch time ÷ modjax time: > 1 means modjax is faster).",
        f"- Load: 1-min load average {info['load_before'][0]:.1f} before and "
        f"{info['load_after'][0]:.1f} after on {m['cores']} cores. {_load_note(info, m)}",
        "- Peak memory: growth of the process's RSS high-water mark (`/proc/self/status` VmHWM "
        "after `clear_refs`) over 2 steps of one side, after its warm-up: memory the side needs "
        "beyond what the process already holds (allocators keep freed memory, so ≈ 0 means the "
        "working set was already resident), not the working set itself; on GPU the allocator "
        "peak.",
        f"- {gpu_note}",
    ]
    if info["failures"]:
        lines += ["", "**Incomplete:** " + "; ".join(info["failures"])]
    lines += [
        "",
        "## Train step",
        "",
        "| model | method | batch | threads | modjax ms | torch eager ms | torch.compile ms "
        "| modjax img/s | torch eager img/s | torch/modjax | compile/modjax "
        "| peak MiB modjax / torch / compile | compile s modjax / torch.compile |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    status = calibration_status(rows, info)
    for r in rows:
        t = r["timing"]
        ratio = t["torch"]["ratio_to_modjax"]
        cratio = t["torch_compile"]["ratio_to_modjax"] if "torch_compile" in t else None
        if status.get((r["model"], r["threads"])) is not None:
            cratio = None
        peak = " / ".join(_fmt(r["peak_mib"].get(s), ".0f") for s in NAMES)
        comp = f"{_fmt(r['compile_s'].get('modjax'))} / {_fmt(r['compile_s'].get('torch_compile'))}"
        lines.append(
            f"| {r['model']} | {r['method']} | {r['batch']} | {r['threads']} | "
            f"{_side_cell(r, 'modjax')} | {_side_cell(r, 'torch')} | "
            f"{_side_cell(r, 'torch_compile')} | {r['batch'] / t['modjax']['median_s']:.0f} | "
            f"{r['batch'] / t['torch']['median_s']:.0f} | {_ratio_cell(status, r, ratio)} | "
            f"{_fmt(cratio, '.2f')} | {peak} | {comp} |"
        )
    lines += _calibration(rows, info, status)
    lines += _overhead(rows) + _extraction(rows, status) + _goals(rows, info, status)
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    stem.with_suffix(".json").write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    _plot(rows, stem.with_suffix(".png"))
    print("\n".join(lines))
    print(f"wrote {stem}.md/.csv/.json/.png")


def _calibration(rows, info, status):
    cal = info.get("calibration")
    if cal is None:
        return ["", "No CPU calibration (a GPU run): torch eager is the harness's own step."]
    out = ["", "## Calibration against plain PyTorch", "",
           "Plain PyTorch: the same reference network's CE step in a fresh process that imports "
           "neither JAX nor modjax, default OpenMP policy, no pinning (`benchmarks/"
           "torch_calibration.py`). A (model, threads) whose in-harness torch step (standard "
           f"method) is more than {torch_calibration.TOLERANCE:.2f}x slower gets no ratios.", "",
           "| model | threads | plain PyTorch ms | in-harness torch ms | harness ÷ plain | status |",
           "|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for r in rows:
        if r["method"] != "standard":
            continue
        c = cal.get(f"{r['model']}@{r['threads']}", {})
        why = status.get((r["model"], r["threads"]))
        plain = c.get("ms")
        ms = _ms(r, "torch")
        out.append(
            f"| {r['model']} | {r['threads']} | {_fmt(plain, '.2f')} | {ms:.2f} | "
            f"{_fmt(None if plain is None else ms / plain, '.2f')} | "
            f"{'ok' if why is None else why} |"
        )
    return out


def _load_note(info, machine):
    """Whether other jobs shared the machine: a load above the cores the benchmark uses."""
    if max(info["load_before"][0], info["load_after"][0]) > machine["cores"] + 0.5:
        return (
            "Other jobs shared this machine, so absolute times are pessimistic; the ratios come "
            "from alternating rounds in one process and are the figures to read."
        )
    return "No other jobs ran (the load is the benchmark's own workers)."


def _overhead(rows):
    out = ["", "## Cost of the modular objective (modjax, same model with CE only)", "",
           "Overhead = median over rounds of (modular step ÷ CE-only step) − 1, both timed in the "
           "same alternating rounds.", "",
           "| model | method | threads | modular step ms | CE-only step ms | overhead |",
           "|---|---|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        ce = r["timing"].get("modjax_ce")
        if ce is None:
            continue
        over = _overhead_of(r)
        out.append(
            f"| {r['model']} | {r['method']} | {r['threads']} | "
            f"{1e3 * r['timing']['modjax']['median_s']:.1f} | {1e3 * ce['median_s']:.1f} | "
            f"{100 * over:+.1f}% |"
        )
    return out


def _overhead_of(row):
    """Median over rounds of modular ÷ CE-only step time, minus 1."""
    t = row["timing"]
    pairs = zip(t["modjax"]["rounds_s"], t["modjax_ce"]["rounds_s"], strict=True)
    return sorted(a / b for a, b in pairs)[len(t["modjax"]["rounds_s"]) // 2] - 1


def _extraction(rows, status):
    out = ["", "## Extraction of all class modules and composed-model inference", "",
           "Extraction: modjax `extract_modules` (one jitted counting pass, compile excluded and "
           "shown apart) vs the reference (eager inference pass, then the per-class loop). "
           "Composition: a 5-class task (classes 0–4), one batch of 128, eval mode; modjax "
           "`compose` (fused pruned network, jitted) vs the reference's sliced network. The "
           "parent is barely trained (the timed steps only), so modules keep most units.", "",
           "| model | method | threads | samples | modjax s (compile s) | reference s | ref/modjax "
           "| keep units differing | mean kernel rate | composed modjax img/s | composed torch img/s "
           "| torch/modjax | max logit diff |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        e = r.get("extraction")
        if not e:
            continue
        t, c = e["timing"], e["compose"]
        if "timing" in c:
            ct = c["timing"]
            comp = (f"{c['batch'] / ct['modjax']['median_s']:.0f} | "
                    f"{c['batch'] / ct['torch']['median_s']:.0f} | "
                    f"{_ratio_cell(status, r, ct['torch']['ratio_to_modjax'], bold=False)} | "
                    f"{c['max_abs_logit_diff']:.1e}")  # fmt: skip
        else:
            comp = f"{c['failed']} | – | – | –"
        out.append(
            f"| {r['model']} | {r['method']} | {r['threads']} | {e['samples']} | "
            f"{t['modjax']['median_s']:.2f} ({e['modjax_compile_s']:.1f}) | "
            f"{t['torch']['median_s']:.2f} | "
            f"{_ratio_cell(status, r, t['torch']['ratio_to_modjax'], '.1f')} | "
            f"{e['keep_units_differing']} | {e['kernel_rate']:.2f} | {comp} |"
        )
    return out


def _goals(rows, info, status):
    out = ["", "## Goals", ""]
    eq = [r for r in rows if status.get((r["model"], r["threads"])) is None]
    withheld = len(rows) - len(eq)
    if withheld:
        out.append(
            f"- **{withheld} of {len(rows)} cases have no ratio:** their in-harness torch step "
            "did not match plain PyTorch (see Calibration); they count as neither met nor missed."
        )
    slow = [r for r in eq if r["timing"]["torch"]["ratio_to_modjax"] < 1]
    out.append(
        f"- **modjax ≥ torch eager at equal threads:** met in {len(eq) - len(slow)} of {len(eq)} "
        "(model, method, threads) cases"
        + (": not met for " + ", ".join(
            f"{r['model']}/{r['method']}@{r['threads']}t "
            f"({r['timing']['torch']['ratio_to_modjax']:.2f})" for r in slow) if slow else "")
        + "."
    )  # fmt: skip
    over = [(r, _overhead_of(r)) for r in rows if "modjax_ce" in r["timing"]]
    bad = [(r, o) for r, o in over if o >= OVERHEAD_GOAL]
    out.append(
        f"- **Modular objective adds < {100 * OVERHEAD_GOAL:.0f}% to a CE step:** met in "
        f"{len(over) - len(bad)} of {len(over)} cases"
        + (": not met for " + ", ".join(
            f"{r['model']}/{r['method']}@{r['threads']}t ({100 * o:+.0f}%)" for r, o in bad)
           if bad else "") + "."
    )  # fmt: skip
    ex = [r for r in eq if r.get("extraction")]
    exb = [r for r in ex if r["extraction"]["timing"]["torch"]["ratio_to_modjax"] < EXTRACTION_GOAL]
    out.append(
        f"- **Extraction ≥ {EXTRACTION_GOAL:.0f}× faster than the per-class loop:** met in "
        f"{len(ex) - len(exb)} of {len(ex)} cases"
        + (": not met for " + ", ".join(
            f"{r['model']}/{r['method']} ({r['extraction']['timing']['torch']['ratio_to_modjax']:.1f}×)"
            for r in exb) if exb else "") + "."
    )  # fmt: skip
    return out


def _plot(rows, path):
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return
    threads = sorted({r["threads"] for r in rows})
    fig, axes = plt.subplots(1, len(threads), figsize=(6 * len(threads), 4), squeeze=False)
    for ax, t in zip(axes[0], threads):
        rs = [r for r in rows if r["threads"] == t]
        labels = [f"{r['model']}\n{r['method']}" for r in rs]
        for i, side in enumerate(NAMES):
            vals = [_ms(r, side) or 0.0 for r in rs]
            ax.bar([j + 0.27 * (i - 1) for j in range(len(rs))], vals, 0.27, label=NAMES[side])
        ax.set_xticks(range(len(rs)), labels, fontsize=7)
        ax.set_ylabel("train step (ms, median)")
        ax.set_title(f"{t} thread(s)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
