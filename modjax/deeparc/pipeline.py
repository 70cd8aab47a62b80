"""Host drivers of the DeepArc protocol shared by the CLI, experiments and notebooks."""

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from modjax import loop, objectives, train
from modjax.deeparc import repair, similarity, surgery
from modjax.deeparc.blocks import block_names

Preprocess = Callable[[jax.Array, jax.Array], jax.Array]


def accuracy(
    model,
    variables,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    preprocess: Preprocess,
    num_classes: int,
    batch_size: int = 256,
) -> float:
    """Test accuracy of `model` (one compiled eval step per model shape, padded batches)."""
    step = train.make_eval_step(model=model, preprocess=preprocess, num_classes=num_classes)
    return _accuracy(step, variables, images, labels, batch_size=batch_size)


def _accuracy(eval_step, variables, images, labels, *, batch_size: int) -> float:
    """`loop.evaluate`'s accuracy of one eval step over padded batches of `batch_size`."""
    result = loop.evaluate(
        eval_step=eval_step,
        variables=variables,
        images=images,
        labels=labels,
        global_batch_size=batch_size,
        prefetch=0,
    )
    return float(result["accuracy"])


def block_cka(
    model,
    variables,
    images: np.ndarray,
    *,
    preprocess: Preprocess,
    batch_size: int = 256,
    passes: int = 10,
    seed: int = 0,
    mesh=None,
) -> tuple[list[str], np.ndarray]:
    """`(block names, [L, L] CKA)` of the block outputs over `images` (METHODS §8.2)."""
    names = block_names(model)
    sim = similarity.layer_cka(
        model=model,
        variables=variables,
        images=images,
        layers=names,
        preprocess=preprocess,
        batch_size=batch_size,
        passes=passes,
        seed=seed,
        mesh=mesh,
    )
    return names, sim


def make_removal_eval(
    model,
    variables,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    preprocess: Preprocess,
    num_classes: int,
    batch_size: int = 256,
) -> Callable[[list[int]], float]:
    """`removed -> accuracy` of `model` without those blocks, cached per subset."""
    cache: dict[tuple[int, ...], float] = {}

    def evaluate_fn(removed: list[int]) -> float:
        key = tuple(sorted(removed))
        if key not in cache:
            m, v = surgery.remove_blocks(model, variables, list(key))
            cache[key] = accuracy(
                m,
                v,
                images,
                labels,
                preprocess=preprocess,
                num_classes=num_classes,
                batch_size=batch_size,
            )
        return cache[key]

    return evaluate_fn


def _shuffled(arrays: dict[str, np.ndarray], batch_size: int, steps_per_epoch: int, seed: int):
    """`epoch -> batches` of `arrays`' rows, reshuffled per epoch (the last partial batch dropped)."""

    def epoch_batches(epoch):
        order = np.random.default_rng([seed, epoch]).permutation(len(next(iter(arrays.values()))))
        for i in range(steps_per_epoch):
            idx = np.sort(order[i * batch_size : (i + 1) * batch_size])
            yield {k: a[idx] for k, a in arrays.items()}

    return epoch_batches


def finetune(
    model,
    variables,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    preprocess: Preprocess,
    epochs: int,
    learning_rate: float,
    batch_size: int = 128,
    seed: int = 0,
) -> Any:
    """`variables` after a short standard fine-tune (CE, SGD-Nesterov, per-epoch cosine, BN in
    training mode, no augmentation): how a network with blocks removed is usually recovered.

    DeepArc itself does not fine-tune after removal (METHODS §8.4); this is the comparison row.
    """
    steps_per_epoch = len(labels) // batch_size
    if steps_per_epoch < 1 or epochs < 1:
        raise ValueError(
            f"fine-tuning needs epochs >= 1 and at least batch_size={batch_size} images; got "
            f"epochs={epochs}, {len(labels)} images"
        )
    tx = train.make_optimizer(
        learning_rate=learning_rate, steps_per_epoch=steps_per_epoch, num_epochs=epochs
    )
    params = variables["params"]
    state = train.TrainState(
        step=np.int32(0),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        rng=jax.random.PRNGKey(seed),
    )
    step = train.make_train_step(
        model=model, tx=tx, objective=objectives.standard, preprocess=preprocess
    )

    arrays = {"image": images, "label": labels.astype(np.int32)}
    state = loop.fit(
        train_step=step,
        state=jax.device_put(state),
        epoch_batches=_shuffled(arrays, batch_size, steps_per_epoch, seed),
        steps_per_epoch=steps_per_epoch,
        num_epochs=epochs,
        callbacks=[loop.check_finite()],
        log_every=steps_per_epoch,
        prefetch=0,
    )
    return jax.device_get(train.variables_of(state))


