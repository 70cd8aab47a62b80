"""DeepArc at CPU scale: ResNet-20 at width 0.5 on 15k CIFAR-10 images (JPEG copy), 2 epochs.

Run: nice -n 10 python experiments/deeparc.py --config experiments/configs/deeparc_cpu.py \
         --data-dir ../shared/datasets --workdir runs/deeparc_cpu   (~30-40 min on 2 busy cores;
         resumable: rerun the same command)
Recipe: modjax defaults (SGD 0.05, Nesterov, per-epoch cosine, weight decay 5e-4 on all
parameters, CIFAR normalization, zero-pad crop) rather than DeepArc's (SGD 0.01, L2 0.005 on
conv kernels, pixels / 255, reflect pad; experiments/configs/deeparc_paper.py), which needs far
more epochs than a CPU run allows.
"""


def get_config():
    return dict(
        model="resnet20",
        width=0.5,
        dataset="cifar10",
        num_epochs=2,
        train_examples=15_000,
        global_batch_size=128,
        learning_rate=0.05,
        weight_decay=5e-4,
        log_every=25,
        eval_every=4,
        checkpoint_every=40,
        keep_checkpoints=2,
    )
