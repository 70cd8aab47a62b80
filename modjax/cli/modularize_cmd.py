"""`modjax modularize`: extract one module per class from a trained MwT/MODA run."""

import os
import pathlib
import shutil
import tempfile

from modjax.modular.module import METHODS as MODULAR_METHODS
from modjax.runs.workdir import describe_run, load_run, write_json_atomic


def add_parser(sub) -> None:
    """Registers the `modularize` sub-command on `sub` (argparse subparsers)."""
    p = sub.add_parser(
        "modularize",
        help="extract one module per class from a trained MwT/MODA run",
        description="Restore the latest checkpoint of a training workdir (method mwt or moda), "
        "run module extraction over its training split with the test transform (METHODS §4.5, "
        "§5.4), and save every per-class module under OUT/class_<c>/ plus OUT/modules.json "
        "(retention, fallbacks, timing). OUT is written whole or not at all.",
    )
    p.add_argument("--workdir", required=True, help="a directory written by `modjax train`")
    p.add_argument(
        "--threshold", type=float, default=0.9,
        help="activity frequency tau in (0, 1] a unit needs to join a class module "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--no-fallback", dest="fallback", action="store_false",
        help="disable the method's fallback for layers that keep too few units (MODA 2024 parity)",
    )
    p.add_argument(
        "--out", help="output directory; must not exist (default: WORKDIR/modules)"
    )
    p.add_argument("--data-dir", help="dataset directory (default: the run's, or $MODJAX_DATA_DIR)")
    p.add_argument(
        "--no-progress", dest="progress", action="store_false", help="disable the progress bar"
    )


def modularize(args) -> int:
    import jax
    import numpy as np

    from modjax import data, metrics, parallel
    from modjax import modular as mz
    from modjax.modular import io as module_io
    from modjax.modular.prune import prune
    from modjax.runs import report, training

    if not 0.0 < args.threshold <= 1.0:
        raise ValueError(f"--threshold={args.threshold} must be in (0, 1] (tau = 0.9 by default)")
    workdir = pathlib.Path(args.workdir)
    out = pathlib.Path(args.out) if args.out else workdir / "modules"
    if out.exists():
        raise ValueError(f"--out {out} exists; remove it or choose another directory")
    config, run, variables, step = load_run(workdir, args.data_dir)
    if config.method not in MODULAR_METHODS:
        raise ValueError(
            f"{workdir} was trained with method={config.method!r}; modularize needs a run "
            f"trained with one of {list(MODULAR_METHODS)}"
        )
    parent = describe_run(config, run, workdir, step)
    images, labels = run.train_data
    batch = config.global_batch_size
    extraction = mz.extract_modules(
        data.eval_batches(images, labels, global_batch_size=batch),
        variables=parallel.replicate(variables, run.mesh),
        parent=parent,
        preprocess=training.make_preprocess(config, run.info, augment=False),
        method=config.method,
        threshold=args.threshold,
        fallback=args.fallback,
        model=run.model,
        mesh=run.mesh,
        total=data.num_eval_batches(len(labels), batch),
        disable=not args.progress,
    )
    shape = tuple(run.input_shape)
    names = run.info.class_names
    rows, saved = [], []
    for module in extraction.modules:
        c = module.classes[0]
        pruned, pv = prune(
            parent["model"], parent["model_kwargs"], variables, module.keep,
            classes=[c] if config.method == "moda" else None, method=config.method,
            input_shape=shape,
        )
        size = metrics.module_macs_and_params(
            (pruned, pv["params"], shape), (run.model, variables["params"], shape)
        )
        layer_rates = {n: float(np.mean(k)) for n, k in module.keep.items()}
        module = module._replace(metrics={
            **module.metrics,
            "weight_retention": size.relative_params,
            "relative_macs": size.relative_macs,
            "module_params": size.params,
            "module_macs": size.macs,
        })
        saved.append(module)
        rows.append({
            "class": c,
            "name": names[c] if names else str(c),
            "samples": module.metrics.get("num_samples"),
            "unit_retention": module.metrics["kernel_rate"],
            "weight_retention": size.relative_params,
            "relative_macs": size.relative_macs,
            "fallbacks": len(module.fallbacks),
            "layer_retention": layer_rates,
        })
    summary = {
        "workdir": str(workdir.resolve()),
        "step": step,
        "method": config.method,
        "threshold": args.threshold,
        "fallback": args.fallback,
        "parent": parent,
        "extraction_time_s": extraction.timing,
        "num_fallbacks": len(extraction.fallbacks),
        "classes": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for module in saved:
            module_io.save_module(module, tmp / f"class_{module.classes[0]}")
        write_json_atomic(tmp / "modules.json", report.jsonable(summary))
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if jax.process_index() == 0:
        print(report.format_table(
            rows,
            ["class", "name", "samples", "unit_retention", "weight_retention", "relative_macs",
             "fallbacks"],
        ))
        print(
            f"\n{len(saved)} {config.method} modules of {config.model} on {config.dataset} "
            f"(step {step}, tau={args.threshold}) in {out}; extraction "
            f"{extraction.timing['total_s']:.2f} s (compile {extraction.timing['compile_s']:.2f} s)"
        )
    return 0
