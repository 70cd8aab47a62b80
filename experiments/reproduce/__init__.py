"""Project `reproduce`: the published MwT and MODA tables, end to end (`python -m
experiments.reproduce --help`).

`__main__` (the command), `measure` (one seed of a row: train, extract, measure), `tables` (the
tables, the published numbers, the results files), `replace` (MODA's replacement protocol,
§5.7) and `replace_table` (its table); `configs/<scale>.py` hold every setting of a scale.
"""
