"""Every zoo model trains from `modjax train` with its default recipe: finite, falling loss.

Each model trains a few epochs on 256 embedded digits (upscaled to 32 px for the CNNs) at the
default optimizer settings (SGD 0.05, momentum 0.9, the model's default init: Fixup-style for the
no-BN ResNets), at a reduced width so that all of them fit a CPU. The same examples every epoch,
so the loss must fall.

    python benchmarks/zoo_smoke.py                      # every model, a table
    python benchmarks/zoo_smoke.py --models resnet110_nobn vgg16 --out results.md

`tests/models/test_zoo_trains.py` runs `smoke` on one model of each architecture.
"""

import argparse
import contextlib
import io
import json
import pathlib
import sys
import tempfile
import time

import numpy as np

WIDTH = {"mlp": 1.0}  # every other model: 0.25
EPOCHS = 4


def smoke(model: str, workdir: pathlib.Path, *, width: float | None = None) -> dict:
    """Trains `model` on 256 digits for `EPOCHS` epochs through the CLI; returns the losses."""
    from modjax.cli import main

    width = WIDTH.get(model, 0.25) if width is None else width
    args = ["train", "--model", model, "--dataset", "digits", "--train-examples", "256",
            "--global-batch-size", "32", "--num-epochs", str(EPOCHS), "--log-every", "1",
            "--eval-every", str(EPOCHS), "--checkpoint-every", "1000", "--width", str(width),
            "--num-devices", "1", "--no-progress", "--workdir", str(workdir)]  # fmt: skip
    if model != "mlp":
        args += ["--image-size", "32"]
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    seconds = time.perf_counter() - t0
    if code != 0:
        return {"model": model, "ok": False, "error": f"exit status {code}", "seconds": seconds}
    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    losses = np.array([r["loss"] for r in lines if r["kind"] == "train"], np.float64)
    spe = len(losses) // EPOCHS
    first, last = losses[:spe].mean(), losses[-spe:].mean()  # first and last epoch
    summary = json.loads((workdir / "summary.json").read_text())
    return {
        "model": model,
        "width": width,
        "steps": len(losses),
        "first_epoch_loss": float(first),
        "last_epoch_loss": float(last),
        "finite": bool(np.isfinite(losses).all()),
        "falls": bool(last < first),
        "test_accuracy": summary["test_accuracy"],
        "ok": bool(np.isfinite(losses).all() and last < first),
        "seconds": seconds,
    }


def main(argv=None) -> int:
    from modjax import models

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", nargs="+", default=list(models.MODEL_NAMES), help="default: every zoo model"
    )
    parser.add_argument("--out", help="write the table (markdown) to this file")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models) - set(models.MODEL_NAMES))
    if unknown:
        parser.error(f"unknown models {unknown}; expected some of {list(models.MODEL_NAMES)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            row = smoke(name, pathlib.Path(tmp) / name)
            rows.append(row)
            print(json.dumps(row), flush=True)
    import jax

    head = "| model | width | steps | loss, first epoch | loss, last epoch | finite and falls | test acc | s |"
    lines = [
        f"Every zoo model trained by `modjax train` with its default recipe (`benchmarks/zoo_smoke.py`): "
        f"256 digits, batch 32, {EPOCHS} epochs; JAX {jax.__version__}, {jax.devices()[0].platform}.",
        "",
        head,
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "steps" not in r:
            lines.append(
                f"| {r['model']} | – | – | – | – | no: {r['error']} | – | {r['seconds']:.0f} |"
            )
            continue
        lines.append(
            f"| {r['model']} | {r['width']} | {r['steps']} | {r['first_epoch_loss']:.3f} | "
            f"{r['last_epoch_loss']:.3f} | {'yes' if r['ok'] else 'NO'} | "
            f"{r['test_accuracy']:.3f} | {r['seconds']:.0f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        pathlib.Path(args.out).write_text(text)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
