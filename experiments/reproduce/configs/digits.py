"""Module replacement (METHODS §5.7) on the embedded digits: weak-model repair in about a minute.

Run: python -m experiments.reproduce moda_replace --scale digits --seeds 3   (~1 min per seed
     on a 2-core CPU; --seeds 1 for seed 0 alone)
The protocol of `experiments/reproduce/replace.py` at toy size: MLPs instead of LeNet5/VGG16,
one target class (2), a few epochs. The table gives the "TC | mean non-TC" changes of the
CNNSplitter-style baseline and the MODA adapter for the underfitted and the overfitted weak
model (the per-seed values are in the .csv, the per-class accuracies in
`<workdir>/mlp_s<seed>/replace_tc2.json`). Only the `moda_replace` table.
"""

from paper import get_config as paper_config


def get_config():
    return dict(
        models=dict(moda_replace=("mlp",)),
        for_accelerators=False,
        replace={
            **paper_config()["replace"],
            "dataset": "digits",
            "target_classes": (2,),
            "strong_model": dict(depth=2),
            "weak_model": dict(name="mlp", depth=1, hidden=16),
            "strong_epochs": 20,
            "underfit_epoch": 3,
            "overfit_epoch": 20,
            "weak_epochs": 20,
            "batch_size": 32,
        },
    )
