"""`modjax replace`: repair a weak model's class with a strong model's module (MODA adapter)."""

import pathlib

from modjax.cli.flags import positive_float
from modjax.modules import atomic
from modjax.runs import report
from modjax.runs.replacement import replace_class


def add_parser(sub) -> None:
    """Registers the `replace` sub-command on `sub` (argparse subparsers)."""
    p = sub.add_parser(
        "replace",
        help="repair a weak model's class with a strong model's module (MODA adapter)",
        description="Module replacement (METHODS §5.7): freeze a weak model (any `modjax train` "
        "run) and a strong model's single-class module; train an adapter Lin(N, N) over the weak "
        "logits with the target class's column replaced by the module's logit, with CE on the "
        "weak run's training data. Also runs the CNNSplitter-style baseline (softmax of the weak "
        "logits, target-class probability overwritten by the module output min-max normalized "
        "over the strong run's training set). Prints per-class test accuracy of the weak model, "
        "the baseline and the adapter, and the 'TC | mean non-TC' accuracy changes.",
    )
    p.add_argument(
        "--weak-workdir",
        required=True,
        help="training workdir of the weak model (its dataset's train/test splits are used)",
    )
    p.add_argument(
        "--module",
        required=True,
        metavar="DIR",
        help="one single-class module directory of the strong run, written by `modjax modularize` "
        "(MwT, MODA) or `modjax decompose` (Pan & Rajan), e.g. strong/modules/class_3; rebuilt "
        "from the directory alone (no strong workdir)",
    )
    p.add_argument(
        "--target-class",
        type=int,
        required=True,
        metavar="K",
        help="the weak model's class id (output index) that the module replaces: the module's "
        "own class",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=5,
        help="adapter epochs; cosine T_max = epochs (default: %(default)s; MODA 2024: 20)",
    )
    p.add_argument(
        "--learning-rate",
        type=positive_float,
        default=0.05,
        help="adapter peak SGD learning rate, Nesterov 0.9 (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=128,
        help="adapter training batch size (default: %(default)s)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="adapter init and data order seed (default: 0)"
    )
    p.add_argument(
        "--data-dir", help="dataset directory (default: each run's, or $MODJAX_DATA_DIR)"
    )
    p.add_argument("--out", help="write the result as JSON to this file")


def replace(args) -> int:
    if args.out and pathlib.Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a directory; give a file name for the JSON result")
    value = replace_class(
        args.weak_workdir,
        args.module,
        target_class=args.target_class,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        seed=args.seed,
        data_dir=args.data_dir,
    )
    if args.out:
        atomic.write_json(pathlib.Path(args.out), value)
    print(
        report.format_table(
            value["per_class"],
            ["class", "name", "test_samples", "weak", "cnnsplitter", "moda_adapter"],
        )
    )
    overall, k = value["accuracy"], value["target_class"]
    print(
        f"\nreplaced class {k} of the weak {value['weak_model']} ({value['weak_dataset']}) with "
        f"the {value['strong_method']} module of class {value['strong_class']} "
        f"({value['strong_model']}); accuracy weak {overall['weak']:.4f}, cnnsplitter "
        f"{overall['cnnsplitter']:.4f}, moda adapter {overall['moda_adapter']:.4f}"
    )
    for name in ("cnnsplitter", "moda_adapter"):
        c = value["change"][name]
        print(f"TC | mean non-TC change, {name}: {c['tc']:+.4f} | {c['mean_non_tc']:+.4f}")
    if args.out:
        print(f"result in {args.out}")
    return 0
