"""Literal NumPy references of Pan & Rajan's decompositions, one sample (and one edge) at a time.

Written from METHODS §7 to check `modjax.decompose` against, the way `benchmarks/torch_ref`
checks modjax's MwT and MODA. They are used by the tests (`tests/decompose/`) and the speed
comparison (`benchmarks/decompose_speed.py`):

- `dense`: FSE'20, the reference code's `Slice` class loop by loop (CI, TI, CM-RIE, CM-C) and
  the vote.
- `cnn`: ICSE'22, convolutions over output positions, inactive maps updated sample by sample,
  channelling and MC-BLN's prose rule.
"""
