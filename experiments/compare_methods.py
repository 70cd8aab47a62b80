"""Train one config with standard, MwT and MODA objectives and tabulate accuracy and cost.

Run: python experiments/compare_methods.py --config experiments/configs/methods_cifar10.py \
         --data-dir ../shared/datasets --workdir runs/methods_cifar10
Writes <workdir>/<method>/ (each a normal `modjax train` workdir) and <workdir>/methods.md with
test accuracy, MwT mean batch-mask kernel rate, and per-epoch wall time relative to standard
training (median epoch time, first epoch excluded when there are several: it holds compilation).
"""

import argparse
import dataclasses
import json
import pathlib
import statistics

import jax

from modjax.runs import config as config_lib
from modjax.runs import report, training

METHODS = config_lib.METHODS


def _epoch_time(summary):
    times = [e["epoch_time_s"] for e in summary["epochs_log"]]
    return statistics.median(times[1:] if len(times) > 1 else times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="experiment config (get_config())")
    parser.add_argument("--workdir", required=True, help="output directory")
    parser.add_argument("--data-dir", help="dataset directory (default: $MODJAX_DATA_DIR)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args()

    base = config_lib.load_config_file(args.config)
    if args.data_dir:
        base["data_dir"] = args.data_dir
    workdir = pathlib.Path(args.workdir)
    rows = []
    for method in args.methods:
        config = config_lib.from_dict({**base, "method": method}, source=args.config)
        summary = training.train_and_evaluate(config, workdir / method, progress=args.progress)
        last = summary["epochs_log"][-1]
        rows.append(
            {
                "method": method,
                "test_accuracy": summary["test_accuracy"],
                "train_loss": last.get("train_loss"),
                "kernel_rate": last.get("train_kernel_rate"),
                "epoch_time_s": _epoch_time(summary),
                "compile_time_s": summary["compile_time_s"],
            }
        )
    if "standard" in args.methods:
        ref = next(r["epoch_time_s"] for r in rows if r["method"] == "standard")
        for r in rows:
            r["time_vs_standard"] = r["epoch_time_s"] / ref
    columns = [
        "method",
        "test_accuracy",
        "train_loss",
        "kernel_rate",
        "epoch_time_s",
        "time_vs_standard",
        "compile_time_s",
    ]
    cfg = dataclasses.asdict(config_lib.from_dict(base))
    device = jax.devices()[0]
    text = "\n".join(
        [
            f"# {cfg['model']} (width {cfg['width']}) on {cfg['dataset']}: standard vs MwT vs MODA",
            "",
            f"{cfg['num_epochs']} epochs, {cfg['train_examples'] or 'all'} training examples, batch "
            f"{cfg['global_batch_size']}, SGD {cfg['learning_rate']} Nesterov, per-epoch cosine. "
            f"Device: {device.platform} ({device.device_kind}), {jax.device_count()} device(s), "
            f"JAX {jax.__version__}. kernel_rate = mean over layers of the fraction of batch masks "
            "> 0 (MwT, last epoch). Epoch time is the median epoch wall time without the first "
            "(compiling) epoch.",
            "",
            "```",
            report.format_table(rows, columns),
            "```",
        ]
    )
    (workdir / "methods.md").write_text(text + "\n")
    (workdir / "methods.json").write_text(json.dumps(rows, indent=2))
    print(text)


if __name__ == "__main__":
    main()
