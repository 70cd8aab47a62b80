"""Module replacement (METHODS §5.7) on the embedded digits: weak-model repair, end to end.

Run: python experiments/replace_digits.py [seed]   (~1 min on a 2-core CPU)

The protocol needs class-subset datasets (strong classes, a relabelled 6-class weak set), which
`modjax train` does not build, so this file is a config plus the thin script that runs it:

1. Strong classes {0..4}, weak classes {5..9}. Weak data: classes 5..9 relabelled 0..4 plus
   TC (a strong class) relabelled 5; 10% of the training images per class; all test images of
   the 6 classes.
2. Weak model: MLP, MODA loss, trained briefly (underfitted).
3. Strong model: MLP, MODA loss, on the 5 strong classes (all their training data); TC's module
   extracted (tau = 0.9, strong training data) and pruned to a 1-logit network.
4. MODA adapter (`replace.train_adapter`) and CNNSplitter-style patch; per-class accuracy
   change "TC | mean non-TC" vs the weak model.
"""

import json
import sys
import time


def get_config():
    return dict(
        target_class=2,  # TC, a strong class
        strong_classes=(0, 1, 2, 3, 4),
        weak_classes=(5, 6, 7, 8, 9),
        weak_fraction=0.1,
        strong_model=dict(name="mlp", depth=2),
        weak_model=dict(name="mlp", depth=1, hidden=16),
        strong_epochs=20,
        weak_epochs=10,
        batch_size=32,
        learning_rate=0.05,
        threshold=0.9,
        adapter_epochs=5,
        seed=0,
    )


def _train(model, images, labels, *, num_classes, epochs, batch_size, lr, seed, preprocess):
    import jax

    from modjax import data, loop, objectives, train

    steps = data.steps_per_epoch(len(labels), batch_size)
    tx = train.make_optimizer(learning_rate=lr, steps_per_epoch=steps, num_epochs=epochs)
    state = train.create_train_state(model=model, tx=tx, seed=seed, image_shape=images.shape[1:])
    step = train.make_train_step(
        model=model,
        tx=tx,
        objective=objectives.moda_objective(num_classes=num_classes),
        preprocess=preprocess,
    )
    state = loop.fit(
        train_step=step,
        state=state,
        steps_per_epoch=steps,
        num_epochs=epochs,
        epoch_batches=lambda epoch: data.train_batches(
            images, labels, global_batch_size=batch_size, seed=seed, epoch=epoch
        ),
        log_every=steps,
        callbacks=[loop.check_finite()],
    )
    return jax.device_get(train.variables_of(state))


