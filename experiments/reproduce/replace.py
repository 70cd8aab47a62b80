"""MODA module replacement (METHODS §5.7): weak-model repair, the whole protocol on one dataset.

    from experiments.reproduce import replace
    settings = replace.settings_for(config["replace"], "vgg16_moda")   # a scale config's
    result = replace.run_seed(settings, seed=0, data_dir="../shared/datasets", cache="runs/x")

1. Strong classes {0..4}, weak classes {5..9}. Weak data for a target class TC: the weak classes
   relabelled 0..4 plus TC relabelled 5; `weak_fraction` of the training images per class
   (sampled once per seed); all test images of the 6 classes.
2. Weak model (LeNet5 in the paper), MODA loss, a `weak_epochs` schedule; its state after
   `underfit_epoch` epochs is the *underfitted* weak model, after `overfit_epoch` the
   *overfitted* one (the paper: 10 and 195 of 200).
3. Strong model (VGG16 (b) / ResNet18), MODA loss, on the strong classes (augmented); each
   strong class's module extracted (τ, strong training data) and pruned to a 1-logit network.
4. MODA adapter `Lin(6, 6)` over [5 weak logits, strong TC logit] and the CNNSplitter-style
   baseline, measured by `modjax.modular.replace.evaluate_replacement` (the evaluation `modjax
   replace` runs too): per-class test accuracy change "TC | mean non-TC" vs the weak model.

The settings (`SETTINGS`) come from the `replace` entry of a scale config
(`experiments/reproduce/configs/paper.py` is the paper's recipe; the others override a few
fields). Every trained network is cached in `cache` (msgpack) and every TC's result as JSON, so a
run that stops resumes at the last finished stage. `python -m experiments.reproduce moda_replace`
runs it over seeds and writes the table; `--scale digits` is the minute-long version.
"""

import json
import pathlib
import time

from modjax.modules import atomic

SETTINGS = (
    "dataset",
    "image_size",  # resize on device (32 for Fashion-MNIST on the CNNs)
    "strong_classes",
    "weak_classes",
    "target_classes",  # TCs: one weak model each
    "weak_fraction",
    "strong_model",  # zoo kwargs; `settings_for` adds the strong model's name
    "weak_model",  # zoo name and kwargs
    "strong_epochs",
    "strong_train_examples",  # a seeded subset of the strong classes' training images
    "weak_epochs",  # the weak model's schedule (cosine period)
    "underfit_epoch",
    "overfit_epoch",
    "batch_size",
    "learning_rate",
    "threshold",
    "adapter_epochs",
)
"""Every setting of the protocol, in the order the results file's recipe lists them."""


def settings_for(replace: dict, model: str) -> dict:
    """A scale config's `replace` settings with `model` as the strong model, checked."""
    settings = {k: replace[k] for k in SETTINGS if k in replace}
    settings["strong_model"] = {"name": model, **replace.get("strong_model", {})}
    extra = {k: v for k, v in replace.items() if k not in SETTINGS}  # refused by the check
    return check_settings({**settings, **extra})


def check_settings(cfg: dict) -> dict:
    """Returns `cfg` if it holds exactly `SETTINGS` with consistent values; else names the fault."""
    unknown = sorted(set(cfg) - set(SETTINGS))
    missing = [k for k in SETTINGS if k not in cfg]
    if unknown or missing:
        raise ValueError(
            f"replacement settings: unknown {unknown}, missing {missing}; expected exactly "
            f"{list(SETTINGS)}"
        )
    if not 1 <= cfg["underfit_epoch"] <= cfg["overfit_epoch"] <= cfg["weak_epochs"]:
        raise ValueError(
            f"underfit_epoch={cfg['underfit_epoch']}, overfit_epoch={cfg['overfit_epoch']}, "
            f"weak_epochs={cfg['weak_epochs']}: expected 1 <= underfit_epoch <= overfit_epoch "
            "<= weak_epochs"
        )
    if not 0 < cfg["weak_fraction"] <= 1:
        raise ValueError(f"weak_fraction={cfg['weak_fraction']} must be in (0, 1]")
    bad = [c for c in cfg["target_classes"] if c not in cfg["strong_classes"]]
    if bad:
        raise ValueError(
            f"target_classes {bad} are not strong classes {list(cfg['strong_classes'])}"
        )
    return cfg


