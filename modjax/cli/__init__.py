"""The `modjax` command: train, modularize, decompose, compose and manage data (`modjax --help`)."""

import argparse
import faulthandler
import logging
import signal
import sys

import jax

from modjax import data, models
from modjax.cli import compare_cmd, decompose_cmd, deeparc_cmd, flags, modules_cmd, pipeline_cmd
from modjax.cli.flags import add_bool_flag
from modjax.modules import jsonrules, registry
from modjax.runs import cluster, compose, profiling, report, training, wandb_log
from modjax.runs import config as config_lib
from modjax.runs.config import FIELDS, TrainConfig

# Help text of every TrainConfig setting, shown by `modjax train --help`. `_add_config_flags`
# appends "(default: VALUE)"; a setting whose default is None says what None means here instead.
# `method` is not here: its help lists the registered objectives (`_method_help`).
HELP = {
    "model": "architecture: " + ", ".join(models.MODEL_NAMES) + " (the CIFAR ResNet-v1 "
    "`resnet{depth}`, `_nobn` without BatchNorm and with Fixup-style init)",
    "dataset": "dataset name (TFDS naming): digits (embedded, no files needed), mnist, "
    "fashion_mnist, kmnist, emnist/letters, cifar10, cifar100, svhn_cropped",
    "width": "channel/unit multiplier; 1.0 is the paper architecture, e.g. 0.25 for CPU runs",
    "depth": "mlp: number of hidden layers of 49 ReLU units, 1-4 (4 when unset); resnet_cifar: "
    "6n+2 (20 when unset); other models take none",
    "num_epochs": "epochs to train (the papers use 200)",
    "global_batch_size": "batch size summed over all devices and processes (must divide by both)",
    "learning_rate": "peak SGD learning rate",
    "mask_learning_rate": "learning rate of MwT mask generators (default: learning_rate)",
    "momentum": "SGD momentum",
    "nesterov": "Nesterov momentum",
    "weight_decay": "L2 weight decay added to the gradient",
    "schedule": "cosine (per epoch, PyTorch CosineAnnealingLR) or constant",
    "t_max": "cosine period in epochs (default: num_epochs)",
    "seed": "seed of initialization, data order and augmentation",
    "augment": "random crop + flip on device (default: the dataset's convention)",
    "normalize": "subtract the dataset mean and divide by its std",
    "image_size": "resize images to SIZE x SIZE on device, e.g. 32 to run MNIST through CNNs "
    "(default: no resizing)",
    "train_examples": "train on a seeded random subset of this many examples "
    "(default: the whole split)",
    "validation_split": "hold out this share of the training examples, stratified by class "
    "and seeded by --seed, as a validation set in (0, 0.5]: selections made after training "
    "(`modjax shrink`'s removal search) use it, never the test set; 0 holds out nothing and "
    "they use training images (task-module fine-tuning always selects its epoch on its own "
    "10%% split of the training images)",
    "data_dir": "dataset directory (default: $MODJAX_DATA_DIR)",
    "backend": "auto (raw files, else TFDS), raw or tfds",
    "num_devices": "devices of the data-parallel mesh (default: all)",
    "log_every": "steps between host syncs that log metrics and check for NaN",
    "eval_every": "epochs between test-set evaluations",
    "checkpoint_every": "steps between checkpoints",
    "keep_checkpoints": "how many recent checkpoints to keep",
    "cohesion_weight": "MwT alpha (default: 0.5)",
    "coupling_weight": "MwT beta (default: 1.5)",
    "affinity_weight": "MODA alpha (default: 1.0)",
    "dispersion_weight": "MODA beta (default: 1.0)",
    "compactness_weight": "MODA gamma (default: 0.3)",
    "nemo_weight": "NeMo alpha, the contrastive-loss weight (default: 0.15 for ViTs, else 1.0)",
    "nemo_temperature": "NeMo contrastive temperature tau_c (default: 0.2)",
    "nemo_form": "NeMo contrastive loss: parity (NeMo's code: the exponent is masked, so each "
    "negative adds 1 to the positive sum and each positive 1 to the negative sum) or supcon "
    "(true positives and negatives only) (default: parity)",
}


_add_bool_flag = add_bool_flag


