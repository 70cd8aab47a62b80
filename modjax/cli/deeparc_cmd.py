"""`modjax arch`, `modjax shrink`, `modjax repair`: DeepArc on a training workdir (METHODS §8).

The work is `runs.deeparc`; `shrink` and `repair` save the network they make as a module
directory `OUT/network/` (`modjax eval --module`, `modjax compose`).
"""

import argparse
import pathlib

from modjax.cli.flags import (
    add_bool_flag,
    closed_unit_interval,
    int_at_least,
    positive_float,
    unit_interval,
)
from modjax.deeparc import architecture
from modjax.deeparc.repair import BN_MODES
from modjax.modules import jsonrules
from modjax.runs import deeparc, training


def _common(p: argparse.ArgumentParser, default_out: str) -> None:
    p.add_argument("--workdir", required=True, help="a `modjax train` workdir (latest checkpoint)")
    p.add_argument("--out", help=f"output directory (default: <workdir>/{default_out})")
    p.add_argument("--data-dir", help="dataset directory (default: the run's, $MODJAX_DATA_DIR)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of block indices") from None


def add_commands(sub) -> None:
    """Registers `arch`, `shrink` and `repair` on `sub` (argparse subparsers)."""
    p = sub.add_parser(
        "arch",
        help="block-level CKA, modules at θ and modularity (DeepArc)",
        description="Minibatch linear CKA (unbiased HSIC) between all block outputs of a CIFAR "
        "ResNet-v1 over the test split, modules as runs of adjacent blocks with CKA > θ, and "
        "modularity. Writes cka.csv/png, modules.json, modularity.csv/png.",
    )
    _common(p, "deeparc/arch")
    p.add_argument(
        "--thresholds",
        type=unit_interval,
        nargs="+",
        default=[0.9, 0.95, 0.99],
        help="CKA thresholds θ whose modules are listed (default: 0.9 0.95 0.99)",
    )
    p.add_argument("--examples", type=int_at_least(1), help="test images used (default: all)")
    p.add_argument(
        "--batch-size",
        type=int_at_least(4),
        default=256,
        help="CKA minibatch (>= 4) (default: %(default)s)",
    )
    p.add_argument(
        "--passes",
        type=int_at_least(1),
        default=10,
        help="passes over the images (default: %(default)s, as DeepArc)",
    )
    add_bool_flag(
        p, "parity", default=False, help="reference code's last-interval rule (default: off)"
    )

    p = sub.add_parser(
        "shrink",
        help="accuracy after removing residual blocks (DeepArc compression)",
        description="Removes blocks (global forward indices from 0; not the first of a stage) as "
        "a new, shallower model with the remaining parameters, without fine-tuning. --remove "
        "applies a list cumulatively; --search N keeps the best of --subsets random i-subsets "
        "for i = 1..N. Writes shrink.csv/png/json, and the shrunk network (all of --remove "
        "removed, else the best subset at the largest N) as a module directory OUT/network/ "
        "that `modjax eval --module`, `modjax compose` and `--export` take.",
    )
    _common(p, "deeparc/shrink")
    p.add_argument(
        "--remove",
        type=_ints,
        default=[],
        help='block indices to remove, e.g. "5 6 7" (default: none)',
    )
    p.add_argument(
        "--search",
        type=int_at_least(0),
        default=0,
        metavar="N",
        help="remove up to N blocks (default: 0: no search)",
    )
    p.add_argument("--candidates", type=_ints, help="blocks the search may remove (default: all)")
    p.add_argument(
        "--modules",
        help="modules.json of `modjax arch`: candidates = redundant "
        "blocks of its modules at --threshold",
    )
    p.add_argument(
        "--threshold",
        type=unit_interval,
        default=0.99,
        help="θ whose redundant blocks the search may remove (default: %(default)s)",
    )
    p.add_argument(
        "--subsets",
        type=int_at_least(1),
        default=5,
        help="random subsets per size (default: %(default)s, as DeepArc)",
    )
    p.add_argument(
        "--examples",
        type=int_at_least(1),
        help="test images the table reports on, and at most as many selection images: the "
        "search picks its subsets on the run's --validation-split, else on training images, "
        "never on the test set (default: all)",
    )
    p.add_argument(
        "--finetune-epochs",
        type=int_at_least(0),
        default=0,
        metavar="E",
        help="also fine-tune each network of the table for E epochs and report its accuracy "
        "(DeepArc does not fine-tune; default: %(default)s)",
    )
    p.add_argument(
        "--finetune-examples",
        type=int_at_least(128),
        default=5000,
        help="training images of that fine-tune (default: %(default)s)",
    )
    p.add_argument(
        "--finetune-lr",
        type=positive_float,
        default=0.01,
        help="peak learning rate of that fine-tune, cosine to 0 (default: %(default)s)",
    )

    p = sub.add_parser(
        "repair",
        help="retrain only the most deviating blocks on benign + adversarial images",
        description="DeepArc repair with L-inf PGD adversarial examples as error images: "
        "deviation scores from benign-vs-error linear CKA per block, the top-k blocks "
        "fine-tuned (rest frozen) with 0.5 MSE to the original activation + 0.5 CE. Writes "
        "repair.json/csv/png with the share of parameters trained, and the repaired network "
        "as a module directory OUT/network/ that `modjax eval --module`, `modjax compose` and "
        "`--export` take.",
    )
    _common(p, "deeparc/repair")
    p.add_argument(
        "--examples",
        type=int_at_least(1),
        default=1000,
        help="benign training images (default: %(default)s)",
    )
    p.add_argument(
        "--test-examples",
        type=int_at_least(1),
        default=1000,
        help="test images for the before/after accuracy (default: %(default)s)",
    )
    p.add_argument(
        "--top-k", type=int_at_least(1), default=5, help="blocks retrained (default: %(default)s)"
    )
    p.add_argument(
        "--max-trained-share",
        type=unit_interval,
        metavar="S",
        help="budget: the top-k blocks whose parameters together stay within this share of the "
        "model's, in score order (e.g. 0.2; default: no budget)",
    )
    p.add_argument(
        "--epochs",
        type=int_at_least(1),
        default=10,
        help="fine-tuning epochs (default: %(default)s)",
    )
    p.add_argument(
        "--learning-rate",
        type=positive_float,
        default=1e-4,
        help="fine-tuning learning rate (default: %(default)s)",
    )
    p.add_argument(
        "--eps",
        type=positive_float,
        default=8.0,
        help="PGD radius in pixels, 8 = 8/255 (default: %(default)s)",
    )
    p.add_argument(
        "--steps", type=int_at_least(1), default=7, help="PGD steps (default: %(default)s)"
    )
    p.add_argument(
        "--train-all",
        action="store_true",
        help="the full-retraining baseline: train every parameter, same data, loss and epochs",
    )
    p.add_argument(
        "--mse-weight",
        type=closed_unit_interval,
        default=0.5,
        help="weight of the activation (MSE) term; CE gets 1 - it (DeepArc: %(default)s)",
    )
    p.add_argument(
        "--bn",
        choices=BN_MODES,
        default="train",
        help="the retrained blocks' BatchNorm during the repair: train = training mode, "
        "statistics following the mixed batches (as Keras does); frozen = inference mode with "
        "the old statistics, whose mismatch with the new weights costs clean accuracy. Other "
        "blocks always keep theirs (default: %(default)s)",
    )
    add_bool_flag(
        p,
        "recalibrate",
        default=True,
        help="after the repair, recompute the retrained blocks' BN statistics on the benign "
        "repair images, so clean inputs are normalized with statistics of the new weights "
        "(default: on)",
    )


