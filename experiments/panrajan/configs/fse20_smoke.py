"""FSE'20 smoke run (the tests): both "datasets" are the embedded digits, 1 epoch, a few pairs.

Run: python -m experiments.panrajan fse20 --config experiments/panrajan/configs/fse20_smoke.py \
         --workdir /tmp/fse20_smoke --results /tmp/fse20_smoke/results   (~2 min on 2 cores)
The numbers mean nothing; every stage runs (parents of depth 1 and 4, the faulty MNIST-1, the
baselines, decomposition with all six techniques, reuse, replacement and the report).
"""


def get_config():
    return dict(
        datasets=dict(MNIST="digits", FMNIST="digits"),
        depths=(1, 4),
        epochs=1,
        faulty=dict(digit=5, keep=20),
        baseline_epochs=1,
        intra_pairs=2,
        inter_pairs=3,
        chunk=15,
        inter_chunk=10,
        confidence=0.0,  # a one-epoch parent is confident about nothing
    )
