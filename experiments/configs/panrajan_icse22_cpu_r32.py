"""The receiver of the ICSE'22 replacement at CPU scale: ResNet-32 without BN, else as R20's.

Run (after the R20 run of `panrajan_icse22_cpu.py` in the same workdir):
     nice -n 5 python experiments/panrajan_icse22.py --config \
         experiments/configs/panrajan_icse22_cpu.py --data-dir ../shared/datasets \
         --workdir runs/panrajan_icse22_cpu --scale cpu --stage replace \
         --receiver-config experiments/configs/panrajan_icse22_cpu_r32.py \
         --results benchmarks/results/panrajan_icse22_cpu.md
     (~30-45 min of training on 2 busy cores; resumable: rerun the same command)
The paper replaces modules of its R32 by those of its R20 (Table 4, METHODS §13.5).
"""

import importlib.util
import pathlib

_spec = importlib.util.spec_from_file_location(
    "panrajan_icse22_cpu", pathlib.Path(__file__).with_name("panrajan_icse22_cpu.py")
)
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config():
    return {**_base.get_config(), "model": "resnet32_nobn"}
