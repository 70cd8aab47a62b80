"""Smoke scale: every table in seconds on the embedded digits, tiny models (the tests).

Run: python -m experiments.reproduce moda --scale smoke --seeds 1 --workdir /tmp/reproduce_smoke \
         --out /tmp/reproduce_smoke/moda   (~1 min on a 2-core CPU; any table)
One epoch of an MLP (MODA) or a LeNet5 on 16×16 digits (MwT); `replace` trains a 1-hidden-layer
MLP strong model and a 16-unit weak MLP for a few epochs.
"""

from paper import get_config as paper_config


def get_config():
    return dict(
        models=dict(mwt=("lenet5",), mwt_reuse=("lenet5",), moda=("mlp",), moda_replace=("mlp",)),
        train=dict(
            dataset="digits",
            num_epochs=1,
            global_batch_size=64,
            log_every=10,
            checkpoint_every=10,
        ),
        train_per_model=dict(mlp=dict(depth=1), lenet5=dict(image_size=16, width=0.5)),
        tasks=dict(mwt=3, mwt_reuse=1, moda=3),
        finetune_epochs=1,
        for_accelerators=False,
        replace={
            **paper_config()["replace"],
            "dataset": "digits",
            "target_classes": (2,),
            "strong_model": dict(depth=1),
            "weak_model": dict(name="mlp", depth=1, hidden=16),
            "strong_epochs": 3,
            "weak_epochs": 4,
            "underfit_epoch": 1,
            "overfit_epoch": 4,
            "batch_size": 32,
        },
    )
