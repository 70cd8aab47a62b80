"""Smoke report (the tests): one two-class sub-task, small batches, two timing repeats.

Run: python -m experiments.module_report --config experiments/module_report/configs/smoke.py \
         --modules /tmp/smoke_moda/modules   (seconds, after `modjax pipeline --config
         experiments/configs/smoke_moda.py --workdir /tmp/smoke_moda`)
"""


def get_config():
    return dict(tasks=("3,8",), batch_size=64, repeats=2)
