"""Pan & Rajan ICSE'22 with a converged parent (issue 20): ResNet-20 without BatchNorm at the
paper's width (1.0: 16/32/64 channels) on all 50k CIFAR-10 images, 30 epochs.

Run: nice -n 5 python -m experiments.panrajan icse22 --config \
         experiments/panrajan/configs/icse22_cpu50k.py --data-dir ../shared/datasets \
         --workdir runs/panrajan_icse22_50k --results benchmarks/results/panrajan_icse22_50k.md
     (hours on 2 cores, over several sessions: `--stage train` for the training alone; its
     latest checkpoint, config.json and metrics.jsonl are committed under
     benchmarks/results/panrajan_icse22_50k/train/ between sessions: restore them first with
     `mkdir -p runs/panrajan_icse22_50k && cp -r benchmarks/results/panrajan_icse22_50k/train
     runs/panrajan_icse22_50k/`)
Why: the 10-epoch, 20k-image, width-0.5 parent of `icse22_cpu.py` reached 53.1%, and its modules
kept 98.5% of the positions (JI 1.00). The issue asks for >= 80% before reading JI. Step time on
the 2-core CPU, batch 128 (measured 2026-12-07 beside another training job): width 0.5 411 ms,
width 1.0 845 ms; quiet about 0.6x of that, so 30 epochs at width 1.0 take about 2 h quiet.
Width 1.0 rather than 0.5: the with-BN ResNet-20 at 0.5 stopped at 79.25% after 15 epochs, and a
net without BN learns slower (53.1% after 10 epochs on 20k at 0.5), so 0.5 risks missing 80%.
Recipe: `icse22_cpu.py`'s (zero-init residual branches, SGD Nesterov, cosine, weight decay
5e-4, crop + flip) at peak lr 0.05 (stable here in a 100-step probe; 0.02 learned slowly).
Decomposition at the paper's bar: 1000 positives per class at p > 0.9.
"""

from icse22_cpu import get_config as cpu_config


def get_config():
    base = cpu_config()
    train = dict(
        base["train"],
        width=1.0,
        num_epochs=30,
        train_examples=None,
        learning_rate=0.05,
        log_every=50,
        eval_every=2,
        checkpoint_every=100,
    )
    decompose = dict(base["decompose"], positives=1000, confidence=0.9, replace_confidence=0.5)
    return {"train": train, "decompose": decompose}
