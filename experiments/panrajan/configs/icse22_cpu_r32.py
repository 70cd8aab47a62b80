"""The receiver of the ICSE'22 replacement at CPU scale: ResNet-32 without BN, 6 epochs.

Run: nice -n 5 python -m experiments.panrajan icse22 --config \
         experiments/panrajan/configs/icse22_cpu.py --data-dir ../shared/datasets \
         --workdir runs/panrajan_icse22_cpu --stage replace \
         --receiver-config experiments/panrajan/configs/icse22_cpu_r32.py \
         --results benchmarks/results/panrajan_icse22_cpu.md
     (after the R20 run of `icse22_cpu.py` in the same workdir; ~20-30 min of training on 2
     busy cores; resumable: rerun the same command)
The paper replaces modules of its R32 by those of its R20 (Table 4, METHODS §13.5); its R32
(85.3%) is weaker than its R20 (87.1%). Here the receiver has the R20's recipe and images but
6 epochs instead of 10 (what fits beside the other CPU runs), so it is weaker too. Only `train`
is read from this file (the donor's config gives the decomposition).
"""

from icse22_cpu import get_config as cpu_config


def get_config():
    base = cpu_config()
    return {**base, "train": {**base["train"], "model": "resnet32_nobn", "num_epochs": 6}}