def _method_help() -> str:
    """The `--method` help: `standard`, then each registered family's objectives and summary."""
    families = [f for f in registry.families().values() if f.objectives]
    text = ", ".join(f"{', '.join(f.objectives)} ({f.summary})" for f in families)
    return (
        f"training objective, one of: {', '.join(config_lib.methods())}. standard is "
        f"cross-entropy; {text}"
    )


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; absent flags stay absent (config file or default wins).

    Booleans are `--x/--no-x`; `augment` also has a third state, neither flag, which keeps the
    config file's value or the dataset's convention.
    """
    defaults = TrainConfig()
    for name, field in FIELDS.items():
        kind = str(field.type)
        default = getattr(defaults, name)
        help_text = _method_help() if name == "method" else HELP[name]
        if default is not None:
            shown = ("on" if default else "off") if isinstance(default, bool) else default
            help_text = f"{help_text} (default: {shown})"
        if "bool" in kind:
            _add_bool_flag(parser, name, default=argparse.SUPPRESS, help=help_text)
            continue
        conv = float if "float" in kind else (int if "int" in kind else str)
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=conv,
            default=argparse.SUPPRESS,
            metavar=name.split("_")[-1].upper(),
            help=help_text.replace("%", "%%"),
        )


def build_parser() -> argparse.ArgumentParser:
    parser = flags.Parser(
        prog="modjax",
        description="Modular deep learning in JAX: train networks that split into per-class "
        "modules (MwT, MODA), cut modules out of trained networks (Pan & Rajan), find "
        "layer-level modules (DeepArc), compose and replace modules, and manage datasets.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train a model (resumes from the workdir's latest checkpoint)",
        description="Train a model. Settings come from TrainConfig defaults, then --config, "
        "then the flags below. Interrupted runs resume from the last checkpoint "
        "in --workdir. Writes config.json, metrics.jsonl, summary.json, checkpoints/ and "
        "TensorBoard event files (tb/: loss terms, accuracy, learning rate, images/s per log "
        "step and per epoch, module statistics of MwT/MODA runs, the config as text; "
        "`tensorboard --logdir WORKDIR/tb`) there. --wandb, --wandb-mode and --profile are "
        "not settings: a resume may add, change or drop them.",
    )
    p.add_argument(
        "--config",
        help="experiment config file defining get_config() (see experiments/configs/); it is run "
        "as Python, so it can execute arbitrary code: use only files you trust",
    )
    p.add_argument(
        "--workdir", default="runs/default", help="output directory (default: %(default)s)"
    )
    _add_bool_flag(
        p,
        "distributed",
        default=False,
        help="call jax.distributed.initialize() first, for multi-host clusters (default: off)",
    )
    p.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="with --distributed: the coordinator (process 0) address "
        "(default: $JAX_COORDINATOR_ADDRESS, else auto-detected on TPU/SLURM/MPI)",
    )
    p.add_argument(
        "--num-processes",
        type=int,
        metavar="N",
        help="with --distributed: number of processes (default: $JAX_NUM_PROCESSES, else "
        "auto-detected)",
    )
    p.add_argument(
        "--process-id",
        type=int,
        metavar="I",
        help="with --distributed: this process's id in [0, N) (default: $JAX_PROCESS_ID, "
        "else auto-detected)",
    )
    p.add_argument(
        "--coordinator-timeout",
        type=flags.positive_float,
        metavar="SECONDS",
        default=cluster.DEFAULT_TIMEOUT_S,
        help="with --distributed: stop with a message naming the coordinator if the processes "
        "have not all joined within this many seconds (default: %(default)g)",
    )
    _add_bool_flag(p, "progress", default=True, help="show a progress bar (default: on)")
    p.add_argument(
        "--wandb",
        metavar="PROJECT",
        help="also log the TensorBoard scalars and the config to this Weights & Biases project, "
        "from process 0 (needs pip install 'modjax[wandb]'; online mode needs WANDB_API_KEY or "
        "`wandb login`, checked before the run starts) (default: off)",
    )
    p.add_argument(
        "--wandb-mode",
        choices=wandb_log.MODES,
        help="with --wandb: online, or offline (no key, no network; the run's files go to "
        "WORKDIR/wandb/offline-run-*/, upload later with `wandb sync`) (default: $WANDB_MODE, "
        "else online)",
    )
    p.add_argument(
        "--profile",
        metavar="START:STOP",
        help="write a jax.profiler trace of steps START to STOP (1-based, inclusive; each "
        "step annotated) to WORKDIR/profile/, for XProf (`xprof --logdir WORKDIR/profile`) or "
        "ui.perfetto.dev (the *.trace.json.gz file); e.g. 10:20 skips the compile of step 1 "
        "(default: off)",
    )
    _add_bool_flag(
        p,
        "resume_from_valid",
        default=False,
        help="if the latest checkpoint is damaged, move it aside to <workdir>/damaged_checkpoints/ "
        "and resume from the newest one that restores (default: off: stop with the error)",
    )
    _add_config_flags(p)

    p = sub.add_parser(
        "eval",
        help="evaluate a workdir's latest checkpoint, or a module directory of any family",
        description="Report accuracy and per-class accuracy of one network. --workdir: restore "
        "the latest checkpoint of a training workdir and evaluate it on a split (accuracy, loss, "
        "per-class accuracy). --module: evaluate a module directory alone, without any workdir "
        "(it holds its weights, input transform and class names), on the test samples of its "
        "classes, predicting the argmax over its outputs: a network made by `modjax shrink` or "
        "`modjax repair` (OUT/network, every class of its parent), or any module of `modjax "
        "modularize` or `modjax decompose` (a single-class module OUT/class_<c> has one output, "
        "so its accuracy is 1 by construction: measure such modules together with `modjax "
        "compose`). Exactly one of --workdir and --module.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--workdir", help="a directory written by `modjax train`")
    what.add_argument(
        "--module",
        metavar="DIR",
        help="a module directory of any family, e.g. OUT/network of `modjax shrink` or "
        "`modjax repair`, or OUT/class_3 of `modjax modularize` or `modjax decompose`",
    )
    p.add_argument(
        "--split",
        choices=("test", "train"),
        help="with --workdir: which split to evaluate (default: test); --module always uses "
        "the test split",
    )
    p.add_argument(
        "--data-dir",
        help="dataset directory (default: the run's for --workdir, else $MODJAX_DATA_DIR)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=256,
        help="with --module: evaluation batch size (default: %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = sub.add_parser(
        "data",
        help="list or download datasets",
        description="List known datasets and whether they are on disk, or "
        "download one with sha256 verification.",
    )
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    q = dsub.add_parser("list", help="list datasets and where their files are expected")
    q.add_argument("--data-dir", help="dataset directory (default: $MODJAX_DATA_DIR)")
    q = dsub.add_parser("download", help="download a dataset and verify its sha256 checksums")
    q.add_argument("name", help="dataset name, e.g. mnist (see `modjax data list`)")
    q.add_argument("--data-dir", help="where to put it (default: $MODJAX_DATA_DIR)")
    q.add_argument(
        "--mirror", help="base URL replacing the canonical host (default: $MODJAX_DATA_MIRROR)"
    )
    _add_bool_flag(q, "progress", default=True, help="show a progress bar (default: on)")
    modules_cmd.add_commands(sub)
    pipeline_cmd.add_parser(sub, _add_config_flags)
    decompose_cmd.add_parser(sub)
    deeparc_cmd.add_commands(sub)
    compare_cmd.add_parser(sub)
    return parser


def _load_train_config(args) -> TrainConfig:
    """TrainConfig defaults, then the `--config` file's settings, then the flags given."""
    values = config_lib.load_config_file(args.config) if args.config else {}
    values.update({k: getattr(args, k) for k in FIELDS if hasattr(args, k)})
    return config_lib.from_dict(values, source=args.config or "flags")