@dataclasses.dataclass(frozen=True)
class RepairResult:
    """What `run_repair` reports; `variables` are the repaired model's."""

    scores: list[float]
    selected: list[int]
    target_layer: str
    trained_share: float
    before: dict[str, float]
    after: dict[str, float]
    variables: Any


def error_images(
    model,
    variables,
    *sets: tuple[np.ndarray, np.ndarray],
    preprocess: Preprocess,
    attacks: Sequence[dict[str, Any]],
    seed: int = 0,
) -> list[list[np.ndarray]]:
    """Per set of `(images, labels)`, one uint8 PGD image array per attack (`repair.make_pgd`
    keyword arguments), attacked on `variables`; attack i draws its start from key(seed) ⊕ i,
    so `run_repair`'s error images can be made again from the parent."""
    rng = jax.random.key(seed)
    out: list[list[np.ndarray]] = [[] for _ in sets]
    for i, attack in enumerate(attacks):
        fn = repair.make_pgd(model=model, preprocess=preprocess, **attack)
        for (src, lab), advs in zip(sets, out, strict=True):
            x = fn(variables, src, lab, jax.random.fold_in(rng, i))
            advs.append(np.asarray(jax.device_get(x)).round().clip(0, 255).astype(np.uint8))
    return out


def run_repair(
    model,
    variables,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    preprocess: Preprocess,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    num_classes: int,
    attacks: Sequence[dict[str, Any]] = ({"eps": 8.0, "step_size": 2.0, "steps": 7},),
    top_k: int = 5,
    max_share: float | None = None,
    epochs: int = 10,
    learning_rate: float = 1e-4,
    batch_size: int = 128,
    seed: int = 0,
    train_all: bool = False,
    mse_weight: float = 0.5,
    bn: str = "train",
    recalibrate: bool = True,
) -> RepairResult:
    """DeepArc repair (METHODS §8.5) with PGD error images; returns scores, share and accuracies.

    Error images are PGD adversarial examples of `images` (one set per entry of `attacks`,
    `repair.make_pgd` keyword arguments), rounded to uint8. Deviation scores sum, over the
    attacks, the drops of benign-vs-error linear CKA across each block; the top-k blocks are
    fine-tuned on benign + error images (benign labels), the rest frozen. Accuracies are reported on the
    mixed repair set, its error half, the clean test set and PGD images of the test set.
    `max_share` caps the share of parameters trained (`repair.select_blocks`). `train_all` is
    the full-retraining baseline: the same data, loss and epochs with every parameter trained.
    `mse_weight` weighs the activation term (0.5 in DeepArc; the CE weight is 1 - mse_weight).
    BatchNorm of the trained blocks (every block with `train_all`; the other blocks' BN layers
    always keep their statistics). `bn` (`repair.BN_MODES`) is its mode during the repair:
    `"train"` (default) runs it in training mode, its running statistics following the mixed
    batches, as Keras trains a trainable BN layer (DeepArc's framework); `"frozen"` runs it in
    inference mode with the old statistics. `recalibrate` (default) then recomputes those
    statistics on the benign repair images (`repair.recalibrate_bn`), so clean inputs are
    normalized with clean statistics of the new weights. Measured on a ResNet-56 (issue 20,
    `benchmarks/results/deeparc_r56_cpu.md`): with frozen statistics the retrained blocks
    drift out of their normalization, which costs clean accuracy and, at lr <= 1e-3, is all
    the "repair" there is (recalibrated, the error images are back to 0%); training mode
    with recalibration repairs for real.

    Raises:
        ValueError: a model without residual blocks, `top_k` outside 1..blocks, a `max_share`
            that no block fits (both checked before the attack), or attacks that lower the
            accuracy on `images` not at all (no error set to repair with).
    """
    names = repair.repair_blocks(model)
    if not 1 <= top_k <= len(names):
        raise ValueError(f"top_k={top_k} must be in 1..{len(names)} (the model's blocks)")
    if bn not in repair.BN_MODES:
        raise ValueError(f"bn={bn!r} must be one of {repair.BN_MODES}")
    shares = repair.block_shares(model, variables["params"]) if max_share is not None else None
    if shares is not None and min(shares) > max_share:  # before the attack, not after it
        repair.select_blocks(np.zeros(len(names)), top_k, shares=shares, max_share=max_share)
    rng = jax.random.key(seed)
    advs, test_advs = error_images(
        model, variables, (images, labels), (test_images, test_labels),
        preprocess=preprocess, attacks=attacks, seed=seed,
    )  # fmt: skip
    eval_step = train.make_eval_step(model=model, preprocess=preprocess, num_classes=num_classes)
    clean = _accuracy(eval_step, variables, images, labels, batch_size=256)
    fooled = [_accuracy(eval_step, variables, adv, labels, batch_size=256) for adv in advs]
    if all(acc >= clean for acc in fooled):
        raise ValueError(
            f"no successful attack: on the {len(labels)} repair images the accuracy is "
            f"{clean:.4f} clean and {', '.join(f'{a:.4f}' for a in fooled)} under the attacks "
            f"{list(attacks)}, so there is no error set to repair with; raise the radius (--eps) "
            "or the steps (--steps)"
        )
    sim_fn = repair.make_similarity_fn(model=model, layers=["stem", *names], preprocess=preprocess)
    sims = np.stack([np.asarray(sim_fn(variables, images, adv)) for adv in advs])
    scores = repair.deviation_scores(sims)
    selected = repair.select_blocks(scores, top_k, shares=shares, max_share=max_share)
    target_layer = names[selected[0]]

    mixed_x = np.concatenate([images, *advs])
    mixed_y = np.concatenate([labels] * (1 + len(advs))).astype(np.int32)
    apply = jax.jit(lambda v, x: model.apply(v, preprocess(x, rng), train=False)[1][target_layer])
    benign_target = np.asarray(apply(variables, images))
    targets = np.concatenate([benign_target] * (1 + len(advs)))

    def evaluate(v):
        def acc(x, y):  # one compiled eval step for every set (fixed padded batch shape)
            return _accuracy(eval_step, v, x, y, batch_size=256)

        return {
            "mixed": acc(mixed_x, mixed_y),
            "error_only": acc(np.concatenate(advs), np.concatenate([labels] * len(advs))),
            "clean_test": acc(test_images, test_labels),
            "error_test": acc(test_advs[0], test_labels),
        }

    before = evaluate(variables)
    labels_tree = repair.partition_labels(model, variables["params"], selected)
    if train_all:
        labels_tree = jax.tree.map(lambda _: repair.TRAIN, labels_tree)
    tx = repair.make_repair_optimizer(labels_tree, learning_rate=learning_rate)
    own = jax.tree.map(jnp.array, dict(variables))  # copies: the step donates its state
    state = train.TrainState(
        step=np.int32(0),
        params=own["params"],
        batch_stats=own.get("batch_stats", {}),
        opt_state=tx.init(own["params"]),
        rng=rng,
    )
    trained_keys = [k for k, v in labels_tree.items() if repair.TRAIN in jax.tree.leaves(v)]
    step = repair.make_repair_step(
        model=model,
        tx=tx,
        target_layer=target_layer,
        preprocess=preprocess,
        mse_weight=mse_weight,
        ce_weight=1.0 - mse_weight,
        bn_train=() if bn == "frozen" else trained_keys,
    )
    steps_per_epoch = max(len(mixed_y) // batch_size, 1)

    arrays = {"image": mixed_x, "label": mixed_y, "target": targets}
    state = loop.fit(
        train_step=step,
        state=jax.device_put(state),
        epoch_batches=_shuffled(arrays, batch_size, steps_per_epoch, seed),
        steps_per_epoch=steps_per_epoch,
        num_epochs=epochs,
        callbacks=[loop.check_finite()],
        log_every=steps_per_epoch,
        prefetch=0,
    )
    repaired = jax.device_get(train.variables_of(state))
    if recalibrate and repaired.get("batch_stats"):
        repaired = repair.recalibrate_bn(
            model,
            repaired,
            images,
            preprocess,
            trained_keys,
            batch_size=min(batch_size, 128, len(images)),
        )
    return RepairResult(
        scores=[float(s) for s in scores],
        selected=selected,
        target_layer=target_layer,
        trained_share=repair.trained_share(variables["params"], labels_tree),
        before=before,
        after=evaluate(repaired),
        variables=repaired,
    )
