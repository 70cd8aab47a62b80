"""`modjax decompose`: cut one module per class out of a trained model (Pan & Rajan).

An MLP parent gets the dense method (FSE'20), a CIFAR ResNet without BatchNorm the CNN method
(ICSE'22); the work is `runs.decompose.decompose_workdir`, this file parses and prints."""

from modjax.cli.flags import add_bool_flag, positive_float, probability
from modjax.decompose.io import METHOD
from modjax.runs import report
from modjax.runs.decompose import decompose_workdir


def add_parser(sub) -> None:
    """Registers the `decompose` sub-command on `sub` (argparse subparsers)."""
    p = sub.add_parser(
        "decompose",
        help="decompose a trained model into one module per class (Pan & Rajan)",
        description="Restore the latest checkpoint of a training workdir, decompose it with Pan "
        "& Rajan's method over its training split (model mlp: FSE'20 CI + TI + CM, METHODS "
        "§7.1-7.4; a CIFAR ResNet without BatchNorm, e.g. resnet20_nobn: ICSE'22 inactive-position "
        "CI, TI at 1:1, channelling and MC-BLN, §7.7), save every per-class module under "
        "OUT/class_<c>/ plus OUT/modules.json, and print a per-class table (positives found, "
        "retention) and the voting-composed test accuracy.",
    )
    p.add_argument("--workdir", required=True, help="a directory written by `modjax train`")
    p.add_argument(
        "--method",
        choices=(METHOD,),  # the Pan & Rajan family's one method (`decompose.io.METHOD`)
        default=METHOD,
        help="decomposition method (default: %(default)s)",
    )
    p.add_argument(
        "--ti",
        choices=("sne", "i", "pn", "hp"),
        default="sne",
        help="tangling identification variant of the dense method (default: %(default)s)",
    )
    p.add_argument(
        "--cm",
        choices=("rie", "bln", "c", "none"),
        default=None,
        help="concern modularization: dense: rie (remove irrelevant edges + channelling, the "
        "default), c (channelling) or none; CNN: bln (channelling + MC-BLN, the default), c or "
        "none",
    )
    p.add_argument(
        "--delta",
        type=positive_float,
        default=0.5,
        help="MC-BLN's delta for CNN parents (default: %(default)s)",
    )
    add_bool_flag(
        p,
        "parity",
        default=False,
        help="the reference code's quirks (CI order, CM-RIE |w| < 0.05 criterion and merge "
        "column, 0.9x negative bias) instead of the paper's rules (default: off)",
    )
    add_bool_flag(
        p,
        "paper_constants",
        default=False,
        help="the paper's TI thresholds and sample counts instead of the code's (default: off)",
    )
    p.add_argument(
        "--confidence",
        type=probability,
        default=0.9,
        help="a CI positive needs p_c > this, in [0, 1) (default: %(default)s); lower it for weak "
        "parents (0: every sample of the class)",
    )
    add_bool_flag(
        p,
        "allow_fewer",
        default=False,
        help="use the confident positives there are when a class has fewer than the variant's "
        "count (the reference code's behaviour) instead of stopping with an error (default: off)",
    )
    p.add_argument(
        "--positives",
        type=int,
        help="CI positives per class (default: the TI variant's for MLPs, 1000 for CNNs)",
    )
    p.add_argument(
        "--negatives",
        type=int,
        help="TI negatives per other class (default: the variant's; CNN: 1:1 with the positives)",
    )
    p.add_argument("--out", required=True, help="output directory; must not exist")
    p.add_argument("--data-dir", help="dataset directory (default: the run's, or $MODJAX_DATA_DIR)")


def decompose(args) -> int:
    """Runs `modjax decompose`; returns the exit status."""
    summary = decompose_workdir(
        args.workdir,
        args.out,
        ti=args.ti,
        cm=args.cm,
        delta=args.delta,
        parity=args.parity,
        paper_constants=args.paper_constants,
        confidence=args.confidence,
        allow_fewer=args.allow_fewer,
        positives=args.positives,
        negatives=args.negatives,
        data_dir=args.data_dir,
    )
    cnn, cm = summary["kind"] == "cnn", summary["cm"]
    rates = ("position_rate", "channel_rate") if cnn else ("edge_rate", "node_rate", "mac_rate")
    print(report.format_table(summary["classes"], ["class", "name", "confident", *rates]))
    what = (
        f"CNN, CM-{cm.upper()}"
        if cnn
        else f"TI-{args.ti.upper()}, CM-{cm.upper()}{', parity' if args.parity else ''}"
    )
    parent = summary["parent"]
    print(
        f"\n{len(summary['classes'])} Pan & Rajan modules ({what}) of {parent['model']} on "
        f"{parent['dataset']} (step {summary['step']}) in {args.out}; model accuracy "
        f"{summary['model_accuracy']:.4f}, voting-composed {summary['composed_accuracy']:.4f}; "
        f"decomposition {summary['decompose_seconds']:.2f} s"
    )
    return 0
