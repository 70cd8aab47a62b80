"""Project `deeparc`: DeepArc's protocol on a CIFAR ResNet (`python -m experiments.deeparc
--help`): training, block CKA and modules, compression, repair; `report` writes the markdown."""
