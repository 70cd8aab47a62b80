"""DeepArc paper scale (METHODS §8): ResNet-110 on CIFAR-10, 300 epochs, for an accelerator.

Run: python -m experiments.deeparc --config experiments/deeparc/configs/paper.py \
         --data-dir ../shared/datasets --workdir runs/deeparc_paper   (hours on one GPU)
Recipe: SGD 0.01, momentum 0.9 without Nesterov, per-epoch cosine over 300 epochs, batch 128.
Keras L2 0.005 on conv kernels is approximated by coupled weight decay 0.01 (= 2 × 0.005) on all
parameters; inputs are pixels / 255 (`normalize=False`). Differences from the reference: the
zero-pad crop of the modjax CIFAR pipeline instead of reflect padding, and the JPEG copy of
CIFAR-10 when that is the only one on disk.
Analysis: METHODS §8.2-8.5: CKA over 10 passes of the 10k test images, 5 subsets per size, repair
on 1000 + 1000 images, 10 epochs at lr 1e-4 on the top-5 blocks.
"""


def get_config():
    return dict(
        train=dict(
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
        ),
        analysis=dict(
            cka_examples=None,
            passes=10,
            eval_examples=None,
            max_remove=4,
            subsets=5,
            repair_examples=1000,
            repair_test=1000,
            repair_epochs=10,
            repair_lr=1e-4,
            repair_top_k=5,
            repair_max_share=None,
            pgd_steps=7,
            finetune_epochs=0,  # > 0: also fine-tune each shrunk network
            finetune_examples=5000,
        ),
    )