def _model(spec: dict, num_classes: int):
    from modjax import models

    kwargs = {k: v for k, v in spec.items() if k != "name"}
    return models.get_model(spec["name"], num_classes=num_classes, **kwargs)


def _train(
    model, images, labels, *, epochs, snapshot_epochs, cfg, seed, preprocess, cache, progress
):
    """MODA-trains `model`; returns `{epoch: variables}` at each of `snapshot_epochs` (cached)."""
    import flax.serialization
    import jax

    from modjax import data, loop, objectives, train
    from modjax.runs.callbacks import progress_bar

    num_classes = int(labels.max()) + 1
    steps = data.steps_per_epoch(len(labels), cfg["batch_size"])
    tx = train.make_optimizer(
        learning_rate=cfg["learning_rate"], steps_per_epoch=steps, num_epochs=epochs
    )
    shape = preprocess(images[:1], jax.random.PRNGKey(0)).shape[1:]
    state = train.create_train_state(model=model, tx=tx, seed=seed, image_shape=shape)
    template = {e: jax.device_get(train.variables_of(state)) for e in snapshot_epochs}
    if cache.exists():
        return flax.serialization.from_bytes(template, cache.read_bytes())
    step = train.make_train_step(
        model=model,
        tx=tx,
        objective=objectives.moda_objective(num_classes=num_classes),
        preprocess=preprocess,
    )
    snaps = {}

    def on_epoch_end(event):
        if event.epoch in snapshot_epochs:
            snaps[event.epoch] = jax.device_get(train.variables_of(event.state))

    bar = progress_bar(
        total=steps * epochs, initial=0, global_batch_size=cfg["batch_size"], enabled=progress
    )
    with bar as show:
        loop.fit(
            train_step=step,
            state=state,
            steps_per_epoch=steps,
            num_epochs=epochs,
            epoch_batches=lambda epoch: data.train_batches(
                images, labels, global_batch_size=cfg["batch_size"], seed=seed, epoch=epoch
            ),
            log_every=steps,
            callbacks=[loop.check_finite(), loop.Callback(on_epoch_end=on_epoch_end), show],
        )
    atomic.write_bytes(cache, flax.serialization.to_bytes(snaps))
    return snaps


def _subset_per_class(labels, classes, fraction, rng):
    import numpy as np

    return np.concatenate(
        [
            rng.permutation(np.flatnonzero(labels == c))[
                : max(1, round(fraction * np.sum(labels == c)))
            ]
            for c in classes
        ]
    )


def _strong_model(cfg, seed, arrays, info, cache, progress):
    """Trains (or loads) the strong model: `(model, variables, name, spec, train x, train y)`."""
    import numpy as np

    from modjax import data

    (x_tr, y_tr), _ = arrays
    strong = list(cfg["strong_classes"])
    idx = np.flatnonzero(np.isin(y_tr, strong))
    n = cfg["strong_train_examples"]
    if n is not None and n < len(idx):
        idx = np.sort(np.random.default_rng(seed).permutation(idx)[:n])
    s_x, s_y = x_tr[idx], np.searchsorted(strong, y_tr[idx]).astype(np.int32)
    spec = dict(cfg["strong_model"])
    name = spec.pop("name")
    model = _model(cfg["strong_model"], len(strong))
    epochs = cfg["strong_epochs"]
    variables = _train(
        model,
        s_x,
        s_y,
        epochs=epochs,
        snapshot_epochs=(epochs,),
        cfg=cfg,
        seed=seed,
        preprocess=data.make_preprocess(info, augment=True, image_size=cfg["image_size"]),
        cache=cache / "strong.msgpack",
        progress=progress,
    )[epochs]
    return model, variables, name, spec, s_x, s_y


