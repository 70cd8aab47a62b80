"""Project `module_report`: the modules of one trained model measured in one report (`python -m
experiments.module_report --help`): sizes, overlap, sub-task composition, inference time."""
