"""`modjax replace`: repair a weak model's class with a strong model's module (MODA adapter)."""

import pathlib

from modjax.runs.workdir import load_run, restore_parent, write_json_atomic


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
        "--weak-workdir", required=True,
        help="training workdir of the weak model (its dataset's train/test splits are used)",
    )
    p.add_argument(
        "--module", required=True, metavar="DIR",
        help="one module directory written by `modjax modularize` on the strong run, e.g. "
        "strong/modules/class_3; its parent workdir is restored from its manifest",
    )
    p.add_argument(
        "--target-class", type=int, required=True, metavar="K",
        help="the weak model's class id (output index) that the module replaces",
    )
    p.add_argument(
        "--epochs", type=int, default=5,
        help="adapter epochs; cosine T_max = epochs (default: %(default)s; MODA 2024: 20)",
    )
    p.add_argument(
        "--learning-rate", type=float, default=0.05,
        help="adapter peak SGD learning rate, Nesterov 0.9 (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size", type=int, default=128,
        help="adapter training batch size (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="adapter init and data order seed")
    p.add_argument(
        "--data-dir", help="dataset directory (default: each run's, or $MODJAX_DATA_DIR)"
    )
    p.add_argument("--out", help="write the result as JSON to this file")


def _check_replace_args(args) -> None:
    if args.epochs < 1:
        raise ValueError(f"--epochs={args.epochs} must be >= 1 (MODA: 5)")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size={args.batch_size} must be >= 1")
    if not args.learning_rate > 0:
        raise ValueError(f"--learning-rate={args.learning_rate} must be > 0")


def replace(args) -> int:
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np

    from modjax import data
    from modjax.modular import compose as cp
    from modjax.modular import io as module_io
    from modjax.modular import replace as rp
    from modjax.runs import report, training

    _check_replace_args(args)
    module = module_io.load_module(args.module)  # validate cheap inputs before restoring runs
    if len(module.classes) != 1:
        raise ValueError(
            f"--module {args.module} holds classes {list(module.classes)}; replacement needs a "
            "single-class module (one directory class_<c> written by `modjax modularize`)"
        )
    weak_dir = pathlib.Path(args.weak_workdir)
    weak_config, weak_run, weak_vars, weak_step = load_run(weak_dir, args.data_dir)
    n = weak_run.info.num_classes
    k = args.target_class
    if not 0 <= k < n:
        raise ValueError(
            f"--target-class={k} is not a class of the weak run ({weak_config.dataset}, {n} "
            f"classes): expected 0..{n - 1}"
        )
    config, run, strong_vars, step = restore_parent(module, args.module, args.data_dir)
    if tuple(run.info.image_shape) != tuple(weak_run.info.image_shape):
        raise ValueError(
            f"the strong run's images are {tuple(run.info.image_shape)} but the weak run's are "
            f"{tuple(weak_run.info.image_shape)}; both models must read the same inputs"
        )

    key0 = jax.random.PRNGKey(0)
    strong_pre = training.make_preprocess(config, run.info, augment=False)
    key = cp.parent_key(module.parent)
    composed = cp.compose(
        [module], {key: strong_vars}, preprocess_by_parent={key: lambda x: strong_pre(x, key0)}
    )

    def strong_apply(images):
        return composed.apply_fn(jnp.asarray(images, jnp.float32))[:, 0]

    weak_pre = training.make_preprocess(weak_config, weak_run.info, augment=False)
    weak_model = weak_run.model

    @jax.jit
    def weak_apply(images):
        x = weak_pre(jnp.asarray(images, jnp.float32), key0)
        return weak_model.apply(weak_vars, x, train=False)[0]

    t0 = time.perf_counter()
    images, labels = weak_run.train_data
    params = rp.train_adapter(
        weak_apply, strong_apply,
        data.eval_batches(images, labels, global_batch_size=args.batch_size),
        target_index=k, num_epochs=args.epochs, learning_rate=args.learning_rate,
        batch_size=args.batch_size, seed=args.seed,
    )
    train_s = time.perf_counter() - t0
    s_images, s_labels = run.train_data
    lo, hi = cp.fit_calibration(
        composed.groups[0], data.eval_batches(s_images, s_labels, global_batch_size=256),
        preprocess=strong_pre,
    )
    lo, hi = float(lo[0]), float(hi[0])

    test_x, test_y = weak_run.test_data
    predictors = {
        "weak": weak_apply,
        "cnnsplitter": jax.jit(lambda x: rp.cnnsplitter_patch(
            weak_apply(x), strong_apply(x), lo, hi, target_index=k)),
        "moda_adapter": jax.jit(rp.replaced_apply(weak_apply, strong_apply, params,
                                                  target_index=k)),
    }
    acc = {
        name: rp.per_class_accuracy(f, test_x, test_y, num_classes=n, batch_size=256)
        for name, f in predictors.items()
    }
    overall = {}
    counts = np.bincount(test_y, minlength=n)
    for name, a in acc.items():
        overall[name] = float(np.nansum(a * counts) / counts.sum())
    changes = {
        name: dict(zip(("tc", "mean_non_tc"), rp.per_class_change(acc["weak"], acc[name],
                                                                   target_index=k)))
        for name in ("cnnsplitter", "moda_adapter")
    }
    names = weak_run.info.class_names
    rows = [
        {
            "class": c, "name": (names[c] if names else str(c)) + (" (TC)" if c == k else ""),
            "test_samples": int(counts[c]),
            **{name: float(a[c]) for name, a in acc.items()},
        }
        for c in range(n)
    ]
    value = {
        "weak_workdir": str(weak_dir.resolve()), "weak_step": weak_step,
        "module": str(pathlib.Path(args.module).resolve()),
        "strong_class": int(module.classes[0]), "strong_method": module.method,
        "target_class": k, "epochs": args.epochs, "learning_rate": args.learning_rate,
        "batch_size": args.batch_size, "seed": args.seed,
        "strong_min": lo, "strong_max": hi,
        "accuracy": overall, "per_class": rows, "change": changes,
        "adapter_train_time_s": train_s,
    }
    if args.out:
        write_json_atomic(pathlib.Path(args.out), report.jsonable(value))
    print(report.format_table(
        rows, ["class", "name", "test_samples", "weak", "cnnsplitter", "moda_adapter"]
    ))
    print(
        f"\nreplaced class {k} of the weak {weak_config.model} ({weak_config.dataset}) with the "
        f"{module.method} module of class {module.classes[0]} ({config.model}); accuracy weak "
        f"{overall['weak']:.4f}, cnnsplitter {overall['cnnsplitter']:.4f}, moda adapter "
        f"{overall['moda_adapter']:.4f}"
    )
    for name in ("cnnsplitter", "moda_adapter"):
        c = changes[name]
        print(f"TC | mean non-TC change, {name}: {c['tc']:+.4f} | {c['mean_non_tc']:+.4f}")
    if args.out:
        print(f"result in {args.out}")
    return 0