def _strong_accuracy(cfg, seed, arrays, info, cache) -> float:
    """The strong model's test accuracy on the strong classes (cached in `strong.json`)."""
    import numpy as np

    from modjax import data, loop, train

    path = cache / "strong.json"
    if path.exists():
        return json.loads(path.read_text())["test_accuracy"]
    model, variables, *_ = _strong_model(cfg, seed, arrays, info, cache, progress=False)
    _, (x_te, y_te) = arrays
    strong = list(cfg["strong_classes"])
    sel = np.isin(y_te, strong)
    pre = data.make_preprocess(info, augment=False, image_size=cfg["image_size"])
    result = loop.evaluate(
        eval_step=train.make_eval_step(model=model, preprocess=pre, num_classes=len(strong)),
        variables=variables,
        images=x_te[sel],
        labels=np.searchsorted(strong, y_te[sel]).astype(np.int32),
        global_batch_size=256,
        prefetch=0,
    )
    accuracy = float(result["accuracy"])
    atomic.write_json(path, {"test_accuracy": accuracy})
    return accuracy


def _strong_modules(cfg, seed, arrays, info, cache, progress):
    """The strong model's TC modules: `{TC: (apply_fn, min, max, module metrics)}`."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from modjax import data
    from modjax import modular as mz
    from modjax.modular.prune import prune

    strong = list(cfg["strong_classes"])
    _, variables, name, spec, s_x, s_y = _strong_model(cfg, seed, arrays, info, cache, progress)
    test_pre = data.make_preprocess(info, augment=False, image_size=cfg["image_size"])
    shape = test_pre(s_x[:1], jax.random.PRNGKey(0)).shape[1:]
    parent = mz.describe_parent(
        name, dataset=cfg["dataset"], input_shape=shape, num_classes=len(strong), **spec
    )
    ext = mz.extract_modules(
        data.eval_batches(s_x, s_y, global_batch_size=256),
        variables=variables,
        parent=parent,
        preprocess=test_pre,
        method="moda",
        threshold=cfg["threshold"],
        disable=not progress,
    )
    key0 = jax.random.PRNGKey(0)
    out = {}
    for tc in cfg["target_classes"]:
        pos = strong.index(tc)
        module = ext.modules[pos]
        m_model, m_vars = prune(
            name,
            parent["model_kwargs"],
            variables,
            module.keep,
            classes=[pos],
            method="moda",
            input_shape=shape,
        )

        def apply(images, m_model=m_model, m_vars=m_vars):
            return m_model.apply(m_vars, test_pre(jnp.asarray(images), key0))[0][:, 0]

        apply = jax.jit(apply)
        scores = np.concatenate(
            [
                np.asarray(apply(b["image"]))[b["mask"]]
                for b in data.eval_batches(s_x, s_y, global_batch_size=256)
            ]
        )
        out[tc] = (apply, float(scores.min()), float(scores.max()), module.metrics)
    return out


def _repair_one(cfg, seed, tc, strong, arrays, info, cache, progress) -> dict:
    """One TC: trains (or loads) its weak model, repairs both weak states; JSON-able result."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from modjax import data
    from modjax.modular import replace as rp

    (x_tr, y_tr), (x_te, y_te) = arrays
    order = [*cfg["weak_classes"], tc]
    k = len(order) - 1
    idx = _subset_per_class(y_tr, order, cfg["weak_fraction"], np.random.default_rng(seed))
    w_x, w_y = x_tr[idx], np.array([order.index(c) for c in y_tr[idx]], np.int32)
    sel = np.isin(y_te, order)
    t_x, t_y = x_te[sel], np.array([order.index(c) for c in y_te[sel]], np.int32)
    pre = data.make_preprocess(info, augment=False, image_size=cfg["image_size"])
    weak = _model(cfg["weak_model"], len(order))
    und, ove = cfg["underfit_epoch"], cfg["overfit_epoch"]
    states = _train(
        weak,
        w_x,
        w_y,
        epochs=cfg["weak_epochs"],
        snapshot_epochs=tuple(sorted({und, ove})),
        cfg=cfg,
        seed=seed,
        preprocess=pre,
        cache=cache / f"weak_tc{tc}.msgpack",
        progress=progress,
    )
    strong_apply, s_min, s_max, module_metrics = strong[tc]
    key0 = jax.random.PRNGKey(0)
    result = {
        "tc": tc,
        "weak_train_samples": len(w_y),
        "test_samples": len(t_y),
        "module": {k_: float(v) for k_, v in module_metrics.items() if np.isscalar(v)},
        "strong_min_max": [s_min, s_max],
    }
    for label, epoch in (("und", und), ("ove", ove)):
        w_vars = states[epoch]

        def weak_apply(images, w_vars=w_vars):
            return weak.apply(w_vars, pre(jnp.asarray(images), key0))[0]

        value = rp.evaluate_replacement(
            jax.jit(weak_apply),
            strong_apply,
            train_batches=data.eval_batches(w_x, w_y, global_batch_size=cfg["batch_size"]),
            test_images=t_x,
            test_labels=t_y,
            target_index=k,
            num_classes=len(order),
            strong_min=s_min,
            strong_max=s_max,
            num_epochs=cfg["adapter_epochs"],
            learning_rate=cfg["learning_rate"],
            batch_size=cfg["batch_size"],
            seed=seed,
        )
        del value["adapter_train_time_s"]  # the cached result is the same on every run
        result[label] = {"epoch": epoch, **value}
    return result


