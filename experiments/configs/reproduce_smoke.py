"""Seconds-long smoke scale of `experiments/reproduce.py` (tests): digits, one epoch, tiny models."""

MODELS = {"mwt": ("lenet5",), "mwt_reuse": ("lenet5",), "moda": ("mlp",)}


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
