"""The receiver of the ICSE'22 replacement at CPU scale: ResNet-32 without BN, 6 epochs.

Run (after the R20 run of `panrajan_icse22_cpu.py` in the same workdir):
     nice -n 5 python experiments/panrajan_icse22.py --config \
         experiments/configs/panrajan_icse22_cpu.py --data-dir ../shared/datasets \
         --workdir runs/panrajan_icse22_cpu --scale cpu --stage replace \
         --receiver-config experiments/configs/panrajan_icse22_cpu_r32.py \
         --results benchmarks/results/panrajan_icse22_cpu.md
     (~20-30 min of training on 2 busy cores; resumable: rerun the same command)
The paper replaces modules of its R32 by those of its R20 (Table 4, METHODS §13.5); its R32
(85.3%) is weaker than its R20 (87.1%). Here the receiver has the R20's recipe and images but
6 epochs instead of 10 (what fits beside the other CPU runs), so it is weaker too.
"""

import importlib.util
import pathlib

_spec = importlib.util.spec_from_file_location(
    "panrajan_icse22_cpu", pathlib.Path(__file__).with_name("panrajan_icse22_cpu.py")
)
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config():
    return {**_base.get_config(), "model": "resnet32_nobn", "num_epochs": 6}
