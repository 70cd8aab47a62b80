"""DeepArc at a depth that has redundant blocks: ResNet-56 (27 blocks) at width 0.5 on all 50k
CIFAR-10 images, 24 epochs (issue 20).

Run: nice -n 5 python -m experiments.deeparc --config experiments/deeparc/configs/cpu_r56.py \
         --data-dir ../shared/datasets --workdir runs/deeparc_cpu_r56
     (several hours on 2 cores; resumable: rerun the same command, or `--stage train` for the
     training alone)
     The training spans sessions: its latest checkpoint, config.json and metrics.jsonl are
     committed under benchmarks/results/deeparc_r56_cpu/train/; on a fresh machine restore them
     first with `mkdir -p runs/deeparc_cpu_r56 && cp -r benchmarks/results/deeparc_r56_cpu/train
     runs/deeparc_cpu_r56/` (the checkpoint's settings and checksums are verified on resume).
Why this network (step times measured 2026-12-07 on the 2-core CPU, batch 128, one process):
ResNet-20 w0.5 256 ms, ResNet-56 w0.25 504 ms, ResNet-56 w0.5 934 ms, ResNet-110 w0.25 1617 ms,
ResNet-110 w0.5 2886 ms. ResNet-110 at width 0.25 costs 6.3x a ResNet-20 w0.5 step, not 1.4x,
so the ~30 epochs a >= 80% network needs (10.5 min each) do not fit; ResNet-56 is the issue's
fallback. Width 0.5 rather than 0.25: at 0.25 the first stage has 4 channels, and ResNet-20 at
0.5 (8/16/32 channels) reached only 79.25% in 15 epochs, so 4/8/16 channels would risk missing
80%; the same 8/16/32 widths at 27 blocks keep the comparison with the ResNet-20 run direct.
Recipe as `cpu15.py` (modjax defaults); the analysis is `cpu.py`'s.
"""

from cpu import get_config as cpu_config


def get_config():
    return dict(
        train=dict(
            model="resnet56",
            width=0.5,
            dataset="cifar10",
            num_epochs=24,
            global_batch_size=128,
            learning_rate=0.05,
            weight_decay=5e-4,
            log_every=50,
            eval_every=4,
            checkpoint_every=100,
            keep_checkpoints=2,
        ),
        # the analysis of cpu.py, and each shrunk network also fine-tuned for one epoch on 5k
        # training images (DeepArc does not fine-tune; issue 20 asks for both)
        analysis={**cpu_config()["analysis"], "finetune_epochs": 1},
    )
