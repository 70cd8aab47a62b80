"""The module report's default sub-tasks and timing.

Run: python -m experiments.module_report --modules runs/moda_mnist/modules \
         --data-dir ../shared/datasets --out runs/moda_mnist/report.md
     (seconds for an MLP on MNIST, a few minutes for a CIFAR VGG16 on a 2-core CPU)
Two sub-tasks (classes 0, 1 and 0-4), evaluated and timed in batches of 256 test images, each
timing the median of 10 applications after a warm-up. `--tasks 3,8 0,2,4,6,8` overrides them.
"""


def get_config():
    return dict(tasks=("0,1", "0,1,2,3,4"), batch_size=256, repeats=10)
