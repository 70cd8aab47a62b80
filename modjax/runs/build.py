"""A run built from its settings: data, model, mesh, optimizer, objective, eval step (`Run`).

`build_run(config)` validates every setting and builds what training and every reader of a
trained workdir start from; `evaluate` is the run's test (or train) split evaluation.
"""

import dataclasses
from typing import Any

import numpy as np

from modjax import data, loop, models, objectives, parallel, train
from modjax.runs.config import TrainConfig


@dataclasses.dataclass
class Run:
    """What a run is built from (host objects; no arrays of the state)."""

    config: TrainConfig
    info: Any
    model: Any
    mesh: Any
    train_data: tuple[np.ndarray, np.ndarray]
    test_data: tuple[np.ndarray, np.ndarray]
    steps_per_epoch: int
    tx: Any
    eval_step: Any
    input_shape: tuple[int, int, int]
    # `validation_split` of the training examples, held out of `train_data`; None without one.
    validation_data: tuple[np.ndarray, np.ndarray] | None = None


GENERATOR_METHODS = ("mwt", "nemo")
"""The methods whose models are built with mask generators (their objectives read the masks)."""

NEMO_SETTINGS = {
    "nemo_weight": "contrastive_weight",
    "nemo_temperature": "temperature",
    "nemo_form": "form",
}
"""NeMo's config fields and the `objectives.nemo_objective` arguments they set."""


def uses_generators(method: str) -> bool:
    """Whether `method` trains a model with MwT-style mask generators (MwT and NeMo)."""
    return method in GENERATOR_METHODS


def _nemo_kwargs(config: TrainConfig, settings: dict) -> dict:
    """`nemo_objective` arguments: the given settings, then NeMo's per-architecture choices.

    NeMo's CNN trainer replaces the first masked layer's masks by ones in the loss; its ViT
    masks no layer of block 0 and has no such quirk (METHODS §6). modjax's ViTs have generators
    in every block, so for them the loss reads blocks 1.. only (block 0's generators learn from
    the cross-entropy alone) and α defaults to 0.15 (NeMo's ViT-S; CNNs: 1.0).
    """
    kwargs = {NEMO_SETTINGS[k]: v for k, v in settings.items()}
    model = models.get_model(config.model, width=config.width)
    if isinstance(model, models.ViT):
        depth = model.dims().depth
        layers = [f"block{i}.{unit}" for i in range(1, depth) for unit in ("attn", "mlp")]
        kwargs = {"contrastive_weight": 0.15, "layers": layers, "first_layer_ones": False, **kwargs}
    return kwargs


def make_objective(config: TrainConfig, num_classes: int):
    """The objective of `config.method` with the paper defaults unless weights are given.

    Raises:
        ValueError: a weight or setting of another method's objective (e.g. `cohesion_weight` or
            `nemo_temperature` with `method="standard"`), naming them and the method.
    """
    weights = {
        k: getattr(config, k)
        for k in (
            "cohesion_weight",
            "coupling_weight",
            "affinity_weight",
            "dispersion_weight",
            "compactness_weight",
            *NEMO_SETTINGS,
        )
        if getattr(config, k) is not None
    }
    if config.method == "standard":
        allowed, factory = set(), None
    elif config.method == "mwt":
        allowed = {"cohesion_weight", "coupling_weight"}
        factory = objectives.mwt_objective
    elif config.method == "moda":
        allowed = {"affinity_weight", "dispersion_weight", "compactness_weight"}
        factory = objectives.moda_objective
    elif config.method == "nemo":
        allowed = set(NEMO_SETTINGS)
        factory = objectives.nemo_objective
    else:  # a registered objective (`config.methods()`) that modjax.objectives does not build
        raise ValueError(f"method={config.method!r} has no objective in modjax.objectives")
    stray = sorted(set(weights) - allowed)
    if stray:
        use = f"use {sorted(allowed)}" if allowed else "its objective has no weights"
        raise ValueError(f"{stray} do not apply to method={config.method!r}; {use}")
    if factory is None:
        return objectives.standard
    if config.method == "nemo":
        weights = _nemo_kwargs(config, weights)
    return factory(num_classes=num_classes, **weights)


