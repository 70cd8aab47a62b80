"""Standard vs MwT vs MODA: VGG16 (a) at width 0.125 on Fashion-MNIST resized to 32×32.

Run: modjax train --config experiments/configs/methods_fmnist.py --method moda \
         --data-dir ../shared/datasets --workdir runs/methods_fmnist/moda   (~7 min per method
         on a 2-core CPU; --method standard and mwt for the other two runs)
The parents of `benchmarks/results/methods_fmnist_cpu.md`; `python -m experiments.compare` (its
own configs) is the methods side by side.
"""


def get_config():
    return dict(
        model="vgg16",
        dataset="fashion_mnist",
        image_size=32,
        width=0.125,
        num_epochs=5,
        train_examples=20000,
        global_batch_size=128,
        learning_rate=0.05,
        log_every=50,
        checkpoint_every=500,
    )
