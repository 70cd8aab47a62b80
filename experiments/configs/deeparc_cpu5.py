"""DeepArc at CPU scale, longer: `deeparc_cpu.py` continued to 5 epochs (resumes its workdir copy).

Run: cp -r runs/deeparc_cpu runs/deeparc_cpu5 && nice -n 10 python experiments/deeparc.py \
         --config experiments/configs/deeparc_cpu5.py --data-dir ../shared/datasets \
         --workdir runs/deeparc_cpu5   (~15-45 min more on 2 busy cores; the cosine period
         becomes 5 epochs from epoch 3 on)
"""

import importlib.util
import pathlib

_spec = importlib.util.spec_from_file_location(
    "deeparc_cpu", pathlib.Path(__file__).with_name("deeparc_cpu.py")
)
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config():
    return {**_base.get_config(), "num_epochs": 5}