def make_preprocess(config: TrainConfig, info, *, augment: bool):
    return data.make_preprocess(
        info, augment=augment, normalize=config.normalize, image_size=config.image_size
    )


def input_shape(config: TrainConfig, info) -> tuple[int, int, int]:
    """The model's input shape: the dataset's, or `image_size` square when resizing."""
    if config.image_size is None:
        return tuple(info.image_shape)
    return (config.image_size, config.image_size, info.image_shape[-1])


def _subset(images, labels, n, seed):
    if n is not None and n > len(labels):
        raise ValueError(
            f"train_examples={n} is larger than the training split ({len(labels)} examples); "
            "leave it unset to train on the whole split"
        )
    return data.seeded_subset(images, labels, n, seed)


def build_run(config: TrainConfig) -> Run:
    """Loads and validates data, model and optimizer; every input error surfaces here."""
    info = data.get_info(config.dataset)
    make_objective(config, info.num_classes)  # weights that do not apply: refused before work
    model_kwargs = {} if config.depth is None else {"depth": config.depth}
    model = models.get_model(
        config.model,
        num_classes=info.num_classes,
        width=config.width,
        mask_generators=uses_generators(config.method),
        **model_kwargs,
    )
    models.trace(model, input_shape(config, info))  # every layer builds (e.g. width)
    mesh = parallel.make_mesh(config.num_devices)
    parallel.check_batch_size(config.global_batch_size, mesh)
    train_images, train_labels = _subset(
        *data.load(config.dataset, "train", data_dir=config.data_dir, backend=config.backend),
        config.train_examples,
        config.seed,
    )
    validation = None
    if config.validation_split:
        keep, held = data.stratified_split(
            train_labels, fraction=config.validation_split, seed=config.seed
        )
        validation = (train_images[held], train_labels[held])
        train_images, train_labels = train_images[keep], train_labels[keep]
    test_images, test_labels = data.load(
        config.dataset, "test", data_dir=config.data_dir, backend=config.backend
    )
    for split, (x, y) in (
        ("train", (train_images, train_labels)),
        ("test", (test_images, test_labels)),
    ):
        data.validate_arrays(x, y, info=info, what=f"{config.dataset}/{split}")
    steps = data.steps_per_epoch(len(train_labels), config.global_batch_size)
    if steps == 0:
        raise ValueError(
            f"global_batch_size={config.global_batch_size} exceeds the {len(train_labels)} "
            f"training examples of {config.dataset}: no full batch per epoch"
        )
    tx = train.make_optimizer(
        learning_rate=config.learning_rate,
        mask_learning_rate=config.mask_learning_rate,
        steps_per_epoch=steps,
        num_epochs=config.num_epochs,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
        schedule=config.schedule,
        t_max=config.t_max,
    )
    eval_step = train.make_eval_step(
        model=model,
        num_classes=info.num_classes,
        mesh=mesh,
        preprocess=make_preprocess(config, info, augment=False),
    )
    return Run(
        config,
        info,
        model,
        mesh,
        (train_images, train_labels),
        (test_images, test_labels),
        steps,
        tx,
        eval_step,
        input_shape(config, info),
        validation,
    )


def evaluate(run: Run, variables, *, split: str = "test") -> dict[str, Any]:
    """Accuracy, mean loss and per-class accuracy of `variables` on a split (`loop.evaluate`).

    `split` is `"test"`, `"train"` or `"validation"` (the run's `validation_split`).
    """
    splits = {"test": run.test_data, "train": run.train_data, "validation": run.validation_data}
    if splits.get(split) is None:
        raise ValueError(f"split={split!r}: this run has {[k for k, v in splits.items() if v]}")
    images, labels = splits[split]
    result = loop.evaluate(
        eval_step=run.eval_step,
        variables=parallel.replicate(variables, run.mesh),
        images=images,
        labels=labels,
        global_batch_size=run.config.global_batch_size,
        mesh=run.mesh,
    )
    return {**result, "per_class_accuracy": result["per_class_accuracy"].tolist()}
