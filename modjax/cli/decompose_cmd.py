"""`modjax decompose`: cut one module per class out of a trained MLP (Pan & Rajan FSE'20)."""

import os
import pathlib
import shutil
import tempfile
import time

from modjax.cli.flags import add_bool_flag
from modjax.runs.workdir import load_run, write_json_atomic

METHODS = ("panrajan",)


def add_parser(sub) -> None:
    """Registers the `decompose` sub-command on `sub` (argparse subparsers)."""
    p = sub.add_parser(
        "decompose",
        help="decompose a trained MLP into one module per class (Pan & Rajan)",
        description="Restore the latest checkpoint of a training workdir (model mlp), decompose "
        "it with Pan & Rajan's CI + TI + CM (METHODS §7) over its training split, save every "
        "per-class module under OUT/class_<c>/ plus OUT/modules.json, and print a per-class "
        "table (positives found, edge/node/MAC retention) and the voting-composed test accuracy.",
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
        help="tangling identification variant (default: %(default)s)",
    )
    p.add_argument(
        "--cm",
        choices=("rie", "c", "none"),
        default="rie",
        help="concern modularization: rie (remove irrelevant edges + channelling), c "
        "(channelling) or none (default: %(default)s)",
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
    p.add_argument("--positives", type=int, help="CI positives per class (default: the variant's)")
    p.add_argument(
        "--negatives", type=int, help="TI negatives per other class (default: the variant's)"
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


def decompose(args) -> int:
    """Runs `modjax decompose`; returns the exit status."""
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
    dc.check_parent(config.model)
    parent = _describe(config, run, workdir, step, variables["params"])
    x, y, xt, yt = _images(run, config)
    t0 = time.perf_counter()
    modules = dc.decompose_dense(
        variables["params"],
        x,
        y,
        ti=args.ti,
        cm=args.cm,
        parity=args.parity,
        paper_constants=args.paper_constants,
        confidence=args.confidence,
        num_positives=args.positives,
        negatives_per_class=args.negatives,
        parent=parent,
    )
    seconds = time.perf_counter() - t0
    stacked, own, labels = dc.compose(modules)
    xt = xt.reshape(len(xt), -1)
    pred = np.asarray(dc.predict(stacked, own, labels, jnp.asarray(xt)))
    composed = float(np.mean(pred == yt))
    logits = np.asarray(dc.forward(dc.dense_layers(variables["params"]), jnp.asarray(xt)))
    model_acc = float(np.mean(logits.argmax(-1) == yt))
    names = run.info.class_names
    rows = [
        {
            "class": m.class_id,
            "name": names[m.class_id] if names else str(m.class_id),
            "confident": m.metrics["num_confident"],
            "edge_rate": m.metrics["edge_rate"],
            "node_rate": m.metrics["node_rate"],
            "mac_rate": m.metrics["mac_rate"],
        }
        for m in modules
    ]
    summary = {
        "workdir": str(workdir.resolve()), "step": step, "method": args.method,
        "settings": modules[0].settings, "parent": parent, "decompose_seconds": seconds,
        "model_accuracy": model_acc, "composed_accuracy": composed, "classes": rows,
    }  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for m in modules:
            dc.save_dense_module(m, tmp / f"class_{m.class_id}")
        write_json_atomic(tmp / "modules.json", report.jsonable(summary))
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(report.format_table(rows, ["class", "name", "confident", "edge_rate", "node_rate",
                                     "mac_rate"]))  # fmt: skip
    print(
        f"\n{len(modules)} Pan & Rajan modules (TI-{args.ti.upper()}, CM-{args.cm.upper()}"
        f"{', parity' if args.parity else ''}) of {config.model} on {config.dataset} (step "
        f"{step}) in {out}; model accuracy {model_acc:.4f}, voting-composed {composed:.4f}; "
        f"decomposition {seconds:.2f} s"
    )
    return 0
