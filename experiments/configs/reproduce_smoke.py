"""Seconds-long smoke scale of `experiments/reproduce.py` (tests): digits, one epoch, tiny models."""

MODELS = {"mwt": ("lenet5",), "mwt_reuse": ("lenet5",), "moda": ("mlp",), "moda_replace": ("mlp",)}


def row(model: str, method: str) -> dict:
    extra = {"depth": 1} if model == "mlp" else {"image_size": 16, "width": 0.5}
    return dict(
        model=model,
        method=method,
        dataset="digits",
        num_epochs=1,
        global_batch_size=64,
        log_every=10,
        checkpoint_every=10,
        **extra,
    )


def replace(model: str) -> dict:
    return dict(
        dataset="digits",
        target_classes=(2,),
        strong_model=dict(name=model, depth=1),
        weak_model=dict(name="mlp", depth=1, hidden=16),
        strong_epochs=3,
        weak_epochs=4,
        underfit_epoch=1,
        overfit_epoch=4,
        batch_size=32,
    )
