"""Standard vs MwT vs MODA: small-width VGG16 (a) on a CIFAR-10 subset (the lossy JPEG copy).

Run: python experiments/compare_methods.py --config experiments/configs/methods_cifar10.py \
         --data-dir ../shared/datasets --workdir runs/methods_cifar10   (~30 min on a 2-core CPU)
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
