"""Pan & Rajan ICSE'22 at CPU scale: ResNet-20 without BatchNorm, width 0.5, on CIFAR-10.

Run: nice -n 5 python -m experiments.panrajan icse22 --config \
         experiments/panrajan/configs/icse22_cpu.py --data-dir ../shared/datasets \
         --workdir runs/panrajan_icse22_cpu --results benchmarks/results/panrajan_icse22_cpu.md
     (~20 min of training on 2 busy cores, then a few minutes of decomposition; resumable:
     rerun the same command)
Recipe: the paper's optimizer is unknown (METHODS §3.8); modjax's SGD (Nesterov 0.9, per-epoch
cosine, weight decay 5e-4, CIFAR normalization, crop + flip) at a lower peak rate, 0.02, since a
ResNet without BatchNorm is less stable. 10 epochs on a seeded 20k-image subset is what fits on
a CPU; the paper trains 200 epochs at full width (`icse22_paper.py`).
Decomposition: a weak CPU-trained parent has few training images above p = 0.9, so the bar is
0.5 and 300 positives per class (the paper: 1000 at 0.9); replacement on 2,000 test images.
"""


def get_config():
    return dict(
        train=dict(
            model="resnet20_nobn",
            width=0.5,
            dataset="cifar10",
            num_epochs=10,
            train_examples=20_000,
            global_batch_size=128,
            learning_rate=0.02,
            weight_decay=5e-4,
            log_every=25,
            eval_every=1,
            checkpoint_every=50,
            keep_checkpoints=2,
        ),
        decompose=dict(
            positives=300,
            confidence=0.5,
            delta=0.5,
            pairs=6,
            chunk=50,
            eval_examples=None,
            replace_examples=2000,
            replace_confidence=0.3,  # the 6-epoch receiver (42.8%) has no training cat above 0.5
        ),
    )
