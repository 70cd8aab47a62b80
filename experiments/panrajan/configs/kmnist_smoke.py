"""KMNIST smoke run (the tests): the embedded digits stand for both datasets.

Run: python -m experiments.panrajan kmnist --config experiments/panrajan/configs/kmnist_smoke.py \
         --workdir /tmp/kmnist_smoke --results /tmp/kmnist_smoke/results.md   (~1 min)
"""


def get_config():
    return dict(
        datasets=dict(KMNIST="digits", MNIST="digits"),
        epochs=30,
        mnist_epochs=30,
        kmnist_split="train",  # 1,437 images: TI needs 110 negatives per class
        kmnist_train=1300,
        fallback_confidence=0.0,
    )
