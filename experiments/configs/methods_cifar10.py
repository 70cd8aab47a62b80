"""Standard vs MwT vs MODA: small-width VGG16 (a) on a CIFAR-10 subset (the lossy JPEG copy).

Run: modjax train --config experiments/configs/methods_cifar10.py --method mwt \
         --data-dir ../shared/datasets --workdir runs/methods_cifar10/mwt   (~10 min per method
         on a 2-core CPU; --method standard and moda for the other two runs)
The parents of `benchmarks/results/methods_cifar10_cpu.md` and of the CIFAR-10 MwT modules in
`modules_cpu.md`; `python -m experiments.compare` (its own configs) is the methods side by side.
The paper runs are width 1, 200 epochs, the full training set (METHODS §4.4, §5.3).
"""


def get_config():
    return dict(
        model="vgg16",
        dataset="cifar10",
        width=0.25,
        num_epochs=4,
        train_examples=10000,
        global_batch_size=128,
        learning_rate=0.05,
        log_every=20,
        checkpoint_every=200,
    )