def _out(args, name: str) -> pathlib.Path:
    return pathlib.Path(args.out) if args.out else pathlib.Path(args.workdir) / "deeparc" / name


def arch(args) -> int:
    restored = training.load_run(args.workdir, args.data_dir)
    result = deeparc.arch(
        restored,
        _out(args, "arch"),
        thresholds=args.thresholds,
        examples=args.examples,
        batch_size=args.batch_size,
        passes=args.passes,
        seed=args.seed,
        parity=args.parity,
    )
    for row in result["sweep"]:
        mods = " ".join(f"[{a}-{b}]" if b > a else f"[{a}]" for a, b in row["modules"])
        print(f"theta={row['threshold']:.2f} modularity={row['modularity']:.3f} modules: {mods}")
    print(f"wrote {_out(args, 'arch')}")
    return 0


def shrink(args) -> int:
    candidates = args.candidates
    if args.modules:
        rows = jsonrules.read(args.modules, keys=("sweep",))["sweep"]  # `modjax arch`'s
        row = next((r for r in rows if abs(r["threshold"] - args.threshold) < 1e-9), None)
        if row is None:
            raise ValueError(f"--threshold={args.threshold} is not in {args.modules}")
        candidates = architecture.redundant([tuple(m) for m in row["modules"]])
    restored = training.load_run(args.workdir, args.data_dir)
    result = deeparc.shrink(
        restored,
        _out(args, "shrink"),
        remove=args.remove,
        search=args.search,
        candidates=candidates,
        num_subsets=args.subsets,
        examples=args.examples,
        seed=args.seed,
        finetune_epochs=args.finetune_epochs,
        finetune_examples=args.finetune_examples,
        finetune_lr=args.finetune_lr,
    )
    if result.get("skipped_candidates"):
        print(
            f"skipped candidates {result['skipped_candidates']}: first blocks of a stage "
            "cannot be removed"
        )
    print(f"baseline accuracy {result['baseline']:.4f}")
    tuned = result.get("finetune", {}).get("accuracy", {})
    for r in result.get("cumulative", []) + result.get("search", []):
        key = " ".join(map(str, r["removed"]))
        extra = f", after fine-tuning {tuned[key]:.4f}" if key in tuned else ""
        print(f"removed {r['removed']}: accuracy {r['accuracy']:.4f}{extra}")
    net = result["network"]
    if net is None:
        print("no network saved: the search found no removable candidate")
    else:
        print(
            f"network without blocks {net['removed']} (blocks per stage {net['blocks']}, "
            f"accuracy {net['accuracy']:.4f}) saved in {net['path']}; evaluate it with "
            f"`modjax eval --module {net['path']}`"
        )
    print(f"tables in {_out(args, 'shrink')}")
    return 0


def repair(args) -> int:
    restored = training.load_run(args.workdir, args.data_dir)
    result = deeparc.repair(
        restored,
        _out(args, "repair"),
        examples=args.examples,
        test_examples=args.test_examples,
        top_k=args.top_k,
        max_share=args.max_trained_share,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        eps=args.eps,
        steps=args.steps,
        seed=args.seed,
        train_all=args.train_all,
        mse_weight=args.mse_weight,
        bn=args.bn,
        recalibrate=args.recalibrate,
    )
    print(f"selected blocks {result['selected']}, trained share {result['trained_share']:.3f}")
    for k in result["before"]:
        print(f"{k}: {result['before'][k]:.4f} -> {result['after'][k]:.4f}")
    path = result["network"]["path"]
    print(
        f"repaired network saved in {path}; evaluate it with `modjax eval --module {path}`\n"
        f"tables in {_out(args, 'repair')}"
    )
    return 0


HANDLERS = {"arch": arch, "shrink": shrink, "repair": repair}
"""Command name → handler, for `modjax.cli.main`."""

__all__ = ["HANDLERS", "add_commands", "arch", "repair", "shrink"]