def _train(args) -> int:
    profile = None if args.profile is None else profiling.parse_range(args.profile)
    if args.wandb_mode is not None and args.wandb is None:
        raise ValueError(
            f"--wandb-mode {args.wandb_mode} applies to --wandb PROJECT; add --wandb PROJECT "
            "or drop --wandb-mode"
        )
    if args.distributed:
        cluster.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
            timeout_s=args.coordinator_timeout,
        )
    elif cluster.stray_variables():
        logging.getLogger("modjax").warning(
            "%s set without --distributed: this is a single-process run (they are ignored)",
            ", ".join(cluster.stray_variables()),
        )
    config = _load_train_config(args)
    summary = training.train_and_evaluate(
        config,
        args.workdir,
        progress=args.progress,
        resume_from_valid=args.resume_from_valid,
        wandb_project=args.wandb,
        wandb_mode=args.wandb_mode,
        profile=profile,
    )
    if jax.process_index() == 0:
        print(
            report.format_table(
                summary["epochs_log"],
                ["epoch", "train_loss", "train_accuracy", "test_accuracy", "epoch_time_s"],
            )
        )
        print(
            f"\n{config.model} on {config.dataset} ({config.method}): test accuracy "
            f"{summary['test_accuracy']:.4f} after {summary['steps']} steps; "
            f"outputs in {args.workdir}"
        )
    return 0


