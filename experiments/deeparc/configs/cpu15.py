"""DeepArc at CPU scale, converging: ResNet-20 at width 0.5 on all 50k CIFAR-10 images, 15 epochs.

Run: nice -n 5 python -m experiments.deeparc --config experiments/deeparc/configs/cpu15.py \
         --data-dir ../shared/datasets --workdir runs/deeparc_cpu15
     (~45-90 min on 2 cores, ~190-350 img/s; resumable: rerun the same command)
Recipe: modjax defaults (SGD 0.05, Nesterov, per-epoch cosine, weight decay 5e-4 on all
parameters, CIFAR normalization, zero-pad crop and flip) rather than DeepArc's (SGD 0.01, Keras L2
0.005 on conv kernels, pixels / 255, reflect pad, 300 epochs; `paper.py`). `cpu.py` / `cpu5.py`
are the earlier 2- and 5-epoch runs on 15k images; the analysis is `cpu.py`'s.
"""

from cpu import get_config as cpu_config


def get_config():
    return dict(
        train=dict(
            model="resnet20",
            width=0.5,
            dataset="cifar10",
            num_epochs=15,
            global_batch_size=128,
            learning_rate=0.05,
            weight_decay=5e-4,
            log_every=50,
            eval_every=3,
            checkpoint_every=200,
            keep_checkpoints=2,
        ),
        analysis=cpu_config()["analysis"],
    )
