"""DeepArc at CPU scale, longer: `cpu.py` continued to 5 epochs (resumes its workdir copy).

Run: cp -r runs/deeparc_cpu runs/deeparc_cpu5 && nice -n 10 python -m experiments.deeparc \
         --config experiments/deeparc/configs/cpu5.py --data-dir ../shared/datasets \
         --workdir runs/deeparc_cpu5   (~15-45 min more on 2 busy cores; the cosine period
         becomes 5 epochs from epoch 3 on)
"""

from cpu import get_config as cpu_config


def get_config():
    base = cpu_config()
    return {**base, "train": {**base["train"], "num_epochs": 5}}