def run(cfg) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from modjax import data, models
    from modjax import modular as mz
    from modjax.modular import replace as rp
    from modjax.modular.prune import prune

    t0 = time.perf_counter()
    info = data.get_info("digits")
    pre = data.make_preprocess(info, augment=False)
    key0 = jax.random.PRNGKey(0)
    x_tr, y_tr = data.load("digits", "train")
    x_te, y_te = data.load("digits", "test")
    tc = cfg["target_class"]
    strong_cls, weak_cls = list(cfg["strong_classes"]), list(cfg["weak_classes"])

    # Strong: MODA on the strong classes, all their training data.
    sel = np.isin(y_tr, strong_cls)
    s_x, s_y = x_tr[sel], np.searchsorted(strong_cls, y_tr[sel]).astype(np.int32)
    sm = dict(cfg["strong_model"])
    s_name = sm.pop("name")
    strong = models.get_model(s_name, num_classes=len(strong_cls), **sm)
    s_vars = _train(
        strong,
        s_x,
        s_y,
        num_classes=len(strong_cls),
        epochs=cfg["strong_epochs"],
        batch_size=cfg["batch_size"],
        lr=cfg["learning_rate"],
        seed=cfg["seed"],
        preprocess=pre,
    )
    parent = mz.describe_parent(
        s_name,
        dataset="digits[0-4]",
        input_shape=info.image_shape,
        num_classes=len(strong_cls),
        **sm,
    )
    ext = mz.extract_modules(
        data.eval_batches(s_x, s_y, global_batch_size=256),
        variables=s_vars,
        parent=parent,
        preprocess=pre,
        method="moda",
        threshold=cfg["threshold"],
        disable=True,
    )
    tc_pos = strong_cls.index(tc)
    module = ext.modules[tc_pos]
    m_model, m_vars = prune(
        s_name,
        parent["model_kwargs"],
        s_vars,
        module.keep,
        classes=[tc_pos],
        method="moda",
        input_shape=info.image_shape,
    )

    @jax.jit
    def strong_apply(images):
        return m_model.apply(m_vars, pre(jnp.asarray(images, jnp.float32), key0))[0][:, 0]

    scores = np.concatenate(
        [
            np.asarray(strong_apply(b["image"]))[b["mask"]]
            for b in data.eval_batches(s_x, s_y, global_batch_size=256)
        ]
    )
    s_min, s_max = float(scores.min()), float(scores.max())

    # Weak: 6 classes (weak classes -> 0..4, TC -> 5), 10% of the training images per class.
    order = [*weak_cls, tc]
    k = len(order) - 1
    rng = np.random.default_rng(cfg["seed"])
    idx = np.concatenate(
        [
            rng.permutation(np.flatnonzero(y_tr == c))[
                : max(1, round(cfg["weak_fraction"] * np.sum(y_tr == c)))
            ]
            for c in order
        ]
    )
    w_x, w_y = x_tr[idx], np.array([order.index(c) for c in y_tr[idx]], np.int32)
    sel = np.isin(y_te, order)
    t_x, t_y = x_te[sel], np.array([order.index(c) for c in y_te[sel]], np.int32)
    wm = dict(cfg["weak_model"])
    weak = models.get_model(wm.pop("name"), num_classes=len(order), **wm)
    w_vars = _train(
        weak,
        w_x,
        w_y,
        num_classes=len(order),
        epochs=cfg["weak_epochs"],
        batch_size=cfg["batch_size"],
        lr=cfg["learning_rate"],
        seed=cfg["seed"],
        preprocess=pre,
    )

    @jax.jit
    def weak_apply(images):
        return weak.apply(w_vars, pre(jnp.asarray(images, jnp.float32), key0))[0]

    params = rp.train_adapter(
        weak_apply,
        strong_apply,
        data.eval_batches(w_x, w_y, global_batch_size=128),
        target_index=k,
        num_epochs=cfg["adapter_epochs"],
        seed=cfg["seed"],
    )
    preds = {
        "weak": weak_apply,
        "cnnsplitter": jax.jit(
            lambda x: rp.cnnsplitter_patch(
                weak_apply(x), strong_apply(x), s_min, s_max, target_index=k
            )
        ),
        "moda_adapter": jax.jit(
            rp.replaced_apply(weak_apply, strong_apply, params, target_index=k)
        ),
    }
    acc = {n: rp.per_class_accuracy(f, t_x, t_y, num_classes=len(order)) for n, f in preds.items()}
    change = {
        n: rp.per_class_change(acc["weak"], acc[n], target_index=k)
        for n in ("cnnsplitter", "moda_adapter")
    }
    return {
        "config": cfg,
        "weak_train_samples": len(w_y),
        "module_kernel_rate": module.metrics.get("kernel_rate"),
        "strong_min_max": [s_min, s_max],
        "per_class_accuracy": {n: [round(float(v), 4) for v in a] for n, a in acc.items()},
        "tc_change_mean_non_tc_change": {n: [round(v, 4) for v in c] for n, c in change.items()},
        "time_s": round(time.perf_counter() - t0, 1),
    }


if __name__ == "__main__":
    config = get_config()
    if len(sys.argv) > 1:
        config["seed"] = int(sys.argv[1])
    print(json.dumps(run(config), indent=1))