def _eval(args) -> int:
    if args.module is not None:
        return _eval_module(args)
    split = args.split or "test"
    restored = training.load_run(args.workdir, args.data_dir)
    result = training.evaluate(restored.run, restored.variables, split=split)
    result.update(step=restored.step, split=split)
    if args.json:
        print(jsonrules.dumps(result, "the eval result", indent=None))
        return 0
    names = restored.info.class_names
    rows = [
        {"class": f"{i} {names[i]}" if names else i, "accuracy": acc}
        for i, acc in enumerate(result["per_class_accuracy"])
    ]
    print(report.format_table(rows, ["class", "accuracy"]))
    config = restored.config
    print(
        f"\n{config.model} on {config.dataset}/{split} at step {result['step']}: "
        f"accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f} "
        f"({result['count']} examples)"
    )
    return 0


def _eval_module(args) -> int:
    """`modjax eval --module DIR`: one module directory composed alone, on its test samples."""
    if args.split not in (None, "test"):
        raise ValueError(
            f"--split {args.split} applies to --workdir; a module is evaluated on the test "
            "split of its dataset"
        )
    value = compose.compose_dirs([args.module], data_dir=args.data_dir, batch_size=args.batch_size)
    saved = value["saved"][0]
    parent = saved.parent
    result = {
        "module": value["modules"][0],
        "method": saved.method,
        "parent": parent,
        "classes": value["classes"],
        "accuracy": value["accuracy"],
        "count": value["count"],
        "per_class": value["per_class"],
        "params": value["size"]["params"],
        "relative_params": value["size"]["relative_params"],
    }
    if args.json:
        print(jsonrules.dumps(result, "the eval result", indent=None))
        return 0
    if len(value["classes"]) < 2:
        print(
            f"note: {args.module} has one class, so its argmax is always right; compose modules "
            "with `modjax compose --modules ...` to measure them"
        )
    rows = [
        {**r, "class": r["class"] if r["name"] == str(r["class"]) else f"{r['class']} {r['name']}"}
        for r in value["per_class"]
    ]
    print(report.format_table(rows, ["class", "test_samples", "accuracy"]))
    print(
        f"\n{saved.method} module {args.module} of {parent.get('model')} on "
        f"{parent.get('dataset')} (parent step {parent.get('step')}): accuracy "
        f"{value['accuracy']:.4f} ({value['count']} test examples of {len(value['classes'])} "
        f"class{'es' if len(value['classes']) > 1 else ''}), {value['size']['params']} parameters "
        f"({100 * value['size']['relative_params']:.1f}% of the parent)"
    )
    return 0


def _data(args) -> int:
    if args.data_command == "list":
        print(
            report.format_table(
                data.dataset_table(args.data_dir),
                ["name", "classes", "shape", "available", "location"],
            )
        )
        return 0
    paths = data.download(
        args.name, data_dir=args.data_dir, base_url=args.mirror, progress=args.progress
    )
    for path in paths:
        print(path)
    return 0


def _dump_stacks_on_sigusr1() -> None:
    """`kill -USR1 PID` prints every thread's Python stack to stderr: how to see where a run hangs."""
    if not hasattr(signal, "SIGUSR1"):  # Windows
        return
    try:
        faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)
    except (ValueError, OSError, AttributeError):  # stderr without a file descriptor (captured)
        pass


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _dump_stacks_on_sigusr1()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        handlers = {
            "modularize": modules_cmd.modularize,
            "compose": modules_cmd.compose,
            "replace": modules_cmd.replace,
            "pipeline": lambda a: pipeline_cmd.pipeline(a, _load_train_config),
            "decompose": decompose_cmd.decompose,
            "arch": deeparc_cmd.arch,
            "shrink": deeparc_cmd.shrink,
            "repair": deeparc_cmd.repair,
            "compare": lambda a: compare_cmd.compare_command(a, argv or sys.argv[1:]),
        }
        return {"train": _train, "eval": _eval, "data": _data, **handlers}[args.command](args)
    except (ValueError, OSError, FloatingPointError, RuntimeError) as err:
        if args.verbose:
            raise
        print(f"modjax {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
