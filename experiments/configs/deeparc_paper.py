"""DeepArc paper scale (METHODS §8.1): ResNet-110 on CIFAR-10, 300 epochs, for an accelerator.

Run: python experiments/deeparc.py --config experiments/configs/deeparc_paper.py \
         --data-dir ../shared/datasets --workdir runs/deeparc_paper   (hours on one GPU)
Recipe: SGD 0.01, momentum 0.9 without Nesterov, per-epoch cosine over 300 epochs, batch 128.
Keras L2 0.005 on conv kernels is approximated by coupled weight decay 0.01 (= 2 × 0.005) on all
parameters; inputs are pixels / 255 (`normalize=False`). Differences from the reference: the
zero-pad crop of the modjax CIFAR pipeline instead of reflect padding, and the JPEG copy of
CIFAR-10 when that is the only one on disk.
"""


def get_config():
    return dict(
        model="resnet110",
        width=1.0,
        dataset="cifar10",
        num_epochs=300,
        global_batch_size=128,
        learning_rate=0.01,
        nesterov=False,
        weight_decay=0.01,
        normalize=False,
        log_every=100,
        eval_every=10,
        checkpoint_every=390,
        keep_checkpoints=3,
    )
