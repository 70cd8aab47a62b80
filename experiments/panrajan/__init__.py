"""Project `panrajan`: Pan & Rajan's decompositions at paper and CPU scale (`python -m
experiments.panrajan --help`).

Sub-commands: `fse20` (FSE'20 Table 1, reuse and replacement on MNIST/Fashion-MNIST MLPs;
`fse20_train` trains its parents and baselines with the Keras recipe of `keras`), `kmnist`
(KMNIST rows and MNIST ← KMNIST replacement) and `icse22` (the CNN decomposition of a CIFAR
ResNet without BatchNorm, reuse and R32 ← R20 replacement; report in `icse22_report`). `common`
holds the dense-module helpers `fse20` and `kmnist` share.
"""
