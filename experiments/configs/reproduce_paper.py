"""Paper scale of `experiments/reproduce.py`: the MwT/MODA recipe (METHODS §4.4, §5.3, §9).

Full width, CIFAR-10 with the papers' augmentation, 200 epochs, batch 128, SGD 0.05 Nesterov,
per-epoch cosine with T_max = 200, no weight decay; MwT's generators share the model's lr. Meant
for accelerators: run with `--distributed` on a cluster (one process per host).

`row(model, method)` returns one training run's settings (`modjax.runs.config.TrainConfig`
fields, without seed and data_dir).
"""

MODELS = {
    "mwt": ("vgg16", "resnet18", "simcnn", "rescnn"),
    "mwt_reuse": ("vgg16", "resnet18", "simcnn", "rescnn"),
    "moda": ("vgg16_moda", "resnet18", "mobilenet"),
    "moda_replace": ("vgg16_moda", "resnet18"),
}


def row(model: str, method: str) -> dict:
    return dict(
        model=model,
        method=method,
        dataset="cifar10",
        width=1.0,
        num_epochs=200,
        t_max=200,
        global_batch_size=128,
        learning_rate=0.05,
        log_every=100,
        checkpoint_every=1000,
    )


def replace(model: str) -> dict:
    # §5.7: CIFAR-10, strong model 200 epochs; weak LeNet5 200 epochs, states at 10 and 195.
    return dict(
        dataset="cifar10",
        strong_model=dict(name=model, width=1.0),
        weak_model=dict(name="lenet5", width=1.0),
        strong_epochs=200,
        weak_epochs=200,
        underfit_epoch=10,
        overfit_epoch=195,
    )
