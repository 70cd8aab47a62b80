"""Pan & Rajan ICSE'22 at CPU scale: ResNet-20 without BatchNorm, width 0.5, on CIFAR-10.

Run: nice -n 5 python experiments/panrajan_icse22.py --config \
         experiments/configs/panrajan_icse22_cpu.py --data-dir ../shared/datasets \
         --workdir runs/panrajan_icse22_cpu --scale cpu \
         --results benchmarks/results/panrajan_icse22_cpu.md
     (~20 min of training on 2 busy cores, then a few minutes of decomposition; resumable:
     rerun the same command)
Recipe: the paper's optimizer is unknown (METHODS §3.8); modjax's SGD (Nesterov 0.9, per-epoch
cosine, weight decay 5e-4, CIFAR normalization, crop + flip) at a lower peak rate, 0.02, since a
ResNet without BatchNorm is less stable. 10 epochs on a seeded 20k-image subset is what fits on
a CPU; the paper trains 200 epochs at full width (`panrajan_icse22_paper.py`).
"""


def get_config():
    return dict(
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
    )
