"""Small-width SimCNN on CIFAR-10 (the lossy JPEG copy), standard training.

Run: modjax train --config experiments/configs/simcnn_cifar10.py --data-dir ../shared/datasets \
         --workdir runs/simcnn_cifar10   (several minutes per epoch on a 2-core CPU)
Paper recipe (METHODS §4.4): --width 1 --num-epochs 200 --t-max 200.
"""


def get_config():
    return dict(
        model="simcnn",
        width=0.25,
        dataset="cifar10",
        num_epochs=5,
        global_batch_size=128,
        learning_rate=0.05,
        log_every=50,
        checkpoint_every=390,
    )
