"""Project `compare`: the four method families on one network, one table (`python -m
experiments.compare --help`)."""