def upgrade_result(result: dict) -> dict:
    """A TC's cached result in the key names of `evaluate_replacement`.

    Results written before the evaluation was shared named the approaches `cnns` and `moda`,
    the mean non-TC change `non_tc`, and kept the weak model's overall accuracy as
    `weak_accuracy`; their numbers are kept as they are.
    """
    names = {"weak": "weak", "cnns": "cnnsplitter", "moda": "moda_adapter"}
    for label in ("und", "ove"):
        old = result[label]
        if "change" in old:
            continue
        acc = {names[n]: a for n, a in old["per_class_accuracy"].items()}
        result[label] = {
            "epoch": old["epoch"],
            "per_class_accuracy": acc,
            "accuracy": {"weak": old["weak_accuracy"]},
            "change": {
                names[n]: {"tc": old[n]["tc"], "mean_non_tc": old[n]["non_tc"]}
                for n in ("cnns", "moda")
            },
        }
    return result


def cached_seed(cfg: dict, *, seed: int, cache) -> dict | None:
    """`run_seed`'s result read from `cache` alone, or None while a stage is missing there."""
    cache = pathlib.Path(cache)
    paths = [cache / f"replace_tc{tc}.json" for tc in cfg["target_classes"]]
    if not all(p.exists() for p in [*paths, cache / "strong.json"]):
        return None
    return {
        "seed": seed,
        "strong_accuracy": json.loads((cache / "strong.json").read_text())["test_accuracy"],
        "classes": [upgrade_result(json.loads(p.read_text())) for p in paths],
        "time_s": 0.0,
    }


def run_seed(cfg: dict, *, seed: int, data_dir=None, cache, progress: bool = False) -> dict:
    """The protocol for one seed and every TC of `cfg`; cached per stage under `cache`."""
    from modjax import data

    cache = pathlib.Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    done = cached_seed(cfg, seed=seed, cache=cache)
    if done is not None:
        return {**done, "time_s": time.perf_counter() - t0}
    info = data.get_info(cfg["dataset"])
    arrays = (
        data.load(cfg["dataset"], "train", data_dir=data_dir),
        data.load(cfg["dataset"], "test", data_dir=data_dir),
    )
    done = {}
    for tc in cfg["target_classes"]:
        path = cache / f"replace_tc{tc}.json"
        if path.exists():
            done[tc] = upgrade_result(json.loads(path.read_text()))
    missing = [tc for tc in cfg["target_classes"] if tc not in done]
    if missing:
        strong = _strong_modules(cfg, seed, arrays, info, cache, progress)
        for tc in missing:
            done[tc] = _repair_one(cfg, seed, tc, strong, arrays, info, cache, progress)
            atomic.write_json(cache / f"replace_tc{tc}.json", done[tc])
    return {
        "seed": seed,
        "strong_accuracy": _strong_accuracy(cfg, seed, arrays, info, cache),
        "classes": [done[tc] for tc in cfg["target_classes"]],
        "time_s": time.perf_counter() - t0,
    }


__all__ = [
    "SETTINGS",
    "cached_seed",
    "check_settings",
    "run_seed",
    "settings_for",
    "upgrade_result",
]
