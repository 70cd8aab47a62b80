"""`modjax decompose`: cut one module per class out of a trained model (Pan & Rajan).

An MLP parent gets the dense method (FSE'20), a CIFAR ResNet without BatchNorm the CNN method
(ICSE'22)."""

import os
import pathlib
import shutil
import tempfile
import time

from modjax.cli.flags import add_bool_flag
from modjax.modules import transform
from modjax.runs.workdir import load_run, write_json_atomic

METHODS = ("panrajan",)


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
        choices=METHODS,
        default="panrajan",
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
        type=float,
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
        type=float,
        default=0.9,
        help="a CI positive needs p_c > this (default: %(default)s); lower it for weak parents",
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


def _describe(config, run, workdir: pathlib.Path, step: int, params) -> dict:
    """The parent: zoo model and kwargs, dataset, checkpoint, step and a hash of its params."""
    import hashlib

    import jax
    import numpy as np
    from flax import traverse_util

    from modjax import modular

    kwargs = {} if config.depth is None else {"depth": config.depth}
    parent = modular.describe_parent(
        config.model, dataset=config.dataset, checkpoint=str(workdir.resolve()),
        input_shape=run.input_shape, num_classes=run.info.num_classes, width=config.width,
        **kwargs,
    )  # fmt: skip
    h = hashlib.sha256()
    for path, leaf in sorted(traverse_util.flatten_dict(jax.device_get(dict(params))).items()):
        h.update("/".join(path).encode())
        h.update(np.ascontiguousarray(leaf).tobytes())
    return {**parent, "step": int(step), "hash": f"sha256:{h.hexdigest()}"}


def _images(run, config):
    import jax
    import numpy as np

    from modjax.runs import training

    pre = jax.jit(training.make_preprocess(config, run.info, augment=False))
    images, labels = run.train_data
    key = jax.random.key(0)
    x = np.concatenate(
        [np.asarray(pre(images[i : i + 4096], key)) for i in range(0, len(images), 4096)]
    )
    tx, ty = run.test_data
    xt = np.concatenate([np.asarray(pre(tx[i : i + 4096], key)) for i in range(0, len(tx), 4096)])
    return x, np.asarray(labels), xt, np.asarray(ty)


def _check_cnn_flags(args) -> str:
    cm = args.cm or "bln"
    if cm == "rie":
        raise ValueError("--cm rie is the dense method's; a CNN parent takes bln, c or none")
    dense_only = [
        flag
        for flag, on in (
            ("--ti", args.ti != "sne"),
            ("--parity", args.parity),
            ("--paper-constants", args.paper_constants),
        )
        if on
    ]
    if dense_only:
        raise ValueError(
            f"{', '.join(dense_only)}: options of the dense method, for MLP parents only (FSE'20)"
        )
    return cm


def _batched(fn, x, batch=250):
    import numpy as np

    return np.concatenate([np.asarray(fn(x[i : i + batch])) for i in range(0, len(x), batch)])


def decompose(args) -> int:
    """Runs `modjax decompose`; returns the exit status."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from modjax import decompose as dc
    from modjax.runs import report

    workdir = pathlib.Path(args.workdir)
    out = pathlib.Path(args.out)
    if out.exists():
        raise ValueError(f"--out {out} exists; remove it or choose another directory")
    if not (workdir / "checkpoints").is_dir():
        raise FileNotFoundError(
            f"{workdir / 'checkpoints'} not found: the parent in {workdir} has no checkpoint "
            "(train it with `modjax train --workdir ...` first)"
        )
    config, run, variables, step = load_run(workdir, args.data_dir)
    cnn = config.model != "mlp"
    if cnn:
        dc.check_cnn_parent(config.model)
        cm = _check_cnn_flags(args)
    else:
        dc.check_parent(config.model)
        cm = args.cm or "rie"
        if cm == "bln":
            raise ValueError("--cm bln is the CNN method's; an MLP parent takes rie, c or none")
    params = variables["params"]
    parent = _describe(config, run, workdir, step, params)
    spec = transform.preprocess_spec(
        run.info, normalize=config.normalize, image_size=config.image_size
    )
    x, y, xt, yt = _images(run, config)
    t0 = time.perf_counter()
    if cnn:
        modules = dc.decompose_cnn(
            params, x, y, cm=cm, delta=args.delta, confidence=args.confidence,
            num_positives=args.positives or 1000, negatives_per_class=args.negatives,
            allow_fewer=args.allow_fewer, parent=parent,
        )  # fmt: skip
    else:
        modules = dc.decompose_dense(
            params, x, y, ti=args.ti, cm=cm, parity=args.parity,
            paper_constants=args.paper_constants, confidence=args.confidence,
            allow_fewer=args.allow_fewer, num_positives=args.positives,
            negatives_per_class=args.negatives, parent=parent,
        )  # fmt: skip
    seconds = time.perf_counter() - t0
    stacked, own, labels = dc.compose(modules)
    if not cnn:
        xt = xt.reshape(len(xt), -1)
    pred = _batched(jax.jit(lambda b: dc.predict(stacked, own, labels, b)), jnp.asarray(xt))
    composed = float(np.mean(pred == yt))
    if cnn:
        logits = _batched(jax.jit(lambda b: dc.run(params, b)[0]), jnp.asarray(xt))
    else:
        logits = np.asarray(dc.forward(dc.dense_layers(params), jnp.asarray(xt)))
    model_acc = float(np.mean(logits.argmax(-1) == yt))
    names = run.info.class_names
    rates = ("position_rate", "channel_rate") if cnn else ("edge_rate", "node_rate", "mac_rate")
    rows = [
        {
            "class": m.class_id,
            "name": names[m.class_id] if names else str(m.class_id),
            "confident": m.metrics["num_confident"],
            **{r: m.metrics[r] for r in rates},
        }
        for m in modules
    ]
    summary = {
        "workdir": str(workdir.resolve()), "step": step, "method": args.method,
        "kind": "cnn" if cnn else "dense", "settings": modules[0].settings, "parent": parent,
        "decompose_seconds": seconds, "model_accuracy": model_acc, "composed_accuracy": composed,
        "classes": rows,
    }  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for m in modules:
            dc.save_decomposed(m, tmp / f"class_{m.class_id}", preprocess=spec)
        write_json_atomic(tmp / "modules.json", report.jsonable(summary))
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(report.format_table(rows, ["class", "name", "confident", *rates]))
    what = (
        f"CNN, CM-{cm.upper()}"
        if cnn
        else f"TI-{args.ti.upper()}, CM-{cm.upper()}{', parity' if args.parity else ''}"
    )
    print(
        f"\n{len(modules)} Pan & Rajan modules ({what}) of {config.model} on {config.dataset} "
        f"(step {step}) in {out}; model accuracy {model_acc:.4f}, voting-composed "
        f"{composed:.4f}; decomposition {seconds:.2f} s"
    )
    return 0
